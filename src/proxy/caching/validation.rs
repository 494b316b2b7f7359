//! What the answer to a revalidation means (RFC 9111 §4.3.3, §4.3.4; RFC 5861 §4), for the
//! foreground revalidation and the background stale-while-revalidate refresh alike, and the
//! freshened head a 304 gives.

use std::time::SystemTime;

use http::header::{self, HeaderMap};
use http::StatusCode;

use super::reply::storable_update;
use crate::cache::meta::StoredHead;
use crate::cache::policy::select_stored_for_304;
use crate::proxy::next_hop::Upstreamed;
use crate::proxy::Shared;

/// The kinds of answer to a conditional request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// 304 for the stored response: freshen it and serve it.
    NotModified,
    /// A 304 whose validators select no stored response: it "MUST NOT" update one
    /// (§4.3.4); ask again without conditions (foreground) or leave it (background).
    UnrelatedNotModified,
    /// 500, 502, 503 or 504: "an error" (RFC 5861 §4). Never replaces the stored response;
    /// the foreground serves it stale where allowed.
    ServerError,
    /// A new response: through the storage pipeline like a miss's (§4.3.3).
    Modified,
}

/// Classifies `up`, the answer to a conditional request built from `stored` (the stored
/// response's fields), at `now`.
pub(super) fn answer(up: &Upstreamed, stored: &HeaderMap, now: SystemTime) -> Answer {
    if up.parts.status == StatusCode::NOT_MODIFIED {
        // A 304 without validators answers the conditional cuttle built from this one stored
        // response; one whose validators match nothing stored is not about it.
        let carries_validator = up.parts.headers.contains_key(header::ETAG)
            || up.parts.headers.contains_key(header::LAST_MODIFIED);
        if carries_validator && select_stored_for_304(&up.parts.headers, &[stored], now).is_empty()
        {
            return Answer::UnrelatedNotModified;
        }
        return Answer::NotModified;
    }
    if matches!(up.parts.status.as_u16(), 500 | 502 | 503 | 504) {
        return Answer::ServerError;
    }
    Answer::Modified
}

/// `stored` freshened with the fields of a 304 (or matching HEAD) answer `update`, for a
/// request sent at `request_time` (§4.3.4).
pub(super) fn freshened(
    shared: &Shared,
    stored: &StoredHead,
    update: &HeaderMap,
    request_time: SystemTime,
) -> StoredHead {
    let update = storable_update(update, shared.cache.behaviour.store_set_cookie);
    stored.freshened(&update, request_time, shared.clock.now())
}
