//! The miss phase: collapse with concurrent identical misses (Squid `collapsed_forwarding`),
//! then fetch the full response and hand it to the storage pipeline. A collapsed request that
//! wants the whole body streams it from the leader's fill as it arrives (read-while-writer);
//! one with a range or conditionals is answered from the stored copy once committed.

use std::sync::Arc;

use http::{Method, Response};

use super::exchange::{Exchange, CLIENT_CONDITIONALS};
use super::relay::{store_or_pass, Fetched};
use super::reply::{not_in_cache, serve_collapsed, Serve};
use crate::cache::collapse::{Joined, Leader, Role};
use crate::cache::decision::{Decision, Found};
use crate::cache::result::CacheResult;
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::store::Tier;
use crate::error::Error;
use crate::proxy::body::ProxyBody;
use crate::proxy::transaction::Transaction;

/// A fetch about to be made for a miss (or a refetch after an unrelated 304).
pub(super) struct Fetch<'a> {
    pub primary: &'a str,
    pub fwd: Fwd,
    pub had_variants: bool,
    /// The collapsed-forwarding lead, if this request holds it.
    pub leader: Option<Leader>,
}

/// A miss: collapse with concurrent misses, then fetch and store.
pub(super) async fn miss(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    primary: &str,
    fwd: Fwd,
    had_variants: bool,
) -> Result<Response<ProxyBody>, Error> {
    if ex.request.only_if_cached {
        return Ok(not_in_cache(ex.shared, txn, &ex.url));
    }
    let behaviour = Arc::clone(&ex.shared.cache.behaviour);
    let mut leader = None;
    if ex.parts.method == Method::GET && behaviour.collapsed_forwarding {
        match ex.shared.cache.collapser.join(primary) {
            Role::Leader(l) => leader = Some(l),
            Role::Waiter(waiter) => {
                tracing::trace!(url = %ex.url, phase = "collapsed-wait", "cache phase");
                let stream = !ex.parts.headers.contains_key(http::header::RANGE)
                    && !CLIENT_CONDITIONALS
                        .iter()
                        .any(|name| ex.parts.headers.contains_key(name));
                let joined = waiter
                    .wait(behaviour.collapsed_forwarding_timeout, stream)
                    .await;
                if let Joined::Stream(attached) = joined {
                    tracing::trace!(url = %ex.url, phase = "collapsed-stream", "cache phase");
                    let status = CacheStatus {
                        fwd: Some(fwd),
                        ..CacheStatus::default()
                    };
                    // Read from memory as it arrives (or the stored copy, once behind).
                    let result = CacheResult::Collapsed { tier: Tier::Memory };
                    return Ok(serve_collapsed(
                        ex.shared, &ex.parts, txn, attached, status, result,
                    ));
                }
                if matches!(joined, Joined::Stored) {
                    let now = ex.shared.clock.now();
                    let decision = ex
                        .shared
                        .cache
                        .decide(primary, &ex.parts.headers, &ex.request, &ex.url, now)
                        .await;
                    if let Decision::FreshHit {
                        found: Found { hit, eval, .. },
                        ttl_secs,
                    } = decision
                    {
                        let status = CacheStatus {
                            fwd: Some(fwd),
                            ttl: Some(ttl_secs),
                            ..CacheStatus::default()
                        };
                        let result = CacheResult::Collapsed { tier: hit.tier };
                        return Ok(ex.serve(
                            txn,
                            Serve {
                                hit,
                                age: eval.age,
                                status,
                                result,
                            },
                        ));
                    }
                }
                // Released (not storable, failed, gone, or timed out): fetch on our own.
                txn.released_from_collapse = true;
            }
        }
    }
    let fetch = Fetch {
        primary,
        fwd,
        had_variants,
        leader,
    };
    self::fetch(ex, txn, fetch).await
}

/// Fetches a full response for a miss and stores it if the pipeline admits it.
pub(super) async fn fetch(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    fetch: Fetch<'_>,
) -> Result<Response<ProxyBody>, Error> {
    let headers = if ex.parts.method == Method::GET {
        ex.take_headers_for_miss()
    } else {
        ex.forwarded_headers()
    };
    let request_time = ex.shared.clock.now();
    ex.ticket = Some(ex.shared.cache.stamp());
    let up = ex.send(txn, headers).await?;
    txn.result = Some(CacheResult::Miss);
    txn.code = CacheResult::Miss.squid_code();
    if super::partial::is_part(ex, &up) {
        // RFC 9111 §3.3: a 206 for the client's range is stored as a part.
        let Fetch {
            primary,
            fwd,
            leader,
            ..
        } = fetch;
        return super::partial::store_part(ex, txn, primary, fwd, leader, up, request_time).await;
    }
    let fetched = Fetched {
        primary: fetch.primary,
        fwd: fetch.fwd,
        had_variants: fetch.had_variants,
        leader: fetch.leader,
        up,
        request_time,
    };
    store_or_pass(ex, txn, fetched).await
}
