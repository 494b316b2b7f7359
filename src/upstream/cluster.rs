//! Cluster mode: several cuttle nodes acting as one cache. Every cache key has one owner, the
//! member CARP ranks first among the live members (the same hash Squid's CARP arrays use, so a
//! Squid child given the members' names and weights picks the same owner), and only the owner
//! stores it; the others forward their requests for it to the owner.
//!
//! This is a small layer over the hierarchy's building blocks: the members are cache peers
//! (`peer::Peers`: one pooled client each, and the one `liveness::Liveness` tracker per member
//! that group servers and peers have too) ranked by `carp::Carp`. What it adds is the notion of *self* (the
//! member this node is, always alive to itself) and an active probe of the other members: a TCP
//! connection to each member's address every `probe_interval` (a member that refuses it stays
//! dead until one succeeds). The request path (`proxy::caching::cluster`) asks [`Cluster::owners`]
//! for the failover order of a key and walks it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::carp::{Carp, CarpPeer};
use super::hierarchy::{ParentSelection, PeerInfo, PeerKind};
use super::peer::{HierarchyConfig, PeerConfig, Peers};
use crate::access::Rules;

/// The hop marker: a request carrying it was forwarded by a member (named in it) and is served
/// by whoever receives it, never routed again; a `PURGE` carrying it is not spread again.
pub const HOP: &str = "cuttle-cluster-hop";

/// The `[cluster]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's member name (`[cluster] self` or `--cluster-self`); `None` only before the
    /// command line is applied (a config without one is refused then).
    pub self_name: Option<String>,
    /// Every member, this node included, in configuration order (which CARP's ranking of
    /// equal weights depends on: add members at the end).
    pub members: Vec<MemberConfig>,
    /// Time between probes of each other member.
    pub probe_interval: Duration,
    /// How long one probe may take.
    pub probe_timeout: Duration,
    /// How long a member whose connection failed is skipped when no probe says otherwise.
    pub dead_time: Duration,
    /// Copies of very hot keys other members own (`[cluster] hot_copy_ttl`); `None`: none.
    pub hot_copy: Option<crate::cache::hot::HotCopyConfig>,
}

/// One `[[cluster.member]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    /// Hashed by CARP: keep it when the address changes.
    pub name: String,
    /// Where the other members reach it (its proxy port).
    pub host: String,
    pub port: u16,
    /// Relative share of the keys.
    pub weight: u32,
    /// Its admin listener (`host:port`), where admin purges are propagated; `None`: its
    /// host with our own admin port.
    pub admin: Option<String>,
}

/// The cluster at run time.
#[derive(Debug)]
pub struct Cluster {
    pub config: ClusterConfig,
    /// Index of this node in `config.members`.
    self_index: Option<usize>,
    carp: Carp,
    /// The members as cache peers: clients, liveness, transition logs, statistics.
    pub peers: Arc<Peers>,
}

impl Cluster {
    /// The cluster for `config`, after `old` when a reload replaces it (unchanged members keep
    /// their connections and liveness, see [`Peers::new_after`]); starts the probes.
    pub fn new(
        config: ClusterConfig,
        upstream: &super::Config,
        old: Option<&Cluster>,
        same_upstream: bool,
    ) -> Arc<Self> {
        let hierarchy = HierarchyConfig {
            peers: config
                .members
                .iter()
                .map(|m| PeerConfig {
                    info: PeerInfo {
                        name: m.name.clone(),
                        kind: PeerKind::Parent,
                        weight: m.weight,
                        no_query: true,
                        default: false,
                    },
                    host: m.host.clone(),
                    port: m.port,
                    proxy_only: true,
                    login: None,
                    tls: None,
                    monitor: None,
                    icp_port: None,
                })
                .collect(),
            selection: ParentSelection::Carp,
            never_direct: Rules::default(),
            always_direct: Rules::default(),
            dead_time: config.dead_time,
        };
        let peers = Peers::new_members(
            hierarchy,
            upstream,
            old.map(|old| &*old.peers),
            same_upstream,
        );
        let carp = Carp::new(&carp_members(&config.members));
        let self_index = config
            .self_name
            .as_ref()
            .and_then(|name| config.members.iter().position(|m| &m.name == name));
        let cluster = Arc::new(Self {
            config,
            self_index,
            carp,
            peers,
        });
        cluster.start_probes();
        cluster
    }

    /// This node's index among the members.
    pub fn self_index(&self) -> Option<usize> {
        self.self_index
    }

    /// This node's member name.
    pub fn self_name(&self) -> &str {
        self.config.self_name.as_deref().unwrap_or("")
    }

    /// Member `i`.
    pub fn member(&self, i: usize) -> Option<&MemberConfig> {
        self.config.members.get(i)
    }

    /// Whether member `i` may be asked now (this node always may).
    pub fn alive(&self, i: usize) -> bool {
        Some(i) == self.self_index || self.peers.alive(i)
    }

    /// The live members for `key` (the cache key, after `store_id`), owner first, then the
    /// failover order: CARP's ranking, so a dead owner's keys spread over the others and come
    /// back to it when it does. Lazy: the owner is found in one pass, and the full ranking is
    /// made only if the walk goes past it (the owner failed).
    pub fn owners<'a>(&'a self, key: &'a str) -> impl Iterator<Item = usize> + 'a {
        let first = self.carp.choose(key, |i| self.alive(i));
        let mut rest: Option<std::vec::IntoIter<usize>> = None;
        first.into_iter().chain(std::iter::from_fn(move || {
            rest.get_or_insert_with(|| {
                self.carp
                    .ranked(key, |i| Some(i) != first && self.alive(i))
                    .into_iter()
            })
            .next()
        }))
    }

    /// The owner of `key` when every member is alive.
    pub fn owner_when_all_up(&self, key: &str) -> Option<usize> {
        self.carp.choose(key, |_| true)
    }

    /// The other members, with their indexes.
    pub fn others(&self) -> impl Iterator<Item = (usize, &MemberConfig)> {
        self.config
            .members
            .iter()
            .enumerate()
            .filter(move |(i, _)| Some(*i) != self.self_index)
    }

    /// One probe task per other member; each holds only a weak reference, so it ends once this
    /// cluster is replaced by a reload and dropped.
    fn start_probes(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (i, _) in self.others() {
            runtime.spawn(probe_loop(Arc::downgrade(self), i));
        }
    }
}

/// The CARP array of `members`: their names and weights, in configuration order.
pub fn carp_members(members: &[MemberConfig]) -> Vec<CarpPeer> {
    members
        .iter()
        .map(|m| CarpPeer {
            name: m.name.clone(),
            weight: m.weight,
        })
        .collect()
}

/// Probes member `i` every `probe_interval` until the cluster is dropped.
async fn probe_loop(cluster: Weak<Cluster>, i: usize) {
    let Some(interval) = cluster.upgrade().map(|c| c.config.probe_interval) else {
        return;
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some((host, port, timeout)) = cluster.upgrade().and_then(|c| {
            c.member(i)
                .map(|m| (m.host.clone(), m.port, c.config.probe_timeout))
        }) else {
            return;
        };
        let outcome = match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("cluster probe: {e}")),
            Err(_) => Err(format!("cluster probe took longer than {timeout:?}")),
        };
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        if let Some(liveness) = cluster.peers.liveness(i) {
            liveness.probed(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, weight: u32) -> MemberConfig {
        MemberConfig {
            name: name.to_owned(),
            host: "127.0.0.1".to_owned(),
            port: 9,
            weight,
            admin: None,
        }
    }

    fn cluster(self_name: &str) -> Arc<Cluster> {
        let config = ClusterConfig {
            self_name: Some(self_name.to_owned()),
            members: vec![member("a", 1), member("b", 1), member("c", 1)],
            probe_interval: Duration::from_secs(3600),
            probe_timeout: Duration::from_secs(1),
            dead_time: Duration::from_secs(60),
            hot_copy: None,
        };
        let upstream = super::super::Config {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            max_response_header_size: 64 * 1024,
            pool_idle_timeout: Duration::from_secs(1),
        };
        Cluster::new(config, &upstream, None, false)
    }

    #[test]
    fn every_member_agrees_on_the_owner_and_it_is_squids_carp_choice() {
        let (a, b, c) = (cluster("a"), cluster("b"), cluster("c"));
        let squid = Carp::new(&carp_members(&a.config.members));
        for n in 0..500 {
            let key = format!("http://origin.example/{n}");
            let owner = a.owners(&key).next().unwrap();
            assert_eq!(b.owners(&key).next(), Some(owner));
            assert_eq!(c.owners(&key).next(), Some(owner));
            assert_eq!(squid.choose(&key, |_| true), Some(owner));
        }
    }

    #[test]
    fn a_dead_member_gives_its_keys_to_the_next_in_hash_order_but_self_never_dies() {
        let a = cluster("a");
        a.peers.liveness(1).unwrap().failed("refused");
        a.peers.liveness(0).unwrap().failed("refused");
        assert!(a.alive(0), "self is always alive to itself");
        for n in 0..300 {
            let key = format!("http://origin.example/{n}");
            let all = a.carp.ranked(&key, |_| true);
            let live: Vec<usize> = a.owners(&key).collect();
            assert!(!live.contains(&1));
            let expected: Vec<usize> = all.into_iter().filter(|&i| i != 1).collect();
            assert_eq!(live, expected, "the failover order is the hash order");
        }
        a.peers.liveness(1).unwrap().answered();
        assert!(a.alive(1));
        assert_eq!(
            a.peers.liveness(1).unwrap().role(),
            crate::upstream::liveness::Role::Member
        );
    }
}
