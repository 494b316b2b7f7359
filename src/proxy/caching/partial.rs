//! Partial content outside slice mode (RFC 9111 §3.3-3.4): a 206 the origin sends for a
//! client's range is stored as a part of its representation while it is relayed, and later
//! requests are answered from stored parts when those of one representation hold every byte
//! they ask for (a range within them, or the whole object once the parts complete it).
//!
//! §3.3: "a 206 (Partial Content) response MAY be stored as if it were an incomplete 200 (OK)
//! response"; "A cache MUST NOT use an incomplete response to answer requests unless the
//! response has been made complete, or the request is partial and specifies a range wholly
//! within the incomplete response." §3.4: parts combine only if "they all share the same
//! strong validator"; a part with another validator replaces the old representation's parts.
//! Parts are stored beside an object record (`cache::parts`) whose freshness covers them all.

use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Response, StatusCode, Version};

use super::exchange::Exchange;
use super::pieces::{emit, part_head, plan, PartRequest, Piece};
use super::reply::{decorate, deliver};
use crate::cache::collapse::Leader;
use crate::cache::parts::{complete_length, part_key, record_head};
use crate::cache::policy::partial::{cover, response_content_range, strong_validator};
use crate::cache::policy::Reuse;
use crate::cache::result::CacheResult;
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::store::Tier;
use crate::error::Error;
use crate::proxy::body::ProxyBody;
use crate::proxy::next_hop::Upstreamed;
use crate::proxy::transaction::{hier, Transaction};
use crate::proxy::Shared;

/// The stored parts' ranges of `primary` when a GET might be answered from them (none for
/// almost every miss: then [`from_parts`] is not worth starting).
pub(super) fn stored_ranges(ex: &Exchange<'_>, primary: &str) -> Option<Vec<(u64, u64)>> {
    if ex.parts.method != Method::GET {
        return None;
    }
    let ranges = ex.shared.cache.part_ranges(primary);
    (!ranges.is_empty()).then_some(ranges)
}

/// Answers a GET from stored parts (`ranges`, from [`stored_ranges`]) when a fresh record's
/// parts hold every byte it needs.
pub(super) async fn from_parts(
    ex: &Exchange<'_>,
    txn: &mut Transaction,
    primary: &str,
    ranges: Vec<(u64, u64)>,
) -> Option<Response<ProxyBody>> {
    let cache = &ex.shared.cache;
    let record = cache.object_record(primary).await?;
    let now = ex.shared.clock.now();
    let eval = cache.evaluate(&record, &ex.request, &ex.url, now);
    let Reuse::Fresh { ttl_secs } = eval.reuse else {
        return None;
    };
    let validator = strong_validator(&record.headers.to_map(), now)?;
    let complete = complete_length(&record)?;
    let (served, range) = plan(&ex.parts.headers, &record, complete, eval.age, now);
    // Parts of the record's representation only (§3.4), with the tier each is in.
    let mut mine = Vec::with_capacity(ranges.len());
    let mut tiers = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        let found = cache
            .store
            .peek(&part_key(primary, start, end))
            .into_iter()
            .find(|(_, h)| {
                strong_validator(&h.headers.to_map(), now).as_deref() == Some(&validator)
            });
        if let Some((tier, _)) = found {
            mine.push((start, end));
            tiers.push(tier);
        }
    }
    let (body, tier) = match range {
        Some((start, end)) => {
            let pieces = cover(&mine, start, end)?;
            let tier = pieces
                .first()
                .and_then(|p| tiers.get(p.0).copied())
                .unwrap_or(Tier::Memory);
            let pieces: Vec<((u64, u64), u64, u64)> = pieces
                .into_iter()
                .filter_map(|(i, from, to)| mine.get(i).map(|r| (*r, from, to)))
                .collect();
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            tokio::spawn(produce(
                Arc::clone(ex.shared),
                primary.to_owned(),
                validator,
                pieces,
                tx,
            ));
            (ProxyBody::channel(rx, end - start + 1), tier)
        }
        None => (ProxyBody::empty(), Tier::Memory),
    };
    let result = CacheResult::Hit {
        tier,
        conditional: ex.is_conditional(),
    };
    let status = txn.outcome(
        result,
        CacheStatus {
            ttl: Some(ttl_secs),
            ..CacheStatus::default()
        },
    );
    let mut response = Response::new(body);
    *response.status_mut() = served.status;
    *response.headers_mut() = served.headers;
    decorate(ex.shared, response.headers_mut(), Version::HTTP_11, &status);
    txn.hierarchy = hier::NONE;
    txn.peer = None;
    Some(response)
}

/// Sends bytes `from..=to` of each stored part in turn; a part gone or changed meanwhile
/// ends the response as aborted.
async fn produce(
    shared: Arc<Shared>,
    primary: String,
    validator: String,
    pieces: Vec<((u64, u64), u64, u64)>,
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, crate::error::BoxError>>,
) {
    for ((start, end), from, to) in pieces {
        let now = shared.clock.now();
        let hit = shared.cache.part(&primary, start, end).await.filter(|h| {
            strong_validator(&h.head.headers.to_map(), now).as_deref() == Some(&validator)
        });
        let Some(hit) = hit else {
            let _ = tx.send(Err("a stored part went away".into())).await;
            return;
        };
        if !emit(&tx, Piece::Stored(hit), from - start, to - start).await {
            return;
        }
    }
}

/// A 206 fetched for a client's range: stored as a part while it is relayed, when it may be;
/// relayed alone otherwise.
pub(super) async fn store_part(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    primary: &str,
    fwd: Fwd,
    leader: Option<Leader>,
    up: Box<Upstreamed>,
    request_time: SystemTime,
) -> Result<Response<ProxyBody>, Error> {
    let cache = &ex.shared.cache;
    let now = ex.shared.clock.now();
    let pass = |txn: &mut Transaction, up: Box<Upstreamed>, reason: &'static str| {
        let status = txn.outcome(
            CacheResult::NotStorable { reason },
            CacheStatus {
                fwd: Some(fwd),
                detail: Some(reason),
                ..CacheStatus::default()
            },
        );
        deliver(ex.shared, up, status, None)
    };
    let Some(range) = response_content_range(&up.parts.headers) else {
        return Ok(pass(txn, up, "partial"));
    };
    let Some(validator) = strong_validator(&up.parts.headers, now) else {
        // §3.4: without a strong validator a part could never be combined or told apart.
        return Ok(pass(txn, up, "no-strong-validator"));
    };
    let req = PartRequest {
        url: &ex.url,
        headers: &ex.parts.headers,
        directives: &ex.request,
    };
    let Some(head) = part_head(ex.shared, &req, &up.parts, range.len(), (request_time, now)) else {
        return Ok(pass(txn, up, "partial"));
    };
    if let Some(old) = cache.object_record(primary).await {
        if strong_validator(&old.headers.to_map(), now).as_deref() != Some(&validator) {
            // A new representation: the old one's parts can never be combined with it.
            let ranges = cache.part_ranges(primary);
            cache.drop_parts(primary, &ranges).await;
        }
    }
    let ticket = match ex.ticket.take() {
        Some(stamp) => cache.ticket_at(primary, stamp),
        None => cache.ticket(primary),
    };
    let record = record_head(&head, range.complete);
    let ttl = cache.evaluate(&record, &ex.request, &ex.url, now).ttl();
    if !cache.store_record(primary, record, ticket.clone()).await {
        return Ok(pass(txn, up, "not-stored"));
    }
    let key = part_key(primary, range.start, range.end);
    let Some(writer) = cache.store.writer(&key, head, Some(range.len())) else {
        return Ok(pass(txn, up, "not-stored"));
    };
    let (sink, _task) = crate::cache::fill::start(writer, leader, ticket);
    let status = txn.outcome(
        txn.result.unwrap_or(CacheResult::Miss),
        CacheStatus {
            fwd: Some(fwd),
            ttl: Some(ttl),
            stored: true,
            ..CacheStatus::default()
        },
    );
    Ok(deliver(ex.shared, up, status, Some(sink)))
}

/// Whether a fetched response is a 206 for a client's GET, for [`store_part`].
pub(super) fn is_part(ex: &Exchange<'_>, up: &Upstreamed) -> bool {
    ex.parts.method == Method::GET && up.parts.status == StatusCode::PARTIAL_CONTENT
}
