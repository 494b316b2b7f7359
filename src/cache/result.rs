//! The one enumeration of what the cache did with a request, and its three renderings.
//!
//! Every cache decision on the request path ends in one [`CacheResult`]. From it come the
//! Squid result code in the access log ([`CacheResult::squid_code`]), the parts of our
//! `Cache-Status` member that say what happened (`hit`, `collapsed`, `detail`, `stored`;
//! [`CacheResult::mark`]) and the metric label ([`CacheResult::kind`]), so the three cannot
//! disagree. Why a request went forward (`fwd`), the next hop's status and the TTL are facts
//! about the exchange, not the outcome, and the caller adds them. Pure: no I/O.

use super::phase::{BypassReason, Phase};
use super::status::CacheStatus;
use super::store::Tier;

/// What the cache did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// A fresh stored response served without going forward; `conditional` if the client
    /// sent validators (Squid logs those `TCP_IMS_HIT`).
    Hit { tier: Tier, conditional: bool },
    /// A cluster member's short-lived copy of a hot key another member owns (`cache::hot`),
    /// served fresh without asking the owner.
    HotCopy,
    /// Stale, served while one background request refreshes it (RFC 5861 §3).
    StaleWhileRevalidate,
    /// Stale, served because the client's `max-stale` allows it (RFC 9111 §5.2.1.2).
    StaleAllowedByClient,
    /// Stale, served because the origin failed and a `stale-if-error` allowed it (RFC 5861 §4).
    StaleIfError,
    /// Stale, served because the next hop could not be reached at all and this cache's
    /// `max_stale` allowed it (RFC 9111 §4.2.4: a disconnected cache).
    StaleOriginUnreachable,
    /// Waited for a concurrent identical miss and served what it stored (collapsed forwarding).
    Collapsed { tier: Tier },
    /// Revalidated: the origin answered 304 and the stored response was served.
    RefreshUnmodified,
    /// Revalidated: the origin sent a new response.
    RefreshModified,
    /// Nothing usable stored; fetched (and stored if allowed).
    Miss,
    /// Fetched, and the response may not or could not be stored; the reason is the
    /// `Cache-Status` detail (`no-store`, `private`, `not-stored`, ...).
    NotStorable { reason: &'static str },
    /// The request was not a cache lookup (a method the cache does not serve, a GET with
    /// content, no cache key).
    Bypass { reason: BypassReason },
    /// `only-if-cached` and nothing usable stored: 504 without going forward.
    NotInCache,
    /// PURGE; `removed` is false when nothing was stored.
    Purge { removed: bool },
}

/// The metric label of a [`CacheResult`]: the kinds `/metrics` and `/status` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    MemoryHit,
    DiskHit,
    HotCopyHit,
    Miss,
    RefreshModified,
    RefreshUnmodified,
    StaleServed,
    Collapsed,
    Bypass,
    Purge,
}

impl ResultKind {
    /// Every kind, in the order of [`index`](Self::index).
    pub const ALL: [ResultKind; 10] = [
        Self::MemoryHit,
        Self::DiskHit,
        Self::HotCopyHit,
        Self::Miss,
        Self::RefreshModified,
        Self::RefreshUnmodified,
        Self::StaleServed,
        Self::Collapsed,
        Self::Bypass,
        Self::Purge,
    ];

    /// The metric label value and `/status` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemoryHit => "memory_hit",
            Self::DiskHit => "disk_hit",
            Self::HotCopyHit => "hot_copy_hit",
            Self::Miss => "miss",
            Self::RefreshModified => "refresh_modified",
            Self::RefreshUnmodified => "refresh_unmodified",
            Self::StaleServed => "stale_served",
            Self::Collapsed => "collapsed",
            Self::Bypass => "bypass",
            Self::Purge => "purge",
        }
    }

    /// Position in [`ALL`](Self::ALL), for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Counted as a hit in the hit ratio: the body came from the cache (as Squid's
    /// `isTcpHit`, which also counts `TCP_REFRESH_UNMODIFIED`).
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            Self::MemoryHit
                | Self::DiskHit
                | Self::HotCopyHit
                | Self::StaleServed
                | Self::Collapsed
                | Self::RefreshUnmodified
        )
    }

    /// Counted as a lookup in the hit ratio: a cacheable request the cache looked up
    /// (hits, misses and modified refreshes; not bypasses or purges).
    pub fn is_lookup(self) -> bool {
        self.is_hit() || matches!(self, Self::Miss | Self::RefreshModified)
    }
}

impl CacheResult {
    /// The Squid result code for the access log.
    pub fn squid_code(self) -> &'static str {
        match self {
            Self::Hit {
                conditional: true, ..
            } => "TCP_IMS_HIT",
            Self::Hit {
                tier: Tier::Memory, ..
            } => "TCP_MEM_HIT",
            Self::Hit {
                tier: Tier::Disk, ..
            } => "TCP_HIT",
            Self::HotCopy => "TCP_MEM_HIT",
            Self::StaleWhileRevalidate | Self::StaleAllowedByClient => "TCP_STALE_HIT",
            Self::StaleIfError | Self::StaleOriginUnreachable => "TCP_REFRESH_FAIL_OLD",
            Self::Collapsed { .. } => "TCP_CF_HIT",
            Self::RefreshUnmodified => "TCP_REFRESH_UNMODIFIED",
            Self::RefreshModified => "TCP_REFRESH_MODIFIED",
            Self::Miss | Self::NotStorable { .. } | Self::Bypass { .. } | Self::NotInCache => {
                "TCP_MISS"
            }
            // Squid 5 logs both outcomes of PURGE so: `TCP_MISS/200` and `TCP_MISS/404`
            // (compared with a real Squid in tests/squid_interop.rs).
            Self::Purge { .. } => "TCP_MISS",
        }
    }

    /// The phase the request ended in (see `cache::phase`): what logs and the inspector name.
    pub fn phase(self) -> Phase {
        match self {
            Self::Hit { .. } | Self::HotCopy => Phase::FreshHit,
            Self::StaleWhileRevalidate | Self::StaleAllowedByClient => Phase::StaleHit,
            Self::StaleIfError
            | Self::StaleOriginUnreachable
            | Self::RefreshUnmodified
            | Self::RefreshModified => Phase::Revalidate,
            Self::Collapsed { .. } => Phase::CollapsedWait,
            Self::Miss | Self::NotInCache => Phase::Miss,
            Self::NotStorable { reason } => Phase::Pass(reason),
            Self::Bypass { reason } => Phase::Bypass(reason),
            Self::Purge { .. } => Phase::Bypass(BypassReason::Method),
        }
    }

    /// The metric label.
    pub fn kind(self) -> ResultKind {
        match self {
            Self::Hit {
                tier: Tier::Memory, ..
            } => ResultKind::MemoryHit,
            Self::Hit {
                tier: Tier::Disk, ..
            } => ResultKind::DiskHit,
            Self::HotCopy => ResultKind::HotCopyHit,
            Self::StaleWhileRevalidate
            | Self::StaleAllowedByClient
            | Self::StaleIfError
            | Self::StaleOriginUnreachable => ResultKind::StaleServed,
            Self::Collapsed { .. } => ResultKind::Collapsed,
            Self::RefreshUnmodified => ResultKind::RefreshUnmodified,
            Self::RefreshModified => ResultKind::RefreshModified,
            Self::Miss | Self::NotInCache => ResultKind::Miss,
            Self::NotStorable { .. } | Self::Bypass { .. } => ResultKind::Bypass,
            Self::Purge { .. } => ResultKind::Purge,
        }
    }

    /// Whether our `Cache-Status` member says `hit` (RFC 9211 §2.1: served without going
    /// forward).
    pub fn is_cache_status_hit(self) -> bool {
        matches!(
            self,
            Self::Hit { .. }
                | Self::HotCopy
                | Self::StaleWhileRevalidate
                | Self::StaleAllowedByClient
        )
    }

    /// The `detail` token this outcome implies, if any.
    pub fn detail(self) -> Option<&'static str> {
        match self {
            Self::Hit { tier, .. } | Self::Collapsed { tier } => Some(tier.as_str()),
            Self::HotCopy => Some("hot-copy"),
            Self::StaleWhileRevalidate => Some("stale-while-revalidate"),
            Self::StaleAllowedByClient => Some("max-stale"),
            Self::StaleIfError => Some("stale-if-error"),
            Self::StaleOriginUnreachable => Some("origin-unreachable"),
            Self::NotStorable { reason } => Some(reason),
            Self::NotInCache => Some("only-if-cached"),
            // Only a GET with content and a key another cluster member owns say why (the
            // method and a missing key speak for themselves in `fwd`).
            Self::Bypass {
                reason: reason @ (BypassReason::RequestContent | BypassReason::Cluster),
            } => Some(reason.as_str()),
            Self::RefreshUnmodified
            | Self::RefreshModified
            | Self::Miss
            | Self::Bypass { .. }
            | Self::Purge { .. } => None,
        }
    }

    /// `status` with the members this outcome decides: `hit`, `collapsed`, `detail`, and no
    /// `stored` where nothing can have been stored. `fwd`, `fwd-status`, `ttl` and `stored`
    /// (on a miss, or on a 304 whose entry was still there to freshen) come from the caller.
    pub fn mark(self, mut status: CacheStatus) -> CacheStatus {
        status.hit = self.is_cache_status_hit();
        if status.hit {
            status.fwd = None;
            status.fwd_status = None;
        }
        if let Some(detail) = self.detail() {
            status.detail = Some(detail);
        }
        match self {
            Self::Collapsed { .. } => status.collapsed = Some(true),
            Self::NotStorable { .. } | Self::NotInCache | Self::Bypass { .. } => {
                status.stored = false
            }
            _ => {}
        }
        status
    }

    /// Every variant, for tests and documentation tables.
    pub fn examples() -> Vec<CacheResult> {
        let mut all = Vec::new();
        for tier in [Tier::Memory, Tier::Disk] {
            for conditional in [false, true] {
                all.push(Self::Hit { tier, conditional });
            }
            all.push(Self::Collapsed { tier });
        }
        all.extend([
            Self::HotCopy,
            Self::StaleWhileRevalidate,
            Self::StaleAllowedByClient,
            Self::StaleIfError,
            Self::StaleOriginUnreachable,
            Self::RefreshUnmodified,
            Self::RefreshModified,
            Self::Miss,
            Self::NotStorable { reason: "no-store" },
            Self::Bypass {
                reason: BypassReason::Method,
            },
            Self::Bypass {
                reason: BypassReason::RequestContent,
            },
            Self::NotInCache,
            Self::Purge { removed: true },
            Self::Purge { removed: false },
        ]);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::status::Fwd;

    /// The log code, the Cache-Status member and the metric label come from the one enum, and
    /// agree with each other for every variant.
    #[test]
    fn three_renderings_agree_for_every_variant() {
        for result in CacheResult::examples() {
            let code = result.squid_code();
            let kind = result.kind();
            let member = result
                .mark(CacheStatus::forward(Fwd::Miss))
                .render("cuttle")
                .unwrap();
            let cs_hit = member.contains(";hit");
            // A Cache-Status hit is a hit in the log and in the metrics.
            if cs_hit {
                assert!(code.contains("HIT"), "{result:?}: {code} vs {member}");
                assert!(kind.is_hit(), "{result:?}: {kind:?} vs {member}");
                assert!(!member.contains("fwd="), "{member}");
            }
            // A log code Squid counts as a hit (`isTcpHit`) is a hit in the metrics.
            assert_eq!(
                code.contains("HIT")
                    || code == "TCP_REFRESH_UNMODIFIED"
                    || code == "TCP_REFRESH_FAIL_OLD",
                kind.is_hit(),
                "{result:?}: {code} vs {kind:?}"
            );
            // Collapsed everywhere or nowhere.
            assert_eq!(
                code == "TCP_CF_HIT",
                member.contains("collapsed"),
                "{result:?}"
            );
            assert_eq!(code == "TCP_CF_HIT", kind == ResultKind::Collapsed);
            // The tier shows in the detail and in the label of a hit.
            if let CacheResult::Hit { tier, .. } = result {
                assert!(member.ends_with(&format!("detail={}", tier.as_str())));
                assert_eq!(kind.as_str(), format!("{}_hit", tier.as_str()));
            }
            if code == "TCP_MEM_HIT" {
                // A cluster member's hot copy is a memory hit counted under its own label.
                assert!(matches!(
                    kind,
                    ResultKind::MemoryHit | ResultKind::HotCopyHit
                ));
            }
            // A 304 revalidation says `stored` only when its caller freshened an entry that
            // was still there; the outcome itself neither adds nor removes it.
            if kind == ResultKind::RefreshUnmodified {
                assert_eq!(code, "TCP_REFRESH_UNMODIFIED");
                let kept = CacheStatus {
                    stored: true,
                    ..CacheStatus::forward(Fwd::Stale)
                };
                assert!(result.mark(kept).stored);
                assert!(!member.contains("stored"));
            }
            if kind == ResultKind::Bypass {
                assert!(!member.contains("stored"));
                assert_eq!(code, "TCP_MISS");
            }
            assert!(ResultKind::ALL.contains(&kind));
        }
    }

    #[test]
    fn kinds_index_their_position_and_ratio_sets_nest() {
        for (i, kind) in ResultKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert!(!kind.is_hit() || kind.is_lookup());
        }
        assert!(!ResultKind::Bypass.is_lookup());
        assert!(!ResultKind::Purge.is_lookup());
        assert!(ResultKind::Miss.is_lookup() && !ResultKind::Miss.is_hit());
    }
}
