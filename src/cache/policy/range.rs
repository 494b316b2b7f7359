//! Serving byte ranges from a complete stored response (RFC 9110 §14, §13.1.5, §15.3.7).
//!
//! Given a request's `Range` / `If-Range` and the stored representation's
//! length, [`plan_range`] says whether to answer 200, 206 (one or several
//! parts) or 416. [`multipart_layout`] precomputes the multipart/byteranges
//! framing so the caller can stream body slices without copying.
//!
//! Choices: only the `bytes` unit is understood (others → ignore Range);
//! syntactically invalid specifiers, more than [`MAX_RANGES`] ranges, more
//! than two overlapping ranges, or many small ranges out of ascending order
//! are ignored (full 200), as §14.2 allows for likely denial-of-service;
//! overlapping or nearly adjacent ranges are coalesced (§15.3.7.2);
//! a zero-length representation ignores Range (§14.2 "MAY ignore").

use std::time::SystemTime;

use super::fields::single_value;
use super::validation::{last_modified, last_modified_is_strong, response_etag, EntityTag};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, IF_RANGE, RANGE};
use http::Method;

/// Most ranges accepted in one Range header before it is ignored.
pub const MAX_RANGES: usize = 100;

/// Ranges closer than this many bytes are merged (≈ one part's framing overhead).
pub const COALESCE_GAP: u64 = 80;

/// One byte-range-spec (RFC 9110 §14.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-last`.
    FromTo(u64, u64),
    /// `first-`.
    From(u64),
    /// `-suffix_length`.
    Suffix(u64),
}

/// What to send for a (possibly) ranged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangePlan {
    /// 200 with the full representation (no or ignored Range).
    Full,
    /// 206 with one part; inclusive byte offsets.
    Single {
        /// First byte offset.
        start: u64,
        /// Last byte offset (inclusive).
        end: u64,
    },
    /// 206 multipart/byteranges; inclusive (start, end) pairs in send order.
    Multi(Vec<(u64, u64)>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

fn parse_pos(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // §14.1.2: "recipients MUST anticipate potentially large decimal numerals
    // and prevent parsing errors due to integer conversion overflows".
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

/// Parses `bytes=...`; None for another unit or any invalid range-spec.
///
/// §14.1.1: "A ranges-specifier is invalid if it contains any range-spec that
/// is invalid"; "An int-range is invalid if the last-pos value is present and
/// less than the first-pos".
pub fn parse_range(value: &str) -> Option<Vec<RangeSpec>> {
    let (unit, set) = value.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for item in set.split(',') {
        let item = item.trim_matches(|c| c == ' ' || c == '\t');
        if item.is_empty() {
            continue;
        }
        let (first, last) = item.split_once('-')?;
        let spec = match (first.is_empty(), last.is_empty()) {
            (true, false) => RangeSpec::Suffix(parse_pos(last)?),
            (false, true) => RangeSpec::From(parse_pos(first)?),
            (false, false) => {
                let (f, l) = (parse_pos(first)?, parse_pos(last)?);
                if l < f {
                    return None;
                }
                RangeSpec::FromTo(f, l)
            }
            (true, true) => return None,
        };
        specs.push(spec);
        if specs.len() > MAX_RANGES {
            return None;
        }
    }
    if specs.is_empty() {
        None
    } else {
        Some(specs)
    }
}

/// Maps specs onto a representation of `len` bytes (satisfiability per §14.1.2).
pub fn resolve_ranges(specs: &[RangeSpec], len: u64) -> RangePlan {
    if len == 0 || specs.is_empty() || specs.len() > MAX_RANGES {
        return RangePlan::Full;
    }
    let last = len.saturating_sub(1);
    let ranges: Vec<(u64, u64)> = specs
        .iter()
        .filter_map(|s| match *s {
            RangeSpec::FromTo(f, l) if f < len => Some((f, l.min(last))),
            RangeSpec::From(f) if f < len => Some((f, last)),
            RangeSpec::Suffix(n) if n > 0 => Some((len.saturating_sub(n), last)),
            _ => None,
        })
        .collect();
    if ranges.is_empty() {
        return RangePlan::Unsatisfiable;
    }
    if looks_abusive(&ranges) {
        return RangePlan::Full;
    }
    let ranges = coalesce(ranges);
    match ranges.as_slice() {
        [(start, end)] => RangePlan::Single {
            start: *start,
            end: *end,
        },
        _ => RangePlan::Multi(ranges),
    }
}

/// §14.2: "more than two overlapping ranges, or a set of many small ranges
/// that are not listed in ascending order" indicate a broken client or attack.
fn looks_abusive(ranges: &[(u64, u64)]) -> bool {
    let mut overlaps = 0usize;
    for (i, a) in ranges.iter().enumerate() {
        if ranges
            .iter()
            .skip(i.saturating_add(1))
            .any(|b| a.0 <= b.1 && b.0 <= a.1)
        {
            overlaps = overlaps.saturating_add(1);
        }
    }
    let ascending = ranges.windows(2).all(|w| match w {
        [a, b] => a.0 <= b.0,
        _ => true,
    });
    overlaps > 2 || (ranges.len() > 16 && !ascending)
}

/// Merges overlapping or nearly adjacent ranges; untouched sets keep request order.
fn coalesce(ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut sorted = ranges.clone();
    sorted.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (s, e) in sorted {
        match merged.last_mut() {
            Some(last) if s <= last.1.saturating_add(COALESCE_GAP) => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    if merged.len() == ranges.len() {
        ranges
    } else {
        merged
    }
}

/// §13.1.5 If-Range: true when the Range may be honoured against the stored response.
///
/// Entity tag: strong comparison with the stored ETag. HTTP-date: true only
/// if it "exactly matches the Last-Modified field value" and that
/// Last-Modified is a strong validator (§8.8.2.2). No If-Range → true;
/// anything unparseable → false (send the full representation).
pub fn evaluate_if_range(
    req_headers: &HeaderMap,
    stored_headers: &HeaderMap,
    now: SystemTime,
) -> bool {
    let Some(value) = req_headers.get(IF_RANGE) else {
        return true;
    };
    if req_headers.get_all(IF_RANGE).iter().count() > 1 {
        return false;
    }
    let bytes = value.as_bytes();
    // "A valid entity-tag can be distinguished from a valid HTTP-date by
    // examining the first three characters for a DQUOTE."
    if bytes.iter().take(3).any(|b| *b == b'"') {
        return match (EntityTag::parse(bytes), response_etag(stored_headers)) {
            (Some(a), Some(b)) => a.strong_eq(&b),
            _ => false,
        };
    }
    let Some(date) =
        single_value(req_headers, &IF_RANGE).and_then(|v| super::fields::parse_http_date(&v, now))
    else {
        return false;
    };
    last_modified_is_strong(stored_headers, now) && last_modified(stored_headers, now) == Some(date)
}

/// Full range decision for serving a stored, complete representation of `len` bytes.
///
/// §14.2: "GET is the only method for which range handling is defined"; a
/// repeated Range field is treated as invalid; If-Range is applied first.
pub fn plan_range(
    method: &Method,
    req_headers: &HeaderMap,
    stored_headers: &HeaderMap,
    len: u64,
    now: SystemTime,
) -> RangePlan {
    if *method != Method::GET {
        return RangePlan::Full;
    }
    let Some(value) = single_value(req_headers, &RANGE) else {
        return RangePlan::Full;
    };
    if !evaluate_if_range(req_headers, stored_headers, now) {
        return RangePlan::Full;
    }
    match parse_range(&value) {
        Some(specs) => resolve_ranges(&specs, len),
        None => RangePlan::Full,
    }
}

/// `Content-Range` value for a satisfied range: `bytes start-end/len` (§14.4).
pub fn content_range(start: u64, end: u64, len: u64) -> String {
    format!("bytes {start}-{end}/{len}")
}

/// `Content-Range` value for a 416: `bytes */len` (§14.4).
pub fn unsatisfied_content_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// One multipart/byteranges body part: its header bytes, then body bytes `start..=end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Delimiter line and part header fields, ending in the blank line.
    pub header: Bytes,
    /// First byte offset of the part's content.
    pub start: u64,
    /// Last byte offset (inclusive).
    pub end: u64,
}

/// Precomputed multipart/byteranges framing (RFC 9110 §14.6, §15.3.7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartLayout {
    /// Parts in send order.
    pub parts: Vec<Part>,
    /// Closing delimiter, sent after the last part's content.
    pub closing: Bytes,
    /// Value for the response's Content-Type header.
    pub content_type: String,
    /// Exact total body length, for Content-Length.
    pub content_length: u64,
}

/// Boundary check: RFC 2046 §5.1.1 bchars that are also token characters, 1–70 long.
///
/// Restricting to token characters lets the boundary go unquoted in
/// Content-Type (RFC 9110 §14.6: a quoted boundary is handled badly by some).
fn valid_boundary(b: &str) -> bool {
    (1..=70).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'\'' | b'+' | b'_' | b'-' | b'.'))
}

/// Lays out a multipart/byteranges body; None for an invalid boundary or range.
///
/// Each part header carries the stored Content-Type (if any) and a
/// Content-Range; the caller streams `header`, then the body slice, per part,
/// then `closing`.
pub fn multipart_layout(
    ranges: &[(u64, u64)],
    complete_length: u64,
    content_type: Option<&HeaderValue>,
    boundary: &str,
) -> Option<MultipartLayout> {
    if !valid_boundary(boundary) {
        return None;
    }
    let mut parts = Vec::with_capacity(ranges.len());
    let mut total: u64 = 0;
    for (i, &(start, end)) in ranges.iter().enumerate() {
        if start > end || end >= complete_length {
            return None;
        }
        let mut h: Vec<u8> = Vec::with_capacity(96);
        if i > 0 {
            h.extend_from_slice(b"\r\n");
        }
        h.extend_from_slice(b"--");
        h.extend_from_slice(boundary.as_bytes());
        h.extend_from_slice(b"\r\n");
        if let Some(ct) = content_type {
            h.extend_from_slice(b"Content-Type: ");
            h.extend_from_slice(ct.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        h.extend_from_slice(b"Content-Range: ");
        h.extend_from_slice(content_range(start, end, complete_length).as_bytes());
        h.extend_from_slice(b"\r\n\r\n");
        let body_len = end.saturating_sub(start).saturating_add(1);
        total = total
            .saturating_add(u64::try_from(h.len()).unwrap_or(u64::MAX))
            .saturating_add(body_len);
        parts.push(Part {
            header: Bytes::from(h),
            start,
            end,
        });
    }
    let closing = Bytes::from(format!("\r\n--{boundary}--\r\n"));
    total = total.saturating_add(u64::try_from(closing.len()).unwrap_or(u64::MAX));
    Some(MultipartLayout {
        parts,
        closing,
        content_type: format!("multipart/byteranges; boundary={boundary}"),
        content_length: total,
    })
}

#[cfg(test)]
mod tests;
