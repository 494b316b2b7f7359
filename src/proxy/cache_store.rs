//! Storing what comes back from upstream: the §3 storability check, the fill that streams the
//! body into the store while relaying it, answers to conditional and ranged misses from the new
//! copy, and the background refresh behind stale-while-revalidate.

use std::sync::Arc;

use http::header;
use http::{Method, Response, StatusCode};

use super::body::{Prefixed, ProxyBody};
use super::cache_reply::{deliver, storable_update, stored_head, with_cookies_of};
use super::caching::{Exchange, CLIENT_CONDITIONALS};
use super::next_hop::{send, Outgoing, Upstreamed};
use super::transaction::Transaction;
use crate::cache::collapse::{Leader, Outcome};
use crate::cache::fill;
use crate::cache::lookup::{Evaluation, Lookup};
use crate::cache::meta::StoredHead;
use crate::cache::policy::{
    check_storable, conditional_request_headers, effective_response_directives, RequestDirectives,
    StoreInput,
};
use crate::cache::result::CacheResult;
use crate::cache::serve::{serve_stored, BodyPlan};
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::store::{Hit, HitBody, Tier};
use crate::error::Error;

/// Stores `up` if RFC 9111 §3 allows, relaying it to the client either way.
#[allow(clippy::too_many_arguments)]
pub(super) async fn store_or_pass(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    primary: &str,
    fwd: Fwd,
    had_variants: bool,
    leader: Option<Leader>,
    up: Upstreamed,
    request_time: std::time::SystemTime,
) -> Result<Response<ProxyBody>, Error> {
    let cache = &ex.shared.cache;
    let response =
        effective_response_directives(&up.parts.headers, &cache.behaviour.targeted_fields);
    let content_length = up.content_length();
    // What the caller started (a miss or a refresh); a response that is not stored makes a
    // miss `NotStorable`, while a refresh stays a refresh with the reason as its detail.
    let base = txn.result.unwrap_or(CacheResult::Miss);
    let not_stored = |txn: &mut Transaction, reason: &'static str| {
        let status = CacheStatus {
            fwd: Some(fwd),
            detail: Some(reason),
            ..CacheStatus::default()
        };
        match base {
            CacheResult::Miss => txn.outcome(CacheResult::NotStorable { reason }, status),
            other => txn.outcome(other, status),
        }
    };
    if up.no_store {
        // A `proxy_only` peer served it: relay without storing (Squid `proxy-only`).
        let status = not_stored(txn, "proxy-only");
        return Ok(deliver(ex.shared, up, status, None));
    }
    let verdict = if ex.parts.method == Method::HEAD {
        Err(crate::cache::policy::NotStorable::Method)
    } else {
        check_storable(&StoreInput {
            method: &ex.parts.method,
            request_headers: &ex.parts.headers,
            request: &ex.request,
            status: up.parts.status,
            response_headers: &up.parts.headers,
            response: &response,
            content_length,
            max_object_size: cache.store.max_object_size(),
            complete: true,
            allow_partial: false,
            extra_permission: cache
                .behaviour
                .extra_storage_permission(&ex.url, up.parts.status),
        })
    };
    if let Err(reason) = verdict {
        tracing::debug!(url = %ex.url, reason = reason.as_str(), "cache: response not storable (RFC 9111 §3)");
        let status = not_stored(txn, reason.as_str());
        return Ok(deliver(ex.shared, up, status, None));
    }
    let response_time = ex.shared.clock.now();
    let head = stored_head(
        &up,
        &response,
        request_time,
        response_time,
        &ex.url,
        content_length,
        cache.behaviour.store_set_cookie,
    );
    let eval = cache.evaluate(&head, &RequestDirectives::default(), &ex.url, response_time);
    if !reusable(&head, &eval) {
        let status = not_stored(txn, "not-reusable");
        return Ok(deliver(ex.shared, up, status, None));
    }
    let writer = match cache
        .key_for_response(primary, &ex.parts.headers, &head, had_variants)
        .await
    {
        Some(key) => cache.store.writer(&key, head.clone(), content_length),
        None => None,
    };
    let Some(writer) = writer else {
        let status = not_stored(txn, "not-stored");
        return Ok(deliver(ex.shared, up, status, None));
    };
    let status = CacheStatus {
        fwd: Some(fwd),
        // After a validation request, show what the origin answered (RFC 9211 §2.3).
        fwd_status: (fwd == Fwd::Stale).then_some(up.parts.status.as_u16()),
        ttl: Some(eval.ttl()),
        // RFC 9211 §2.6: `stored` says the cache stored the response. The header goes out
        // before the body: only a known length (which the writer accepted as fitting) makes
        // storing a near certainty; with an unknown length the object may still prove too
        // large, so the parameter is left out rather than risk claiming what did not happen.
        stored: content_length.is_some(),
        ..CacheStatus::default()
    };
    let ticket = ex.ticket.take().unwrap_or_else(|| cache.ticket(primary));
    let (sink, task) = fill::start(writer, leader, cache.still_valid(ticket));
    let read_timeout = ex.shared.upstream.read_timeout();
    // A client that sent conditionals or a Range gets its answer from the new copy, as from a
    // stored one: 304/412/416 at once while the body drains into the cache; a small ranged
    // object is drained first and served as 206; anything else streams in full (a server may
    // ignore Range, RFC 9110 §14.2).
    let wants_partial = CLIENT_CONDITIONALS
        .iter()
        .any(|name| ex.parts.headers.contains_key(name))
        || ex.parts.headers.contains_key(header::RANGE);
    if wants_partial {
        // Answered from the new copy, but this client fetched it: it gets the cookies.
        let mut known = with_cookies_of(head.clone(), &up.parts.headers);
        known.body_len = content_length.unwrap_or(0);
        let served = serve_stored(
            &ex.parts.method,
            &ex.parts.headers,
            &known,
            0,
            false,
            known.response_time,
        );
        match served.body {
            BodyPlan::Empty => {
                let Upstreamed { first, body, .. } = up;
                tokio::spawn(fill::drain(
                    Prefixed::new(first, body),
                    sink,
                    task,
                    read_timeout,
                ));
                let hit = Hit {
                    head: Arc::new(known),
                    body: HitBody::Memory(bytes::Bytes::new()),
                    tier: Tier::Memory,
                };
                return Ok(ex.serve(txn, hit, 0, status, base));
            }
            BodyPlan::Range { .. }
                if content_length.is_some_and(|len| len <= cache.behaviour.range_offset_limit) =>
            {
                let Upstreamed { first, body, .. } = up;
                let prefixed = Prefixed::new(first, body);
                if fill::drain(prefixed, sink, task, read_timeout).await {
                    if let Lookup::Found { hit, .. } =
                        cache.lookup(primary, &ex.parts.headers).await
                    {
                        return Ok(ex.serve(txn, hit, 0, status, base));
                    }
                }
                // Not stored after all (stalled, refused at commit, or evicted at once): ask
                // again for just the range and relay the answer uncached.
                let up = ex.send(txn, ex.parts.headers.clone()).await?;
                let status = not_stored(txn, "not-stored");
                return Ok(deliver(ex.shared, up, status, None));
            }
            _ => {}
        }
    }
    let status = txn.outcome(base, status);
    Ok(deliver(ex.shared, up, status, Some(sink)))
}

/// Whether a storable response could ever be reused: fresh now, or revalidatable (it has a
/// validator), or allowed by its own directives to be served stale. Storing one that is none of
/// these (a bare 200 with no Last-Modified, so zero heuristic lifetime) would only cost disk
/// writes. `max_stale` (on by default) does not count: it keeps serving what is stored for a
/// reason of its own when the origin is unreachable, and is no reason to store every
/// uncacheable-looking page.
fn reusable(head: &StoredHead, eval: &Evaluation) -> bool {
    eval.ttl() > 0
        || head.headers.contains_key(&header::ETAG)
        || head.headers.contains_key(&header::LAST_MODIFIED)
        || eval.response.stale_while_revalidate.is_some()
        || eval.response.stale_if_error.is_some()
}

/// Starts one background revalidation for a stale-while-revalidate hit (one per key).
pub(super) fn spawn_refresh(ex: &Exchange<'_>, primary: &str, key: &str, hit: &Hit) {
    let cache = &ex.shared.cache;
    let Some(leader) = cache.collapser.try_lead(primary) else {
        return;
    };
    let shared = Arc::clone(ex.shared);
    let mut headers = ex.headers_for_store();
    for (name, value) in
        &conditional_request_headers(&hit.head.headers.to_map(), hit.head.response_time)
    {
        headers.insert(name.clone(), value.clone());
    }
    let out = Outgoing {
        method: Method::GET,
        uri: ex.parts.uri.clone(),
        version: ex.parts.version,
        headers,
        body: None,
        client: ex.conn.peer.ip(),
        target: ex.target.clone(),
    };
    let request_headers = ex.parts.headers.clone();
    let head = Arc::clone(&hit.head);
    let (primary, key, url) = (primary.to_owned(), key.to_owned(), ex.url.clone());
    tokio::spawn(async move {
        let request_time = shared.clock.now();
        let ticket = shared.cache.ticket(&primary);
        let Ok(up) = send(&shared, out).await else {
            return;
        };
        let cache = &shared.cache;
        if up.parts.status == StatusCode::NOT_MODIFIED {
            let update = storable_update(&up.parts.headers, cache.behaviour.store_set_cookie);
            let fresh = head.freshened(&update, request_time, shared.clock.now());
            cache.store.update_head(&key, fresh).await;
            leader.finish(Outcome::Stored);
            return;
        }
        let response =
            effective_response_directives(&up.parts.headers, &cache.behaviour.targeted_fields);
        let content_length = up.content_length();
        let storable = check_storable(&StoreInput {
            method: &Method::GET,
            request_headers: &request_headers,
            request: &RequestDirectives::default(),
            status: up.parts.status,
            response_headers: &up.parts.headers,
            response: &response,
            content_length,
            max_object_size: cache.store.max_object_size(),
            complete: true,
            allow_partial: false,
            extra_permission: cache
                .behaviour
                .extra_storage_permission(&url, up.parts.status),
        });
        if storable.is_err() {
            return;
        }
        let head = stored_head(
            &up,
            &response,
            request_time,
            shared.clock.now(),
            &url,
            content_length,
            cache.behaviour.store_set_cookie,
        );
        let Some(key) = cache
            .key_for_response(&primary, &request_headers, &head, key != primary)
            .await
        else {
            return;
        };
        let Some(writer) = cache.store.writer(&key, head, content_length) else {
            return;
        };
        let (sink, task) = fill::start(writer, Some(leader), cache.still_valid(ticket));
        let Upstreamed { first, body, .. } = up;
        fill::drain(
            Prefixed::new(first, body),
            sink,
            task,
            shared.upstream.read_timeout(),
        )
        .await;
    });
}
