//! Slice mode on the request path (issue 14, nginx `slice`): a GET for a URL matched by a
//! `[[cache.slice]]` rule is fetched upstream and stored as blocks of the rule's size, with
//! range requests, and answered from them.
//!
//! ```text
//! record fresh ─────────────────────────────┐
//! record stale ── one conditional request ──┼─ 304: freshen the record (all blocks stay)
//!                 for the first block       ├─ 206, same validator: keep going
//!                                           ├─ 206, new validator: old blocks dropped
//! no record ──── request for the first block┘  (anything else is relayed as it came)
//! answer: 200 stitched from every block, 206 from the blocks the range touches, 304/412/416
//!         from the record; blocks missing are fetched (each collapsed on its own) as the
//!         body is produced (`blocks`).
//! ```
//! The whole object is revalidated once, through its record (`cache::parts`), never block
//! by block (RFC 9111 §4.3 on the representation; §3.4: blocks are combined only under the
//! record's strong validator). `Cache-Status` says `hit` only when the record was fresh and
//! every block needed was stored; `fwd=partial` when some were (RFC 9211 §2.2).

pub(super) mod blocks;

use std::sync::Arc;

use http::header::{HeaderMap, RANGE};
use http::{Method, Response, StatusCode, Version};

use super::exchange::{Exchange, CLIENT_CONDITIONALS};
use super::pieces::plan;
use super::reply::{decorate, deliver};
use crate::cache::collapse::{Leader, Outcome, Role};
use crate::cache::meta::StoredHead;
use crate::cache::parts::{complete_length, record_head};
use crate::cache::policy::fields::single_value;
use crate::cache::policy::partial::strong_validator;
use crate::cache::policy::range::{parse_range, RangeSpec};
use crate::cache::policy::{conditional_request_headers, Reuse};
use crate::cache::result::CacheResult;
use crate::cache::status::{CacheStatus, Fwd};
use crate::error::Error;
use crate::proxy::body::ProxyBody;
use crate::proxy::transaction::{hier, Transaction};
use blocks::{produce, Blocks, Produce};

/// Depth of the queue between the block producer and the client: a block or two.
const QUEUE: usize = 2;

/// The block size when `ex` is served in slice mode.
pub(super) fn block_size(ex: &Exchange<'_>) -> Option<u64> {
    let rules = &ex.shared.cache.behaviour.slices;
    if rules.is_empty() || ex.parts.method != Method::GET || ex.request.only_if_cached {
        return None;
    }
    crate::cache::slice::block_size_for(rules, &ex.url)
}

/// Where the record stands once this request has looked at it (and maybe asked upstream).
struct Known {
    record: Arc<StoredHead>,
    /// A block fetched on the way: its index and bytes.
    first: Option<(u64, bytes::Bytes)>,
    result: CacheResult,
    status: CacheStatus,
}

/// Serves `ex` from blocks of `size` bytes.
pub(super) async fn serve(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    primary: &str,
    size: u64,
) -> Result<Response<ProxyBody>, Error> {
    let mut headers = ex.parts.headers.clone();
    headers.remove(RANGE);
    for name in CLIENT_CONDITIONALS {
        headers.remove(name);
    }
    let blocks = Blocks {
        shared: Arc::clone(ex.shared),
        primary: primary.to_owned(),
        url: ex.url.clone(),
        size,
        uri: ex.parts.uri.clone(),
        version: ex.parts.version,
        headers,
        directives: ex.request.clone(),
        client: ex.conn.peer.ip(),
        target: ex.target.clone(),
    };
    let known = match know_record(ex, txn, &blocks).await? {
        Ok(known) => known,
        Err(relayed) => return Ok(relayed),
    };
    let now = ex.shared.clock.now();
    let Some(validator) = strong_validator(&known.record.headers.to_map(), now) else {
        return Err(Error::new(
            crate::error::ErrorKind::InvalidResponse,
            "a sliced object without a strong validator",
        ));
    };
    let complete = complete_length(&known.record).unwrap_or(0);
    let eval = ex
        .shared
        .cache
        .evaluate(&known.record, &ex.request, &ex.url, now);
    let (served, range) = plan(&ex.parts.headers, &known.record, complete, eval.age, now);
    let (start, end) = range.unwrap_or((1, 0));
    let Known {
        first,
        mut result,
        mut status,
        ..
    } = known;
    if start <= end && status.fwd.is_none() {
        // A fresh record: a hit only if every block needed is stored.
        match blocks.all_stored(start, end, complete, &validator) {
            Some(tier) => {
                result = CacheResult::Hit {
                    tier,
                    conditional: ex.is_conditional(),
                }
            }
            None => {
                result = CacheResult::Miss;
                status.fwd = Some(Fwd::Partial);
            }
        }
    }
    let status = txn.outcome(result, status);
    let body = if start <= end {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(produce(
            Produce {
                blocks,
                validator,
                complete,
                start,
                end,
                first,
            },
            tx,
        ));
        ProxyBody::channel(rx, end - start + 1)
    } else {
        ProxyBody::empty()
    };
    let mut response = Response::new(body);
    *response.status_mut() = served.status;
    *response.headers_mut() = served.headers;
    decorate(ex.shared, response.headers_mut(), Version::HTTP_11, &status);
    if txn.upstream_wait.is_none() {
        txn.hierarchy = hier::NONE;
        txn.peer = None;
    }
    Ok(response)
}

/// The record, fresh or after one request upstream; `Err` holds a response relayed as it
/// came (the origin ignored the range, failed, or the object cannot be sliced).
async fn know_record(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    blocks: &Blocks,
) -> Result<Result<Known, Response<ProxyBody>>, Error> {
    let shared = Arc::clone(ex.shared);
    let cache = &shared.cache;
    let now = shared.clock.now();
    let behaviour = &cache.behaviour;
    // The lead of a cold object's first block: concurrent cold requests wait for its record.
    let mut leader: Option<Leader> = None;
    let mut waited = false;
    let stale = loop {
        let Some(record) = cache.object_record(&blocks.primary).await else {
            if waited || !behaviour.collapsed_forwarding || ex.request.only_if_cached {
                break None;
            }
            let index = first_block(&ex.parts.headers, None, blocks.size);
            match cache.collapser.join(&blocks.collapse_key(index)) {
                Role::Leader(l) => {
                    leader = Some(l);
                    break None;
                }
                Role::Waiter(waiter) => {
                    waited = true;
                    waiter
                        .wait(behaviour.collapsed_forwarding_timeout, false)
                        .await;
                    continue;
                }
            }
        };
        let eval = cache.evaluate(&record, &ex.request, &ex.url, now);
        if let Reuse::Fresh { ttl_secs } = eval.reuse {
            return Ok(Ok(Known {
                record,
                first: None,
                result: CacheResult::Miss,
                status: CacheStatus {
                    ttl: Some(ttl_secs),
                    collapsed: waited.then_some(true),
                    ..CacheStatus::default()
                },
            }));
        }
        break Some(record);
    };
    if ex.request.only_if_cached {
        return Ok(Err(super::reply::not_in_cache(&shared, txn, &ex.url)));
    }
    let complete = stale.as_ref().and_then(|r| complete_length(r));
    let index = first_block(&ex.parts.headers, complete, blocks.size);
    let Some(wanted) = blocks.wanted(index, complete) else {
        return Ok(Err(pass(ex, txn, "range-past-end").await?));
    };
    let conditional = stale
        .as_ref()
        .map(|r| conditional_request_headers(&r.headers.to_map(), now))
        .unwrap_or_default();
    let ticket = cache.ticket(&blocks.primary);
    let request_time = shared.clock.now();
    let up = ex
        .send(txn, blocks.headers_for(wanted.0, wanted.1, &conditional))
        .await?;
    let fwd = if stale.is_some() {
        Fwd::Stale
    } else {
        Fwd::UriMiss
    };
    if let (Some(old), StatusCode::NOT_MODIFIED) = (&stale, up.parts.status) {
        // RFC 9111 §4.3.4: the 304 freshens the stored representation, and so all its blocks.
        let fresh = old.freshened(&up.parts.headers, request_time, shared.clock.now());
        cache.update_record(&blocks.primary, fresh.clone()).await;
        let ttl = cache.evaluate(&fresh, &ex.request, &ex.url, now).ttl();
        return Ok(Ok(Known {
            record: Arc::new(fresh),
            first: None,
            result: CacheResult::RefreshUnmodified,
            status: CacheStatus {
                fwd: Some(fwd),
                fwd_status: Some(304),
                ttl: Some(ttl),
                ..CacheStatus::default()
            },
        }));
    }
    let ranged = up.parts.status == StatusCode::PARTIAL_CONTENT
        && strong_validator(&up.parts.headers, now).is_some();
    if !ranged {
        // The origin ignored the range (200), failed, or sent nothing to combine blocks by
        // (no strong validator): relay its answer as it came, uncached.
        let status = txn.outcome(
            CacheResult::NotStorable {
                reason: "not-sliceable",
            },
            CacheStatus {
                fwd: Some(fwd),
                detail: Some("not-sliceable"),
                ..CacheStatus::default()
            },
        );
        if up.parts.status == StatusCode::PARTIAL_CONTENT {
            // A 206 for a range the client did not ask for cannot be relayed.
            return Ok(Err(pass(ex, txn, "not-sliceable").await?));
        }
        return Ok(Err(deliver(ex.shared, up, status, None)));
    }
    let block = blocks.read_block(up, wanted).await?;
    let response_time = shared.clock.now();
    let validator = strong_validator(&block.parts.headers, response_time);
    if let Some(old) = &stale {
        if strong_validator(&old.headers.to_map(), now) != validator {
            // A new representation: the old blocks can never be combined with it (§3.4).
            let ranges = cache.part_ranges(&blocks.primary);
            cache.drop_parts(&blocks.primary, &ranges).await;
        }
    }
    let part = blocks.part_head(&block, request_time, response_time);
    let record = match &part {
        Some(head) => record_head(head, block.range.complete),
        None => unstored_record(&block, &blocks.url, request_time, response_time),
    };
    let mut stored = false;
    if let Some(head) = part {
        stored = cache
            .store_part(
                &blocks.primary,
                head,
                (block.range.start, block.range.end),
                &block.body,
                ticket.clone(),
            )
            .await
            && cache
                .store_record(&blocks.primary, record.clone(), ticket)
                .await;
    }
    if let Some(leader) = leader {
        leader.finish(if stored {
            Outcome::Stored
        } else {
            Outcome::NotStored
        });
    }
    let ttl = cache.evaluate(&record, &ex.request, &ex.url, now).ttl();
    Ok(Ok(Known {
        record: Arc::new(record),
        first: Some((index, block.body)),
        result: if stale.is_some() {
            CacheResult::RefreshModified
        } else {
            CacheResult::Miss
        },
        status: CacheStatus {
            fwd: Some(fwd),
            fwd_status: stale.is_some().then_some(206),
            ttl: Some(ttl),
            stored,
            ..CacheStatus::default()
        },
    }))
}

/// A record for a representation whose block may not be stored: served once, kept nowhere.
fn unstored_record(
    block: &blocks::Block,
    url: &str,
    request_time: std::time::SystemTime,
    response_time: std::time::SystemTime,
) -> StoredHead {
    let part = StoredHead {
        status: StatusCode::PARTIAL_CONTENT,
        headers: crate::cache::meta::StoredFields::from_map(&block.parts.headers),
        request_time,
        response_time,
        url: url.into(),
        body_len: block.range.len(),
        derived: Default::default(),
    };
    record_head(&part, block.range.complete)
}

/// Relays the client's own request, uncached, when slicing cannot answer it.
async fn pass(
    ex: &mut Exchange<'_>,
    txn: &mut Transaction,
    reason: &'static str,
) -> Result<Response<ProxyBody>, Error> {
    let up = ex.send(txn, ex.parts.headers.clone()).await?;
    let status = txn.outcome(
        CacheResult::NotStorable { reason },
        CacheStatus {
            fwd: Some(Fwd::Miss),
            detail: Some(reason),
            ..CacheStatus::default()
        },
    );
    Ok(deliver(ex.shared, up, status, None))
}

/// The first block the client's range touches (block 0 without a range, for a suffix range
/// of unknown length, or for several ranges).
fn first_block(request: &HeaderMap, complete: Option<u64>, size: u64) -> u64 {
    let Some(specs) = single_value(request, &RANGE).and_then(|v| parse_range(&v)) else {
        return 0;
    };
    let start = match (specs.as_slice(), complete) {
        ([RangeSpec::FromTo(first, _) | RangeSpec::From(first)], _) => *first,
        ([RangeSpec::Suffix(n)], Some(len)) => len.saturating_sub(*n),
        _ => 0,
    };
    let start = complete.map_or(start, |len| if start >= len { 0 } else { start });
    start / size.max(1)
}
