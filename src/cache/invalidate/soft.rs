//! Soft purge: a purged entry is kept but marked stale, so the next request revalidates it with
//! a conditional request (a 304 keeps the body, RFC 9111 §4.3.4) and, while the origin cannot
//! answer, `stale-if-error` (RFC 5861 §4) or `max_stale` can still serve it.
//!
//! The mark is an internal field in the stored head, so it survives a restart with the disk
//! tier; it makes the entry's freshness lifetime zero (see `lookup::Cache::evaluate`), is
//! dropped when a 304 freshens the head, and is never sent to clients.

use http::HeaderMap;

use crate::cache::meta::{StoredFields, StoredHead};

/// Marks a soft-purged stored head (never sent to clients; stripped from upstream responses).
pub const MARK: &str = crate::cache::meta::SOFT_PURGE_MARK;

/// True if `head` was soft-purged and not revalidated since.
pub fn is_marked(head: &StoredHead) -> bool {
    head.headers.contains_key(MARK)
}

/// `head` marked stale.
pub fn marked(head: &StoredHead) -> StoredHead {
    let mut map = head.headers.to_map();
    map.insert(MARK, http::HeaderValue::from_static("1"));
    StoredHead {
        headers: StoredFields::from_map(&map),
        ..head.clone()
    }
}

/// [`MARK`] as a field name, so removing it needs no parse of the name (this runs on every hit).
pub(super) static MARK_NAME: http::HeaderName = http::HeaderName::from_static(MARK);

/// True if `name` is the mark's (fields an origin sent with it are not stored).
pub fn is_mark(name: &http::HeaderName) -> bool {
    *name == MARK_NAME
}

/// Removes the mark from fields about to be stored or sent.
pub fn unmark(headers: &mut HeaderMap) {
    headers.remove(&MARK_NAME);
}
