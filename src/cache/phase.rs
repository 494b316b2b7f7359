//! The phases of a request's life in the cache, each with one name for logs, `Cache-Status`
//! details and the inspector (pingora's `CachePhase`, without its panics: the data a phase
//! needs travels in [`Decision`](super::decision::Decision)'s variants, so a phase that has
//! nothing to act on cannot be reached).
//!
//! ```text
//! lookup ─┬─ fresh-hit ──────────────────────────────────── serve stored
//!         ├─ stale-hit ──────────────────────────────────── serve stored (+ refresh under swr)
//!         ├─ revalidate ─┬─ 304 ─────────────────────────── serve stored, freshened
//!         │              ├─ 5xx / unreachable ───────────── serve stale if allowed, never store
//!         │              └─ 200 ─────────────────────────── store | pass
//!         ├─ miss ─┬─ collapsed-wait ─ leader stored ────── serve stored
//!         │        └─ fetch ─────────────────────────────── store | pass
//!         └─ bypass (reason) ────────────────────────────── relay, never store
//! ```
//! Pure: no I/O.

use super::policy::Reuse;

/// Where a request stands in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Looking for a stored response.
    Lookup,
    /// A fresh stored response is served.
    FreshHit,
    /// A stale stored response is served (stale-while-revalidate, or the client's max-stale).
    StaleHit,
    /// A stored response is validated with the origin before reuse (RFC 9111 §4.3).
    Revalidate,
    /// Nothing usable stored: fetch.
    Miss,
    /// Waiting for a concurrent identical miss (collapsed forwarding).
    CollapsedWait,
    /// Not a cache lookup at all.
    Bypass(BypassReason),
    /// The fetched response is being stored while relayed.
    Store,
    /// The fetched response is relayed without storing; the reason is a `Cache-Status`
    /// detail (`no-store`, `private`, `proxy-only`, `not-reusable`, ...).
    Pass(&'static str),
}

/// Why a request does not use the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BypassReason {
    /// A method the cache does not serve (RFC 9111 §2: GET and HEAD only).
    Method,
    /// A GET with content: its answer is about the content, not the URI (RFC 9110 §9.3.1).
    RequestContent,
    /// No cache key can be made from the target URI.
    NoKey,
    /// `[[cache.access]]` denies it (Squid `cache deny`).
    CacheDeny,
    /// A protocol upgrade (RFC 9110 §7.8): the connection becomes a byte stream.
    Upgrade,
    /// Another cluster member owns the key: it serves (and stores) it, this node only relays.
    Cluster,
}

impl BypassReason {
    /// The token for logs and the `Cache-Status` detail.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::RequestContent => "request-content",
            Self::NoKey => "no-key",
            Self::CacheDeny => "cache-deny",
            Self::Upgrade => "upgrade",
            Self::Cluster => "cluster",
        }
    }
}

impl Phase {
    /// The phase's name in logs and the inspector.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lookup => "lookup",
            Self::FreshHit => "fresh-hit",
            Self::StaleHit => "stale-hit",
            Self::Revalidate => "revalidate",
            Self::Miss => "miss",
            Self::CollapsedWait => "collapsed-wait",
            Self::Bypass(_) => "bypass",
            Self::Store => "store",
            Self::Pass(_) => "pass",
        }
    }

    /// The reason carried by `bypass` and `pass`, if any.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::Bypass(reason) => Some(reason.as_str()),
            Self::Pass(reason) => Some(reason),
            _ => None,
        }
    }

    /// The phase a stored response's evaluation leads to (RFC 9111 §4, RFC 5861).
    pub fn for_reuse(reuse: &Reuse) -> Self {
        match reuse {
            Reuse::Fresh { .. } => Self::FreshHit,
            Reuse::StaleWhileRevalidate { .. } | Reuse::StaleAllowedByClient => Self::StaleHit,
            Reuse::MustRevalidate { .. } => Self::Revalidate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::RevalidateReason;

    #[test]
    fn names_are_distinct_and_reuse_maps_to_its_phase() {
        let all = [
            Phase::Lookup,
            Phase::FreshHit,
            Phase::StaleHit,
            Phase::Revalidate,
            Phase::Miss,
            Phase::CollapsedWait,
            Phase::Bypass(BypassReason::Method),
            Phase::Store,
            Phase::Pass("no-store"),
        ];
        let names: std::collections::BTreeSet<_> = all.iter().map(|p| p.as_str()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(Phase::Pass("private").reason(), Some("private"));
        assert_eq!(
            Phase::Bypass(BypassReason::RequestContent).reason(),
            Some("request-content")
        );
        assert_eq!(
            Phase::for_reuse(&Reuse::Fresh { ttl_secs: 3 }),
            Phase::FreshHit
        );
        assert_eq!(
            Phase::for_reuse(&Reuse::StaleWhileRevalidate { staleness: 1 }),
            Phase::StaleHit
        );
        assert_eq!(
            Phase::for_reuse(&Reuse::MustRevalidate {
                reason: RevalidateReason::Stale
            }),
            Phase::Revalidate
        );
    }
}
