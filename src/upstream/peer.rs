//! Peers at run time (Squid `cache_peer`): one pooled client per peer, which peers are alive,
//! and CONNECT tunnels through a parent.
//!
//! Requests to a peer go in absolute-form (RFC 9112 §3.2.2) over the peer's own pool, over TLS
//! when the peer has `tls = true` (and then HTTP/2 when its `protocols` allow it and the peer
//! agrees). A peer
//! whose connection fails is considered dead for `dead_time` and skipped, then tried again
//! (Squid's `dead_peer_timeout`); which peer to try when is `hierarchy::Router`'s decision.

use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Don't store what this peer served (Squid `proxy-only`).
    pub proxy_only: bool,
    /// `Proxy-Authorization` sent to this peer (Squid `login=user:pass`), precomputed.
    pub login: Option<HeaderValue>,
    /// TLS to the peer itself (Squid `cache_peer ... tls`), with these trust settings.
    pub tls: Option<Arc<ClientTls>>,
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
    /// Per peer: attempts, failures and response times (for metrics).
    pub stats: Vec<super::stats::ServerStats>,
    turn: AtomicU64,
    origin: Instant,
}

impl Peers {
    /// Peers for `config`, with clients built from the upstream settings.
    pub fn new(config: HierarchyConfig, upstream: &Config) -> Arc<Self> {
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
        let mut peers = Self::new(config, upstream);
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
                if let (true, Some(client), Some(before)) =
                    (same_upstream, fresh.clients.get_mut(i), old.clients.get(j))
                {
                    client.clone_from(before);
                }
            }
        }
        peers
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether peer `i` may be tried now.
    pub fn alive(&self, i: usize) -> bool {
        self.dead_until_ms
            .get(i)
            .is_some_and(|t| self.now_ms() >= t.load(Ordering::Relaxed))
    }

    /// Peer `i` could not be reached: skip it for `dead_time`.
    pub fn mark_dead(&self, i: usize) {
        if let (Some(until), Some(peer)) = (self.dead_until_ms.get(i), self.config.peers.get(i)) {
            let ms = u64::try_from(self.config.dead_time.as_millis()).unwrap_or(u64::MAX);
            until.store(self.now_ms().saturating_add(ms), Ordering::Relaxed);
            tracing::warn!(peer = %peer.info.name, after = ?self.config.dead_time, "cache peer unreachable; skipping it");
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
