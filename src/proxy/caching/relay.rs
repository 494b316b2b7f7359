//! The foreground end of the storage pipeline: relay a fetched response to its client while
//! the fill stores it, or relay it alone when the pipeline passes it. A client that sent
//! conditionals or a Range is answered from the new copy, as from a stored one.

use std::sync::Arc;

use http::header;
use http::Response;

use super::admit::{admit, Admission, StoreRequest};
use super::exchange::{Exchange, CLIENT_CONDITIONALS};
use super::reply::{decorate, deliver, with_cookies_of, Serve};
use crate::cache::collapse::Leader;
use crate::cache::fill;
use crate::cache::lookup::Lookup;
use crate::cache::result::CacheResult;
use crate::cache::serve::{serve_stored, BodyPlan};
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::store::{Hit, HitBody, Tier};
use crate::error::Error;
use crate::out_of_line;
use crate::proxy::body::{Prefixed, ProxyBody};
use crate::proxy::next_hop::Upstreamed;
use crate::proxy::transaction::Transaction;

/// A response fetched for a request that may store it.
pub(super) struct Fetched<'a> {
    pub primary: &'a str,
    /// Why the request went forward (`Cache-Status` `fwd`).
    pub fwd: Fwd,
    pub had_variants: bool,
    /// This request's collapsed-forwarding lead, told the outcome after the commit.
    pub leader: Option<Leader>,
    pub up: Box<Upstreamed>,
    pub request_time: std::time::SystemTime,
}

/// Stores `fetched.up` if the pipeline admits it, relaying it to the client either way.
pub(super) async fn store_or_pass(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    fetched: Fetched<'_>,
) -> Result<Response<ProxyBody>, Error> {
    let Fetched {
        primary,
        fwd,
        had_variants,
        leader,
        up,
        request_time,
    } = fetched;
    let cache = &ex.shared.cache;
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
    let request = StoreRequest {
        method: &ex.parts.method,
        headers: &ex.parts.headers,
        directives: &ex.request,
        url: &ex.url,
        primary,
        had_variants,
        request_time,
    };
    let admitted = match admit(ex.shared, &request, &up).await {
        Admission::Store(admitted) => admitted,
        Admission::Pass(reason) => {
            tracing::trace!(url = %ex.url, phase = "pass", reason, "cache phase");
            if let Some(leader) = leader {
                // Waiters fetch on their own at once; the next requests do not queue.
                leader.pass();
            }
            let status = not_stored(txn, reason);
            return Ok(deliver(ex.shared, up, status, None));
        }
    };
    tracing::trace!(url = %ex.url, phase = "store", "cache phase");
    let content_length = admitted.content_length;
    let status = CacheStatus {
        fwd: Some(fwd),
        // After a validation request, show what the origin answered (RFC 9211 §2.3).
        fwd_status: (fwd == Fwd::Stale).then_some(up.parts.status.as_u16()),
        ttl: Some(admitted.eval.ttl()),
        // RFC 9211 §2.6: `stored` says the cache stored the response. The header goes out
        // before the body: only a known length (which the writer accepted as fitting) makes
        // storing a near certainty; with an unknown length the object may still prove too
        // large, so the parameter is left out rather than risk claiming what did not happen.
        stored: content_length.is_some(),
        ..CacheStatus::default()
    };
    let head = admitted.head.clone();
    let ticket = match ex.ticket.take() {
        Some(stamp) => cache.ticket_at(primary, stamp),
        None => cache.ticket(primary),
    };
    let (sink, task) = admitted.start_fill(leader, ticket);
    let read_timeout = ex.shared.upstream.read_timeout();
    // A client that sent conditionals or a Range gets its answer from the new copy, as from a
    // stored one: 304/412/416 at once while the body drains into the cache; a small ranged
    // object is drained first and served as 206, a larger one's range is relayed as its bytes
    // arrive; anything else streams in full (a server may ignore Range, RFC 9110 §14.2).
    let wants_partial = CLIENT_CONDITIONALS
        .iter()
        .any(|name| ex.parts.headers.contains_key(name))
        || ex.parts.headers.contains_key(header::RANGE);
    if wants_partial {
        // Answered from the new copy, but this client fetched it: it gets the cookies.
        let mut known = with_cookies_of(head, &up.parts.headers);
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
                let Upstreamed { first, body, .. } = *up;
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
                return Ok(ex.serve(txn, serve_new(hit, status, base)));
            }
            BodyPlan::Range { .. }
                if content_length.is_some_and(|len| len <= cache.behaviour.range_offset_limit) =>
            {
                let Upstreamed { first, body, .. } = *up;
                let prefixed = Prefixed::new(first, body);
                if fill::drain(prefixed, sink, task, read_timeout).await {
                    if let Lookup::Found { hit, .. } =
                        cache.lookup(primary, &ex.parts.headers).await
                    {
                        return Ok(ex.serve(txn, serve_new(hit, status, base)));
                    }
                }
                // Not stored after all (stalled, refused at commit, or evicted at once): ask
                // again for just the range and relay the answer uncached.
                // Rare: out of line, or a send's state would widen every one of these futures.
                let headers = ex.parts.headers.clone();
                let up = out_of_line::start(|| ex.send(txn, headers)).await?;
                let status = not_stored(txn, "not-stored");
                return Ok(deliver(ex.shared, up, status, None));
            }
            BodyPlan::Range { start, end } => {
                // A larger object: the client's range goes out as soon as its bytes arrive,
                // while the whole object fills the cache (issue 14; RFC 9110 §14.2).
                let received = up.parts.version;
                let status = txn.outcome(base, status);
                let (_, body) = deliver(ex.shared, up, status.clone(), Some(sink)).into_parts();
                let mut response = Response::new(ProxyBody::window(body, start, end - start + 1));
                *response.status_mut() = served.status;
                *response.headers_mut() = served.headers;
                decorate(ex.shared, response.headers_mut(), received, &status);
                return Ok(response);
            }
            _ => {}
        }
    }
    let status = txn.outcome(base, status);
    Ok(deliver(ex.shared, up, status, Some(sink)))
}

/// Serving the copy just fetched: age 0.
fn serve_new(hit: Hit, status: CacheStatus, result: CacheResult) -> Serve {
    Serve {
        hit,
        age: 0,
        status,
        result,
    }
}
