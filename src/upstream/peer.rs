//! Peers at run time (Squid `cache_peer`): one pooled client per peer, which peers are alive,
//! and CONNECT tunnels through a parent.
//!
//! Requests to a peer go in absolute-form (RFC 9112 §3.2.2) over the peer's own pool, over TLS
//! when the peer has `tls = true` (and then HTTP/2 when its `protocols` allow it and the peer
//! agrees). A peer
//! whose connection fails is considered dead for `dead_time` and skipped, then tried again
//! (Squid's `dead_peer_timeout`); which peer to try when is `hierarchy::Router`'s decision.
//! A peer with a `monitorurl` is also probed (Squid `monitorurl=`, `monitorinterval=`,
//! `monitortimeout=`): the URL is requested *through that peer* (never from anywhere else)
//! every interval, and a failed probe keeps the peer dead until a probe succeeds. Each change
//! between up and down is logged once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::connect::{connect, connect_tls, Offer};
use super::hierarchy::{ParentSelection, PeerInfo, Router};
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
    dead_until_ms: Vec<AtomicU64>,
    /// Per peer: last reported as down (so each transition is logged once).
    down: Vec<AtomicBool>,
    /// Per peer: its last monitor probe failed; it stays dead until one succeeds.
    probe_failed: Vec<AtomicBool>,
    /// Per peer: attempts, failures and response times (for metrics).
    pub stats: Vec<super::stats::ServerStats>,
    turn: AtomicU64,
    origin: Instant,
}

impl Peers {
    /// Peers for `config`, with clients built from the upstream settings; peers with a
    /// `monitorurl` start being probed (the probes stop when these `Peers` are dropped).
    pub fn new(config: HierarchyConfig, upstream: &Config) -> Arc<Self> {
        let peers = Self::build(config, upstream);
        peers.start_monitors();
        peers
    }

    fn build(config: HierarchyConfig, upstream: &Config) -> Arc<Self> {
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
        let dead_until_ms = config.peers.iter().map(|_| AtomicU64::new(0)).collect();
        let router = Router::new(
            config.peers.iter().map(|p| p.info.clone()).collect(),
            config.selection,
        );
        Arc::new(Self {
            router,
            clients,
            dead_until_ms,
            down: config
                .peers
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
            probe_failed: config
                .peers
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
            stats: config
                .peers
                .iter()
                .map(|_| super::stats::ServerStats::default())
                .collect(),
            turn: AtomicU64::new(0),
            origin: Instant::now(),
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
        let mut peers = Self::build(config, upstream);
        if let Some(fresh) = Arc::get_mut(&mut peers) {
            fresh.origin = old.origin;
            for (i, peer) in fresh.config.peers.iter().enumerate() {
                let Some(j) = old.config.peers.iter().position(|p| p == peer) else {
                    continue;
                };
                if let (Some(until), Some(before)) =
                    (fresh.dead_until_ms.get_mut(i), old.dead_until_ms.get(j))
                {
                    *until.get_mut() = before.load(Ordering::Relaxed);
                }
                for (mine, theirs) in [
                    (&mut fresh.down, &old.down),
                    (&mut fresh.probe_failed, &old.probe_failed),
                ] {
                    if let (Some(flag), Some(before)) = (mine.get_mut(i), theirs.get(j)) {
                        *flag.get_mut() = before.load(Ordering::Relaxed);
                    }
                }
                if let (true, Some(client), Some(before)) =
                    (same_upstream, fresh.clients.get_mut(i), old.clients.get(j))
                {
                    client.clone_from(before);
                }
            }
        }
        peers.start_monitors();
        peers
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

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether peer `i` may be tried now: no failed monitor probe, and not within `dead_time`
    /// of a failed connection.
    pub fn alive(&self, i: usize) -> bool {
        !self
            .probe_failed
            .get(i)
            .is_some_and(|f| f.load(Ordering::Relaxed))
            && self
                .dead_until_ms
                .get(i)
                .is_some_and(|t| self.now_ms() >= t.load(Ordering::Relaxed))
    }

    /// Peer `i` could not be reached: skip it for `dead_time`.
    pub fn mark_dead(&self, i: usize) {
        if let Some(until) = self.dead_until_ms.get(i) {
            let ms = u64::try_from(self.config.dead_time.as_millis()).unwrap_or(u64::MAX);
            until.store(self.now_ms().saturating_add(ms), Ordering::Relaxed);
            self.went_down(i, "connection failed");
        }
    }

    /// Peer `i` answered: if it was down, it is back (logged once).
    pub fn mark_alive(&self, i: usize) {
        // One relaxed load on the request path; the swap only when the state changes.
        if self.down.get(i).is_some_and(|d| d.load(Ordering::Relaxed)) {
            if let Some(until) = self.dead_until_ms.get(i) {
                until.store(0, Ordering::Relaxed);
            }
            if self
                .down
                .get(i)
                .is_some_and(|d| d.swap(false, Ordering::Relaxed))
            {
                if let Some(peer) = self.config.peers.get(i) {
                    tracing::info!(peer = %peer.info.name, "cache peer is up again");
                }
            }
        }
    }

    /// Whether peer `i` is currently reported down (its last transition was to down).
    pub fn is_down(&self, i: usize) -> bool {
        self.down.get(i).is_some_and(|d| d.load(Ordering::Relaxed))
    }

    /// Records peer `i` going down; only the first of a run of failures logs.
    fn went_down(&self, i: usize, why: &str) {
        if self
            .down
            .get(i)
            .is_some_and(|d| !d.swap(true, Ordering::Relaxed))
        {
            if let Some(peer) = self.config.peers.get(i) {
                tracing::warn!(peer = %peer.info.name, reason = why, retry_after = ?self.config.dead_time, "cache peer is down; skipping it");
            }
        }
    }

    /// The outcome of one probe of peer `i` (a `monitorurl` request, or a cluster member's
    /// connection probe): a failure keeps it dead until a probe succeeds.
    pub fn probed(&self, i: usize, outcome: Result<(), String>) {
        let Some(failed) = self.probe_failed.get(i) else {
            return;
        };
        match outcome {
            Ok(()) => {
                failed.store(false, Ordering::Relaxed);
                self.mark_alive(i);
            }
            Err(why) => {
                failed.store(true, Ordering::Relaxed);
                self.went_down(i, &why);
            }
        }
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
        peers.probed(i, outcome);
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
    use std::io::Write;
    use std::sync::Mutex;

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

    /// Collects what tracing writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_up_and_down_transition_is_logged_once() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let peers = peers();
        tracing::subscriber::with_default(subscriber, || {
            assert!(peers.alive(0) && !peers.is_down(0));
            peers.mark_dead(0);
            peers.mark_dead(0);
            assert!(!peers.alive(0) && peers.is_down(0));
            peers.mark_alive(0);
            peers.mark_alive(0);
            assert!(peers.alive(0) && !peers.is_down(0));
            // A failed probe keeps the peer dead even past dead_time; a good one revives it.
            peers.probed(0, Err("monitorurl answered 503".to_owned()));
            peers.probed(0, Err("monitorurl answered 503".to_owned()));
            assert!(!peers.alive(0) && peers.is_down(0));
            peers.probed(0, Ok(()));
            assert!(peers.alive(0));
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("cache peer is down").count(), 2, "{text}");
        assert_eq!(text.matches("cache peer is up again").count(), 2, "{text}");
        assert!(text.contains("monitorurl answered 503"), "{text}");
    }
}
