//! Freshness lifetime and age arithmetic (RFC 9111 §4.2.1–§4.2.3, §5.1, §5.3).
//!
//! The proxy computes a lifetime once when storing a response (and again after
//! freshening it), and the current age on every hit; `fresh = lifetime > age`.
//! Heuristic lifetimes follow Squid's `refresh_pattern` numbers so existing
//! Squid configurations keep their meaning; URL matching is the caller's job.

use super::cache_control::ResponseDirectives;
use super::fields::{
    date_field, field_lines, parse_delta_seconds, parse_http_date, secs_between, split_list,
    DELTA_SECONDS_CAP,
};
use http::header::{HeaderMap, AGE, DATE, EXPIRES, LAST_MODIFIED};
use http::StatusCode;
use std::time::SystemTime;

/// A freshness lifetime in seconds, and whether it came from a heuristic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Lifetime in seconds (≤ 2147483648).
    pub secs: u64,
    /// True when no explicit expiration was present and §4.2.2 was applied.
    pub heuristic: bool,
}

/// Squid `refresh_pattern` numbers: `lifetime = clamp(percent% × (Date − LM), min, max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heuristic {
    /// Lower bound, and the lifetime used when there is no Last-Modified.
    pub min_secs: u64,
    /// Fraction of the Last-Modified age, in percent.
    pub percent: u32,
    /// Upper bound (wins over `min_secs` if they cross).
    pub max_secs: u64,
    /// Squid's `override-lastmod`: `min_secs` also bounds the Last-Modified factor from below.
    pub override_lastmod: bool,
}

impl Default for Heuristic {
    /// min 0, 10% (RFC 9111 §4.2.2 "A typical setting of this fraction might be 10%"), max 1 day.
    fn default() -> Self {
        Heuristic {
            min_secs: 0,
            percent: 10,
            max_secs: 86_400,
            override_lastmod: false,
        }
    }
}

/// Status codes that are heuristically cacheable (RFC 9110 §15.1).
pub fn is_heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

fn capped(secs: u64) -> u64 {
    secs.min(u64::from(DELTA_SECONDS_CAP))
}

/// The Expires value; `Err(())` when present but invalid or conflicting (= expired).
///
/// §5.3: "A cache recipient MUST interpret invalid date formats, especially
/// the value "0", as representing a time in the past". Several differing
/// Expires lines are treated as stale (§4.2.1 "or the response should be
/// considered stale").
fn expires_value(headers: &HeaderMap, now: SystemTime) -> Option<Result<SystemTime, ()>> {
    let lines = field_lines(headers, &EXPIRES);
    let first = lines.first()?;
    if lines.iter().any(|l| l.trim() != first.trim()) {
        return Some(Err(()));
    }
    Some(parse_http_date(first, now).ok_or(()))
}

/// Computes the freshness lifetime of a response for a shared cache (§4.2.1).
///
/// `response_time` stands in for a missing or invalid Date ("using the time
/// the message was received if it is not present").
pub fn freshness_lifetime(
    status: StatusCode,
    resp_headers: &HeaderMap,
    directives: &ResponseDirectives,
    response_time: SystemTime,
    heuristic: &Heuristic,
) -> Lifetime {
    let explicit = |secs: u64| Lifetime {
        secs: capped(secs),
        heuristic: false,
    };
    // "If the cache is shared and the s-maxage response directive is present, use its value"
    if let Some(d) = directives.s_maxage {
        return explicit(u64::from(d.secs()));
    }
    // "If the max-age response directive is present, use its value"
    if let Some(d) = directives.max_age {
        return explicit(u64::from(d.secs()));
    }
    let date = date_field(resp_headers, &DATE, response_time).unwrap_or(response_time);
    // "If the Expires response header field is present, use its value minus
    // the value of the Date response header field". RFC 9213 §2.2: Expires is
    // ignored when a targeted field supplied the directives.
    if !directives.targeted {
        match expires_value(resp_headers, response_time) {
            Some(Ok(expires)) => return explicit(secs_between(expires, date)),
            Some(Err(())) => return explicit(0),
            None => {}
        }
    }
    // §4.2.2: heuristics only "on responses without explicit freshness whose
    // status codes are defined as heuristically cacheable ... and on responses
    // ... marked as explicitly cacheable (e.g., with a public response directive)".
    if !(is_heuristically_cacheable(status) || directives.public) {
        return explicit(0);
    }
    Lifetime {
        secs: capped(heuristic_lifetime(resp_headers, date, heuristic)),
        heuristic: true,
    }
}

/// Squid's heuristic (`refresh_pattern`): percent of (Date − Last-Modified), at most `max`.
///
/// Without a (valid, not-in-the-future) Last-Modified the lifetime is `min`. With one, `min`
/// is a floor only under `override-lastmod`, as in Squid (a recently modified object is
/// otherwise revalidated soon, whatever `min` says).
pub fn heuristic_lifetime(resp_headers: &HeaderMap, date: SystemTime, h: &Heuristic) -> u64 {
    let lm = date_field(resp_headers, &LAST_MODIFIED, date).filter(|lm| *lm <= date);
    let base = match lm {
        Some(lm) => {
            let factor = secs_between(date, lm).saturating_mul(u64::from(h.percent)) / 100;
            if h.override_lastmod {
                factor.max(h.min_secs)
            } else {
                factor
            }
        }
        None => h.min_secs,
    };
    base.min(h.max_secs)
}

/// Error statuses Squid caches for `negative_ttl` when they carry no explicit freshness.
pub fn is_negatively_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        204 | 305 | 400 | 403 | 404 | 405 | 414 | 500 | 501 | 502 | 503 | 504
    )
}

/// Inputs of the §4.2.3 age calculation, captured when the response arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeInputs {
    /// Parsed Date header of the stored response.
    pub date: Option<SystemTime>,
    /// Parsed Age header of the stored response.
    pub age_header: Option<u64>,
    /// Clock when the request that produced the response was sent.
    pub request_time: SystemTime,
    /// Clock when the response was received.
    pub response_time: SystemTime,
}

impl AgeInputs {
    /// Builds age inputs from response headers and the request/response clocks.
    pub fn from_headers(
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Self {
        AgeInputs {
            date: date_field(headers, &DATE, response_time),
            age_header: parse_age_header(headers),
            request_time,
            response_time,
        }
    }
}

/// §4.2.3 `current_age`, in seconds, capped at 2^31 (§1.2.2 overflow rule).
pub fn current_age(inputs: &AgeInputs, now: SystemTime) -> u64 {
    // apparent_age = max(0, response_time - date_value); a missing Date means
    // the message's receipt time stands in for it (RFC 9110 §6.6.1), i.e. 0.
    let apparent_age = inputs
        .date
        .map_or(0, |date| secs_between(inputs.response_time, date));
    // response_delay = response_time - request_time;
    let response_delay = secs_between(inputs.response_time, inputs.request_time);
    // corrected_age_value = age_value + response_delay;
    let corrected_age_value = inputs
        .age_header
        .unwrap_or(0)
        .saturating_add(response_delay);
    // corrected_initial_age = max(apparent_age, corrected_age_value);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    // resident_time = now - response_time;
    let resident_time = secs_between(now, inputs.response_time);
    // current_age = corrected_initial_age + resident_time;
    capped(corrected_initial_age.saturating_add(resident_time))
}

/// Parses the Age field (§5.1); None when absent or invalid.
///
/// "a cache encountering a message with a list-based Age field value SHOULD
/// use the first member"; "If the field value ... is invalid ..., a cache
/// SHOULD ignore the field."
pub fn parse_age_header(headers: &HeaderMap) -> Option<u64> {
    let lines = field_lines(headers, &AGE);
    let first_line = lines.first()?;
    let first = split_list(first_line).first().copied()?;
    parse_delta_seconds(first).map(u64::from)
}

/// Staleness in seconds (0 while fresh): `current_age − lifetime`.
pub fn staleness(lifetime: &Lifetime, current_age: u64) -> u64 {
    current_age.saturating_sub(lifetime.secs)
}

/// §4.2: `response_is_fresh = (freshness_lifetime > current_age)`.
pub fn is_fresh(lifetime: &Lifetime, current_age: u64) -> bool {
    lifetime.secs > current_age
}

#[cfg(test)]
mod tests;
