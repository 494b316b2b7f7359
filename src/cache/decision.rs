//! What a lookup leads to: the cache's answer to "what may be done with this request?".
//!
//! [`Cache::decide`] looks the request up and evaluates what it finds (RFC 9111 §4, §4.2,
//! RFC 5861) into one [`Decision`]; the proxy then acts on it (serves, revalidates or fetches)
//! and the cache never fetches itself (pingora's split between `HttpCache` and the proxy). Each
//! variant carries what its phase needs, and nothing else: a revalidation has its stored
//! response, a miss has none, so no phase can be entered without what it works on.

use std::time::SystemTime;

use http::HeaderMap;

use super::lookup::{Cache, Evaluation, Lookup};
use super::phase::Phase;
use super::policy::{RequestDirectives, Reuse, RevalidateReason};
use super::status::Fwd;
use super::store::Hit;

/// A stored response selected for a request, and its evaluation.
#[derive(Debug)]
pub struct Found {
    pub hit: Hit,
    /// A variant's key (`primary\nsecondary`); `None` when stored under the primary key.
    pub variant: Option<String>,
    pub eval: Evaluation,
}

impl Found {
    /// The key it is stored under, for a request whose primary key is `primary`.
    pub fn key<'a>(&'a self, primary: &'a str) -> &'a str {
        self.variant.as_deref().unwrap_or(primary)
    }
}

/// What to do with a cacheable request.
// Built once per request and matched at once; boxing the hit would cost every hit an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decision {
    /// Serve the stored response; `ttl_secs` of freshness remain.
    FreshHit { found: Found, ttl_secs: i64 },
    /// Serve the stale stored response; `refresh` when stale-while-revalidate allows it (one
    /// background revalidation follows), else the client's `max-stale` accepted it.
    StaleHit { found: Found, refresh: bool },
    /// Validate the stored response with the origin first; `fwd` says why for `Cache-Status`.
    Revalidate { found: Found, fwd: Fwd },
    /// Nothing usable stored; `had_variants` when the URI holds responses for other Vary
    /// values (a plain response then replaces them).
    Miss { fwd: Fwd, had_variants: bool },
}

impl Decision {
    /// The phase this decision enters.
    pub fn phase(&self) -> Phase {
        match self {
            Self::FreshHit { .. } => Phase::FreshHit,
            Self::StaleHit { .. } => Phase::StaleHit,
            Self::Revalidate { .. } => Phase::Revalidate,
            Self::Miss { .. } => Phase::Miss,
        }
    }
}

impl Cache {
    /// Looks up the request for `primary` (with `headers` for Vary) and decides what may be
    /// done with what is stored, at `now`.
    pub async fn decide(
        &self,
        primary: &str,
        headers: &HeaderMap,
        request: &RequestDirectives,
        url: &str,
        now: SystemTime,
    ) -> Decision {
        let (hit, key) = match self.lookup(primary, headers).await {
            Lookup::Found { hit, variant } => (hit, variant),
            Lookup::VaryMiss => {
                tracing::trace!(
                    url,
                    "cache: stored variants, none for this request's Vary fields (RFC 9111 §4.1)"
                );
                return Decision::Miss {
                    fwd: Fwd::VaryMiss,
                    had_variants: true,
                };
            }
            Lookup::UriMiss => {
                return Decision::Miss {
                    fwd: Fwd::UriMiss,
                    had_variants: false,
                }
            }
        };
        let eval = self.evaluate(&hit.head, request, url, now);
        tracing::trace!(
            url,
            tier = hit.tier.as_str(),
            age = eval.age,
            lifetime = eval.lifetime.secs,
            heuristic = eval.lifetime.heuristic,
            reuse = ?eval.reuse,
            "cache: stored response evaluated (RFC 9111 §4.2)"
        );
        let reuse = eval.reuse;
        let found = Found {
            hit,
            variant: key,
            eval,
        };
        match reuse {
            Reuse::Fresh { ttl_secs } => Decision::FreshHit { found, ttl_secs },
            Reuse::StaleWhileRevalidate { .. } => Decision::StaleHit {
                found,
                refresh: true,
            },
            Reuse::StaleAllowedByClient => Decision::StaleHit {
                found,
                refresh: false,
            },
            Reuse::MustRevalidate { reason } => {
                tracing::debug!(
                    url,
                    ?reason,
                    age = found.eval.age,
                    ttl = found.eval.ttl(),
                    "cache: stored response must be revalidated"
                );
                // The client asked for more than the stored response's own freshness: its
                // request, not staleness, sends this one forward (RFC 9211 §2.2).
                let fwd = match reason {
                    RevalidateReason::RequestNoCache
                    | RevalidateReason::RequestMaxAge
                    | RevalidateReason::MinFresh
                        if found.eval.ttl() > 0 =>
                    {
                        Fwd::Request
                    }
                    _ => Fwd::Stale,
                };
                Decision::Revalidate { found, fwd }
            }
        }
    }
}
