//! Wiring: build the shared state from a [`Config`], bind listeners, run until shutdown, drain;
//! and the [`Control`] handle that reloads the config and reopens the logs while it runs.
//!
//! [`start`] returns a [`Server`] handle so both `main` and the tests run the real thing: tests
//! configure `127.0.0.1:0`, read the bound addresses, and call [`Server::shutdown`].
//!
//! What lives how long:
//! ```text
//! Kept    process   cache stores, clock, access log and its writer, connection cap, metrics
//! Shared  one per   config, ACLs, Via, upstream groups and pools, peers
//!         generation (swapped whole in proxy::Live; requests keep the one they started on)
//! Port    per listen socket, its settings (mode, TLS), its connections' stop signal
//!         address
//! ```
//! [`Control::reload`] (see `reload`) builds the next generation from `Kept` and the current
//! one, so what did not change carries over. The admin listener (if any) is started once and
//! handed fresh read handles ([`admin_sources`]) after each reload; its `POST /reload` calls
//! [`Control::reload`] through a weak reference, so it never keeps a stopped proxy alive.

mod reload;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex, Semaphore};
use tokio::task::JoinHandle;

use crate::cache::lookup::Cache;
use crate::clock::{self, SharedClock};
use crate::config::{Config, Source};
use crate::log::access::Writer;
use crate::log::AccessLog;
use crate::metrics::Metrics;
use crate::proxy::listener::PortSettings;
use crate::proxy::{self, headers::ViaIdentity, Live, Shared};
use crate::upstream::cluster::Cluster;
use crate::upstream::group::Group;
use crate::upstream::peer::Peers;
use crate::upstream::Upstream;

pub use reload::{ReloadError, ReloadReport};

/// Why the server could not start (or a reload could not apply its config).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot open the cache in {path}: {source}")]
    CacheDir {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("cannot open the access log: {0}")]
    AccessLog(io::Error),
    #[error("visible_hostname or unique_hostname `{0}` is not a valid token")]
    Hostname(String),
}

/// A running proxy.
#[derive(Debug)]
pub struct Server {
    addrs: Vec<(SocketAddr, proxy::Mode)>,
    /// Where the admin listener listens, unless `[admin] listen = "none"` (or the default
    /// address was taken).
    admin_addr: Option<SocketAddr>,
    /// Where the ICP server listens (UDP), when `icp_port` is set.
    icp_addr: Option<SocketAddr>,
    control: Control,
}

/// Reloads, log reopening and reload counters of a running proxy; cheap to clone (the signal
/// loop and the admin listener each hold one).
#[derive(Debug, Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

/// How many reloads succeeded and failed since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadCounts {
    pub succeeded: u64,
    pub failed: u64,
}

#[derive(Debug)]
struct Inner {
    live: Arc<Live>,
    /// What a reload reads; `None` when started from a config built in code.
    source: Option<Source>,
    /// Reloads and shutdown take turns.
    state: Mutex<State>,
    generation: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    /// The counters; the reload outcome is counted here too.
    metrics: Arc<Metrics>,
}

/// What reloads and shutdown change.
#[derive(Debug)]
struct State {
    kept: Kept,
    /// The config of the current generation, to compare a reloaded one with.
    config: Config,
    ports: Vec<Port>,
    /// Stops each group's health-check task, by group name.
    checks: HashMap<String, watch::Sender<bool>>,
    /// Stop signals of closed ports whose connections may still be finishing.
    draining: Vec<watch::Sender<bool>>,
    /// The admin listener and its stop signal; started once, its sources swapped on reload.
    admin: Option<(crate::admin::Admin, watch::Sender<bool>)>,
    /// The ICP server's stop signal and task; a reload that changes `icp_port` replaces them.
    icp: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    stopped: bool,
}

/// What survives every reload: built once at start and handed to each generation. Anything
/// else that must outlive a reload (counters, say) belongs here.
#[derive(Debug)]
struct Kept {
    clock: SharedClock,
    /// The stores; each generation gets them with its own `behaviour`.
    cache: Cache,
    access_log: Arc<AccessLog>,
    /// `None` while the access log is off.
    log_writer: Option<Writer>,
    /// Caps client connections across all listeners and generations.
    connections: Arc<Semaphore>,
    /// Counters behind `/metrics` and `/status`: counters never reset, so not even a reload
    /// replaces them.
    metrics: Arc<Metrics>,
    /// Connections per client address (`client_ip_max_connections`), counted across
    /// generations like the overall cap.
    client_slots: Arc<proxy::client_slots::ClientSlots>,
    /// The first listening port as bound at start: the default `unique_hostname` is
    /// `visible_hostname:first_port`, the same for every generation.
    first_port: u16,
}

/// One open listening socket.
#[derive(Debug)]
struct Port {
    /// Its `listen` address as configured (port 0 stays 0) and its rank among equal ones: a
    /// reload keeps the socket of every key still configured.
    key: (SocketAddr, usize),
    local: SocketAddr,
    settings: Arc<ArcSwap<PortSettings>>,
    /// Tells the accept loop, then this port's connections, to finish.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts cuttle with `config` on the real clock.
pub async fn start(config: Config) -> Result<Server, StartError> {
    start_with(config, clock::system(), None).await
}

/// Starts cuttle with `config`, reading wall time from `clock`.
pub async fn start_with_clock(config: Config, clock: SharedClock) -> Result<Server, StartError> {
    start_with(config, clock, None).await
}

/// Starts cuttle with `config` (loaded from `source`, which [`Control::reload`] reads again),
/// reading wall time from `clock`.
pub async fn start_with(
    config: Config,
    clock: SharedClock,
    source: Option<Source>,
) -> Result<Server, StartError> {
    let cache = Cache::open(&config.cache)
        .await
        .map_err(|source| StartError::CacheDir {
            path: config
                .cache
                .disk
                .as_ref()
                .map(|d| d.path.clone())
                .unwrap_or_default(),
            source,
        })?;
    let keys = port_keys(&config.proxy.listeners);
    let mut bound = Vec::with_capacity(keys.len());
    for (listener, key) in config.proxy.listeners.iter().zip(keys) {
        let (socket, local) = bind(listener.addr).await?;
        bound.push((socket, local, key, port_settings(listener)));
    }
    let admin_socket = match config.admin.listen {
        None => None,
        Some(addr) => match crate::admin::bind(addr).await {
            Ok(socket) => Some(socket),
            Err(e) if config.admin.default_listen => {
                tracing::warn!(%addr, error = %e, "admin listener not started (set [admin] listen to another address, or \"none\")");
                None
            }
            Err(source) => return Err(StartError::Bind { addr, source }),
        },
    };
    let icp_socket = match config.proxy.icp.port {
        None => None,
        Some(addr) => Some(
            crate::icp::server::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?,
        ),
    };
    let (access_log, log_writer) = crate::log::access::start(
        &config.log.access_log,
        config.log.access_log_flush,
        config.log.access_log_format,
    )
    .await
    .map_err(StartError::AccessLog)?;
    let first_port = bound.first().map_or(0, |(_, local, _, _)| local.port());
    let via = via_for(&config, first_port)?;
    let kept = Kept {
        first_port,
        clock,
        cache,
        access_log: Arc::new(access_log),
        log_writer,
        connections: Arc::new(Semaphore::new(config.proxy.limits.max_connections)),
        metrics: Arc::new(Metrics::new()),
        client_slots: proxy::client_slots::ClientSlots::new(
            config.proxy.limits.client_ip_max_connections,
            config.proxy.limits.client_ip_limit_exempt.clone(),
        ),
    };
    // With no admin listener nothing reads the counters: the request path skips them.
    kept.metrics.set_enabled(admin_socket.is_some());
    kept.metrics.config_loaded(1);
    let metrics = Arc::clone(&kept.metrics);
    let shared = Arc::new(build_shared(&config, &kept, via, None, 1));
    let live = Arc::new(Live::new(Arc::clone(&shared)));
    let mut checks = HashMap::new();
    for (name, group) in &shared.groups {
        checks.insert(name.clone(), spawn_checks(group));
    }
    let mut addrs = Vec::with_capacity(bound.len());
    let mut ports = Vec::with_capacity(bound.len());
    for (socket, local, key, settings) in bound {
        addrs.push((local, settings.mode));
        ports.push(open_port(socket, local, key, settings, &live));
    }
    let admin_access = config.admin.access.clone();
    let mut icp_addr = None;
    let icp = icp_socket.map(|socket| {
        icp_addr = socket.local_addr().ok();
        start_icp(socket, &live)
    });
    let state = State {
        kept,
        config,
        ports,
        checks,
        draining: Vec::new(),
        admin: None,
        icp,
        stopped: false,
    };
    let inner = Arc::new(Inner {
        live,
        source,
        state: Mutex::new(state),
        generation: AtomicU64::new(1),
        succeeded: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        metrics,
    });
    let mut admin_addr = None;
    if let Some(socket) = admin_socket {
        let admin_state = crate::admin::State::new(
            Arc::clone(&inner.metrics),
            admin_sources(&shared),
            admin_access,
        );
        admin_state.set_reload(reload_hook(Arc::downgrade(&inner)));
        let (stop, stop_rx) = watch::channel(false);
        let admin = crate::admin::start(socket, admin_state, stop_rx).map_err(|source| {
            StartError::Bind {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                source,
            }
        })?;
        tracing::info!(addr = %admin.addr(), "admin listener (/, /metrics, /status, /cache, POST /reload)");
        admin_addr = Some(admin.addr());
        inner.state.lock().await.admin = Some((admin, stop));
    }
    Ok(Server {
        addrs,
        admin_addr,
        icp_addr,
        control: Control { inner },
    })
}

/// `POST /reload` on the admin listener: the same as SIGHUP, answered with the outcome. Holds
/// the proxy weakly: once it is shut down, a reload is refused.
fn reload_hook(inner: Weak<Inner>) -> crate::admin::ReloadHook {
    Arc::new(move || {
        let inner = inner.clone();
        Box::pin(async move {
            let Some(inner) = inner.upgrade() else {
                return Err("the proxy is shutting down".to_owned());
            };
            let control = Control { inner };
            control
                .reload()
                .await
                .map(|report| format!("config reloaded: {report}"))
                .map_err(|e| e.to_string())
        })
    })
}

/// The narrow handles the admin listener reads the proxy through.
pub fn admin_sources(shared: &Arc<Shared>) -> crate::admin::Sources {
    let mut groups: Vec<_> = shared.groups.values().cloned().collect();
    groups.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    // Weak: the admin listener must not keep the access log's sender alive at shutdown.
    let log = Arc::downgrade(&shared.access_log);
    let connections = Arc::clone(&shared.connections);
    let max = shared.config.limits.max_connections;
    crate::admin::Sources {
        cache: shared.cache.clone(),
        groups,
        peers: shared.peers.clone(),
        cluster: shared.cluster.clone(),
        log_dropped: Box::new(move || log.upgrade().map_or(0, |log| log.dropped())),
        clients_open: Box::new(move || {
            u64::try_from(max.saturating_sub(connections.available_permits())).unwrap_or(0)
        }),
        clock: Arc::clone(&shared.clock),
    }
}

/// Binds `addr`, returning the socket and the address it really got.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let socket = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = socket
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((socket, local))
}

/// Each listener's key: its configured address and how many listeners before it share it.
fn port_keys(listeners: &[proxy::ListenerConfig]) -> Vec<(SocketAddr, usize)> {
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    listeners
        .iter()
        .map(|l| {
            let rank = seen.entry(l.addr).or_default();
            let key = (l.addr, *rank);
            *rank += 1;
            key
        })
        .collect()
}

fn port_settings(listener: &proxy::ListenerConfig) -> PortSettings {
    PortSettings {
        mode: listener.mode,
        tls: listener.tls.clone(),
        error_details: listener.error_details,
    }
}

/// Starts the accept loop of a bound socket.
fn open_port(
    socket: TcpListener,
    local: SocketAddr,
    key: (SocketAddr, usize),
    settings: PortSettings,
    live: &Arc<Live>,
) -> Port {
    tracing::info!(addr = %local, mode = settings.mode.as_str(), tls = settings.tls.is_some(), "listening");
    let settings = Arc::new(ArcSwap::from_pointee(settings));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(proxy::listener::serve(
        socket,
        Arc::clone(&settings),
        Arc::clone(live),
        stop_rx,
    ));
    Port {
        key,
        local,
        settings,
        stop,
        task,
    }
}

/// Answers ICP queries on `socket` (each with the generation current when it arrives) until
/// the returned sender says stop.
fn start_icp(
    socket: tokio::net::UdpSocket,
    live: &Arc<Live>,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    tracing::info!(addr = ?socket.local_addr().ok(), "ICP server (udp)");
    let (stop, stop_rx) = watch::channel(false);
    let answer = Arc::new(proxy::icp_answer::IcpAnswer {
        live: Arc::clone(live),
    });
    let task = tokio::spawn(crate::icp::server::serve(socket, answer, stop_rx));
    (stop, task)
}

/// Starts `group`'s health checks; sending `true` (or dropping the sender) stops them.
fn spawn_checks(group: &Arc<Group>) -> watch::Sender<bool> {
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(crate::upstream::health::run(Arc::clone(group), stop_rx));
    stop
}

/// Our `Via` identity: `unique_hostname` as configured, else `visible_hostname:first_port`
/// (`proxy::headers::ViaIdentity` says why), prefixed with the cluster member name in a
/// cluster (members sharing one file share `visible_hostname` and the port).
fn via_for(config: &Config, first_port: u16) -> Result<ViaIdentity, StartError> {
    let member = config
        .proxy
        .cluster
        .as_ref()
        .and_then(|c| c.self_name.as_ref())
        .map(|name| format!("{name}.{}", config.proxy.visible_hostname));
    let visible = member.as_ref().unwrap_or(&config.proxy.visible_hostname);
    let unique = match &config.proxy.unique_hostname {
        Some(unique) => unique.clone(),
        None if first_port == 0 => visible.clone(),
        None => format!("{visible}:{first_port}"),
    };
    ViaIdentity::with_unique(visible, &unique).ok_or(StartError::Hostname(unique))
}

/// The hot copies of a cluster member (`[cluster] hot_copy_ttl`): the previous generation's
/// when their settings did not change, so a reload keeps them.
fn hot_copies(
    config: &Config,
    previous: Option<&Shared>,
) -> Option<Arc<crate::cache::hot::HotCopies>> {
    let wanted = config.proxy.cluster.as_ref()?.hot_copy.clone()?;
    match previous.and_then(|p| p.cache.hot.as_ref()) {
        Some(old) if old.config == wanted => Some(Arc::clone(old)),
        _ => Some(Arc::new(crate::cache::hot::HotCopies::new(wanted))),
    }
}

/// Builds generation `generation` of the request state from `config`, keeping from
/// `previous` every upstream pool, group and peer whose settings did not change.
fn build_shared(
    config: &Config,
    kept: &Kept,
    via: ViaIdentity,
    previous: Option<&Shared>,
    generation: u64,
) -> Shared {
    let same_upstream = previous.is_some_and(|p| p.upstream_config == config.upstream);
    let upstream = match previous {
        Some(previous) if same_upstream => previous.upstream.clone(),
        _ => Upstream::new(&config.upstream),
    };
    let mut groups = HashMap::with_capacity(config.upstream_groups.len());
    let mut tls_upstreams = HashMap::new();
    for group in &config.upstream_groups {
        let old = previous.and_then(|p| p.groups.get(&group.name));
        let live = match old {
            Some(old) if old.config == *group => Arc::clone(old),
            Some(old) => Group::new_after(group.clone(), old),
            None => Group::new(group.clone()),
        };
        groups.insert(group.name.clone(), live);
        let Some(tls) = &group.tls else { continue };
        let kept_pool = previous
            .filter(|_| same_upstream)
            .zip(old)
            .filter(|(_, old)| old.config.tls == group.tls)
            .and_then(|(p, _)| p.tls_upstreams.get(&group.name));
        let client = match kept_pool {
            Some(client) => client.clone(),
            None => {
                if !tls.verifies() {
                    tracing::warn!(
                        group = %group.name,
                        "tls_verify = false: the servers' certificates are NOT checked (testing only)"
                    );
                }
                Upstream::with_tls(&config.upstream, Arc::clone(tls))
            }
        };
        tls_upstreams.insert(group.name.clone(), client);
    }
    let peers =
        config
            .proxy
            .hierarchy
            .clone()
            .map(|h| match previous.and_then(|p| p.peers.as_deref()) {
                Some(old) => Peers::new_after(h, &config.upstream, old, same_upstream),
                None => Peers::new(h, &config.upstream),
            });
    let site_groups = config
        .proxy
        .reverse
        .sites
        .iter()
        .map(|site| groups.get(&site.upstream).cloned())
        .collect();
    let cluster = config.proxy.cluster.clone().map(|c| {
        let old = previous.and_then(|p| p.cluster.as_deref());
        Cluster::new(c, &config.upstream, old, same_upstream)
    });
    Shared {
        generation,
        cluster,
        via,
        access: config.access.clone(),
        auth: config.auth.clone(),
        upstream,
        upstream_config: config.upstream.clone(),
        access_log: Arc::clone(&kept.access_log),
        peers,
        groups,
        tls_upstreams,
        cache: kept
            .cache
            .with_behaviour(config.cache.behaviour.clone())
            .with_hot(hot_copies(config, previous)),
        clock: Arc::clone(&kept.clock),
        connections: Arc::clone(&kept.connections),
        metrics: Arc::clone(&kept.metrics),
        site_slots: config
            .proxy
            .reverse
            .sites
            .iter()
            .map(|site| kept.metrics.site_slot(&site.name))
            .collect(),
        site_groups,
        client_slots: Arc::clone(&kept.client_slots),
        bump_upstream: config.proxy.tls_intercept.as_ref().map(|intercept| {
            tracing::info!(
                ca = %intercept.minter.ca().fingerprint,
                builtin_splice = ?intercept.rules.builtin(),
                "tls_intercept: bumping CONNECT tunnels its rules name; the rest are spliced"
            );
            Upstream::with_tls(&config.upstream, Arc::clone(&intercept.upstream_tls))
        }),
        config: config.proxy.clone(),
    }
}

impl Server {
    /// The bound addresses with their modes, as started (a reload's [`ReloadReport`] says
    /// which it opened or closed).
    pub fn addrs(&self) -> &[(SocketAddr, proxy::Mode)] {
        &self.addrs
    }

    /// The first bound address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addrs.first().map(|(addr, _)| *addr)
    }

    /// The admin listener's address, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The ICP server's UDP address, if `icp_port` is set.
    pub fn icp_addr(&self) -> Option<SocketAddr> {
        self.icp_addr
    }

    /// The counters behind `/metrics` (for tests).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.control.inner.metrics)
    }

    /// Returns once the disk cache's index is loaded (it loads in the background after the
    /// listeners are bound; see `cache::store`).
    pub async fn disk_index_loaded(&self) {
        let store = self
            .control
            .inner
            .state
            .lock()
            .await
            .kept
            .cache
            .store
            .clone();
        store.disk_loaded().await;
    }

    /// The handle that reloads the config and reopens the logs.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stops accepting, lets in-flight requests finish (up to `timeouts.shutdown`), then returns.
    pub async fn shutdown(self) {
        self.control.inner.shutdown().await;
    }
}

impl Control {
    /// Re-reads the config source, validates all of it, and swaps it in at once; on any error
    /// the running config stays. Logs the outcome either way.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let result = reload::reload(&self.inner).await;
        match &result {
            Ok(report) => {
                self.inner.succeeded.fetch_add(1, Ordering::Relaxed);
                self.inner.metrics.config_loaded(self.generation());
                tracing::info!("config reloaded: {report}");
                for setting in &report.needs_restart {
                    tracing::warn!(
                        "config reload: {setting} changed but applies only after a restart"
                    );
                }
            }
            Err(e) => {
                self.inner.failed.fetch_add(1, Ordering::Relaxed);
                self.inner.metrics.reload_failed();
                tracing::error!("config reload refused, the running config stays: {e}");
            }
        }
        result
    }

    /// Reopens the access-log file at its configured path (after logrotate moved it).
    pub async fn reopen_logs(&self) -> io::Result<()> {
        let state = self.inner.state.lock().await;
        let result = match &state.kept.log_writer {
            Some(writer) => writer.reopen().await,
            None => Ok(()),
        };
        match &result {
            Ok(()) => tracing::info!("access log reopened"),
            Err(e) => {
                tracing::error!(error = %e, "access log reopen failed; still writing to the old file")
            }
        }
        result
    }

    /// The config generation new requests run on: 1 at start, +1 per successful reload.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    /// Reloads that succeeded and failed so far.
    pub fn reload_counts(&self) -> ReloadCounts {
        ReloadCounts {
            succeeded: self.inner.succeeded.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        state.stopped = true;
        for port in &state.ports {
            let _ = port.stop.send(true);
        }
        for stop in state.checks.values() {
            let _ = stop.send(true);
        }
        if let Some((admin, stop)) = state.admin.take() {
            let _ = stop.send(true);
            admin.join().await;
        }
        if let Some((stop, task)) = state.icp.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
        let ports = std::mem::take(&mut state.ports);
        for port in ports {
            let _ = port.task.await;
            state.draining.push(port.stop);
        }
        // Every connection task holds a receiver of its port's signal; `closed` resolves when
        // the last one ends.
        let drain = state.config.proxy.timeouts.shutdown;
        let deadline = tokio::time::Instant::now() + drain;
        for stop in &state.draining {
            if tokio::time::timeout_at(deadline, stop.closed())
                .await
                .is_err()
            {
                tracing::warn!(after = ?drain, "shutdown: connections still open; they end with the runtime");
                break;
            }
        }
        // Lines of requests that finished are written now; a connection still open past the
        // drain gets its line written as soon as it logs.
        if let Some(writer) = state.kept.log_writer.take() {
            writer.finish(std::time::Duration::from_secs(2)).await;
        }
    }
}
