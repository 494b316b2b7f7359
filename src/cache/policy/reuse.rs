//! Can a stored (key- and Vary-matched) response be reused for this request?
//!
//! RFC 9111 §4 + §4.2.4 decide between fresh reuse, permitted stale reuse
//! (RFC 5861 `stale-while-revalidate`, request `max-stale`) and forwarding a
//! validation request. Serving stale because the origin failed is a separate
//! question (RFC 5861 `stale-if-error`, Squid `max_stale`), answered by
//! [`may_serve_stale_on_error`]. `only-if-cached` is left to the caller.
//!
//! Interpretation: for a shared cache, `s-maxage` carries proxy-revalidate
//! semantics (§5.2.2.10), so it forbids every form of stale serving,
//! including RFC 5861's, exactly like must-revalidate and proxy-revalidate.

use super::cache_control::{MaxStale, RequestDirectives, ResponseDirectives};
use super::freshness::Lifetime;

/// Inputs of [`evaluate_reuse`].
#[derive(Debug, Clone, Copy)]
pub struct ReuseInput<'a> {
    /// Parsed request Cache-Control.
    pub request: &'a RequestDirectives,
    /// Effective directives of the stored response.
    pub response: &'a ResponseDirectives,
    /// Freshness lifetime of the stored response.
    pub lifetime: Lifetime,
    /// Current age of the stored response (§4.2.3).
    pub current_age: u64,
    /// Caller will remove the fields named by a qualified `no-cache` before
    /// serving; when false a qualified `no-cache` acts like the unqualified form.
    pub strip_qualified_no_cache: bool,
}

/// Why a stored response needs validation before reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevalidateReason {
    /// The response is stale and nothing allows serving it stale.
    Stale,
    /// The stored response carries `no-cache`.
    ResponseNoCache,
    /// The request carries `no-cache` (or `Pragma: no-cache`).
    RequestNoCache,
    /// The response is older than the request's `max-age`.
    RequestMaxAge,
    /// The response will not stay fresh for the request's `min-fresh`.
    MinFresh,
}

impl RevalidateReason {
    /// Short kebab-case reason for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RevalidateReason::Stale => "stale",
            RevalidateReason::ResponseNoCache => "response-no-cache",
            RevalidateReason::RequestNoCache => "request-no-cache",
            RevalidateReason::RequestMaxAge => "request-max-age",
            RevalidateReason::MinFresh => "min-fresh",
        }
    }
}

/// The reuse decision for one stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh: serve it; `ttl_secs` is the remaining freshness (lifetime − age).
    Fresh {
        /// Seconds until the response becomes stale.
        ttl_secs: i64,
    },
    /// Serve stale now and revalidate in the background (RFC 5861 §3).
    StaleWhileRevalidate {
        /// Seconds past the freshness lifetime.
        staleness: u64,
    },
    /// Serve stale because the request's `max-stale` accepts it (§5.2.1.2).
    StaleAllowedByClient,
    /// Forward a validation request (§4.3) before reusing.
    MustRevalidate {
        /// Why validation is needed.
        reason: RevalidateReason,
    },
}

fn must(reason: RevalidateReason) -> Reuse {
    Reuse::MustRevalidate { reason }
}

/// Decides whether the stored response may be reused without contacting the origin.
pub fn evaluate_reuse(input: &ReuseInput<'_>) -> Reuse {
    let req = input.request;
    let resp = input.response;
    let age = input.current_age;
    let lifetime = input.lifetime.secs;

    // §4: MUST NOT reuse unless "the stored response does not contain the
    // no-cache directive (Section 5.2.2.4), unless it is successfully validated".
    // The qualified form may be reused if the listed fields are excluded.
    if let Some(nc) = &resp.no_cache {
        if nc.is_unqualified() || !input.strip_qualified_no_cache {
            return must(RevalidateReason::ResponseNoCache);
        }
    }
    // §5.2.1.4: the client "prefers a stored response not be used to satisfy
    // the request without successful validation on the origin server".
    if req.no_cache {
        return must(RevalidateReason::RequestNoCache);
    }
    // §5.2.1.1: "the client prefers a response whose age is less than or equal
    // to the specified number of seconds".
    if req.max_age.is_some_and(|max| age > u64::from(max)) {
        return must(RevalidateReason::RequestMaxAge);
    }
    // §5.2.1.3: "a response whose freshness lifetime is no less than its
    // current age plus the specified time".
    if req
        .min_fresh
        .is_some_and(|mf| lifetime < age.saturating_add(u64::from(mf)))
    {
        return must(RevalidateReason::MinFresh);
    }
    // §4.2: "response_is_fresh = (freshness_lifetime > current_age)".
    if lifetime > age {
        let ttl = lifetime.saturating_sub(age);
        return Reuse::Fresh {
            ttl_secs: i64::try_from(ttl).unwrap_or(i64::MAX),
        };
    }
    let staleness = age.saturating_sub(lifetime);
    // §4.2.4: "A cache MUST NOT generate a stale response if it is prohibited
    // by an explicit in-protocol directive (e.g., by a no-cache response
    // directive, a must-revalidate response directive, or an applicable
    // s-maxage or proxy-revalidate response directive".
    if resp.forbids_stale() {
        return must(RevalidateReason::Stale);
    }
    // RFC 5861 §3: "caches MAY serve the response ... after it becomes stale,
    // up to the indicated number of seconds". A zero window permits nothing.
    if resp
        .stale_while_revalidate
        .is_some_and(|w| staleness < u64::from(w))
    {
        return Reuse::StaleWhileRevalidate { staleness };
    }
    // §5.2.1.2: "the client will accept a response that has exceeded its
    // freshness lifetime by no more than the specified number of seconds".
    match req.max_stale {
        Some(MaxStale::Any) => Reuse::StaleAllowedByClient,
        Some(MaxStale::Secs(n)) if staleness <= u64::from(n) => Reuse::StaleAllowedByClient,
        _ => must(RevalidateReason::Stale),
    }
}

/// How the attempt to refresh a stored response failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginFailure {
    /// No response at all: the next hop could not be reached, reset the connection or timed
    /// out. The cache is "disconnected" in RFC 9111 §4.2.4's sense.
    Unreachable,
    /// The origin answered with a server error (500, 502, 503, 504).
    ServerError,
}

/// May a stale response be served because the origin failed (5xx / unreachable)?
///
/// RFC 5861 §4: stale-if-error (request or response) allows it while the
/// staleness is within the given limit; must-revalidate, proxy-revalidate,
/// s-maxage and no-cache forbid it (RFC 9111 §4.2.4, §5.2.2.2 "if a cache is
/// disconnected, the cache MUST generate an error response rather than reuse
/// the stale response"), as does a request `no-cache`. When neither side
/// states a stale-if-error limit, Squid's `max_stale` (`config_max_stale`)
/// applies, and only when the origin is [`OriginFailure::Unreachable`]: RFC 9111
/// §4.2.4 "A cache MUST NOT generate a stale response unless it is disconnected or
/// doing so is explicitly permitted by the client or origin server". An origin that
/// answers 5xx is connected; only its own (or the client's) stale-if-error lets the
/// cache hide that answer.
pub fn may_serve_stale_on_error(
    req: &RequestDirectives,
    resp: &ResponseDirectives,
    staleness: u64,
    config_max_stale: u64,
    failure: OriginFailure,
) -> bool {
    if resp.forbids_stale() || req.no_cache {
        return false;
    }
    let limits = [req.stale_if_error, resp.stale_if_error];
    if limits.iter().any(Option::is_some) {
        // "when the cached response is more stale than the indicated amount,
        // the cached response SHOULD NOT be used to satisfy the request".
        return limits
            .iter()
            .flatten()
            .any(|limit| staleness <= u64::from(*limit));
    }
    failure == OriginFailure::Unreachable && staleness <= config_max_stale
}

#[cfg(test)]
mod tests;
