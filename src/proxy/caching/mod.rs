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
        let local = purge::purge(
            ex.shared,
            conn.peer.ip(),
            &ex.parts.uri,
            &ex.parts.headers,
            txn,
        )
        .await;
        return cluster::spread_purge(ex.shared, conn.peer.ip(), &ex.parts, hopped, local).await;
    }
    if !is_cacheable_method(&ex.parts.method) {
        return bypass::bypass(&mut ex, txn, BypassReason::Method).await;
    }
    if ex.body.as_ref().is_some_and(|b| !b.is_end_stream()) {
        // RFC 9110 §9.3.1: content in a GET "has no generally defined semantics, cannot alter
        // the meaning or target of the request". Some origins answer it anyway (search APIs),
        // so it is forwarded, but its answer is about the content, not the URI: it is neither
        // served from nor stored under the URI's key, or one client's body would choose what
        // everyone else gets for a plain GET.
        return bypass::bypass(&mut ex, txn, BypassReason::RequestContent).await;
    }
    if !bypass::cache_allowed(&ex, txn.user.as_deref()) {
        // Squid `cache deny`: neither served from nor stored in the cache.
        return bypass::bypass(&mut ex, txn, BypassReason::CacheDeny).await;
    }
    let Some(primary) = ex.shared.cache.primary_key(&ex.parts.uri) else {
        return bypass::bypass(&mut ex, txn, BypassReason::NoKey).await;
    };
    if !hopped {
        // Cluster mode: a key another member owns is its to serve (and store).
        if let Some(response) = cluster::to_owner(&mut ex, txn, &primary).await? {
            return Ok(response);
        }
    }
    if let Some(size) = slice::block_size(&ex) {
        return slice::serve(&mut ex, txn, &primary, size).await;
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
            revalidate::revalidate(&mut ex, txn, &primary, found, fwd).await
        }
        Decision::Miss { fwd, had_variants } => {
            if let Some(response) = partial::from_parts(&ex, txn, &primary).await {
                return Ok(response);
            }
            miss::miss(&mut ex, txn, &primary, fwd, had_variants).await
        }
    }
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
