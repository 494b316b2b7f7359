//! Cache hierarchy routing (Squid `cache_peer`, `never_direct`, `always_direct`): for one
//! request, the ordered list of next hops to try, with the hierarchy code the access log shows.
//!
//! Squid's order, simplified to what an HTTP-only hierarchy can do: with `always_direct`, go
//! direct only. Otherwise ask the siblings that may be queried (they are asked with
//! `only-if-cached` and never become a path to the origin), then the live parents in the
//! configured selection order, then direct, unless `never_direct`, in which case the `default`
//! parent is the last resort. Pure: the caller supplies liveness and the request key.

use std::net::IpAddr;

use super::carp::{Carp, CarpPeer};

/// Squid's hierarchy codes (the `%Sh` of its access log), spelt exactly as Squid spells them.
pub mod code {
    /// Nothing was forwarded: a hit, a denial, an error answered here, an internal object.
    pub const HIER_NONE: &str = "HIER_NONE";
    /// Sent straight to the origin.
    pub const HIER_DIRECT: &str = "HIER_DIRECT";
    /// A sibling answered the `only-if-cached` request.
    pub const SIBLING_HIT: &str = "SIBLING_HIT";
    /// A parent answered our ICP query with a hit (`proxy::icp_select`).
    pub const PARENT_HIT: &str = "PARENT_HIT";
    /// The first live parent in configuration order.
    pub const FIRSTUP_PARENT: &str = "FIRSTUP_PARENT";
    /// Round robin, weighted or not.
    pub const ROUNDROBIN_PARENT: &str = "ROUNDROBIN_PARENT";
    /// The CARP hash picked the parent.
    pub const CARP: &str = "CARP";
    /// The client address picked the parent.
    pub const SOURCEHASH_PARENT: &str = "SOURCEHASH_PARENT";
    /// The `default` parent as the last resort.
    pub const DEFAULT_PARENT: &str = "DEFAULT_PARENT";
    /// Another live parent, tried after the chosen one failed (Squid's `peerGetAllParents`).
    pub const ANY_OLD_PARENT: &str = "ANY_OLD_PARENT";
}

/// Parent or sibling (Squid `cache_peer ... parent|sibling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    Parent,
    Sibling,
}

/// How a parent is chosen among several (Squid's `cache_peer` selection options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentSelection {
    /// The first live parent in configuration order.
    FirstUp,
    /// Live parents in turn.
    RoundRobin,
    /// Live parents in turn, in proportion to weight.
    WeightedRoundRobin,
    /// CARP over the parents' names and weights.
    Carp,
    /// The client address picks the parent.
    SourceHash,
}

impl ParentSelection {
    /// The name `hierarchy.parent_selection` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstUp => "first_up",
            Self::RoundRobin => "round_robin",
            Self::WeightedRoundRobin => "weighted_round_robin",
            Self::Carp => "carp",
            Self::SourceHash => "sourcehash",
        }
    }

    /// The Squid hierarchy code for a parent chosen this way (Squid's `peerGetSomeParent`:
    /// weighted round robin is logged as `ROUNDROBIN_PARENT` too).
    pub fn code(self) -> &'static str {
        match self {
            Self::FirstUp => code::FIRSTUP_PARENT,
            Self::RoundRobin | Self::WeightedRoundRobin => code::ROUNDROBIN_PARENT,
            Self::Carp => code::CARP,
            Self::SourceHash => code::SOURCEHASH_PARENT,
        }
    }
}

/// What the router needs to know about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub name: String,
    pub kind: PeerKind,
    pub weight: u32,
    /// Siblings with `no_query` are never asked.
    pub no_query: bool,
    /// The parent of last resort under `never_direct`.
    pub default: bool,
}

/// One next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Ask sibling `i` with only-if-cached; a miss there moves on.
    Sibling(usize),
    /// Forward to parent `i`; `code` is its hierarchy code.
    Parent { index: usize, code: &'static str },
    /// Go to the origin.
    Direct,
}

/// The router for a set of peers.
#[derive(Debug, Clone)]
pub struct Router {
    peers: Vec<PeerInfo>,
    selection: ParentSelection,
    carp: Carp,
}

/// Per-request inputs.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// CARP key: the effective request URI.
    pub url: &'a str,
    pub client: IpAddr,
    /// Advances round-robin selection (a per-request counter from the caller).
    pub turn: u64,
    /// `always_direct` matched this request.
    pub always_direct: bool,
    /// `never_direct` matched this request.
    pub never_direct: bool,
}

impl Router {
    /// A router over `peers` choosing parents by `selection`.
    pub fn new(peers: Vec<PeerInfo>, selection: ParentSelection) -> Self {
        let carp_peers: Vec<CarpPeer> = peers
            .iter()
            .map(|p| CarpPeer {
                name: p.name.clone(),
                weight: if p.kind == PeerKind::Parent {
                    p.weight
                } else {
                    0
                },
            })
            .collect();
        Self {
            carp: Carp::new(&carp_peers),
            peers,
            selection,
        }
    }

    /// The peers, in configuration order.
    pub fn peers(&self) -> &[PeerInfo] {
        &self.peers
    }

    /// Next hops for a request, best first; empty means no route (503 naming the hierarchy).
    pub fn hops(&self, route: &Route<'_>, alive: impl Fn(usize) -> bool) -> Vec<Hop> {
        if route.always_direct {
            return vec![Hop::Direct];
        }
        let mut hops: Vec<Hop> = self
            .peers
            .iter()
            .enumerate()
            .filter(|(i, p)| p.kind == PeerKind::Sibling && !p.no_query && alive(*i))
            .map(|(i, _)| Hop::Sibling(i))
            .collect();
        // The chosen parent carries the selection's code; the failover ones Squid's
        // `ANY_OLD_PARENT`.
        hops.extend(
            self.parents_in_order(route, &alive)
                .into_iter()
                .enumerate()
                .map(|(n, index)| Hop::Parent {
                    index,
                    code: if n == 0 {
                        self.selection.code()
                    } else {
                        code::ANY_OLD_PARENT
                    },
                }),
        );
        if !route.never_direct {
            hops.push(Hop::Direct);
        } else if let Some(index) = self
            .peers
            .iter()
            .position(|p| p.default && p.kind == PeerKind::Parent)
        {
            // Squid's `default` parent is used "as a last-resort" even when it looks dead.
            if !hops
                .iter()
                .any(|h| matches!(h, Hop::Parent { index: i, .. } if *i == index))
            {
                hops.push(Hop::Parent {
                    index,
                    code: code::DEFAULT_PARENT,
                });
            }
        }
        hops
    }

    /// Live parents, chosen one first, then the others as failover.
    fn parents_in_order(&self, route: &Route<'_>, alive: &impl Fn(usize) -> bool) -> Vec<usize> {
        let live: Vec<usize> = self
            .peers
            .iter()
            .enumerate()
            .filter(|(i, p)| p.kind == PeerKind::Parent && alive(*i))
            .map(|(i, _)| i)
            .collect();
        if live.is_empty() {
            return live;
        }
        let rotate = |start: usize| -> Vec<usize> {
            live.iter()
                .cycle()
                .skip(start % live.len())
                .take(live.len())
                .copied()
                .collect()
        };
        match self.selection {
            ParentSelection::FirstUp => live,
            ParentSelection::RoundRobin => rotate(usize::try_from(route.turn).unwrap_or(0)),
            ParentSelection::WeightedRoundRobin => {
                // The turn's position on the cumulative weights picks the first parent.
                let total: u64 = live
                    .iter()
                    .map(|&i| u64::from(self.peers[i].weight.max(1)))
                    .sum();
                let mut point = route.turn % total.max(1);
                let mut first = 0;
                for (position, &i) in live.iter().enumerate() {
                    let w = u64::from(self.peers[i].weight.max(1));
                    if point < w {
                        first = position;
                        break;
                    }
                    point -= w;
                }
                rotate(first)
            }
            ParentSelection::Carp => self.carp.ranked(route.url, |i| live.contains(&i)),
            ParentSelection::SourceHash => {
                let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
                let octets: Vec<u8> = match route.client.to_canonical() {
                    IpAddr::V4(v4) => v4.octets().to_vec(),
                    IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                for b in octets {
                    hash ^= u64::from(b);
                    hash = hash.wrapping_mul(0x0100_0000_01b3);
                }
                rotate(usize::try_from(hash % live.len() as u64).unwrap_or(0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, kind: PeerKind, weight: u32) -> PeerInfo {
        PeerInfo {
            name: name.to_owned(),
            kind,
            weight,
            no_query: false,
            default: false,
        }
    }

    fn route(never_direct: bool, always_direct: bool) -> Route<'static> {
        Route {
            url: "http://example.com/",
            client: "192.0.2.7".parse().unwrap(),
            turn: 0,
            always_direct,
            never_direct,
        }
    }

    #[test]
    fn siblings_then_parents_then_direct() {
        let router = Router::new(
            vec![
                peer("p1", PeerKind::Parent, 1),
                peer("s1", PeerKind::Sibling, 1),
                peer("p2", PeerKind::Parent, 1),
            ],
            ParentSelection::FirstUp,
        );
        let hops = router.hops(&route(false, false), |_| true);
        assert_eq!(
            hops,
            vec![
                Hop::Sibling(1),
                Hop::Parent {
                    index: 0,
                    code: "FIRSTUP_PARENT"
                },
                Hop::Parent {
                    index: 2,
                    code: "ANY_OLD_PARENT"
                },
                Hop::Direct
            ]
        );
    }

    #[test]
    fn never_direct_drops_direct_and_dead_parents_are_skipped() {
        let router = Router::new(
            vec![
                peer("p1", PeerKind::Parent, 1),
                peer("p2", PeerKind::Parent, 1),
            ],
            ParentSelection::FirstUp,
        );
        let hops = router.hops(&route(true, false), |i| i != 0);
        assert_eq!(
            hops,
            vec![Hop::Parent {
                index: 1,
                code: "FIRSTUP_PARENT"
            }]
        );
        assert!(
            router.hops(&route(true, false), |_| false).is_empty(),
            "no route: 503"
        );
        assert_eq!(
            router.hops(&route(false, false), |_| false),
            vec![Hop::Direct]
        );
    }

    #[test]
    fn always_direct_bypasses_the_hierarchy() {
        let router = Router::new(
            vec![peer("p1", PeerKind::Parent, 1)],
            ParentSelection::FirstUp,
        );
        assert_eq!(router.hops(&route(true, true), |_| true), vec![Hop::Direct]);
    }

    #[test]
    fn the_default_parent_is_the_last_resort_under_never_direct() {
        let mut fallback = peer("fallback", PeerKind::Parent, 1);
        fallback.default = true;
        let router = Router::new(
            vec![peer("p1", PeerKind::Parent, 1), fallback],
            ParentSelection::FirstUp,
        );
        let hops = router.hops(&route(true, false), |i| i == 0);
        assert_eq!(
            hops,
            vec![
                Hop::Parent {
                    index: 0,
                    code: "FIRSTUP_PARENT"
                },
                Hop::Parent {
                    index: 1,
                    code: "DEFAULT_PARENT"
                }
            ]
        );
    }

    #[test]
    fn no_query_siblings_are_not_asked() {
        let mut quiet = peer("s1", PeerKind::Sibling, 1);
        quiet.no_query = true;
        let router = Router::new(vec![quiet], ParentSelection::FirstUp);
        assert_eq!(
            router.hops(&route(false, false), |_| true),
            vec![Hop::Direct]
        );
    }

    #[test]
    fn carp_orders_parents_by_the_carp_ranking() {
        let router = Router::new(
            vec![
                peer("parent1.example.net", PeerKind::Parent, 1),
                peer("parent2.example.net", PeerKind::Parent, 2),
                peer("parent3.example.net", PeerKind::Parent, 3),
            ],
            ParentSelection::Carp,
        );
        let mut r = route(true, false);
        r.url = "http://cdn.example.org/img/a.png?x=1";
        let first = router.hops(&r, |_| true)[0];
        assert_eq!(
            first,
            Hop::Parent {
                index: 1,
                code: "CARP"
            },
            "as Squid's CARP picks"
        );
    }

    #[test]
    fn round_robin_and_weighted_round_robin_rotate() {
        let peers = vec![
            peer("a", PeerKind::Parent, 1),
            peer("b", PeerKind::Parent, 3),
        ];
        let rr = Router::new(peers.clone(), ParentSelection::RoundRobin);
        let wrr = Router::new(peers, ParentSelection::WeightedRoundRobin);
        let mut counts = [[0usize; 2]; 2];
        for turn in 0..400 {
            let mut r = route(true, false);
            r.turn = turn;
            for (k, router) in [&rr, &wrr].into_iter().enumerate() {
                if let Some(Hop::Parent { index, .. }) = router.hops(&r, |_| true).first() {
                    counts[k][*index] += 1;
                }
            }
        }
        assert_eq!(counts[0], [200, 200]);
        assert_eq!(counts[1], [100, 300]);
    }

    #[test]
    fn codes_are_squids() {
        let peers = vec![
            peer("a", PeerKind::Parent, 1),
            peer("b", PeerKind::Parent, 1),
        ];
        for (selection, expected) in [
            (ParentSelection::FirstUp, "FIRSTUP_PARENT"),
            (ParentSelection::RoundRobin, "ROUNDROBIN_PARENT"),
            (ParentSelection::WeightedRoundRobin, "ROUNDROBIN_PARENT"),
            (ParentSelection::Carp, "CARP"),
            (ParentSelection::SourceHash, "SOURCEHASH_PARENT"),
        ] {
            let router = Router::new(peers.clone(), selection);
            let codes: Vec<&str> = router
                .hops(&route(true, false), |_| true)
                .into_iter()
                .filter_map(|h| match h {
                    Hop::Parent { code, .. } => Some(code),
                    _ => None,
                })
                .collect();
            assert_eq!(codes, vec![expected, "ANY_OLD_PARENT"], "{selection:?}");
        }
    }

    #[test]
    fn sourcehash_sticks_a_client_to_a_parent() {
        let router = Router::new(
            vec![
                peer("a", PeerKind::Parent, 1),
                peer("b", PeerKind::Parent, 1),
                peer("c", PeerKind::Parent, 1),
            ],
            ParentSelection::SourceHash,
        );
        let r = route(true, false);
        let first = router.hops(&r, |_| true)[0];
        for turn in 0..20 {
            let mut again = r;
            again.turn = turn;
            assert_eq!(router.hops(&again, |_| true)[0], first);
        }
    }
}
