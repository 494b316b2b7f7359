//! Wiring: build the shared state from a [`Config`], bind listeners, run until shutdown, drain.
//!
//! [`start`] returns a [`Server`] handle so both `main` and the tests run the real thing: tests
//! configure `127.0.0.1:0`, read the bound addresses, and call [`Server::shutdown`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::cache::lookup::Cache;
use crate::clock::{self, SharedClock};
use crate::config::Config;
use crate::proxy::{self, headers::ViaIdentity, Shared};
use crate::upstream::Upstream;

/// Why the server could not start.
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
    #[error("visible_hostname `{0}` is not a valid token")]
    Hostname(String),
}

/// A running proxy.
#[derive(Debug)]
pub struct Server {
    addrs: Vec<(SocketAddr, proxy::Mode)>,
    stop: watch::Sender<bool>,
    drain: std::time::Duration,
    listeners: Vec<JoinHandle<()>>,
    log_writer: Option<crate::log::access::Writer>,
    shared: Option<Arc<Shared>>,
}

/// Starts cuttle with `config` on the real clock.
pub async fn start(config: Config) -> Result<Server, StartError> {
    start_with_clock(config, clock::system()).await
}

/// Starts cuttle with `config`, reading wall time from `clock`.
pub async fn start_with_clock(config: Config, clock: SharedClock) -> Result<Server, StartError> {
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
    let mut bound = Vec::with_capacity(config.proxy.listeners.len());
    for listener in &config.proxy.listeners {
        let socket = TcpListener::bind(listener.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: listener.addr,
                source,
            })?;
        let local = socket.local_addr().map_err(|source| StartError::Bind {
            addr: listener.addr,
            source,
        })?;
        bound.push((
            socket,
            local,
            listener.mode,
            listener.tls.clone(),
            listener.error_details,
        ));
    }
    let (access_log, log_writer) =
        crate::log::access::start(&config.log.access_log, config.log.access_log_flush)
            .await
            .map_err(StartError::AccessLog)?;
    let via = ViaIdentity::new(&config.proxy.visible_hostname)
        .ok_or_else(|| StartError::Hostname(config.proxy.visible_hostname.clone()))?;
    let drain = config.proxy.timeouts.shutdown;
    let groups: std::collections::HashMap<_, _> = config
        .upstream_groups
        .iter()
        .map(|g| {
            (
                g.name.clone(),
                crate::upstream::group::Group::new(g.clone()),
            )
        })
        .collect();
    let mut tls_upstreams = std::collections::HashMap::new();
    for group in &config.upstream_groups {
        let Some(tls) = &group.tls else { continue };
        if !tls.verifies() {
            tracing::warn!(
                group = %group.name,
                "tls_verify = false: the servers' certificates are NOT checked (testing only)"
            );
        }
        tls_upstreams.insert(
            group.name.clone(),
            Upstream::with_tls(&config.upstream, Arc::clone(tls)),
        );
    }
    let peers = config
        .proxy
        .hierarchy
        .clone()
        .map(|h| crate::upstream::peer::Peers::new(h, &config.upstream));
    let shared = Arc::new(Shared {
        via,
        access: config.access,
        upstream: Upstream::new(&config.upstream),
        upstream_config: config.upstream,
        access_log,
        peers,
        groups,
        tls_upstreams,
        cache,
        clock,
        connections: Arc::new(Semaphore::new(config.proxy.limits.max_connections)),
        client_slots: proxy::client_slots::ClientSlots::new(
            config.proxy.limits.client_ip_max_connections,
            config.proxy.limits.client_ip_limit_exempt.clone(),
        ),
        config: config.proxy,
    });
    let (stop, stop_rx) = watch::channel(false);
    for group in shared.groups.values() {
        tokio::spawn(crate::upstream::health::run(
            Arc::clone(group),
            stop_rx.clone(),
        ));
    }
    let mut addrs = Vec::with_capacity(bound.len());
    let mut listeners = Vec::with_capacity(bound.len());
    for (socket, local, mode, tls, error_details) in bound {
        tracing::info!(addr = %local, mode = mode.as_str(), tls = tls.is_some(), "listening");
        addrs.push((local, mode));
        listeners.push(tokio::spawn(proxy::listener::serve(
            socket,
            mode,
            tls,
            error_details,
            Arc::clone(&shared),
            stop_rx.clone(),
        )));
    }
    Ok(Server {
        addrs,
        stop,
        drain,
        listeners,
        log_writer,
        shared: Some(shared),
    })
}

impl Server {
    /// The bound addresses with their modes.
    pub fn addrs(&self) -> &[(SocketAddr, proxy::Mode)] {
        &self.addrs
    }

    /// The first bound address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addrs.first().map(|(addr, _)| *addr)
    }

    /// Stops accepting, lets in-flight requests finish (up to `timeouts.shutdown`), then returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for listener in self.listeners.drain(..) {
            let _ = listener.await;
        }
        // Every connection task holds a receiver; `closed` resolves when the last one ends.
        if tokio::time::timeout(self.drain, self.stop.closed())
            .await
            .is_err()
        {
            tracing::warn!(after = ?self.drain, "shutdown: connections still open; they end with the runtime");
        }
        // The access-log writer ends when the last sender (inside `Shared`) is dropped; a
        // connection still open past the drain may hold one, so its batch is written now.
        self.shared = None;
        if let Some(writer) = self.log_writer.take() {
            writer.finish(std::time::Duration::from_secs(2)).await;
        }
    }
}
