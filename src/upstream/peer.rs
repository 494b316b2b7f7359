//! Peers at run time (Squid `cache_peer`): one pooled client per peer, which peers are alive,
//! and CONNECT tunnels through a parent.
//!
//! Requests to a peer go in absolute-form (RFC 9112 §3.2.2) over the peer's own pool, over TLS
//! when the peer has `tls = true` (and then HTTP/2 when its `protocols` allow it and the peer
//! agrees). Each peer's
//! liveness is a `liveness::Liveness` with Squid's knobs: a peer that could not be reached is
//! dead for `dead_time` and skipped, then tried again (Squid's `dead_peer_timeout`); which peer
//! to try when is `hierarchy::Router`'s decision, walked by `walk::Walk`.
//! A peer with a `monitorurl` is also probed (Squid `monitorurl=`, `monitorinterval=`,
//! `monitortimeout=`): the URL is requested *through that peer* (never from anywhere else)
//! every interval, and a failed probe keeps the peer dead until a probe succeeds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connect::{connect, connect_tls, Offer};
use super::hierarchy::{ParentSelection, PeerInfo, PeerKind, Router};
use super::liveness::{Liveness, Policy, Role};
use super::stream::UpstreamStream;
use super::tls::ClientTls;
use super::{Config, Upstream};
use crate::access::Rules;
use crate::error::{Error, ErrorKind};

/// One peer's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub info: PeerInfo,
    pub host: String,
    pub port: u16,
    /// The peer's ICP port (Squid `cache_peer HOST TYPE HTTP-PORT ICP-PORT`): it is asked over
    /// ICP before a miss is forwarded; `None` (Squid's 0): never.
    pub icp_port: Option<u16>,
    /// Don't store what this peer served (Squid `proxy-only`).
    pub proxy_only: bool,
    /// `Proxy-Authorization` sent to this peer (Squid `login=user:pass`), precomputed.
    pub login: Option<HeaderValue>,
    /// TLS to the peer itself (Squid `cache_peer ... tls`), with these trust settings.
    pub tls: Option<Arc<ClientTls>>,
    /// Active probing of this peer (Squid `monitorurl=`), if configured.
    pub monitor: Option<Monitor>,
}

/// An active probe of one peer (Squid `monitorurl=`, `monitorinterval=`, `monitortimeout=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    /// The absolute `http://` URL asked of the peer; a 2xx answer means the peer is up.
    pub url: http::Uri,
    /// Time between probes.
    pub interval: Duration,
    /// How long one probe may take, connection included, before it counts as a failure.
    pub timeout: Duration,
}

/// The hierarchy's settings.
#[derive(Debug, Clone)]
pub struct HierarchyConfig {
    pub peers: Vec<PeerConfig>,
    pub selection: ParentSelection,
    /// Requests these rules allow never go direct (Squid `never_direct`).
    pub never_direct: Rules,
    /// Requests these rules allow always go direct (Squid `always_direct`).
    pub always_direct: Rules,
    /// How long a peer whose connection failed is skipped.
    pub dead_time: Duration,
}

/// The peers, their clients and their liveness.
#[derive(Debug)]
pub struct Peers {
    pub config: HierarchyConfig,
    pub router: Router,
    clients: Vec<Upstream>,
    /// Per peer: dead marks, probe verdicts, transitions (Squid's `dead_peer_timeout`).
    liveness: Vec<Liveness>,
    /// Per peer: attempts, failures and response times (for metrics).
    pub stats: Vec<super::stats::ServerStats>,
    turn: AtomicU64,
}

impl Peers {
    /// Peers for `config`, with clients built from the upstream settings; peers with a
    /// `monitorurl` start being probed (the probes stop when these `Peers` are dropped).
    pub fn new(config: HierarchyConfig, upstream: &Config) -> Arc<Self> {
        let peers = Self::build(config, upstream, false);
        peers.start_monitors();
        peers
    }

    /// Cluster members as peers (`cluster::Cluster`): the same, but their liveness reports
    /// them as members; `old` is what a reload replaces (see [`Peers::new_after`]).
    pub fn new_members(
        config: HierarchyConfig,
        upstream: &Config,
        old: Option<&Peers>,
        same_upstream: bool,
    ) -> Arc<Self> {
        let mut peers = Self::build(config, upstream, true);
        if let (Some(fresh), Some(old)) = (Arc::get_mut(&mut peers), old) {
            fresh.carry_from(old, same_upstream);
        }
        peers.start_monitors();
        peers
    }

    fn build(config: HierarchyConfig, upstream: &Config, members: bool) -> Arc<Self> {
        let clients = config
            .peers
            .iter()
            .map(|p| {
                if p.tls.as_ref().is_some_and(|tls| !tls.verifies()) {
                    tracing::warn!(
                        peer = %p.info.name,
                        "tls_verify = false: the peer's certificate is NOT checked (testing only)"
                    );
                }
                Upstream::to_peer(upstream, &p.host, p.port, p.tls.clone())
            })
            .collect();
        let liveness = config
            .peers
            .iter()
            .map(|p| {
                let role = match p.info.kind {
                    _ if members => Role::Member,
                    PeerKind::Parent => Role::Parent,
                    PeerKind::Sibling => Role::Sibling,
                };
                Liveness::new(role, p.info.name.clone(), Policy::squid(config.dead_time))
            })
            .collect();
        let router = Router::new(
            config.peers.iter().map(|p| p.info.clone()).collect(),
            config.selection,
        );
        Arc::new(Self {
            router,
            clients,
            liveness,
            stats: config
                .peers
                .iter()
                .map(|_| super::stats::ServerStats::default())
                .collect(),
            turn: AtomicU64::new(0),
            config,
        })
    }

    /// The peers for `config` after a reload replaced `old`: a peer configured exactly as
    /// before keeps its pooled connections (when `same_upstream`, the upstream timeouts and
    /// limits did not change either) and its dead-peer mark.
    pub fn new_after(
        config: HierarchyConfig,
        upstream: &Config,
        old: &Peers,
        same_upstream: bool,
    ) -> Arc<Self> {
        let mut peers = Self::build(config, upstream, false);
        if let Some(fresh) = Arc::get_mut(&mut peers) {
            fresh.carry_from(old, same_upstream);
        }
        peers.start_monitors();
        peers
    }

    /// Each peer configured exactly as in `old` keeps its liveness and (when `same_upstream`)
    /// its pooled connections.
    fn carry_from(&mut self, old: &Peers, same_upstream: bool) {
        for (i, peer) in self.config.peers.iter().enumerate() {
            let Some(j) = old.config.peers.iter().position(|p| p == peer) else {
                continue;
            };
            if let (Some(mine), Some(before)) = (self.liveness.get_mut(i), old.liveness.get(j)) {
                mine.carry_from(before, true);
            }
            if let (true, Some(client), Some(before)) =
                (same_upstream, self.clients.get_mut(i), old.clients.get(j))
            {
                client.clone_from(before);
            }
        }
    }

    /// Spawns one probe task per monitored peer; each holds only a weak reference, so it ends
    /// once these `Peers` are replaced (a reload) and dropped.
    fn start_monitors(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (i, peer) in self.config.peers.iter().enumerate() {
            if let Some(monitor) = peer.monitor.clone() {
                runtime.spawn(monitor_loop(Arc::downgrade(self), i, monitor));
            }
        }
    }

    /// Whether peer `i` may be tried now: no failed monitor probe, and not within `dead_time`
    /// of a failed connection.
    pub fn alive(&self, i: usize) -> bool {
        self.liveness.get(i).is_some_and(Liveness::is_up)
    }

    /// Peer `i`'s liveness: `failed` when it could not be reached, `answered` when it
    /// answered, `probed` with a probe's verdict.
    pub fn liveness(&self, i: usize) -> Option<&Liveness> {
        self.liveness.get(i)
    }

    /// Every peer's liveness, in configuration order.
    pub fn all_liveness(&self) -> impl Iterator<Item = &Liveness> {
        self.liveness.iter()
    }

    /// The client for peer `i`.
    pub fn client(&self, i: usize) -> Option<&Upstream> {
        self.clients.get(i)
    }

    /// A per-request counter for round-robin parent selection.
    pub fn next_turn(&self) -> u64 {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }
}

/// Probes peer `i` every `monitor.interval` until the `Peers` it belongs to are dropped.
async fn monitor_loop(peers: std::sync::Weak<Peers>, i: usize, monitor: Monitor) {
    let mut ticks = tokio::time::interval(monitor.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(peers) = peers.upgrade() else {
            return;
        };
        let outcome = probe(&peers, i, &monitor).await;
        if let Some(liveness) = peers.liveness(i) {
            liveness.probed(outcome);
        }
    }
}

/// One probe: `GET monitorurl` sent to peer `i` only, over its own client, within the
/// monitor's timeout; any 2xx is success.
async fn probe(peers: &Peers, i: usize, monitor: &Monitor) -> Result<(), String> {
    let (Some(client), Some(peer)) = (peers.client(i), peers.config.peers.get(i)) else {
        return Err("no such peer".to_owned());
    };
    let progress = super::Progress::new();
    let mut request = http::Request::new(super::RequestBody::empty(progress.clone()));
    *request.uri_mut() = monitor.url.clone();
    if let Some(authority) = monitor.url.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(http::header::HOST, host);
        }
    }
    if let Some(login) = &peer.login {
        request
            .headers_mut()
            .insert(http::header::PROXY_AUTHORIZATION, login.clone());
    }
    let exchange = async {
        let response = client
            .send(request, progress)
            .await
            .map_err(|e| e.to_string())?;
        // The body is not read: the status says it all (the connection is not reused).
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("monitorurl answered {status}"))
        }
    };
    match tokio::time::timeout(monitor.timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("monitorurl took longer than {:?}", monitor.timeout)),
    }
}

/// Opens a tunnel to `authority` through the parent at `host:port` (over TLS with `tls`) with
/// `CONNECT` (RFC 9110 §9.3.6); the stream is ready for bytes once this returns.
pub async fn connect_through(
    host: &str,
    port: u16,
    tls: Option<&ClientTls>,
    authority: &str,
    login: Option<&HeaderValue>,
    timeout: Duration,
) -> Result<UpstreamStream, Error> {
    let mut stream = match tls {
        None => UpstreamStream::Plain(
            connect(host, port, timeout)
                .await
                .map_err(|e| e.to_error())?,
        ),
        Some(tls) => UpstreamStream::Tls(Box::new(
            connect_tls(host, port, tls, Offer::Http1, timeout)
                .await
                .map_err(|e| e.to_error())?,
        )),
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(login) = login.and_then(|v| v.to_str().ok()) {
        request.push_str(&format!("Proxy-Authorization: {login}\r\n"));
    }
    request.push_str("\r\n");
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        // Read exactly the response head, byte by byte, so no tunnel bytes are consumed.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err(std::io::Error::other("response head too large"));
            }
            head.push(stream.read_u8().await?);
        }
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::ConnectTimeout,
                format!("parent {host}:{port} did not answer CONNECT"),
            )
        })?
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse,
                format!("CONNECT through {host}:{port} failed: {e}"),
            )
        })?;
    let status_line = String::from_utf8_lossy(&head);
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(Error::new(
            ErrorKind::InvalidResponse,
            format!(
                "parent {host}:{port} refused CONNECT {authority}: {}",
                status_line.lines().next().unwrap_or("")
            ),
        ));
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::hierarchy::PeerKind;

    fn peers() -> Arc<Peers> {
        let config = HierarchyConfig {
            peers: vec![PeerConfig {
                info: PeerInfo {
                    name: "upper".to_owned(),
                    kind: PeerKind::Parent,
                    weight: 1,
                    no_query: false,
                    default: false,
                },
                host: "127.0.0.1".to_owned(),
                port: 9,
                icp_port: None,
                proxy_only: false,
                login: None,
                tls: None,
                monitor: None,
            }],
            selection: ParentSelection::FirstUp,
            never_direct: Rules::default(),
            always_direct: Rules::default(),
            dead_time: Duration::from_secs(60),
        };
        let upstream = Config {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            max_response_header_size: 64 * 1024,
            pool_idle_timeout: Duration::from_secs(1),
        };
        Peers::new(config, &upstream)
    }

    #[test]
    fn a_peer_is_dead_after_a_failure_until_it_answers_and_a_failed_probe_keeps_it_dead() {
        let peers = peers();
        let hop = peers.liveness(0).unwrap();
        assert_eq!(hop.role(), Role::Parent);
        assert!(peers.alive(0));
        hop.failed("connection refused");
        assert!(!peers.alive(0) && hop.is_down());
        hop.answered();
        assert!(peers.alive(0));
        hop.probed(Err("monitorurl answered 503".to_owned()));
        hop.answered();
        assert!(
            !peers.alive(0),
            "a failed probe keeps it dead until a probe succeeds"
        );
        hop.probed(Ok(()));
        assert!(peers.alive(0));
    }
}
