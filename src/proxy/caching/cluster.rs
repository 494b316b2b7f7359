//! Cluster mode on the request path (`upstream::cluster`): a lookup for a key another member
//! owns goes to that member, marked with the cluster hop (`Cuttle-Cluster-Hop`), and is relayed
//! without being looked up or stored here; the owner, seeing the marker, serves it from its
//! cache or fetches it and never routes it again, so the members' collapsed forwarding happens
//! in one place and N members make one origin fetch per object.
//!
//! The members are tried in CARP's order for the key (`Cluster::owners`): a member that cannot
//! be reached is marked dead and the next one is asked; reaching this node in that order (or
//! running out of members) means this node serves the key itself, then direct. Only bodiless
//! `GET`/`HEAD` lookups are routed, so a retry after any failure but a read timeout is safe
//! (RFC 9110 §9.2.2: idempotent). A `PURGE` received from a client is applied here and sent to
//! every other member, so it reaches the owner wherever it arrives.
//!
//! With `[cluster] hot_copy_ttl`, a non-owner also keeps short-lived copies of very hot keys
//! (`cache::hot`, `hot`) and answers from them without asking the owner.

use std::sync::Arc;

use http::header::HeaderValue;
use http::{HeaderMap, Response, StatusCode};
use tokio::time::Instant;

use super::exchange::Exchange;
use super::reply::deliver;
use crate::cache::phase::BypassReason;
use crate::cache::result::CacheResult;
use crate::cache::status::{CacheStatus, Fwd};
use crate::error::{Error, ErrorKind};
use crate::proxy::body::ProxyBody;
use crate::proxy::destination::Resolution;
use crate::proxy::next_hop::{send_to_cache, Outgoing, Target, Upstreamed};
use crate::proxy::transaction::{hier, Transaction};
use crate::proxy::Shared;
use crate::upstream::cluster::{Cluster, HOP};
use crate::upstream::retry::{self, Replay};

/// Removes the cluster hop marker from a request (it never goes further than one member);
/// `true` when there was one: another member routed this request here.
pub(super) fn take_hop(headers: &mut HeaderMap) -> bool {
    // A static name: a `&str` would be parsed on every request.
    static HOP_NAME: http::HeaderName = http::HeaderName::from_static(HOP);
    // Almost no request has one: a pass over the names (a known name differs from it at its
    // tag) is cheaper than hashing it for a `remove` that finds nothing.
    headers.keys().any(|name| *name == HOP_NAME) && headers.remove(&HOP_NAME).is_some()
}

/// Sends the lookup for `primary` to the member that owns it, if that is not this node; the
/// response to relay, or `None` when this node serves the key itself.
pub(super) async fn to_owner(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    primary: &str,
) -> Result<Option<Response<ProxyBody>>, Error> {
    let Some(cluster) = ex.shared.cluster.clone() else {
        return Ok(None);
    };
    let mut owners = cluster.owners(primary).peekable();
    if owners
        .peek()
        .is_none_or(|&i| Some(i) == cluster.self_index())
    {
        return Ok(None);
    }
    // Another member owns the key: a fresh hot copy here answers for it.
    let hot = ex.shared.cache.hot.clone();
    let mut copy = None;
    if let Some(hot) = &hot {
        if let Some(response) = super::hot::serve(ex, txn, hot, primary) {
            return Ok(Some(response));
        }
        copy = super::hot::wanted(ex, hot, primary);
    }
    let request_time = ex.shared.clock.now();
    for (n, i) in owners.enumerate() {
        if Some(i) == cluster.self_index() {
            return Ok(None);
        }
        let Some(client) = cluster.peers.client(i) else {
            continue;
        };
        let mut headers = ex.parts.headers.clone();
        mark(&mut headers, &cluster);
        let out = Box::new(Outgoing {
            method: ex.parts.method.clone(),
            uri: ex.parts.uri.clone(),
            version: ex.parts.version,
            headers,
            body: None,
            client: ex.conn.peer.ip(),
            target: Target::Origin(Resolution::Unneeded),
        });
        let asked = Instant::now();
        let sent = send_to_cache(ex.shared, client, out).await;
        let stats = cluster.peers.stats.get(i);
        match sent {
            Ok(up) => {
                if let Some(stats) = stats {
                    stats.responded(asked.elapsed());
                }
                if let Some(liveness) = cluster.peers.liveness(i) {
                    liveness.answered();
                }
                let code = if n == 0 {
                    hier::CARP
                } else {
                    hier::ANY_OLD_PARENT
                };
                note_member(txn, &up, &cluster, i, code, asked);
                let up = match (&hot, copy) {
                    (Some(hot), Some(epoch)) => {
                        match super::hot::relay(ex, txn, hot, primary, epoch, request_time, up)
                            .await?
                        {
                            Ok(response) => return Ok(Some(response)),
                            Err(up) => up,
                        }
                    }
                    _ => up,
                };
                let status = txn.outcome(
                    CacheResult::Bypass {
                        reason: BypassReason::Cluster,
                    },
                    CacheStatus::forward(Fwd::Bypass),
                );
                return Ok(Some(deliver(ex.shared, up, status, None)));
            }
            Err(err) => {
                if let Some(stats) = stats {
                    stats.failed();
                }
                if err.nothing_sent() {
                    if let Some(liveness) = cluster.peers.liveness(i) {
                        liveness.failed(err.cause());
                    }
                } else if err.kind() == ErrorKind::ReadTimeout
                    || !retry::may_try_next(&err, Replay::Always)
                {
                    // A read timeout: the owner is up and waiting on the origin, asking
                    // another would wait too.
                    return Err(err);
                }
                let member = cluster.member(i).map_or("", |m| m.name.as_str());
                tracing::debug!(member, error = %err, "cluster member failed; trying the next");
            }
        }
    }
    Ok(None)
}

/// Adds our hop marker.
fn mark(headers: &mut HeaderMap, cluster: &Cluster) {
    if let Ok(name) = HeaderValue::from_str(cluster.self_name()) {
        headers.insert(HOP, name);
    }
}

/// Notes on `txn` which member answered, for the access log.
fn note_member(
    txn: &mut Transaction,
    up: &Upstreamed,
    cluster: &Cluster,
    i: usize,
    code: &'static str,
    asked: Instant,
) {
    txn.upstream_wait = Some(txn.upstream_wait.unwrap_or_default() + asked.elapsed());
    if let Some(addr) = up.remote_addr() {
        txn.upstream_addr = Some(addr);
    }
    txn.peer = cluster.member(i).map(|m| m.name.clone());
    txn.hierarchy = code;
}

/// After a `PURGE` from a client was applied here (`local`), sends it to every other member
/// (marked, so they do not spread it again; each still forwards it to its own
/// `purge_propagate`). The answer is 200 when anything was purged anywhere.
pub(super) async fn spread_purge(
    shared: &Arc<Shared>,
    client: std::net::IpAddr,
    parts: &http::request::Parts,
    hopped: bool,
    local: Result<Response<ProxyBody>, Error>,
) -> Result<Response<ProxyBody>, Error> {
    let mut response = local?;
    let Some(cluster) = shared.cluster.clone() else {
        return Ok(response);
    };
    if hopped {
        return Ok(response);
    }
    let mut headers = parts.headers.clone();
    mark(&mut headers, &cluster);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, member) in cluster.others() {
        let out = Box::new(Outgoing {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: headers.clone(),
            body: None,
            client,
            target: Target::Origin(Resolution::Unneeded),
        });
        let (shared, cluster, name) = (
            Arc::clone(shared),
            Arc::clone(&cluster),
            member.name.clone(),
        );
        tasks.spawn(async move {
            let Some(client) = cluster.peers.client(i) else {
                return false;
            };
            match send_to_cache(&shared, client, out).await {
                Ok(up) => {
                    tracing::info!(member = %name, status = up.parts.status.as_u16(), "purge sent to cluster member");
                    up.parts.status == StatusCode::OK
                }
                Err(err) => {
                    tracing::warn!(member = %name, error = %err, "purge not sent to cluster member");
                    false
                }
            }
        });
    }
    let mut purged_elsewhere = false;
    while let Some(done) = tasks.join_next().await {
        purged_elsewhere |= done.unwrap_or(false);
    }
    if purged_elsewhere && response.status() == StatusCode::NOT_FOUND {
        *response.status_mut() = StatusCode::OK;
    }
    Ok(response)
}
