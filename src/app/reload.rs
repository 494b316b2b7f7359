//! Config reload: read and validate the whole new config, prepare everything that can fail
//! (new sockets, the access log's new target), then swap the new generation in at once.
//!
//! Nothing running is touched until every fallible step has passed, so a refused reload leaves
//! the old config serving as if nothing happened. After the swap, requests already running
//! finish on the generation they started with; kept ports keep their sockets (no refused
//! connection) and take the new settings for their next connections; closed ports stop
//! accepting and their connections finish. What cannot change without a restart (the runtime's
//! threads, the cache tiers' sizes and path) is kept as it was and reported.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{
    bind, build_shared, open_port, port_keys, port_settings, spawn_checks, start_icp, via_for,
    Inner, StartError,
};
use crate::config::{Config, ConfigError};
use crate::log::Target;

/// Why a reload was refused; the running config stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load or validate: `file:line: key: reason`.
    #[error("{0}")]
    Config(ConfigError),
    /// The config is valid but cannot be applied (a new port is taken, a log cannot open).
    #[error("{0}")]
    Apply(StartError),
    #[error("this server was started from a config built in code; there is no file to reload")]
    NoSource,
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// What a successful reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// The generation now serving new requests.
    pub generation: u64,
    /// Ports opened, at their bound addresses.
    pub listeners_opened: Vec<SocketAddr>,
    /// Ports closed (their connections finish on the old generation).
    pub listeners_closed: Vec<SocketAddr>,
    /// Kept ports whose mode or TLS changed (same socket, new settings for new connections).
    pub listeners_changed: Vec<SocketAddr>,
    pub groups_added: Vec<String>,
    pub groups_removed: Vec<String>,
    /// Groups whose settings changed; servers configured as before keep their health state.
    pub groups_changed: Vec<String>,
    /// `group/host:port` of servers added to or removed from a kept group.
    pub servers_added: Vec<String>,
    pub servers_removed: Vec<String>,
    /// The access log now writes elsewhere.
    pub access_log_changed: bool,
    /// `icp_port` changed: the ICP server now listens here (`None`: it stopped).
    pub icp_moved: Option<Option<SocketAddr>>,
    /// Settings that changed in the file but keep their old value until a restart.
    pub needs_restart: Vec<&'static str>,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "generation {}", self.generation)?;
        let mut any = false;
        let mut list = |f: &mut fmt::Formatter<'_>, what: &str, items: &[String]| {
            if items.is_empty() {
                return Ok(());
            }
            any = true;
            write!(f, "; {what}: {}", items.join(", "))
        };
        let addrs = |v: &[SocketAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        list(f, "listeners opened", &addrs(&self.listeners_opened))?;
        list(f, "listeners closed", &addrs(&self.listeners_closed))?;
        list(f, "listeners changed", &addrs(&self.listeners_changed))?;
        list(f, "groups added", &self.groups_added)?;
        list(f, "groups removed", &self.groups_removed)?;
        list(f, "groups changed", &self.groups_changed)?;
        list(f, "servers added", &self.servers_added)?;
        list(f, "servers removed", &self.servers_removed)?;
        if self.access_log_changed {
            any = true;
            f.write_str("; access log target changed")?;
        }
        match self.icp_moved {
            Some(Some(addr)) => {
                any = true;
                write!(f, "; ICP now on {addr}")?;
            }
            Some(None) => {
                any = true;
                f.write_str("; ICP stopped")?;
            }
            None => {}
        }
        if !self.needs_restart.is_empty() {
            any = true;
            write!(f, "; needs a restart: {}", self.needs_restart.join(", "))?;
        }
        if !any {
            f.write_str("; no listener, group or log changes")?;
        }
        Ok(())
    }
}

/// One reload, start to end, under the state lock.
pub(super) async fn reload(inner: &Inner) -> Result<ReloadReport, ReloadError> {
    let source = inner.source.clone().ok_or(ReloadError::NoSource)?;
    let mut state = inner.state.lock().await;
    if state.stopped {
        return Err(ReloadError::ShuttingDown);
    }
    // Reading the file and any certificate it names is blocking file I/O.
    let name = source.name();
    let mut config = tokio::task::spawn_blocking(move || source.load())
        .await
        .map_err(|e| {
            ReloadError::Config(ConfigError {
                file: name,
                line: None,
                key: String::new(),
                reason: format!("loading stopped: {e}"),
            })
        })?
        .map_err(ReloadError::Config)?;
    let mut report = ReloadReport {
        needs_restart: keep_restart_only(&state.config, &mut config),
        ..ReloadReport::default()
    };

    // 1. Everything that can fail, before anything running changes.
    let keys = port_keys(&config.proxy.listeners);
    let mut fresh = Vec::new();
    for (listener, key) in config.proxy.listeners.iter().zip(&keys) {
        if !state.ports.iter().any(|p| p.key == *key) {
            let (socket, local) = bind(listener.addr).await.map_err(ReloadError::Apply)?;
            fresh.push((socket, local, *key, port_settings(listener)));
        }
    }
    let via = via_for(&config, state.kept.first_port).map_err(ReloadError::Apply)?;
    // A new ICP address is bound before the old socket closes, so a taken one refuses the
    // reload (moving to another address on the same port needs a restart).
    let icp_changed = config.proxy.icp.port != state.config.proxy.icp.port;
    let new_icp = match config.proxy.icp.port.filter(|_| icp_changed) {
        Some(addr) => Some(
            crate::icp::server::bind(addr)
                .await
                .map_err(|source| ReloadError::Apply(StartError::Bind { addr, source }))?,
        ),
        None => None,
    };
    let log_target = &config.log.access_log;
    let mut new_log = None;
    let log_format = config.log.access_log_format;
    if *log_target != state.config.log.access_log
        || log_format != state.config.log.access_log_format
    {
        report.access_log_changed = true;
        match &state.kept.log_writer {
            Some(writer) => writer
                .retarget(log_target.clone(), log_format)
                .await
                .map_err(|e| ReloadError::Apply(StartError::AccessLog(e)))?,
            None => {
                new_log = Some(
                    crate::log::access::start(log_target, config.log.access_log_flush, log_format)
                        .await
                        .map_err(|e| ReloadError::Apply(StartError::AccessLog(e)))?,
                );
            }
        }
    }

    // 2. The swap: from here on nothing fails.
    if let Some((log, writer)) = new_log {
        state.kept.access_log = Arc::new(log);
        state.kept.log_writer = writer;
    }
    let generation = inner.generation.load(Ordering::Relaxed) + 1;
    let previous = inner.live.load();
    let shared = Arc::new(build_shared(
        &config,
        &state.kept,
        via,
        Some(&previous),
        generation,
    ));
    inner.live.swap(Arc::clone(&shared));
    inner.generation.store(generation, Ordering::Relaxed);
    resize_connection_cap(
        &state.kept.connections,
        state.config.proxy.limits.max_connections,
        config.proxy.limits.max_connections,
    );

    // 3. Ports: keep, retune, open, close.
    let old_ports = std::mem::take(&mut state.ports);
    let mut by_key: HashMap<_, _> = old_ports.into_iter().map(|p| (p.key, p)).collect();
    let old_listeners: HashMap<_, _> = port_keys(&state.config.proxy.listeners)
        .into_iter()
        .zip(state.config.proxy.listeners.iter().cloned())
        .collect();
    let mut ports = Vec::with_capacity(keys.len());
    for (listener, key) in config.proxy.listeners.iter().zip(&keys) {
        if let Some(port) = by_key.remove(key) {
            let before = old_listeners.get(key);
            if before.is_none_or(|b| {
                b.mode != listener.mode || b.tls.is_some() != listener.tls.is_some()
            }) {
                report.listeners_changed.push(port.local);
            }
            // Certificates are re-read on every reload, so a renewed one is picked up.
            port.settings.store(Arc::new(port_settings(listener)));
            ports.push(port);
        } else if let Some(i) = fresh.iter().position(|(_, _, k, _)| k == key) {
            let (socket, local, key, settings) = fresh.swap_remove(i);
            report.listeners_opened.push(local);
            ports.push(open_port(socket, local, key, settings, &inner.live));
        }
    }
    for (_, port) in by_key {
        let _ = port.stop.send(true);
        // The accept loop ends at once and closes the socket; its connections drain.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), port.task).await;
        tracing::info!(addr = %port.local, "stopped listening");
        report.listeners_closed.push(port.local);
        state.draining.push(port.stop);
    }
    state.draining.retain(|stop| !stop.is_closed());
    state.ports = ports;

    // 4. Groups: a replaced group's checker stops, the new one starts.
    for (name, group) in &shared.groups {
        match previous.groups.get(name) {
            Some(old) if Arc::ptr_eq(old, group) => {}
            old => {
                if let Some(old) = old {
                    report.groups_changed.push(name.clone());
                    for server in &group.config.servers {
                        if !old
                            .config
                            .servers
                            .iter()
                            .any(|s| s.address == server.address)
                        {
                            report
                                .servers_added
                                .push(format!("{name}/{}", server.address));
                        }
                    }
                    for server in &old.config.servers {
                        if !group
                            .config
                            .servers
                            .iter()
                            .any(|s| s.address == server.address)
                        {
                            report
                                .servers_removed
                                .push(format!("{name}/{}", server.address));
                        }
                    }
                } else {
                    report.groups_added.push(name.clone());
                }
                if let Some(stop) = state.checks.insert(name.clone(), spawn_checks(group)) {
                    let _ = stop.send(true);
                }
            }
        }
    }
    for name in previous.groups.keys() {
        if !shared.groups.contains_key(name) {
            report.groups_removed.push(name.clone());
            if let Some(stop) = state.checks.remove(name) {
                let _ = stop.send(true);
            }
        }
    }
    for list in [
        &mut report.groups_added,
        &mut report.groups_removed,
        &mut report.groups_changed,
        &mut report.servers_added,
        &mut report.servers_removed,
    ] {
        list.sort();
    }
    // 5. ICP: the old server stops, the new one (if any) answers from now on.
    if icp_changed {
        if let Some((stop, task)) = state.icp.take() {
            let _ = stop.send(true);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
            tracing::info!("ICP server stopped");
        }
        let addr = new_icp.as_ref().and_then(|s| s.local_addr().ok());
        state.icp = new_icp.map(|socket| start_icp(socket, &inner.live));
        report.icp_moved = Some(addr);
    }
    // 6. The admin listener reads the new generation (and applies its new access rules).
    if let Some((admin, _)) = &state.admin {
        admin.set_sources(super::admin_sources(&shared), config.admin.access.clone());
    }
    state.config = config;
    report.generation = generation;
    Ok(report)
}

/// Puts back in `new` the settings only a restart can change, naming those that differed.
fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    if new.workers != old.workers {
        kept.push("workers");
        new.workers = old.workers;
    }
    if new.cache.memory != old.cache.memory {
        kept.push("cache.memory");
        new.cache.memory = old.cache.memory.clone();
    }
    if new.cache.disk != old.cache.disk {
        kept.push("cache.disk");
        new.cache.disk = old.cache.disk.clone();
    }
    let (old_limits, new_limits) = (&old.proxy.limits, &mut new.proxy.limits);
    if new_limits.client_ip_max_connections != old_limits.client_ip_max_connections
        || new_limits.client_ip_limit_exempt != old_limits.client_ip_limit_exempt
    {
        kept.push("limits.client_ip_max_connections");
        new_limits.client_ip_max_connections = old_limits.client_ip_max_connections;
        new_limits.client_ip_limit_exempt = old_limits.client_ip_limit_exempt.clone();
    }
    if new.admin.listen != old.admin.listen {
        kept.push("admin.listen");
        new.admin.listen = old.admin.listen;
    }
    if new.log.level != old.log.level {
        kept.push("log.level");
        new.log.level = old.log.level.clone();
    }
    if new.log.access_log_flush != old.log.access_log_flush
        && new.log.access_log != Target::None
        && old.log.access_log != Target::None
    {
        kept.push("log.access_log_flush");
        new.log.access_log_flush = old.log.access_log_flush;
    }
    kept
}

/// Grows or shrinks the connection cap to `new` permits in all (connections over the new cap
/// keep running; the cap applies as they close).
fn resize_connection_cap(cap: &Arc<tokio::sync::Semaphore>, old: usize, new: usize) {
    if new > old {
        cap.add_permits(new - old);
    } else if new < old {
        let surplus = old - new;
        let forgotten = cap.forget_permits(surplus);
        let rest = surplus - forgotten;
        if rest > 0 {
            let cap = Arc::clone(cap);
            let rest = u32::try_from(rest).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                if let Ok(permits) = cap.acquire_many_owned(rest).await {
                    permits.forget();
                }
            });
        }
    }
}
