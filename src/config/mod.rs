//! Loading configuration: the embedded default or a TOML file, validated into each module's
//! own runtime config.
//!
//! ```text
//! TOML text ──toml + serde_path_to_error──▶ file::FileConfig ──build──▶ Config
//!        (syntax, types, unknown keys:             (cross-field checks,
//!         file:line: key: reason)                   defaults, same error shape)
//! ```
//! `build` also tries the paths the file names (`probe`: access log, cache directory; TLS files
//! are loaded by their modules), so a config that loads is one the proxy can run with.
//! Command-line overrides (`--listen`, `--cache-dir`) are applied to the built [`Config`].
//! [`summary`] renders a built config as the start-up lines.

pub mod build;
pub mod cluster;
pub mod error;
pub mod file;
pub mod intercept;
pub mod locate;
pub mod probe;
pub mod summary;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use summary::summary;

use crate::access::Rules;
use crate::{cache, log, proxy, upstream};

/// The embedded default config: a forward proxy on 127.0.0.1:3128 for this machine and private
/// networks, with a memory and a disk cache.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");
/// How the embedded default is named in errors.
pub const DEFAULT_NAME: &str = "<embedded default>";

/// Everything cuttle needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Runtime worker threads (0: one per core); used by `main` to build the runtime.
    pub workers: usize,
    pub proxy: proxy::Config,
    pub access: Rules,
    /// Proxy authentication for `proxy_auth` ACLs (`[auth.basic]`), with the password file
    /// as read at load.
    pub auth: Option<crate::auth::Authenticator>,
    pub upstream: upstream::Config,
    /// Upstream groups for reverse mode.
    pub upstream_groups: Vec<upstream::group::GroupConfig>,
    pub cache: cache::Config,
    pub log: log::Config,
    /// The admin listener.
    pub admin: crate::admin::Config,
}

/// Parses and validates config text; `name` is used in error messages.
pub fn load_str(name: &str, src: &str) -> Result<Config, ConfigError> {
    let error = |line: Option<usize>, key: String, reason: String| ConfigError {
        file: name.to_owned(),
        line,
        key,
        reason,
    };
    let deserializer = toml::Deserializer::parse(src).map_err(|e| {
        error(
            e.span().map(|s| locate::line_at(src, s.start)),
            String::new(),
            e.message().to_owned(),
        )
    })?;
    let raw: file::FileConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        error(
            inner.span().map(|s| locate::line_at(src, s.start)),
            key,
            inner.message().to_owned(),
        )
    })?;
    build::build(name, src, raw)
}

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: name.clone(),
        line: None,
        key: String::new(),
        reason: format!("cannot read: {e}"),
    })?;
    load_str(&name, &src)
}

/// The embedded default config.
pub fn load_default() -> Result<Config, ConfigError> {
    load_str(DEFAULT_NAME, DEFAULT_CONFIG)
}

/// Command-line settings that replace parts of the loaded config.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces all listeners with one forward listener here.
    pub listen: Option<SocketAddr>,
    /// Replaces the disk cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Replaces `workers`.
    pub workers: Option<usize>,
    /// Sends every miss through these parents (`host:port`), first up, `never_direct`.
    pub parents: Vec<(String, u16)>,
    /// Runs as an accelerator for this origin (`http://host:port`): one reverse port (at
    /// `listen`, default 127.0.0.1:8080), any Host, one upstream server.
    pub origin: Option<http::Uri>,
    /// This node's name in `[cluster]` (`--cluster-self`).
    pub cluster_self: Option<String>,
}

/// Where the running config came from: a reload reads it again the same way, with the same
/// command-line overrides.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The config file; `None` for the embedded default.
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
}

impl Source {
    /// Loads and validates the file (or the embedded default), then applies the overrides.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => load_file(path)?,
            None => load_default()?,
        };
        config
            .apply(&self.overrides)
            .map_err(|reason| ConfigError {
                file: self.name(),
                line: None,
                key: String::new(),
                reason,
            })?;
        Ok(config)
    }

    /// How the source is named in messages.
    pub fn name(&self) -> String {
        self.path.as_ref().map_or_else(
            || DEFAULT_NAME.to_owned(),
            |path| path.display().to_string(),
        )
    }
}

/// Where `--origin` listens without `--listen`.
pub const DEFAULT_ACCEL_LISTEN: &str = "127.0.0.1:8080";

impl Config {
    /// Applies command-line overrides.
    pub fn apply(&mut self, overrides: &Overrides) -> Result<(), String> {
        if let Some(workers) = overrides.workers {
            self.workers = workers;
        }
        if !overrides.parents.is_empty() {
            self.use_parents(&overrides.parents);
        }
        if let Some(origin) = &overrides.origin {
            self.accelerate(origin, overrides.listen)?;
        } else if let Some(addr) = overrides.listen {
            // The one port keeps the first configured port's mode and TLS settings.
            let (mode, tls, error_details) = self.proxy.listeners.first().map_or(
                (
                    proxy::Mode::Forward,
                    None,
                    proxy::respond::ErrorDetails::Full,
                ),
                |l| (l.mode, l.tls.clone(), l.error_details),
            );
            self.proxy.listeners = vec![proxy::ListenerConfig {
                addr,
                mode,
                tls,
                error_details,
            }];
        }
        self.pick_cluster_self(overrides.cluster_self.as_deref())?;
        if let Some(dir) = &overrides.cache_dir {
            probe::cache_dir(dir).map_err(|reason| format!("--cache-dir: {reason}"))?;
            match &mut self.cache.disk {
                Some(disk) => disk.path.clone_from(dir),
                None => {
                    self.cache.disk = Some(cache::DiskConfig {
                        path: dir.clone(),
                        ..cache::DiskConfig::default()
                    });
                }
            }
        }
        Ok(())
    }

    /// `--cluster-self NAME` names this node among the `[cluster]` members; one of the two must.
    fn pick_cluster_self(&mut self, name: Option<&str>) -> Result<(), String> {
        let Some(cluster) = self.proxy.cluster.as_mut() else {
            return match name {
                Some(_) => Err("--cluster-self: the config has no [cluster]".to_owned()),
                None => Ok(()),
            };
        };
        if let Some(name) = name {
            cluster::check_self(&cluster.members, name)
                .map_err(|reason| format!("--cluster-self: {reason}"))?;
            cluster.self_name = Some(name.to_owned());
        }
        if cluster.self_name.is_none() {
            return Err(
                "[cluster] has no `self`: name this node, like self = \"a\" in [cluster] or --cluster-self a"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// `--parent`: these parents, first up, and never direct (Squid `never_direct allow all`).
    fn use_parents(&mut self, parents: &[(String, u16)]) {
        use crate::access::{Acl, Action, Rule, Rules};
        use crate::upstream::hierarchy::{ParentSelection, PeerInfo, PeerKind};
        use crate::upstream::peer::{HierarchyConfig, PeerConfig};
        let peers = parents
            .iter()
            .map(|(host, port)| PeerConfig {
                info: PeerInfo {
                    name: format!("{host}:{port}"),
                    kind: PeerKind::Parent,
                    weight: 1,
                    no_query: false,
                    default: false,
                },
                host: host.clone(),
                port: *port,
                icp_port: None,
                proxy_only: false,
                login: None,
                tls: None,
                monitor: None,
            })
            .collect();
        let allow_all = Rule {
            action: Action::Allow,
            conditions: vec![(0, false)],
            text: "allow all".to_owned(),
        };
        self.proxy.hierarchy = Some(HierarchyConfig {
            peers,
            selection: ParentSelection::FirstUp,
            never_direct: Rules::new(vec![Acl::All], vec![allow_all]),
            always_direct: Rules::default(),
            dead_time: std::time::Duration::from_secs(10),
        });
    }

    /// The `--origin` accelerator: a reverse port for any Host, one upstream server.
    fn accelerate(&mut self, origin: &http::Uri, listen: Option<SocketAddr>) -> Result<(), String> {
        if origin.scheme_str().is_some_and(|s| s != "http") {
            return Err(format!(
                "--origin {origin}: only http:// origins are supported"
            ));
        }
        let authority = origin.authority().ok_or_else(|| {
            format!("--origin {origin}: needs a host, like http://127.0.0.1:8000")
        })?;
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let addr = match listen {
            Some(addr) => addr,
            None => DEFAULT_ACCEL_LISTEN
                .parse()
                .map_err(|e| format!("bad default listen address: {e}"))?,
        };
        self.proxy.listeners = vec![proxy::ListenerConfig {
            addr,
            mode: proxy::Mode::Reverse,
            tls: None,
            error_details: proxy::respond::ErrorDetails::Minimal,
        }];
        // As for any accelerator, honour CDN-Cache-Control (RFC 9213) unless configured otherwise.
        let fields = &mut self.cache.behaviour.targeted_fields;
        let cdn = http::HeaderName::from_static("cdn-cache-control");
        if fields.len() == 1 && fields[0] == "cuttle-cache-control" && !fields.contains(&cdn) {
            fields.push(cdn);
        }
        self.upstream_groups = vec![upstream::group::GroupConfig {
            name: "origin".to_owned(),
            algorithm: upstream::select::Algorithm::RoundRobin,
            servers: vec![upstream::group::ServerConfig {
                address,
                weight: 1,
                max_fails: 0,
                fail_timeout: std::time::Duration::from_secs(10),
                backup: false,
                max_conns: 0,
                down: false,
            }],
            retries: 0,
            next_upstream: upstream::group::NextUpstream::default(),
            health_check: None,
            tls: None,
        }];
        self.proxy.reverse.sites = vec![proxy::reverse::Site {
            name: "*".to_owned(),
            hosts: vec![proxy::reverse::HostPattern::Any],
            path_prefix: "/".to_owned(),
            upstream: "origin".to_owned(),
            host_header: proxy::next_hop::HostHeader::Preserve,
        }];
        Ok(())
    }
}
