//! Partial content in the store (RFC 9111 §3.3-3.4): the byte ranges of a URL stored as
//! entries of their own, beside the record of the representation they belong to.
//!
//! A part is stored under `primary\n\u{1}bytes FIRST-LAST` with the head of the 206 that
//! brought it; the object record under `primary\n\u{1}object` holds the head of the whole
//! representation (status 200, `Content-Length` the complete length, no body) and is what
//! freshness is evaluated and revalidated on, once for all parts. Both sit under the URL in
//! the store's index, so a purge or an invalidation of the URL removes them with it, and a
//! plain lookup of the URL never finds them (`\u{1}` starts no Vary secondary key).
//! Which parts answer a range is decided in `policy::partial`; the request path is
//! `proxy::caching::slice`.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::StatusCode;

use super::lookup::{Cache, FillTicket};
use super::meta::{StoredFields, StoredHead};
use super::store::Hit;

/// Starts the tail of every part and record key; no Vary secondary key starts with it.
const MARK: char = '\u{1}';

/// The key of the part `start..=end` of `primary`.
pub fn part_key(primary: &str, start: u64, end: u64) -> String {
    format!("{primary}\n{MARK}bytes {start}-{end}")
}

/// The key of `primary`'s object record.
pub fn object_key(primary: &str) -> String {
    format!("{primary}\n{MARK}object")
}

/// The range of a part key of `primary`; None for any other key.
fn part_of(primary: &str, key: &str) -> Option<(u64, u64)> {
    let tail = key.strip_prefix(primary)?.strip_prefix('\n')?;
    let range = tail.strip_prefix(MARK)?.strip_prefix("bytes ")?;
    let (first, last) = range.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// The record head for a representation seen through one of its parts: the part's fields
/// without `Content-Range`, with the complete length (RFC 9111 §3.4: the stored fields are
/// those of the newest response).
pub fn record_head(part: &StoredHead, complete: u64) -> StoredHead {
    let mut headers = part.headers.to_map();
    headers.remove(header::CONTENT_RANGE);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(complete));
    StoredHead {
        status: StatusCode::OK,
        headers: StoredFields::from_map(&headers),
        body_len: 0,
        ..part.clone()
    }
}

/// The complete length a record announces (its `Content-Length`).
pub fn complete_length(record: &StoredHead) -> Option<u64> {
    record
        .headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

impl Cache {
    /// The ranges stored for `primary`, in no particular order (whatever representation).
    pub fn part_ranges(&self, primary: &str) -> Vec<(u64, u64)> {
        self.store
            .index()
            .filter_keys_of_url(primary, |key| part_of(primary, key))
    }

    /// The record of the representation `primary`'s parts belong to.
    pub async fn object_record(&self, primary: &str) -> Option<Arc<StoredHead>> {
        let key = object_key(primary);
        let bans_active = self.bans.any_active();
        let mut hit = self.store.lookup(&key).await?;
        if !self.passes_bans(bans_active, primary, &key, &mut hit).await {
            return None;
        }
        Some(hit.head)
    }

    /// The stored part `start..=end` of `primary`.
    pub async fn part(&self, primary: &str, start: u64, end: u64) -> Option<Hit> {
        let key = part_key(primary, start, end);
        let bans_active = self.bans.any_active();
        let mut hit = self.store.lookup(&key).await?;
        if !self.passes_bans(bans_active, primary, &key, &mut hit).await {
            return None;
        }
        Some(hit)
    }

    /// Stores `body` as the part `start..=end` of `primary` with `head` (the 206's), unless
    /// the URL was invalidated after `ticket`.
    pub async fn store_part(
        &self,
        primary: &str,
        head: StoredHead,
        (start, end): (u64, u64),
        body: &Bytes,
        ticket: FillTicket,
    ) -> bool {
        let len = u64::try_from(body.len()).unwrap_or(u64::MAX);
        let key = part_key(primary, start, end);
        let Some(mut writer) = self.store.writer(&key, head, Some(len)) else {
            return false;
        };
        if writer.write(body).await.is_err() {
            return false;
        }
        writer.commit_unless_invalidated(ticket).await.is_ok()
    }

    /// Stores (or replaces) `primary`'s object record, unless the URL was invalidated after
    /// `ticket`.
    pub async fn store_record(&self, primary: &str, head: StoredHead, ticket: FillTicket) -> bool {
        let Some(writer) = self.store.writer(&object_key(primary), head, Some(0)) else {
            return false;
        };
        writer.commit_unless_invalidated(ticket).await.is_ok()
    }

    /// Freshens the record in place (after a 304 for the whole representation).
    pub async fn update_record(&self, primary: &str, head: StoredHead) -> bool {
        self.store.update_head(&object_key(primary), head).await
    }

    /// Removes the parts of `primary` whose range is in `ranges` (they belong to a
    /// representation that is no longer current).
    pub async fn drop_parts(&self, primary: &str, ranges: &[(u64, u64)]) {
        for &(start, end) in ranges {
            self.store.remove(&part_key(primary, start, end)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_keys_round_trip_and_stay_under_the_url() {
        let key = part_key("http://a/x", 5, 9);
        assert_eq!(part_of("http://a/x", &key), Some((5, 9)));
        assert_eq!(part_of("http://a/x", &object_key("http://a/x")), None);
        assert_eq!(
            part_of("http://a/x", "http://a/x\naccept-encoding=gzip"),
            None
        );
        assert_eq!(
            crate::cache::invalidate::index::primary_of(&key),
            "http://a/x"
        );
    }
}
