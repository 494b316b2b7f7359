//! The admin listener: `/metrics` (Prometheus), `/status` (JSON), `/cache?url=` (the cache
//! inspector), the dashboard at `/`, `POST /purge` and `POST /reload`, on its own socket with its own access
//! rules.
//!
//! ```text
//! accept (cap, [admin] access on the peer address) ── hyper http1 (header timeout)
//!    └─ routes ─┬─ /metrics ── exposition (prometheus-client) ─┐
//!               ├─ /status ─── status (JSON) ──────────────────┼─ reads: Metrics + Sources
//!               ├─ /cache ──── inspect (cache policy verdicts) ┘
//!               ├─ /, *.css, *.js ── dashboard (static files; polls /status)
//!               ├─ POST /purge ─── purge (cache::invalidate: url, tag, prefix, regex; soft)
//!               └─ POST /reload ── the reload hook `app` installed (same as SIGHUP)
//! history: a background task samples the totals every 5 s (the last 10 minutes)
//! ```
//! It reads the proxy through narrow handles only ([`Sources`]: the cache, upstream groups,
//! peers, a few closures), never `proxy::Shared`; `app` builds them and may swap them on
//! reload ([`Admin::set_sources`]).

pub mod dashboard;
pub mod exposition;
pub mod inspect;
pub mod purge;
pub mod routes;
pub mod stats;
pub mod status;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::access::{AccessRequest, Acl, Action, RequestFacts, Rule, Rules, Verdict};
use crate::cache::lookup::Cache;
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::upstream::group::Group;
use crate::upstream::peer::Peers;

/// The address used when `[admin] listen` is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3180";
/// Concurrent admin connections; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;
/// Longest time to read a request head, and to answer once it is read.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 16 * 1024;

/// `[admin]` settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: no admin listener (`listen = "none"`).
    pub listen: Option<SocketAddr>,
    /// Checked against the connecting peer's address.
    pub access: Rules,
    /// `listen` was not set: failing to bind the default address only warns (a second
    /// instance on one machine still starts), while a configured address must bind.
    pub default_listen: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().ok(),
            access: loopback_only(),
            default_listen: true,
        }
    }
}

/// The default admin rules: allow loopback clients, deny the rest.
pub fn loopback_only() -> Rules {
    let loopback = ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    Rules::new(
        vec![Acl::All, Acl::Src(loopback)],
        vec![
            Rule {
                action: Action::Allow,
                conditions: vec![(1, false)],
                text: "allow <loopback>".to_owned(),
            },
            Rule {
                action: Action::Deny,
                conditions: vec![(0, false)],
                text: "deny all".to_owned(),
            },
        ],
    )
}

/// What the admin endpoints read from the running proxy.
pub struct Sources {
    pub cache: Cache,
    /// Upstream groups, by name.
    pub groups: Vec<Arc<Group>>,
    pub peers: Option<Arc<Peers>>,
    /// The cluster this node is a member of: admin purges are sent to the other members.
    pub cluster: Option<Arc<crate::upstream::cluster::Cluster>>,
    /// Access-log records dropped so far.
    pub log_dropped: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Client connections open now.
    pub clients_open: Box<dyn Fn() -> u64 + Send + Sync>,
    pub clock: SharedClock,
}

impl Sources {
    /// The liveness of every next hop: group servers, cache peers, other cluster members.
    pub fn next_hops(&self) -> Vec<&crate::upstream::liveness::Liveness> {
        let servers = self
            .groups
            .iter()
            .flat_map(|g| g.servers.iter().map(|s| &s.liveness));
        let peers = self.peers.iter().flat_map(|p| p.all_liveness());
        let members = self.cluster.iter().flat_map(|c| {
            c.others()
                .filter_map(|(i, _)| c.peers.liveness(i))
                .collect::<Vec<_>>()
        });
        servers.chain(peers).chain(members).collect()
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

/// Reloads the config (`POST /reload`): the outcome as text, `Err` when the file was refused
/// and the old config keeps serving. Installed by `app`, which owns reloading.
pub type ReloadHook =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// Everything a request to the admin listener sees.
pub struct State {
    pub metrics: Arc<Metrics>,
    sources: RwLock<Arc<Sources>>,
    access: RwLock<Rules>,
    pub history: status::History,
    reload: OnceLock<ReloadHook>,
    /// The admin listener's bound address (its port is the default admin port of the other
    /// cluster members, see `purge`).
    local: OnceLock<SocketAddr>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("reload", &self.reload.get().is_some())
            .finish_non_exhaustive()
    }
}

impl State {
    pub fn new(metrics: Arc<Metrics>, sources: Sources, access: Rules) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            sources: RwLock::new(Arc::new(sources)),
            access: RwLock::new(access),
            history: status::History::default(),
            reload: OnceLock::new(),
            local: OnceLock::new(),
        })
    }

    /// Installs what `POST /reload` calls (once; later calls are ignored).
    pub fn set_reload(&self, hook: ReloadHook) {
        let _ = self.reload.set(hook);
    }

    /// Reloads through the installed hook.
    pub async fn reload(&self) -> Result<String, String> {
        match self.reload.get() {
            Some(hook) => hook().await,
            None => Err("this proxy was started without a config file to reload".to_owned()),
        }
    }

    /// The admin listener's address, once bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local.get().copied()
    }

    /// The current sources.
    pub fn sources(&self) -> Option<Arc<Sources>> {
        self.sources.read().ok().map(|s| Arc::clone(&s))
    }

    fn allowed(&self, peer: SocketAddr) -> Result<(), String> {
        let method = http::Method::GET;
        let request = AccessRequest {
            src: peer.ip().to_canonical(),
            host: "",
            port: 0,
            method: &method,
            dst: None,
            facts: RequestFacts::default(),
        };
        match self.access.read().map(|rules| rules.check(&request)) {
            Ok(Verdict::Allow) => Ok(()),
            Ok(Verdict::Deny(rule) | Verdict::AuthRequired(rule)) => {
                Err(rule.replacen("http_access", "admin.access", 1))
            }
            Err(_) => Err("admin access rules unavailable".to_owned()),
        }
    }
}

/// The running admin listener.
#[derive(Debug)]
pub struct Admin {
    state: Arc<State>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Admin {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Replaces what the endpoints read (after a config reload).
    pub fn set_sources(&self, sources: Sources, access: Rules) {
        if let Ok(mut s) = self.state.sources.write() {
            *s = Arc::new(sources);
        }
        if let Ok(mut a) = self.state.access.write() {
            *a = access;
        }
    }

    /// Waits for the accept loop and the history task to end (after `stop` was sent).
    pub async fn join(mut self) {
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the admin endpoints on `socket` until `stop` turns true.
pub fn start(
    socket: TcpListener,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) -> io::Result<Admin> {
    let addr = socket.local_addr()?;
    let _ = state.local.set(addr);
    let history = tokio::spawn(status::sample_every(
        Arc::clone(&state),
        status::SAMPLE_EVERY,
        stop.clone(),
    ));
    let accept = tokio::spawn(serve(socket, Arc::clone(&state), stop));
    Ok(Admin {
        state,
        addr,
        tasks: vec![accept, history],
    })
}

async fn serve(socket: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = stopped(&mut stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "admin: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(rule) = state.allowed(peer) {
            // Denied by the peer address alone: close without reading a byte.
            tracing::info!(%peer, rule, "admin: connection denied");
            drop(stream);
            continue;
        }
        let state = Arc::clone(&state);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move {
                    let response =
                        tokio::time::timeout(HEADER_TIMEOUT, routes::handle(req, &state))
                            .await
                            .unwrap_or_else(|_| {
                                routes::text(http::StatusCode::SERVICE_UNAVAILABLE, "timed out\n")
                            });
                    Ok::<_, Infallible>(response)
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD.max(8192))
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
