//! The revalidate phase in the foreground: ask the origin with the stored response's
//! validators (RFC 9111 §4.3.1), then freshen and serve on a 304, serve stale on an error where
//! allowed (RFC 5861 §4, Squid `max_stale`), or store the new response like a miss's.

use std::sync::Arc;

use http::{Method, Response, StatusCode};

use super::exchange::Exchange;
use super::miss::{fetch, Fetch};
use super::relay::{store_or_pass, Fetched};
use super::reply::{deliver, with_cookies_of, Serve};
use super::validation::{answer, freshened, Answer};
use crate::cache::decision::Found;
use crate::cache::policy::{
    conditional_request_headers, head_may_freshen, may_serve_stale_on_error, OriginFailure,
    RequestDirectives,
};
use crate::cache::result::CacheResult;
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::store::Hit;
use crate::error::Error;
use crate::proxy::body::ProxyBody;
use crate::proxy::next_hop::Upstreamed;
use crate::proxy::transaction::Transaction;

/// A stored response that cannot be used as is: ask the origin with its validators.
pub(super) async fn revalidate(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    primary: &str,
    found: Found,
    fwd: Fwd,
) -> Result<Response<ProxyBody>, Error> {
    let mut headers = ex.headers_for_store();
    if ex.parts.method == Method::HEAD {
        headers = ex.parts.headers.clone();
    }
    // The stored fields as a map, built once for the validator checks below.
    let stored = found.hit.head.headers.to_map();
    let now = ex.shared.clock.now();
    for (name, value) in &conditional_request_headers(&stored, now) {
        headers.insert(name.clone(), value.clone());
    }
    let request_time = ex.shared.clock.now();
    ex.ticket = Some(ex.shared.cache.stamp());
    let up = match ex.send(txn, headers).await {
        Ok(up) => up,
        Err(err) => return stale_on_error(ex, txn, found, Err(err)),
    };
    let had_variants = found.variant.is_some();
    match answer(&up, &stored, now) {
        Answer::UnrelatedNotModified => {
            // RFC 9111 §4.3.4: a 304 whose validators select no stored response MUST NOT
            // update one; ask again without conditions.
            let refetch = Fetch {
                primary,
                fwd,
                had_variants,
                leader: None,
            };
            return fetch(ex, txn, refetch).await;
        }
        Answer::NotModified => {
            let Found { hit, variant, .. } = found;
            let key = variant.as_deref().unwrap_or(primary);
            let head = freshened(ex.shared, &hit.head, &up.parts.headers, request_time);
            // False when no tier holds the entry any more (evicted meanwhile): nothing was
            // stored.
            let updated = ex.shared.cache.store.update_head(key, head.clone()).await;
            // This client's request brought the 304: its cookies are for it alone.
            let head = with_cookies_of(head, &up.parts.headers);
            let now = ex.shared.clock.now();
            let fresh =
                ex.shared
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
            let serve = Serve {
                hit,
                age: fresh.age,
                status,
                result: CacheResult::RefreshUnmodified,
            };
            return Ok(ex.serve(txn, serve));
        }
        Answer::ServerError => return stale_on_error(ex, txn, found, Ok(up)),
        Answer::Modified => {}
    }
    // RFC 9111 §4.3.5: a HEAD response may freshen the stored GET response it matches.
    if ex.parts.method == Method::HEAD && up.parts.status == StatusCode::OK {
        if head_may_freshen(&stored, &up.parts.headers, now) {
            let head = freshened(ex.shared, &found.hit.head, &up.parts.headers, request_time);
            ex.shared
                .cache
                .store
                .update_head(found.key(primary), head)
                .await;
        } else {
            // §4.3.5: validators that differ mean the stored GET "SHOULD be considered stale";
            // removing it is the strictest form of that.
            ex.shared.cache.store.remove(found.key(primary)).await;
        }
    }
    txn.result = Some(CacheResult::RefreshModified);
    txn.code = CacheResult::RefreshModified.squid_code();
    let fetched = Fetched {
        primary,
        fwd,
        had_variants,
        leader: None,
        up,
        request_time,
    };
    store_or_pass(ex, txn, fetched).await
}

/// Serves the stale entry when the origin failed and RFC 5861 / `max_stale` allow it;
/// otherwise passes on the failure. Either way nothing is stored.
fn stale_on_error(
    ex: &Exchange<'_>,
    txn: &mut Transaction,
    found: Found,
    failure: Result<Box<Upstreamed>, Error>,
) -> Result<Response<ProxyBody>, Error> {
    let Found { hit, eval, .. } = found;
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
        let serve = Serve {
            hit,
            age: eval.age,
            status,
            result,
        };
        return Ok(ex.serve(txn, serve));
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
