//! Upstream groups at run time: which server to try, in what order, and how each is doing.
//!
//! A group wraps the pure [`Selector`](super::select::Selector) with the live state it needs:
//! per-server liveness (`liveness::Liveness` with nginx's knobs: `max_fails` within
//! `fail_timeout` take a server out for `fail_timeout`; the active check's verdict, see
//! `health`), and in-flight request counts (for `least_conn` and `max_conns`). Names in server addresses are resolved by the connector on each
//! new connection, so DNS changes are picked up as pooled connections turn over.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::liveness::{Liveness, Policy, Role};
use super::select::{Algorithm, Request, Selector, ServerSpec, ServerView};

/// One server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `host:port`.
    pub address: String,
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub backup: bool,
    /// 0 = unlimited.
    pub max_conns: u32,
    pub down: bool,
}

/// Which failures send an idempotent request to the next server (nginx `proxy_next_upstream`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NextUpstream {
    pub error: bool,
    pub timeout: bool,
    pub statuses: Vec<u16>,
}

/// Active health check settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub expect: (u16, u16),
}

/// One group's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    pub name: String,
    pub algorithm: Algorithm,
    pub servers: Vec<ServerConfig>,
    pub retries: u32,
    pub next_upstream: NextUpstream,
    pub health_check: Option<HealthCheckConfig>,
    /// HTTPS to the servers, with these trust settings; `None` is plain HTTP.
    pub tls: Option<std::sync::Arc<super::tls::ClientTls>>,
}

/// Live state of one server.
#[derive(Debug)]
pub struct ServerState {
    pub config: ServerConfig,
    /// `config.address` parsed once, for building request URIs; `None` if it does not parse
    /// (config loading rejects such addresses, so only a config built in code can get one).
    pub authority: Option<http::uri::Authority>,
    /// Requests in flight to this server.
    active: AtomicU32,
    /// Passive failures (`max_fails` within `fail_timeout`) and the active check's verdict.
    pub liveness: Liveness,
    /// Attempts, failures and response times (for metrics).
    pub stats: super::stats::ServerStats,
}

/// An upstream group.
#[derive(Debug)]
pub struct Group {
    pub config: GroupConfig,
    pub servers: Vec<ServerState>,
    selector: Mutex<Selector>,
}

/// The servers [`Group::candidates`] offers, best first.
#[derive(Debug)]
pub enum Candidates {
    /// A group of one server: it, or none when it is unusable.
    Lone(Option<usize>),
    /// The selector's order.
    List(std::vec::IntoIter<usize>),
}

impl Iterator for Candidates {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Candidates::Lone(one) => one.take(),
            Candidates::List(list) => list.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match self {
            Candidates::Lone(one) => usize::from(one.is_some()),
            Candidates::List(list) => list.len(),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Candidates {}

/// A request counted against a server until dropped.
#[derive(Debug)]
pub struct ActiveGuard {
    group: Arc<Group>,
    index: usize,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Some(server) = self.group.servers.get(self.index) {
            server.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Group {
    /// A group with every server presumed healthy.
    pub fn new(config: GroupConfig) -> Arc<Self> {
        let specs = config
            .servers
            .iter()
            .map(|s| ServerSpec {
                weight: s.weight.max(1),
                backup: s.backup,
                down: s.down,
                max_conns: (s.max_conns > 0).then_some(s.max_conns),
                name: s.address.clone(),
            })
            .collect();
        let servers = config
            .servers
            .iter()
            .map(|s| ServerState {
                authority: s.address.parse().ok(),
                config: s.clone(),
                active: AtomicU32::new(0),
                liveness: Liveness::new(
                    Role::Server,
                    format!("{}/{}", config.name, s.address),
                    Policy::nginx(s.max_fails, s.fail_timeout),
                ),
                stats: super::stats::ServerStats::default(),
            })
            .collect();
        Arc::new(Self {
            selector: Mutex::new(Selector::new(config.algorithm, specs)),
            config,
            servers,
        })
    }

    /// The group for `config` after a reload replaced `old`: each server configured exactly
    /// as before keeps its passive-health state (failures, ban) and, when the health check is
    /// unchanged, its active-check verdict. In-flight counts start at zero: requests still
    /// running were counted on `old`.
    pub fn new_after(config: GroupConfig, old: &Group) -> Arc<Self> {
        let same_check = config.health_check == old.config.health_check;
        let mut group = Self::new(config);
        if let Some(fresh) = Arc::get_mut(&mut group) {
            for server in &mut fresh.servers {
                let Some(before) = old.servers.iter().find(|s| s.config == server.config) else {
                    continue;
                };
                server.liveness.carry_from(&before.liveness, same_check);
            }
        }
        group
    }

    /// Whether server `i` may get requests now (passive ban over, active check passing).
    pub fn is_healthy(&self, i: usize) -> bool {
        self.servers.get(i).is_some_and(|s| s.liveness.is_up())
    }

    /// True if [`candidates`](Self::candidates) uses its `hash_key` (so callers build it only then).
    pub fn needs_hash_key(&self) -> bool {
        self.config.algorithm == Algorithm::Hash
    }

    /// Servers to try for a request, best first.
    ///
    /// A group of one server (`--origin`, or one `server` line: the usual reverse proxy) has
    /// one answer whatever the algorithm, that server when it is usable, and asking the
    /// selector would change none of its state (a smooth round-robin pick among one server
    /// adds its weight and takes it back), so it is answered here without the selector's
    /// lock or any allocation.
    pub fn candidates(&self, client_ip: IpAddr, hash_key: &str, random: u64) -> Candidates {
        if let [server] = self.servers.as_slice() {
            let usable = !server.config.down
                && (server.config.max_conns == 0
                    || server.active.load(Ordering::Relaxed) < server.config.max_conns)
                && server.liveness.is_up();
            return Candidates::Lone(usable.then_some(0));
        }
        let view: Vec<ServerView> = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| ServerView {
                healthy: self.is_healthy(i),
                active: s.active.load(Ordering::Relaxed),
            })
            .collect();
        let request = Request {
            client_ip,
            hash_key,
            random,
        };
        let list = match self.selector.lock() {
            Ok(mut selector) => selector.candidates(&request, &view),
            Err(_) => Vec::new(),
        };
        Candidates::List(list.into_iter())
    }

    /// Counts a request to server `i` until the guard is dropped.
    pub fn begin(self: &Arc<Self>, i: usize) -> ActiveGuard {
        if let Some(server) = self.servers.get(i) {
            server.active.fetch_add(1, Ordering::Relaxed);
        }
        ActiveGuard {
            group: Arc::clone(self),
            index: i,
        }
    }

    /// Records a failed attempt on server `i` (nginx: counts towards `max_fails`).
    pub fn failed(&self, i: usize, why: &str) {
        if let Some(server) = self.servers.get(i) {
            server.liveness.failed(why);
        }
    }

    /// Records a successful response from server `i`.
    pub fn succeeded(&self, i: usize) {
        if let Some(server) = self.servers.get(i) {
            server.liveness.answered();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(max_fails: u32) -> Arc<Group> {
        let server = |address: &str| ServerConfig {
            address: address.to_owned(),
            weight: 1,
            max_fails,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            max_conns: 0,
            down: false,
        };
        Group::new(GroupConfig {
            name: "g".into(),
            algorithm: Algorithm::RoundRobin,
            servers: vec![server("a:1"), server("b:1")],
            retries: 1,
            next_upstream: NextUpstream::default(),
            health_check: None,
            tls: None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn max_fails_within_fail_timeout_takes_a_server_out_for_fail_timeout() {
        let g = group(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        g.failed(0, "refused");
        assert!(g.is_healthy(0), "one failure is below max_fails");
        g.failed(0, "refused");
        assert!(!g.is_healthy(0));
        assert_eq!(g.candidates(ip, "", 0).collect::<Vec<_>>(), vec![1]);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(g.is_healthy(0), "back after fail_timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_spread_beyond_the_window_do_not_add_up() {
        let g = group(2);
        g.failed(0, "refused");
        tokio::time::advance(Duration::from_secs(11)).await;
        g.failed(0, "refused");
        assert!(g.is_healthy(0));
    }

    /// A one-server group answers without its selector; the answer must be the selector's,
    /// for every algorithm, and leave the selector as asking it would have.
    #[tokio::test(start_paused = true)]
    async fn a_lone_server_is_offered_as_the_selector_would() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for algorithm in Algorithm::ALL {
            for (max_conns, backup) in [(0, false), (1, false), (0, true)] {
                let config = GroupConfig {
                    name: "g".into(),
                    algorithm,
                    servers: vec![ServerConfig {
                        address: "a:1".into(),
                        weight: 3,
                        max_fails: 1,
                        fail_timeout: Duration::from_secs(10),
                        backup,
                        max_conns,
                        down: false,
                    }],
                    retries: 1,
                    next_upstream: NextUpstream::default(),
                    health_check: None,
                    tls: None,
                };
                let g = Group::new(config);
                let selector_says = |g: &Group| {
                    let view = [ServerView {
                        healthy: g.is_healthy(0),
                        active: g.servers[0].active.load(Ordering::Relaxed),
                    }];
                    let request = Request {
                        client_ip: ip,
                        hash_key: "/k",
                        random: 7,
                    };
                    g.selector.lock().unwrap().candidates(&request, &view)
                };
                let case = format!("{algorithm} max_conns={max_conns} backup={backup}");
                let lone = |g: &Group| g.candidates(ip, "/k", 7).collect::<Vec<_>>();
                assert_eq!(lone(&g), vec![0], "{case}");
                assert_eq!(lone(&g), selector_says(&g), "{case}");
                let guard = g.begin(0);
                assert_eq!(lone(&g), selector_says(&g), "{case}: one in flight");
                drop(guard);
                g.failed(0, "refused");
                assert_eq!(lone(&g), Vec::<usize>::new(), "{case}: banned");
                assert_eq!(lone(&g), selector_says(&g), "{case}: banned");
                tokio::time::advance(Duration::from_secs(11)).await;
                assert_eq!(lone(&g), vec![0], "{case}: back");
                let before = format!("{:?}", g.selector.lock().unwrap());
                selector_says(&g);
                assert_eq!(
                    format!("{:?}", g.selector.lock().unwrap()),
                    before,
                    "{case}: the selector's own answer for one server changes nothing"
                );
            }
        }
    }

    #[test]
    fn active_guard_counts_in_flight_requests() {
        let g = group(1);
        let guard = g.begin(1);
        assert_eq!(g.servers[1].active.load(Ordering::Relaxed), 1);
        drop(guard);
        assert_eq!(g.servers[1].active.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replaced_group_keeps_the_state_of_unchanged_servers_only() {
        let old = group(1);
        old.failed(0, "refused");
        old.failed(1, "refused");
        assert!(!old.is_healthy(0) && !old.is_healthy(1));
        let mut config = old.config.clone();
        config.servers[1].weight = 5;
        config.retries = 3;
        let new = Group::new_after(config, &old);
        assert!(!new.is_healthy(0), "an unchanged server keeps its ban");
        assert!(new.is_healthy(1), "a changed server starts afresh");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(new.is_healthy(0), "the ban ends when it would have");
    }
}
