//! The cache on the request path: one way through it, phase by phase (see `cache::phase`).
//!
//! ```text
//! PURGE ───────── purge: remove every variant (cache.purge_from only)
//! bypass ──────── other methods, GET with content, no key: forward; a successful unsafe
//!                 method invalidates (RFC 9111 §4.4)
//! GET/HEAD ── Cache::decide ─┬─ FreshHit ── serve stored (Age, 304/412, HEAD, 206)
//!                            ├─ StaleHit ── serve stored (+ one background refresh under swr)
//!                            ├─ Revalidate ─ conditional request ─┬─ 304: freshen, serve stored
//!                            │                                    ├─ 5xx/down: serve stale or
//!                            │                                    │  relay; never store
//!                            │                                    └─ 200: storage pipeline
//!                            └─ Miss ── collapsed wait | fetch ── storage pipeline
//! storage pipeline (admit) ── Store: fill while relaying | Pass (reason): relay only
//! GET matching [[cache.slice]] ── slice: the object as blocks fetched with range requests
//! ```
//! The cache decides ([`Cache::decide`](crate::cache::lookup::Cache)) and the proxy fetches.
//! Files, each used only by those after it: `reply` (client responses), `exchange` (the
//! request), `admit` (the one storage pipeline), `validation` (what a revalidation's answer
//! means), `relay` (foreground store-or-pass), `miss`, `revalidate`, `refresh` (background
//! stale-while-revalidate), `bypass`, `purge`.

mod admit;
mod bypass;
mod cluster;
mod exchange;
mod hot;
mod miss;
mod partial;
mod pieces;
mod purge;
mod refresh;
mod relay;
mod reply;
mod revalidate;
mod slice;
mod validation;

use std::sync::Arc;

use http::Response;
use hyper::body::Body as _;

use crate::proxy::client_body::ClientBody;

use crate::cache::decision::{Decision, Found};
use crate::cache::lookup::is_cacheable_method;
use crate::cache::phase::BypassReason;
use crate::cache::policy::RequestDirectives;
use crate::cache::result::CacheResult;
use crate::cache::status::CacheStatus;
use crate::error::Error;
use crate::out_of_line;
use crate::proxy::body::ProxyBody;
use crate::proxy::next_hop::Target;
use crate::proxy::request::ConnInfo;
use crate::proxy::transaction::Transaction;
use crate::proxy::Shared;
use exchange::Exchange;
use reply::{not_in_cache, Serve};

/// Handles a request whose checks have passed, through the cache.
pub async fn handle(
    conn: &ConnInfo,
    shared: &Arc<Shared>,
    txn: &mut Transaction,
    parts: http::request::Parts,
    body: ClientBody,
    target: Target,
) -> Result<Response<ProxyBody>, Error> {
    // The transaction already holds the effective URI without credentials.
    let url = txn.url.clone();
    let mut parts = parts;
    let hopped = cluster::take_hop(&mut parts.headers);
    let mut request = RequestDirectives::from_headers(&parts.headers);
    shared
        .cache
        .behaviour
        .apply_ignore_reload(&url, &mut request);
    let mut ex = Exchange {
        conn,
        shared,
        parts,
        body: Some(body),
        url,
        request,
        target,
        ticket: None,
    };
    if ex.parts.method.as_str() == "PURGE" {
        let client = conn.peer.ip();
        return out_of_line::start(|| async {
            let local =
                purge::purge(ex.shared, client, &ex.parts.uri, &ex.parts.headers, txn).await;
            cluster::spread_purge(ex.shared, client, &ex.parts, hopped, local).await
        })
        .await;
    }
    if !is_cacheable_method(&ex.parts.method) {
        return bypass(&mut ex, txn, BypassReason::Method).await;
    }
    if ex.body.as_ref().is_some_and(|b| !b.is_end_stream()) {
        // RFC 9110 §9.3.1: content in a GET "has no generally defined semantics, cannot alter
        // the meaning or target of the request". Some origins answer it anyway (search APIs),
        // so it is forwarded, but its answer is about the content, not the URI: it is neither
        // served from nor stored under the URI's key, or one client's body would choose what
        // everyone else gets for a plain GET.
        return bypass(&mut ex, txn, BypassReason::RequestContent).await;
    }
    if !bypass::cache_allowed(&ex, txn.user.as_deref()) {
        // Squid `cache deny`: neither served from nor stored in the cache.
        return bypass(&mut ex, txn, BypassReason::CacheDeny).await;
    }
    let Some(primary) = ex.shared.cache.primary_key(&ex.parts.uri) else {
        return bypass(&mut ex, txn, BypassReason::NoKey).await;
    };
    if !hopped && ex.shared.cluster.is_some() {
        // Cluster mode: a key another member owns is its to serve (and store).
        let owner = out_of_line::start(|| cluster::to_owner(&mut ex, txn, &primary));
        if let Some(response) = owner.await? {
            return Ok(response);
        }
    }
    if let Some(size) = slice::block_size(&ex) {
        return out_of_line::start(|| slice::serve(&mut ex, txn, &primary, size)).await;
    }
    let now = ex.shared.clock.now();
    let decision = ex
        .shared
        .cache
        .decide(&primary, &ex.parts.headers, &ex.request, &ex.url, now)
        .await;
    tracing::trace!(url = %ex.url, phase = decision.phase().as_str(), "cache phase");
    match decision {
        Decision::FreshHit { found, ttl_secs } => {
            let result = CacheResult::Hit {
                tier: found.hit.tier,
                conditional: ex.is_conditional(),
            };
            Ok(serve_found(&ex, txn, found, ttl_secs, result))
        }
        Decision::StaleHit { found, refresh } => {
            let result = if refresh {
                refresh::spawn_refresh(&ex, &primary, &found);
                CacheResult::StaleWhileRevalidate
            } else {
                CacheResult::StaleAllowedByClient
            };
            let ttl = found.eval.ttl();
            Ok(serve_found(&ex, txn, found, ttl, result))
        }
        Decision::Revalidate { found, fwd } => {
            if ex.request.only_if_cached {
                return Ok(not_in_cache(ex.shared, txn, &ex.url));
            }
            out_of_line::start(|| revalidate::revalidate(&mut ex, txn, &primary, found, fwd)).await
        }
        Decision::Miss { fwd, had_variants } => {
            if let Some(ranges) = partial::stored_ranges(&ex, &primary) {
                let parts = out_of_line::start(|| partial::from_parts(&ex, txn, &primary, ranges));
                if let Some(response) = parts.await {
                    return Ok(response);
                }
            }
            miss::miss(&mut ex, txn, &primary, fwd, had_variants).await
        }
    }
}

/// Forwards a request the cache does not look up (a rare branch: see `out_of_line`).
async fn bypass(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    reason: BypassReason,
) -> Result<Response<ProxyBody>, Error> {
    out_of_line::start(|| bypass::bypass(ex, txn, reason)).await
}

/// Serves a stored response as is, `ttl` seconds from expiry.
fn serve_found(
    ex: &Exchange<'_>,
    txn: &mut Transaction,
    found: Found,
    ttl: i64,
    result: CacheResult,
) -> Response<ProxyBody> {
    let serve = Serve {
        hit: found.hit,
        age: found.eval.age,
        status: CacheStatus {
            ttl: Some(ttl),
            ..CacheStatus::default()
        },
        result,
    };
    ex.serve(txn, serve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::lookup::Cache;
    use crate::cache::store::Store;

    /// The size of the future an async fn of N arguments returns, without calling it.
    fn size2<A, B, F>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    fn size3<A, B, C, F>(_: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    fn size5<A, B, C, D, E, F>(_: impl Fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    fn size6<A, B, C, D, E, G, F>(_: impl Fn(A, B, C, D, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A miss awaits this chain of futures, each held inline by the one above it, and the
    /// connection's task holds the outermost for its whole life.
    /// Each is as large as the largest branch it might await, so the rare branches (a
    /// revalidation, slices, bypasses, PURGE, the disk read and promotion, bans, a Vary
    /// record's write) are started out of line (`crate::out_of_line`). Sizes of the test build
    /// before that: 8,800 / 6,352 / 5,904 / 3,248 / 3,648 / 3,520 / 2,336 bytes; after: 6,768 /
    /// 5,200 / 2,768 / 400 / 1,720 / 1,592 / 880; with the pool's upgradable exchange out of
    /// line too (session 18), `caching::handle` 5,968 and the miss 4,400. A rare branch put
    /// back inline fails here.
    #[test]
    fn a_requests_futures_leave_rare_branches_out() {
        let sizes = [
            ("caching::handle", size6(handle), 6_200),
            ("miss::miss", size5(miss::miss), 4_600),
            ("relay::store_or_pass", size3(relay::store_or_pass), 3_500),
            ("admit::admit", size3(admit::admit), 1_024),
            ("Cache::decide", size6(Cache::decide), 2_048),
            ("Cache::lookup", size3(Cache::lookup), 2_048),
            ("Store::lookup", size2(Store::lookup), 1_024),
        ];
        for (name, size, limit) in sizes {
            eprintln!("{name}'s future: {size} bytes");
            assert!(
                size <= limit,
                "{name}'s future is {size} bytes (limit {limit})"
            );
        }
    }
}
