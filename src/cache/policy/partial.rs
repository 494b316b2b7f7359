//! Partial content (RFC 9111 §3.3-3.4, RFC 9110 §14.4): reading `Content-Range`, telling
//! whether stored parts are of one representation, planning which stored parts answer a
//! range, and the block grid of slice mode. Pure: no I/O, `now` a parameter.
//!
//! RFC 9111 §3.4: a cache "MAY combine these ranges into a single stored response, and reuse
//! that response to satisfy later requests, if they all share the same strong validator";
//! §3.3: it "MUST NOT use an incomplete response to answer requests unless the response has
//! been made complete, or the request is partial and specifies a range wholly within the
//! incomplete response".

use std::time::SystemTime;

use http::header::{HeaderMap, CONTENT_RANGE, LAST_MODIFIED};

use super::fields::single_value;
use super::validation::{last_modified_is_strong, response_etag};

/// A satisfied `Content-Range` (RFC 9110 §14.4): `bytes first-last/complete-length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
    pub complete: u64,
}

impl ContentRange {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// Never: a satisfied range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Parses a satisfied byte range with a known complete length; None for anything else
/// (another unit, `*` length, an unsatisfied-range, or `last < first`, which §14.4 calls
/// invalid, or a range past the complete length).
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, complete) = rest.split_once('/')?;
    let (first, last) = range.trim().split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (start, end, complete) = (num(first)?, num(last)?, num(complete)?);
    // §14.4: "A Content-Range field value is invalid if it contains a range-resp that has a
    // last-pos value less than its first-pos value, or a complete-length value less than or
    // equal to its last-pos value."
    if end < start || complete <= end {
        return None;
    }
    Some(ContentRange {
        start,
        end,
        complete,
    })
}

/// The `Content-Range` of a 206 response's head, when it is a single satisfied range.
pub fn response_content_range(headers: &HeaderMap) -> Option<ContentRange> {
    parse_content_range(&single_value(headers, &CONTENT_RANGE)?)
}

/// The strong validator identifying a representation (RFC 9110 §8.8.1): its ETag when strong,
/// else its Last-Modified when that is strong (§8.8.2.2); None when it has neither, and then
/// its parts may never be combined with others (RFC 9111 §3.4).
pub fn strong_validator(headers: &HeaderMap, now: SystemTime) -> Option<String> {
    if let Some(tag) = response_etag(headers) {
        if tag.weak {
            return None;
        }
        return Some(format!("e:{}", String::from_utf8_lossy(&tag.opaque)));
    }
    if last_modified_is_strong(headers, now) {
        let value = single_value(headers, &LAST_MODIFIED)?;
        return Some(format!("m:{value}"));
    }
    None
}

/// Which stored parts answer `start..=end`: for each piece in order, the index of the part
/// in `parts` (inclusive `(start, end)` pairs) and the bytes of it to send. None when the
/// parts leave a gap (§3.3: only a range "wholly within" what is stored may be answered).
pub fn cover(parts: &[(u64, u64)], start: u64, end: u64) -> Option<Vec<(usize, u64, u64)>> {
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_unstable_by_key(|&i| parts.get(i).map_or(0, |p| p.0));
    let mut pieces = Vec::new();
    let mut next = start;
    while next <= end {
        // The part reaching furthest among those holding `next`.
        let best = order
            .iter()
            .filter_map(|&i| parts.get(i).map(|p| (i, *p)))
            .filter(|(_, (s, e))| *s <= next && next <= *e)
            .max_by_key(|(_, (_, e))| *e)?;
        let to = best.1 .1.min(end);
        pieces.push((best.0, next, to));
        match to.checked_add(1) {
            Some(n) => next = n,
            None => break,
        }
    }
    Some(pieces)
}

/// The blocks of `size` bytes that hold `start..=end` (slice mode), as first and last index.
pub fn blocks_for(start: u64, end: u64, size: u64) -> (u64, u64) {
    let size = size.max(1);
    (start / size, end / size)
}

/// Block `index`'s byte range in a representation of `complete` bytes; None past its end.
pub fn block_range(index: u64, size: u64, complete: u64) -> Option<(u64, u64)> {
    let start = index.checked_mul(size.max(1))?;
    if start >= complete {
        return None;
    }
    let end = start.saturating_add(size.max(1) - 1).min(complete - 1);
    Some((start, end))
}

/// The `Range` header value asking for `start..=end`.
pub fn range_header(start: u64, end: u64) -> String {
    format!("bytes={start}-{end}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn content_range_parsing_follows_14_4() {
        assert_eq!(
            parse_content_range("bytes 0-499/1234"),
            Some(ContentRange {
                start: 0,
                end: 499,
                complete: 1234
            })
        );
        assert_eq!(parse_content_range("bytes 0-499/*"), None);
        assert_eq!(parse_content_range("bytes */1234"), None);
        assert_eq!(parse_content_range("bytes 500-499/1234"), None);
        assert_eq!(parse_content_range("bytes 0-1234/1234"), None);
        assert_eq!(parse_content_range("items 0-1/5"), None);
    }

    #[test]
    fn strong_validators_only() {
        let now = SystemTime::UNIX_EPOCH;
        let mut h = HeaderMap::new();
        h.insert("etag", HeaderValue::from_static("\"v1\""));
        assert_eq!(strong_validator(&h, now).as_deref(), Some("e:v1"));
        h.insert("etag", HeaderValue::from_static("W/\"v1\""));
        assert_eq!(strong_validator(&h, now), None);
        let mut h = HeaderMap::new();
        h.insert(
            "last-modified",
            HeaderValue::from_static("Tue, 01 Jan 2030 00:00:00 GMT"),
        );
        h.insert(
            "date",
            HeaderValue::from_static("Tue, 01 Jan 2030 00:00:00 GMT"),
        );
        assert_eq!(
            strong_validator(&h, now),
            None,
            "§8.8.2.2: too close to Date"
        );
        h.insert(
            "date",
            HeaderValue::from_static("Tue, 01 Jan 2030 00:01:00 GMT"),
        );
        assert!(strong_validator(&h, now).is_some());
    }

    #[test]
    fn cover_uses_several_parts_and_refuses_gaps() {
        let parts = [(100, 199), (0, 99), (150, 400)];
        assert_eq!(
            cover(&parts, 50, 300),
            Some(vec![(1, 50, 99), (0, 100, 199), (2, 200, 300)])
        );
        assert_eq!(cover(&parts, 350, 401), None);
        assert_eq!(cover(&[(0, 10), (12, 20)], 5, 15), None);
    }

    #[test]
    fn block_grid() {
        assert_eq!(blocks_for(1_000_000, 1_000_999, 1 << 20), (0, 0));
        assert_eq!(blocks_for(0, (3 << 20) - 1, 1 << 20), (0, 2));
        assert_eq!(block_range(2, 100, 250), Some((200, 249)));
        assert_eq!(block_range(3, 100, 250), None);
    }
}
