//! Validation: entity tags, conditional requests to the origin, freshening
//! stored responses from 304/HEAD, and answering client conditionals.
//!
//! RFC 9111 §4.3 and RFC 9110 §8.8 / §13. Everything here compares the bytes
//! of header values (never lossy text) so distinct obs-text tags stay distinct.

use super::cache_control::ResponseDirectives;
use super::fields::{date_field, parse_http_date, single_value};
use super::storable::storage_excluded_fields;
use http::header::{
    HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, DATE, ETAG, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
};
use http::{Method, StatusCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An entity tag (RFC 9110 §8.8.3): weakness flag plus the opaque bytes inside the quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    /// True for `W/"..."`.
    pub weak: bool,
    /// The characters between the double quotes.
    pub opaque: Vec<u8>,
}

impl EntityTag {
    /// Parses exactly one entity-tag (surrounding OWS allowed).
    pub fn parse(value: &[u8]) -> Option<EntityTag> {
        let mut i = skip_ows(value, 0);
        let tag = parse_tag_at(value, &mut i)?;
        (skip_ows(value, i) == value.len()).then_some(tag)
    }

    /// Strong comparison: "both are not weak and their opaque-tags match".
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison: "opaque-tags match ... regardless of either or both being tagged as weak".
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.opaque == other.opaque
    }
}

/// An `If-Match` / `If-None-Match` value: `*` or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagList {
    /// `*`.
    Any,
    /// One or more entity tags.
    Tags(Vec<EntityTag>),
}

fn skip_ows(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i = i.saturating_add(1);
    }
    i
}

/// entity-tag = [ weak ] opaque-tag ; opaque-tag = DQUOTE *etagc DQUOTE.
fn parse_tag_at(b: &[u8], i: &mut usize) -> Option<EntityTag> {
    let mut j = *i;
    let weak = b.get(j..j.saturating_add(2)) == Some(&b"W/"[..]);
    if weak {
        j = j.saturating_add(2);
    }
    if b.get(j) != Some(&b'"') {
        return None;
    }
    j = j.saturating_add(1);
    let start = j;
    loop {
        match b.get(j) {
            Some(b'"') => break,
            // etagc = %x21 / %x23-7E / obs-text
            Some(&c) if c == 0x21 || (0x23..=0x7E).contains(&c) || c >= 0x80 => {
                j = j.saturating_add(1);
            }
            _ => return None,
        }
    }
    let opaque = b.get(start..j)?.to_vec();
    *i = j.saturating_add(1);
    Some(EntityTag { weak, opaque })
}

/// Parses `"*" / #entity-tag` over all lines; None when syntactically invalid.
///
/// A list mixing "*" with tags "is syntactically invalid" (RFC 9110 §13.1.1).
pub fn parse_etag_list<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Option<EtagList> {
    let mut tags = Vec::new();
    let mut star = false;
    for line in lines {
        let mut i = 0usize;
        loop {
            while matches!(line.get(i), Some(b' ' | b'\t' | b',')) {
                i = i.saturating_add(1);
            }
            match line.get(i) {
                None => break,
                Some(b'*') => {
                    star = true;
                    i = i.saturating_add(1);
                }
                Some(_) => tags.push(parse_tag_at(line, &mut i)?),
            }
            i = skip_ows(line, i);
            if !matches!(line.get(i), None | Some(b',')) {
                return None;
            }
        }
    }
    match (star, tags.is_empty()) {
        (true, true) => Some(EtagList::Any),
        (false, false) => Some(EtagList::Tags(tags)),
        _ => None,
    }
}

fn header_etag_list(
    headers: &HeaderMap,
    name: &http::header::HeaderName,
) -> Option<Option<EtagList>> {
    if !headers.contains_key(name) {
        return None;
    }
    Some(parse_etag_list(
        headers.get_all(name).iter().map(HeaderValue::as_bytes),
    ))
}

/// The ETag of a response, if present exactly once and valid.
pub fn response_etag(headers: &HeaderMap) -> Option<EntityTag> {
    let mut it = headers.get_all(ETAG).iter();
    let first = it.next()?;
    if it.next().is_some() {
        return None;
    }
    EntityTag::parse(first.as_bytes())
}

/// Last-Modified of a stored response, if valid.
pub fn last_modified(headers: &HeaderMap, now: SystemTime) -> Option<SystemTime> {
    date_field(headers, &LAST_MODIFIED, now)
}

/// RFC 9110 §8.8.2.2 (cache case): Last-Modified is strong if the entry's Date
/// "is at least one second after the Last-Modified value".
pub fn last_modified_is_strong(headers: &HeaderMap, now: SystemTime) -> bool {
    match (last_modified(headers, now), date_field(headers, &DATE, now)) {
        (Some(lm), Some(date)) => lm
            .checked_add(Duration::from_secs(1))
            .is_some_and(|t| date >= t),
        _ => false,
    }
}

/// Preconditions for revalidating a stored response (RFC 9111 §4.3.1).
///
/// "MUST send the relevant entity tags ... if the entity tags were provided"
/// (If-None-Match) and "SHOULD send the Last-Modified value (using
/// If-Modified-Since)"; both are sent when both exist.
pub fn conditional_request_headers(stored: &HeaderMap, now: SystemTime) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(v) = stored.get(ETAG) {
        if EntityTag::parse(v.as_bytes()).is_some() {
            out.insert(IF_NONE_MATCH, v.clone());
        }
    }
    if let Some(lm) = last_modified(stored, now) {
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(lm)) {
            out.insert(IF_MODIFIED_SINCE, v);
        }
    }
    out
}

/// Stored header fields updated with those of a 304 or HEAD response (§3.2, §4.3.4).
///
/// Each provided field replaces the stored one, except: fields excluded from
/// storage by §3.1 (hop-by-hop, Connection-listed, proxy authentication,
/// qualified `private`), "The Content-Length header field", and Content-Range
/// ("Implementations MAY automatically omit such header fields from updates").
pub fn freshen_headers(stored: &HeaderMap, from_304: &HeaderMap) -> HeaderMap {
    let directives = ResponseDirectives::from_headers(from_304);
    let mut excluded = storage_excluded_fields(from_304, &directives);
    excluded.push(CONTENT_LENGTH);
    excluded.push(CONTENT_RANGE);
    let mut out = stored.clone();
    for name in from_304.keys() {
        if excluded.contains(name) {
            continue;
        }
        out.remove(name);
        for v in from_304.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

fn same_time(a: Option<SystemTime>, b: Option<SystemTime>) -> bool {
    matches!((a, b), (Some(x), Some(y)) if x == y)
}

/// Which stored responses a 304 freshens (RFC 9111 §4.3.4); indices into `candidates`.
///
/// `candidates` is the initial set: responses that could have been chosen for
/// the request, ignoring freshness. Strong validators (strong ETag, or a
/// Last-Modified that is strong per RFC 9110 §8.8.2.2) select every match;
/// otherwise weak validators select the most recent match (by Date, later
/// index on ties); with no validators at all, a lone validator-less candidate
/// is selected.
pub fn select_stored_for_304(
    from_304: &HeaderMap,
    candidates: &[&HeaderMap],
    now: SystemTime,
) -> Vec<usize> {
    let etag = response_etag(from_304);
    let lm = last_modified(from_304, now);
    let strong_etag = etag.as_ref().filter(|t| !t.weak);
    let strong_lm = lm.filter(|_| last_modified_is_strong(from_304, now));
    if strong_etag.is_some() || strong_lm.is_some() {
        // "If none of the initial set contains at least one of the same strong
        // validators, then the cache MUST NOT use the new response to update".
        return candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let etag_match = strong_etag
                    .zip(response_etag(c))
                    .is_some_and(|(n, s)| n.strong_eq(&s));
                etag_match || (strong_lm.is_some() && same_time(strong_lm, last_modified(c, now)))
            })
            .map(|(i, _)| i)
            .collect();
    }
    if etag.is_some() || lm.is_some() {
        // "the most recent of those matching stored responses is identified for update".
        return candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let etag_match = etag
                    .as_ref()
                    .zip(response_etag(c))
                    .is_some_and(|(n, s)| n.weak_eq(&s));
                etag_match || same_time(lm, last_modified(c, now))
            })
            .max_by_key(|(i, c)| (date_field(c, &DATE, now).unwrap_or(UNIX_EPOCH), *i))
            .map(|(i, _)| vec![i])
            .unwrap_or_default();
    }
    match candidates {
        [only] if !only.contains_key(ETAG) && !only.contains_key(LAST_MODIFIED) => vec![0],
        _ => Vec::new(),
    }
}

/// May a 200 HEAD response freshen this stored GET response? (RFC 9111 §4.3.5)
///
/// True when every validator the HEAD response carries (ETag, Last-Modified)
/// matches the stored one and, if the HEAD has Content-Length, it equals the
/// stored Content-Length; otherwise the stored response should be considered stale.
pub fn head_may_freshen(stored: &HeaderMap, head_resp: &HeaderMap, now: SystemTime) -> bool {
    if head_resp.contains_key(ETAG) {
        let same = match (response_etag(head_resp), response_etag(stored)) {
            (Some(h), Some(s)) => h == s,
            _ => raw_eq(head_resp, stored, &ETAG),
        };
        if !same {
            return false;
        }
    }
    if head_resp.contains_key(LAST_MODIFIED) {
        let same = match (last_modified(head_resp, now), last_modified(stored, now)) {
            (Some(h), Some(s)) => h == s,
            _ => raw_eq(head_resp, stored, &LAST_MODIFIED),
        };
        if !same {
            return false;
        }
    }
    if head_resp.contains_key(CONTENT_LENGTH) {
        let parse =
            |h: &HeaderMap| single_value(h, &CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        match (parse(head_resp), parse(stored)) {
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
    true
}

fn raw_eq(a: &HeaderMap, b: &HeaderMap, name: &http::header::HeaderName) -> bool {
    let va: Vec<&[u8]> = a
        .get_all(name)
        .iter()
        .map(|v| v.as_bytes().trim_ascii())
        .collect();
    let vb: Vec<&[u8]> = b
        .get_all(name)
        .iter()
        .map(|v| v.as_bytes().trim_ascii())
        .collect();
    !va.is_empty() && va == vb
}

/// Result of evaluating a client's preconditions against a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionalOutcome {
    /// Respond 304 (Not Modified) from the stored response's metadata.
    NotModified,
    /// Respond 412 (Precondition Failed).
    PreconditionFailed,
    /// No precondition stops the request: serve (or range-serve) the stored response.
    Proceed,
}

/// Evaluates client preconditions against the stored response chosen for the request.
///
/// Follows RFC 9110 §13.2.2's order. If-Match / If-Unmodified-Since are
/// evaluated too (a cache "MAY ignore" them; answering 412 from a response
/// the cache may reuse is equivalent and saves a round trip). Only GET/HEAD
/// with a 2xx stored response are evaluated (§13.2.1: preconditions are
/// ignored when the response "would have been a status code other than a
/// 2xx"; RFC 9111 §4.3.2 speaks of stored 200/206 responses).
pub fn evaluate_client_conditional(
    method: &Method,
    req_headers: &HeaderMap,
    stored_status: StatusCode,
    stored_headers: &HeaderMap,
    now: SystemTime,
) -> ConditionalOutcome {
    if (*method != Method::GET && *method != Method::HEAD) || !stored_status.is_success() {
        return ConditionalOutcome::Proceed;
    }
    // Most requests carry no precondition at all: then there is nothing to compare, and the
    // stored validators need not be parsed.
    if ![
        &IF_MATCH,
        &IF_UNMODIFIED_SINCE,
        &IF_NONE_MATCH,
        &IF_MODIFIED_SINCE,
    ]
    .into_iter()
    .any(|name| req_headers.contains_key(name))
    {
        return ConditionalOutcome::Proceed;
    }
    let stored_etag = response_etag(stored_headers);
    let stored_lm = last_modified(stored_headers, now);

    // Step 1 — If-Match (§13.1.1): strong comparison; "Otherwise, the condition is false."
    if let Some(list) = header_etag_list(req_headers, &IF_MATCH) {
        let ok = match list {
            Some(EtagList::Any) => true,
            Some(EtagList::Tags(tags)) => stored_etag
                .as_ref()
                .is_some_and(|s| tags.iter().any(|t| t.strong_eq(s))),
            None => false,
        };
        if !ok {
            return ConditionalOutcome::PreconditionFailed;
        }
    } else if let Some(ius) =
        single_value(req_headers, &IF_UNMODIFIED_SINCE).and_then(|v| parse_http_date(&v, now))
    {
        // Step 2 — If-Unmodified-Since (§13.1.4); ignored if invalid or no Last-Modified.
        if let Some(lm) = stored_lm {
            if lm > ius {
                return ConditionalOutcome::PreconditionFailed;
            }
        }
    }

    // Step 3 — If-None-Match (§13.1.2): "A recipient MUST use the weak comparison function".
    if let Some(list) = header_etag_list(req_headers, &IF_NONE_MATCH) {
        let matched = match list {
            Some(EtagList::Any) => true,
            Some(EtagList::Tags(tags)) => stored_etag
                .as_ref()
                .is_some_and(|s| tags.iter().any(|t| t.weak_eq(s))),
            None => false,
        };
        return if matched {
            ConditionalOutcome::NotModified
        } else {
            ConditionalOutcome::Proceed
        };
    }

    // Step 4 — If-Modified-Since (§13.1.3), only without If-None-Match. RFC 9111
    // §4.3.2: without Last-Modified "a cache SHOULD use the stored response's Date".
    if let Some(ims) =
        single_value(req_headers, &IF_MODIFIED_SINCE).and_then(|v| parse_http_date(&v, now))
    {
        let modified = stored_lm.or_else(|| date_field(stored_headers, &DATE, now));
        if modified.is_some_and(|m| m <= ims) {
            return ConditionalOutcome::NotModified;
        }
    }
    ConditionalOutcome::Proceed
}

#[cfg(test)]
mod tests;
