//! Hot copies on the request path (`cache::hot` decides and keeps them): a non-owner serves a
//! lookup from its copy while the copy is fresh, and may make one from the owner's answer once
//! the key is hot. Only `cluster::to_owner` calls here.

use std::time::SystemTime;

use http::{Response, Version};
use http_body_util::BodyExt;

use super::exchange::Exchange;
use super::reply::{decorate, Serve};
use crate::cache::hot::{eligible, request_eligible, served_until, HotCopies, HotCopy};
use crate::cache::meta::{StoredFields, StoredHead};
use crate::cache::phase::BypassReason;
use crate::cache::policy::storable::storage_excluded_fields;
use crate::cache::policy::{effective_response_directives, Reuse};
use crate::cache::result::CacheResult;
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::store::{Hit, HitBody, Tier};
use crate::error::{Error, ErrorKind};
use crate::proxy::body::ProxyBody;
use crate::proxy::next_hop::Upstreamed;
use crate::proxy::transaction::Transaction;

/// Serves the request from the copy of `primary` if there is one the request may reuse
/// (RFC 9111 §4.2: fresh, and the client's `no-cache`, `max-age`, `min-fresh` respected).
pub(super) fn serve(
    ex: &Exchange<'_>,
    txn: &mut Transaction,
    hot: &HotCopies,
    primary: &str,
) -> Option<Response<ProxyBody>> {
    let now = ex.shared.clock.now();
    let copy = hot.get(primary, now)?;
    let eval = ex
        .shared
        .cache
        .evaluate(&copy.head, &ex.request, &ex.url, now);
    let Reuse::Fresh { ttl_secs } = eval.reuse else {
        return None;
    };
    let left = copy
        .until
        .duration_since(now)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let serve = Serve {
        hit: Hit {
            head: std::sync::Arc::clone(&copy.head),
            body: HitBody::Memory(copy.body.clone()),
            tier: Tier::Memory,
        },
        age: eval.age,
        status: CacheStatus {
            ttl: Some(ttl_secs.min(left)),
            ..CacheStatus::default()
        },
        result: CacheResult::HotCopy,
    };
    Some(ex.serve(txn, serve))
}

/// Whether this lookup should try to make a copy of the owner's answer: the request may give
/// one and the key is hot. The purge epoch to hand to [`relay`], taken before the request is
/// sent.
pub(super) fn wanted(ex: &Exchange<'_>, hot: &HotCopies, primary: &str) -> Option<u64> {
    (request_eligible(&ex.parts.method, &ex.parts.headers, ex.request.no_store)
        && hot.touch(primary))
    .then(|| hot.epoch())
}

/// Relays the owner's answer `up`, keeping a copy of it when it qualifies (`cache::hot`): its
/// body (at most `hot_copy_max_size`, by its `Content-Length`) is read whole first. `None`
/// hands `up` back untouched when it does not qualify.
pub(super) async fn relay(
    ex: &Exchange<'_>,
    txn: &mut Transaction,
    hot: &HotCopies,
    primary: &str,
    epoch: u64,
    request_time: SystemTime,
    up: Box<Upstreamed>,
) -> Result<Result<Response<ProxyBody>, Box<Upstreamed>>, Error> {
    let shared = ex.shared;
    let directives =
        effective_response_directives(&up.parts.headers, &shared.cache.behaviour.targeted_fields);
    let response_time = shared.clock.now();
    let mut headers = up.parts.headers.clone();
    for name in storage_excluded_fields(&up.parts.headers, &directives) {
        headers.remove(name);
    }
    let head = StoredHead {
        status: up.parts.status,
        headers: StoredFields::from_map(&headers),
        request_time,
        response_time,
        url: ex.url.as_str().into(),
        body_len: up.content_length().unwrap_or(0),
        derived: Default::default(),
    };
    let fresh_for = shared
        .cache
        .evaluate(&head, &Default::default(), &ex.url, response_time)
        .ttl();
    if let Err(why) = eligible(
        &hot.config,
        up.parts.status,
        &up.parts.headers,
        &directives,
        fresh_for,
    ) {
        tracing::debug!(url = %ex.url, why, "cluster: no hot copy of this response");
        return Ok(Err(up));
    }
    let (mut parts, body) = up.into_relay(shared.upstream.read_timeout());
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Err(Error::new(
                ErrorKind::InvalidResponse,
                format!("cluster member's response body: {e}"),
            ))
        }
    };
    let kept = u64::try_from(bytes.len()).ok() == Some(head.body_len)
        && hot.insert(
            primary,
            HotCopy {
                head: std::sync::Arc::new(head),
                body: bytes.clone(),
                until: served_until(response_time, hot.config.ttl, fresh_for),
            },
            epoch,
        );
    if kept {
        tracing::debug!(url = %ex.url, "cluster: hot copy kept");
    }
    let mut status = txn.outcome(
        CacheResult::Bypass {
            reason: BypassReason::Cluster,
        },
        CacheStatus::forward(Fwd::Bypass),
    );
    status.stored = kept;
    let received = parts.version;
    parts.version = Version::HTTP_11;
    decorate(shared, &mut parts.headers, received, &status);
    Ok(Ok(Response::from_parts(parts, ProxyBody::full(bytes))))
}
