//! Peer selection for reverse-proxy upstream groups, with nginx `upstream` semantics.
//!
//! For each request the proxy asks [`Selector::candidates`] for an ordered list of server
//! indices: the first is the choice and the rest are the failover order, so retrying after a
//! connect error or timeout is just moving to the next entry. Selection is pure: health
//! (passive `max_fails`/`fail_timeout` and active checks) and connection counts are tracked
//! elsewhere and passed in as a [`ServerView`] snapshot, and randomness arrives in the
//! [`Request`]. No I/O, clock or global state; the only state is smooth round robin's current
//! weights, hence `&mut self` (the caller keeps the selector behind a mutex).
//!
//! Choices:
//! - weight 0 is treated as 1 (nginx rejects `weight=0` at config load; that check belongs
//!   to the config layer, and the selector must not divide by zero or panic);
//! - `max_conns: Some(0)` means no limit, as nginx's `max_conns=0` does;
//! - a server with no entry in the view slice is unusable (a caller bug should not send
//!   traffic to a server whose health is unknown);
//! - `backup` works with every algorithm (nginx refuses it with `hash`, `ip_hash` and
//!   `random`): backups form a second tier, ordered by the same algorithm among themselves.

mod consistent;
mod ip_hash;
mod least_conn;
mod mix;
mod random_two;
mod round_robin;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use consistent::Ring;
use mix::SplitMix64;

/// One configured server of an upstream group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Relative share of requests (0 is read as 1).
    pub weight: u32,
    /// Only used when every primary server is unusable.
    pub backup: bool,
    /// Administratively removed; kept in the group so hashing stays stable for the others.
    pub down: bool,
    /// Most simultaneous connections; a server at the limit is skipped (`Some(0)` = no limit).
    pub max_conns: Option<u32>,
    /// Stable identity such as `"10.0.0.1:8080"`; ring positions are derived from it.
    pub name: String,
}

impl ServerSpec {
    /// A primary server that is up, has no connection limit, and has the given weight.
    pub fn new(name: impl Into<String>, weight: u32) -> Self {
        ServerSpec {
            weight,
            backup: false,
            down: false,
            max_conns: None,
            name: name.into(),
        }
    }
}

/// What the health tracker and connection counters say about one server right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerView {
    /// False while passive or active health checks consider the server failed.
    pub healthy: bool,
    /// Connections (or in-flight requests) currently open to the server.
    pub active: u32,
}

impl ServerView {
    /// A healthy server with no active connections.
    pub fn idle() -> Self {
        ServerView {
            healthy: true,
            active: 0,
        }
    }
}

/// The balancing method of a group (nginx's `upstream` directives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Smooth weighted round robin (nginx's default).
    RoundRobin,
    /// Fewest active connections per weight (`least_conn`).
    LeastConn,
    /// Client affinity by the client address (`ip_hash`).
    IpHash,
    /// Consistent hashing of a request key (`hash $key consistent`).
    Hash,
    /// Power of two choices, the less loaded wins (`random two least_conn`).
    RandomTwo,
}

impl Algorithm {
    /// Every algorithm, in declaration order.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::RoundRobin,
        Algorithm::LeastConn,
        Algorithm::IpHash,
        Algorithm::Hash,
        Algorithm::RandomTwo,
    ];

    /// The config and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::LeastConn => "least_conn",
            Algorithm::IpHash => "ip_hash",
            Algorithm::Hash => "hash",
            Algorithm::RandomTwo => "random_two",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A balancing method name that is not one of [`Algorithm::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAlgorithm(pub String);

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown balancing algorithm {:?} (expected round_robin, least_conn, ip_hash, hash or random_two)",
            self.0
        )
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// The parts of a request that selection may look at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Client address, for `ip_hash`.
    pub client_ip: IpAddr,
    /// Key for `hash`, e.g. the request URI.
    pub hash_key: &'a str,
    /// Fresh randomness from the caller, for `random_two`.
    pub random: u64,
}

/// The per-request view, indexed like the specs.
struct Snapshot {
    /// Whether each server may be offered at all.
    usable: Vec<bool>,
    /// Each server's active connections (0 when the view has no entry).
    active: Vec<u32>,
}

/// Primary servers, then backups.
#[derive(Debug)]
struct Tier {
    /// Server indices in this tier, ascending, usable or not (hashing maps over all of them).
    members: Vec<usize>,
    /// Consistent-hash ring over `members`; empty unless the algorithm is `hash`.
    ring: Ring,
}

/// Chooses servers of one upstream group; see the module doc.
#[derive(Debug)]
pub struct Selector {
    /// The balancing method, fixed for the group's lifetime.
    algorithm: Algorithm,
    /// The configured servers; indices into this are what `candidates` returns.
    specs: Vec<ServerSpec>,
    /// Weights with 0 read as 1, widened so sums and products cannot overflow.
    weights: Vec<u64>,
    /// Smooth weighted round robin's `current_weight` per server (round robin, and
    /// least_conn's tie-break).
    current: Vec<i64>,
    /// `[primaries, backups]`.
    tiers: [Tier; 2],
}

impl Selector {
    /// Builds the selector (and, for `hash`, the ring) for a group.
    pub fn new(algorithm: Algorithm, servers: Vec<ServerSpec>) -> Self {
        let weights: Vec<u64> = servers.iter().map(|s| u64::from(s.weight.max(1))).collect();
        let tier = |backup: bool| {
            let members: Vec<usize> = servers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.backup == backup)
                .map(|(i, _)| i)
                .collect();
            let ring = if algorithm == Algorithm::Hash {
                Ring::new(&servers, &weights, &members)
            } else {
                Ring::default()
            };
            Tier { members, ring }
        };
        let tiers = [tier(false), tier(true)];
        Selector {
            algorithm,
            current: vec![0; servers.len()],
            specs: servers,
            weights,
            tiers,
        }
    }

    /// Ordered candidates: usable primaries in algorithm order, then usable backups (ordered by
    /// the same algorithm among backups). Never a server that is `down`, unhealthy, at
    /// `max_conns`, or missing from `view`. Empty when none is usable.
    ///
    /// Only the tier that supplies the choice advances round-robin state; the backup tail of
    /// a list whose choice is a primary is a preview and leaves backup state untouched.
    pub fn candidates(&mut self, req: &Request<'_>, view: &[ServerView]) -> Vec<usize> {
        let snap = Snapshot {
            usable: (0..self.specs.len())
                .map(|i| self.is_usable(i, view))
                .collect(),
            active: (0..self.specs.len())
                .map(|i| view.get(i).map_or(0, |v| v.active))
                .collect(),
        };
        let mut rng = SplitMix64::new(req.random);
        let mut out = Vec::with_capacity(self.specs.len());
        for t in 0..self.tiers.len() {
            let commit = out.is_empty();
            self.order_tier(t, req, &snap, &mut rng, commit, &mut out);
        }
        out
    }

    /// The balancing method.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The configured servers, in index order.
    pub fn servers(&self) -> &[ServerSpec] {
        &self.specs
    }

    /// Down, unhealthy, at its connection limit, or without a view entry → unusable.
    fn is_usable(&self, i: usize, view: &[ServerView]) -> bool {
        let (Some(spec), Some(v)) = (self.specs.get(i), view.get(i)) else {
            return false;
        };
        let below_limit = match spec.max_conns {
            None | Some(0) => true,
            Some(limit) => v.active < limit,
        };
        !spec.down && v.healthy && below_limit
    }

    /// Appends tier `t`'s usable servers to `out` in algorithm order. `commit` is true when
    /// this tier supplies the choice, so stateful algorithms may advance their state.
    fn order_tier(
        &mut self,
        t: usize,
        req: &Request<'_>,
        snap: &Snapshot,
        rng: &mut SplitMix64,
        commit: bool,
        out: &mut Vec<usize>,
    ) {
        let Some(tier) = self.tiers.get(t) else {
            return;
        };
        let live: Vec<usize> = tier
            .members
            .iter()
            .copied()
            .filter(|&i| snap.usable.get(i).copied().unwrap_or(false))
            .collect();
        if live.is_empty() {
            return;
        }
        match self.algorithm {
            Algorithm::RoundRobin => {
                round_robin::order(&mut self.current, &self.weights, &live, commit, out);
            }
            Algorithm::LeastConn => {
                let input = least_conn::Input {
                    weights: &self.weights,
                    active: &snap.active,
                    live: &live,
                };
                least_conn::order(&mut self.current, &input, commit, out);
            }
            Algorithm::IpHash => {
                ip_hash::order(
                    req.client_ip,
                    &tier.members,
                    &self.weights,
                    &snap.usable,
                    live.len(),
                    out,
                );
            }
            Algorithm::Hash => tier.ring.order(req.hash_key, &snap.usable, live.len(), out),
            Algorithm::RandomTwo => {
                random_two::order(&self.weights, &snap.active, &live, rng, out);
            }
        }
    }
}

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;
