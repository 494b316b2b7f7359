//! The cache on the request path: look up, then serve, revalidate, or fetch and store.
//!
//! ```text
//! GET/HEAD ── lookup ─┬─ fresh ─────────────── serve stored (Age, 304/412, HEAD, 206)
//!                     ├─ stale, swr allows ─── serve stored + one background refresh
//!                     ├─ stale, client allows ─ serve stored
//!                     ├─ must revalidate ───── conditional request ─┬─ 304: freshen, serve stored
//!                     │                                             ├─ 200: replace (as a miss)
//!                     │                                             └─ 5xx/down: stale-if-error
//!                     └─ miss ── collapsed forwarding (leader/waiter) ── fetch ── store while relaying
//! other methods ───── forward; unsafe + success invalidates (RFC 9111 §4.4)
//! PURGE ──────────── remove every variant (loopback only by default)
//! ```
//! Decisions come from the pure `cache::policy` functions; this module only sequences them.

use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::{Method, Response, StatusCode};
use hyper::body::{Body as _, Incoming};
use hyper_util::client::legacy::connect::HttpInfo;
use tokio::time::Instant;

use super::body::ProxyBody;
use super::cache_reply::{
    deliver, not_in_cache, purge, serve_hit, storable_update, with_cookies_of,
};
use super::cache_store::{spawn_refresh, store_or_pass};
use super::next_hop::{send, Outgoing, Target, Upstreamed};
use super::service::ConnInfo;
use super::transaction::Transaction;
use super::Shared;
use crate::cache::collapse::{Leader, Outcome, Role};
use crate::cache::key::primary_key;
use crate::cache::lookup::{is_cacheable_method, Evaluation, Lookup};
use crate::cache::policy::{
    conditional_request_headers, head_may_freshen, invalidation::is_safe_method,
    invalidation_targets, may_serve_stale_on_error, select_stored_for_304, OriginFailure,
    RequestDirectives, Reuse, RevalidateReason,
};
use crate::cache::result::CacheResult;
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::store::Hit;
use crate::error::Error;

/// Client request fields that would make the origin answer with less than the full
/// representation; removed when cuttle fetches to store (it answers them from the stored copy).
pub(super) const CLIENT_CONDITIONALS: [header::HeaderName; 5] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

/// One client request on its way through the cache.
pub(super) struct Exchange<'a> {
    pub(super) conn: &'a ConnInfo,
    pub(super) shared: &'a Arc<Shared>,
    pub(super) parts: http::request::Parts,
    pub(super) body: Option<Incoming>,
    pub(super) url: String,
    pub(super) request: RequestDirectives,
    /// Where requests for this exchange go.
    pub(super) target: Target,
    /// Taken before a request that may be stored is sent (see `Cache::ticket`).
    pub(super) ticket: Option<crate::cache::lookup::FillTicket>,
}

/// Handles a forward-mode request whose checks have passed.
pub async fn handle(
    conn: &ConnInfo,
    shared: &Arc<Shared>,
    txn: &mut Transaction,
    parts: http::request::Parts,
    body: Incoming,
    target: Target,
) -> Result<Response<ProxyBody>, Error> {
    // The transaction already holds the effective URI without credentials.
    let url = txn.url.clone();
    let request = RequestDirectives::from_headers(&parts.headers);
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
        return purge(
            ex.shared,
            conn.peer.ip(),
            &ex.parts.uri,
            &ex.parts.headers,
            txn,
        )
        .await;
    }
    if !is_cacheable_method(&ex.parts.method) {
        return forward_uncached(&mut ex, txn).await;
    }
    if ex.body.as_ref().is_some_and(|b| !b.is_end_stream()) {
        // RFC 9110 §9.3.1: content in a GET "has no generally defined semantics, cannot alter
        // the meaning or target of the request". Some origins answer it anyway (search APIs),
        // so it is forwarded, but its answer is about the content, not the URI: it is neither
        // served from nor stored under the URI's key, or one client's body would choose what
        // everyone else gets for a plain GET.
        let up = ex.send(txn, ex.parts.headers.clone()).await?;
        let result = CacheResult::NotStorable {
            reason: "request-content",
        };
        let status = txn.outcome(result, CacheStatus::forward(Fwd::Bypass));
        return Ok(deliver(ex.shared, up, status, None));
    }
    let Some(primary) = primary_key(&ex.parts.uri) else {
        let up = ex.send(txn, ex.parts.headers.clone()).await?;
        let status = txn.outcome(CacheResult::Bypass, CacheStatus::forward(Fwd::Bypass));
        return Ok(deliver(ex.shared, up, status, None));
    };
    let cache = &ex.shared.cache;
    match cache.lookup(&primary, &ex.parts.headers).await {
        Lookup::Found { hit, key } => {
            let now = ex.shared.clock.now();
            let eval = cache.evaluate(&hit.head, &ex.request, &ex.url, now);
            tracing::trace!(
                url = %ex.url,
                tier = hit.tier.as_str(),
                age = eval.age,
                lifetime = eval.lifetime.secs,
                heuristic = eval.lifetime.heuristic,
                reuse = ?eval.reuse,
                "cache: stored response evaluated (RFC 9111 §4.2)"
            );
            match eval.reuse {
                Reuse::Fresh { ttl_secs } => {
                    let result = CacheResult::Hit {
                        tier: hit.tier,
                        conditional: is_conditional(&ex.parts),
                    };
                    Ok(ex.serve(txn, hit, eval.age, ttl(ttl_secs), result))
                }
                Reuse::StaleWhileRevalidate { .. } => {
                    spawn_refresh(&ex, &primary, &key, &hit);
                    let result = CacheResult::StaleWhileRevalidate;
                    Ok(ex.serve(txn, hit, eval.age, ttl(eval.ttl()), result))
                }
                Reuse::StaleAllowedByClient => {
                    let result = CacheResult::StaleAllowedByClient;
                    Ok(ex.serve(txn, hit, eval.age, ttl(eval.ttl()), result))
                }
                Reuse::MustRevalidate { reason } => {
                    tracing::debug!(url = %ex.url, ?reason, age = eval.age, ttl = eval.ttl(), "cache: stored response must be revalidated");
                    if ex.request.only_if_cached {
                        return Ok(not_in_cache(ex.shared, txn, &ex.url));
                    }
                    let fwd = match reason {
                        RevalidateReason::RequestNoCache
                        | RevalidateReason::RequestMaxAge
                        | RevalidateReason::MinFresh
                            if eval.ttl() > 0 =>
                        {
                            Fwd::Request
                        }
                        _ => Fwd::Stale,
                    };
                    revalidate(&mut ex, txn, &primary, key, hit, eval, fwd).await
                }
            }
        }
        Lookup::VaryMiss => {
            tracing::trace!(url = %ex.url, "cache: stored variants, none for this request's Vary fields (RFC 9111 §4.1)");
            miss(&mut ex, txn, &primary, Fwd::VaryMiss, true).await
        }
        Lookup::UriMiss => miss(&mut ex, txn, &primary, Fwd::UriMiss, false).await,
    }
}

impl Exchange<'_> {
    /// Sends this request upstream with `headers` (the client's body goes along once).
    pub(super) async fn send(
        &mut self,
        txn: &mut Transaction,
        headers: HeaderMap,
    ) -> Result<Upstreamed, Error> {
        let asked = Instant::now();
        let up = send(
            self.shared,
            Outgoing {
                method: self.parts.method.clone(),
                uri: self.parts.uri.clone(),
                version: self.parts.version,
                headers,
                body: self.body.take(),
                client: self.conn.peer.ip(),
                target: self.target.clone(),
            },
        )
        .await?;
        // Summed over a revalidation's and a refetch's round trips.
        txn.upstream_wait = Some(txn.upstream_wait.unwrap_or_default() + asked.elapsed());
        if let Some(info) = up.parts.extensions.get::<HttpInfo>() {
            txn.upstream_addr = Some(info.remote_addr());
        }
        if up.peer.is_some() {
            txn.peer.clone_from(&up.peer);
        }
        if let Some(code) = up.hierarchy {
            txn.hierarchy = code;
        }
        Ok(up)
    }

    /// Serves `hit` (`age` seconds old) to this request as `result`.
    pub(super) fn serve(
        &self,
        txn: &mut Transaction,
        hit: Hit,
        age: u64,
        status: CacheStatus,
        result: CacheResult,
    ) -> Response<ProxyBody> {
        serve_hit(self.shared, &self.parts, txn, hit, age, status, result)
    }

    /// The client's fields for revalidating a stored response: its own validators go (cuttle
    /// sends the stored response's and answers the client's from the result, RFC 9111 §4.3.2),
    /// and so does a Range that cuttle will serve from the whole object.
    pub(super) fn headers_for_store(&self) -> HeaderMap {
        let mut headers = self.headers_for_miss();
        for name in CLIENT_CONDITIONALS {
            headers.remove(name);
        }
        headers
    }

    /// The client's fields for a miss. RFC 9111 §4.3.2: a cache "MUST NOT evaluate conditional
    /// header fields that ... occur in a request with a target resource for which it has no
    /// stored responses", so validators go to the origin as sent. A Range starting below
    /// `range_offset_limit` is dropped (with its If-Range) so the whole object can be stored.
    pub(super) fn headers_for_miss(&self) -> HeaderMap {
        let mut headers = self.parts.headers.clone();
        if range_start(&headers)
            .is_some_and(|s| s <= self.shared.cache.behaviour.range_offset_limit)
        {
            headers.remove(header::RANGE);
            headers.remove(header::IF_RANGE);
        }
        headers
    }
}

/// The first byte position of a `bytes=N-` range, if the request has one.
fn range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = value.trim().strip_prefix("bytes=")?;
    spec.split(',')
        .filter_map(|r| r.trim().split('-').next()?.trim().parse::<u64>().ok())
        .min()
        .or(Some(0))
}

/// A client request with validators (its hits are logged `TCP_IMS_HIT`).
fn is_conditional(parts: &http::request::Parts) -> bool {
    parts.headers.contains_key(header::IF_NONE_MATCH)
        || parts.headers.contains_key(header::IF_MODIFIED_SINCE)
}

/// A `Cache-Status` carrying only a TTL; the outcome adds the rest.
fn ttl(ttl: i64) -> CacheStatus {
    CacheStatus {
        ttl: Some(ttl),
        ..CacheStatus::default()
    }
}

/// Non-GET/HEAD: forward; a successful unsafe method invalidates what it names (§4.4).
async fn forward_uncached(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
) -> Result<Response<ProxyBody>, Error> {
    let up = ex.send(txn, ex.parts.headers.clone()).await?;
    if !is_safe_method(&ex.parts.method) {
        let targets = invalidation_targets(
            &ex.parts.method,
            up.parts.status,
            &ex.parts.uri,
            &up.parts.headers,
        );
        for target in targets {
            if let Some(primary) = primary_key(&target) {
                ex.shared.cache.invalidate(&primary).await;
            }
        }
    }
    let status = txn.outcome(CacheResult::Bypass, CacheStatus::forward(Fwd::Method));
    Ok(deliver(ex.shared, up, status, None))
}

/// A miss: collapse with concurrent misses, then fetch and store.
async fn miss(
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
                if waiter.wait(behaviour.collapsed_forwarding_timeout).await == Outcome::Stored {
                    if let Lookup::Found { hit, .. } =
                        ex.shared.cache.lookup(primary, &ex.parts.headers).await
                    {
                        let now = ex.shared.clock.now();
                        let eval = ex
                            .shared
                            .cache
                            .evaluate(&hit.head, &ex.request, &ex.url, now);
                        if let Reuse::Fresh { ttl_secs } = eval.reuse {
                            let status = CacheStatus {
                                fwd: Some(fwd),
                                ttl: Some(ttl_secs),
                                ..CacheStatus::default()
                            };
                            let result = CacheResult::Collapsed { tier: hit.tier };
                            return Ok(ex.serve(txn, hit, eval.age, status, result));
                        }
                    }
                }
            }
        }
    }
    fetch(ex, txn, primary, fwd, had_variants, leader, None).await
}

/// A stored response that cannot be used as is: ask the origin with its validators.
async fn revalidate(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    primary: &str,
    key: String,
    hit: Hit,
    eval: Evaluation,
    fwd: Fwd,
) -> Result<Response<ProxyBody>, Error> {
    let mut headers = ex.headers_for_store();
    if ex.parts.method == Method::HEAD {
        headers = ex.parts.headers.clone();
    }
    // The stored fields as a map, built once for the validator checks below.
    let stored = hit.head.headers.to_map();
    let now = ex.shared.clock.now();
    for (name, value) in &conditional_request_headers(&stored, now) {
        headers.insert(name.clone(), value.clone());
    }
    let request_time = ex.shared.clock.now();
    ex.ticket = Some(ex.shared.cache.ticket(primary));
    let up = match ex.send(txn, headers).await {
        Ok(up) => up,
        Err(err) => return stale_on_error(ex, txn, hit, &eval, Err(err)),
    };
    // A 304 without validators answers the conditional cuttle built from this one stored
    // response; one whose validators match nothing stored is not about it.
    let carries_validator = up.parts.headers.contains_key(header::ETAG)
        || up.parts.headers.contains_key(header::LAST_MODIFIED);
    if up.parts.status == StatusCode::NOT_MODIFIED
        && carries_validator
        && select_stored_for_304(&up.parts.headers, &[&stored], now).is_empty()
    {
        // RFC 9111 §4.3.4: a 304 whose validators select no stored response MUST NOT update
        // one; ask again without conditions.
        return fetch(ex, txn, primary, fwd, key != primary, None, None).await;
    }
    if up.parts.status == StatusCode::NOT_MODIFIED {
        let store_set_cookie = ex.shared.cache.behaviour.store_set_cookie;
        let update = storable_update(&up.parts.headers, store_set_cookie);
        let head = hit
            .head
            .freshened(&update, request_time, ex.shared.clock.now());
        // False when no tier holds the entry any more (evicted meanwhile): nothing was stored.
        let updated = ex.shared.cache.store.update_head(&key, head.clone()).await;
        // This client's request brought the 304: its cookies are for it alone.
        let head = with_cookies_of(head, &up.parts.headers);
        let now = ex.shared.clock.now();
        let fresh = ex
            .shared
            .cache
            .evaluate(&head, &RequestDirectives::default(), &ex.url, now);
        let status = CacheStatus {
            fwd: Some(fwd),
            fwd_status: Some(304),
            ttl: Some(fresh.ttl()),
            stored: updated,
            ..CacheStatus::default()
        };
        let hit = Hit {
            head: Arc::new(head),
            ..hit
        };
        let result = CacheResult::RefreshUnmodified;
        return Ok(ex.serve(txn, hit, fresh.age, status, result));
    }
    // RFC 5861 §4: "an error is any situation that would result in a 500, 502, 503, or 504".
    if matches!(up.parts.status.as_u16(), 500 | 502 | 503 | 504) {
        return stale_on_error(ex, txn, hit, &eval, Ok(up));
    }
    // RFC 9111 §4.3.5: a HEAD response may freshen the stored GET response it matches.
    if ex.parts.method == Method::HEAD
        && up.parts.status == StatusCode::OK
        && head_may_freshen(&stored, &up.parts.headers, now)
    {
        let update = storable_update(
            &up.parts.headers,
            ex.shared.cache.behaviour.store_set_cookie,
        );
        let head = hit
            .head
            .freshened(&update, request_time, ex.shared.clock.now());
        ex.shared.cache.store.update_head(&key, head).await;
    } else if ex.parts.method == Method::HEAD && up.parts.status == StatusCode::OK {
        // §4.3.5: validators that differ mean the stored GET "SHOULD be considered stale";
        // removing it is the strictest form of that.
        ex.shared.cache.store.remove(&key).await;
    }
    txn.result = Some(CacheResult::RefreshModified);
    txn.code = CacheResult::RefreshModified.squid_code();
    let had_variants = key != primary;
    store_or_pass(ex, txn, primary, fwd, had_variants, None, up, request_time).await
}

/// Serves the stale entry when the origin failed and RFC 5861 / `max_stale` allow it;
/// otherwise passes on the failure.
fn stale_on_error(
    ex: &Exchange<'_>,
    txn: &mut Transaction,
    hit: Hit,
    eval: &Evaluation,
    failure: Result<Upstreamed, Error>,
) -> Result<Response<ProxyBody>, Error> {
    let max_stale = ex.shared.cache.behaviour.max_stale.as_secs();
    let how = match failure {
        Ok(_) => OriginFailure::ServerError,
        // A refusal of ours (an access rule on the resolved address) is not an outage.
        Err(err) if err.is_denied() || err.side() != crate::error::Side::Upstream => {
            return Err(err);
        }
        Err(_) => OriginFailure::Unreachable,
    };
    if may_serve_stale_on_error(
        &ex.request,
        &eval.response,
        eval.staleness(),
        max_stale,
        how,
    ) {
        let status = CacheStatus {
            fwd: Some(Fwd::Stale),
            fwd_status: failure.as_ref().ok().map(|up| up.parts.status.as_u16()),
            ttl: Some(eval.ttl()),
            ..CacheStatus::default()
        };
        // Which permission it was: the message's own, or this cache's max_stale.
        let result =
            if ex.request.stale_if_error.is_some() || eval.response.stale_if_error.is_some() {
                CacheResult::StaleIfError
            } else {
                CacheResult::StaleOriginUnreachable
            };
        return Ok(ex.serve(txn, hit, eval.age, status, result));
    }
    let up = match failure {
        Ok(up) => up,
        // RFC 9111 §5.2.2.2: when disconnected, a cache that may not reuse the stale response
        // "MUST generate an error response" and "The generated status code SHOULD be 504".
        Err(err) if eval.response.must_revalidate || eval.response.proxy_revalidate => {
            return Err(Error::new(
                crate::error::ErrorKind::MustRevalidate,
                format!(
                    "the stored response must be revalidated and the origin is unreachable ({})",
                    err.cause()
                ),
            ));
        }
        Err(err) => return Err(err),
    };
    let status = txn.outcome(CacheResult::Miss, CacheStatus::forward(Fwd::Stale));
    Ok(deliver(ex.shared, up, status, None))
}

/// Fetches a full response for a miss.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    primary: &str,
    fwd: Fwd,
    had_variants: bool,
    leader: Option<Leader>,
    _stale: Option<Hit>,
) -> Result<Response<ProxyBody>, Error> {
    let headers = if ex.parts.method == Method::GET {
        ex.headers_for_miss()
    } else {
        ex.parts.headers.clone()
    };
    let request_time = ex.shared.clock.now();
    ex.ticket = Some(ex.shared.cache.ticket(primary));
    let up = ex.send(txn, headers).await?;
    txn.result = Some(CacheResult::Miss);
    txn.code = CacheResult::Miss.squid_code();
    store_or_pass(
        ex,
        txn,
        primary,
        fwd,
        had_variants,
        leader,
        up,
        request_time,
    )
    .await
}
