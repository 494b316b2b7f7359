//! Stored parts on the request path, shared by partial content (`partial`) and slice mode
//! (`slice`): the head a 206 is stored under, the response a record gives a request, and
//! sending a part's bytes (shared slices from memory, a stream from disk, never a copy).

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::cache::meta::{StoredFields, StoredHead};
use crate::cache::policy::storable::storage_excluded_fields;
use crate::cache::policy::{
    check_storable, effective_response_directives, RequestDirectives, StoreInput,
};
use crate::cache::serve::{serve_stored, BodyPlan, Served};
use crate::cache::store::{Hit, HitBody};
use crate::error::BoxError;
use crate::proxy::Shared;

/// The request a part answers, as the storage check needs it.
pub(super) struct PartRequest<'a> {
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    pub directives: &'a RequestDirectives,
}

/// The head to store a part of `len` bytes under, if RFC 9111 §3 lets the 206 be stored
/// (§3.3) and it does not vary (parts are not keyed by Vary); the fields kept are those of
/// a stored 200 (§3.1).
pub(super) fn part_head(
    shared: &Shared,
    req: &PartRequest<'_>,
    parts: &http::response::Parts,
    len: u64,
    (request_time, response_time): (SystemTime, SystemTime),
) -> Option<StoredHead> {
    let cache = &shared.cache;
    let headers = &parts.headers;
    if headers.contains_key(header::VARY) {
        return None;
    }
    let response = effective_response_directives(headers, &cache.behaviour.targeted_fields);
    check_storable(&StoreInput {
        method: &Method::GET,
        request_headers: req.headers,
        request: req.directives,
        status: parts.status,
        response_headers: headers,
        response: &response,
        content_length: Some(len),
        max_object_size: cache.store.max_object_size(),
        complete: true,
        allow_partial: true,
        extra_permission: cache
            .behaviour
            .extra_storage_permission(req.url, parts.status),
    })
    .ok()?;
    let mut kept = headers.clone();
    for name in storage_excluded_fields(headers, &response) {
        kept.remove(name);
    }
    if !cache.behaviour.store_set_cookie {
        kept.remove(header::SET_COOKIE);
        kept.remove(super::reply::SET_COOKIE2);
    }
    kept.remove(crate::cache::lookup::VARY_RECORD);
    Some(StoredHead {
        status: StatusCode::PARTIAL_CONTENT,
        headers: StoredFields::from_map(&kept),
        request_time,
        response_time,
        url: req.url.into(),
        body_len: len,
        derived: Default::default(),
    })
}

/// The response a record gives this request (304/412/416/200/206 head) and the bytes its
/// body needs, if any.
pub(super) fn plan(
    request: &HeaderMap,
    record: &StoredHead,
    complete: u64,
    age: u64,
    now: SystemTime,
) -> (Served, Option<(u64, u64)>) {
    let whole = StoredHead {
        body_len: complete,
        ..record.clone()
    };
    let mut served = serve_stored(&Method::GET, request, &whole, age, false, now);
    if served.status == StatusCode::OK {
        served.headers.remove(header::CONTENT_RANGE);
    }
    let range = match &served.body {
        BodyPlan::Range { start, end } => Some((*start, *end)),
        BodyPlan::Full | BodyPlan::Multipart(_) if complete > 0 => Some((0, complete - 1)),
        _ => None,
    };
    (served, range)
}

/// A block's bytes: stored (shared, or streamed from disk) or just fetched.
pub(super) enum Piece {
    Stored(Hit),
    Fetched(Bytes),
}

/// Sends bytes `from..=to` of a block; false when the client went away.
pub(super) async fn emit(
    tx: &mpsc::Sender<Result<Bytes, BoxError>>,
    piece: Piece,
    from: u64,
    to: u64,
) -> bool {
    let slice = |bytes: &Bytes| {
        let len = bytes.len();
        let a = usize::try_from(from).unwrap_or(len).min(len);
        let b = usize::try_from(to.saturating_add(1))
            .unwrap_or(len)
            .min(len);
        bytes.slice(a..b.max(a))
    };
    match piece {
        Piece::Fetched(bytes) => tx.send(Ok(slice(&bytes))).await.is_ok(),
        Piece::Stored(Hit {
            body: HitBody::Memory(bytes),
            ..
        }) => tx.send(Ok(slice(&bytes))).await.is_ok(),
        Piece::Stored(Hit {
            body: HitBody::Disk(mut disk),
            ..
        }) => {
            let mut offset: u64 = 0;
            while offset <= to {
                let data = match disk.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue,
                    },
                    Some(Err(e)) => {
                        let _ = tx.send(Err(e.into())).await;
                        return false;
                    }
                    None => {
                        let _ = tx.send(Err("stored block ended early".into())).await;
                        return false;
                    }
                };
                let len = data.len() as u64;
                let (a, b) = (offset, offset + len);
                offset = b;
                if b <= from {
                    continue;
                }
                let lo = usize::try_from(from.saturating_sub(a)).unwrap_or(0);
                let hi = usize::try_from((to + 1).min(b) - a).unwrap_or(data.len());
                if tx.send(Ok(data.slice(lo..hi.max(lo)))).await.is_err() {
                    return false;
                }
            }
            true
        }
    }
}
