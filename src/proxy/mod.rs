//! The request path: from an accepted connection to a response.
//!
//! ```text
//! listener ── accept (connection cap, client_slots) ── [tls handshake, ALPN] ── h1 (ours) or
//!    │                                                     hyper h2 (+ client_conn timers)
//!    └─ service::handle ── limits (414/431)
//!         ├─ CONNECT ........ tunnel: port list, loop, resolve + http_access, connect, 200,
//!         │                   copy bytes
//!         ├─ http://host/... forward: loop, [resolve +] http_access, Max-Forwards, rewrite,
//!         │                   upstream (to a checked address)
//!         └─ /path .......... 400 Invalid URL
//!    every outcome ── Transaction (access log) + respond (error pages, Proxy-Status)
//! ```
//!
//! `headers` holds the pure RFC 9110 header rules; `body` is the one response body type;
//! `respond` is the only place an error becomes a status code; `caching/` is the cache driver
//! (its `mod.rs` charts the phases); `request` is what the modes share, so none imports
//! `service` back.

pub mod authorize;
pub mod body;
pub mod bump;
pub mod caching;
pub mod client_body;
pub mod client_conn;
pub mod client_slots;
pub mod destination;
pub mod error_details;
pub mod forward;
pub mod forwarding_fields;
pub mod h1;
pub mod handoff;
pub mod headers;
pub mod icp_answer;
pub mod icp_select;
pub mod interim;
pub mod internal;
pub mod linger;
pub mod listener;
pub mod next_hop;
pub mod outbox;
pub mod proxy_connection;
pub mod request;
pub mod respond;
pub mod reverse;
pub mod service;
pub mod switch;
pub mod target_path;
pub mod tls;
pub mod transaction;
pub mod tunnel;
pub mod upgrade;

use std::net::SocketAddr;
use std::time::Duration;

use crate::access::Rules;
use crate::clock::SharedClock;
use crate::log::AccessLog;
use crate::upstream::Upstream;

pub use headers::ForwardedFor;

/// Request-path settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our name in error pages (Squid `visible_hostname`).
    pub visible_hostname: String,
    /// Our name in `Via` and loop detection (Squid `unique_hostname`); `None`: the visible
    /// name with the first listening port (`app` knows it once the ports are bound).
    pub unique_hostname: Option<String>,
    pub listeners: Vec<ListenerConfig>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub forward: ForwardConfig,
    /// Sites and forwarding fields for reverse ports.
    pub reverse: reverse::ReverseConfig,
    /// Parent and sibling caches; `None` without `[[peer]]`s.
    pub hierarchy: Option<crate::upstream::peer::HierarchyConfig>,
    /// Cluster mode (`[cluster]`); `None` without members.
    pub cluster: Option<crate::upstream::cluster::ClusterConfig>,
    /// The operator's error pages by status (`[error_pages]`).
    pub error_pages: respond::ErrorPages,
    /// `[[cache.access]]` (Squid `cache allow|deny`): requests denied here neither use nor
    /// fill the cache.
    pub cache_access: Rules,
    /// ICP (RFC 2186): the server's address and `icp_access`, and how long a miss waits for
    /// peers' ICP replies.
    pub icp: crate::icp::Config,
    /// `[tls_intercept]`: which CONNECT tunnels are bumped; `None`: all are spliced.
    pub tls_intercept: Option<std::sync::Arc<crate::tls_intercept::Intercept>>,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub mode: Mode,
    /// TLS termination: clients speak HTTPS to this port.
    pub tls: Option<tls::ServerTls>,
    /// How much error pages on this port tell.
    pub error_details: respond::ErrorDetails,
}

/// What a port does with requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Browser/system proxy: absolute-form requests and CONNECT.
    Forward,
    /// Accelerator: Host-routed requests to upstream groups.
    Reverse,
}

impl Mode {
    /// The config/log word for this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Reverse => "reverse",
        }
    }
}

/// Client-side timeouts.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub client_header: Duration,
    /// A new connection must send its first byte within this (Squid `request_start_timeout`).
    pub request_start: Duration,
    pub client_idle: Duration,
    pub client_read: Duration,
    /// Longest a response write may stay blocked by a client that does not read.
    pub client_write: Duration,
    pub tunnel_idle: Duration,
    pub shutdown: Duration,
}

/// Client-side limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Most connections one client address may hold (Squid `client_ip_max_connections`);
    /// 0 = unlimited.
    pub client_ip_max_connections: usize,
    /// Client networks not counted by `client_ip_max_connections`.
    pub client_ip_limit_exempt: Vec<ipnet::IpNet>,
    pub max_request_header_size: usize,
    pub max_uri_length: usize,
}

/// Forward-proxy behaviour.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Inclusive port ranges CONNECT may reach.
    pub connect_ports: Vec<(u16, u16)>,
    pub forwarded_for: ForwardedFor,
    pub via: bool,
    pub pass_proxy_authorization: bool,
    /// Protocols an absolute-form request may switch to (`http_upgrade_request_protocols`).
    pub upgrade_protocols: Vec<String>,
}

/// Everything a request needs, shared by all connections: one config generation.
///
/// A reload builds a new `Shared` (handing over what survives, see `app`) and swaps it into
/// [`Live`]; requests already running keep the one they started with.
#[derive(Debug)]
pub struct Shared {
    /// Counts successful loads: 1 at start, +1 per reload.
    pub generation: u64,
    pub config: Config,
    pub via: headers::ViaIdentity,
    pub access: Rules,
    /// Verifies `proxy_auth` credentials; this generation's password file and tables.
    pub auth: Option<crate::auth::Authenticator>,
    pub upstream: Upstream,
    pub upstream_config: crate::upstream::Config,
    /// The same log across generations, so a reload loses and reorders no lines.
    pub access_log: std::sync::Arc<AccessLog>,
    pub clock: SharedClock,
    /// Upstream groups by name (reverse mode).
    pub groups: std::collections::HashMap<String, std::sync::Arc<crate::upstream::group::Group>>,
    /// The clients of groups that speak TLS, by group name: each has its own pool (see
    /// [`Upstream::with_tls`]). Plain groups share `upstream`.
    pub tls_upstreams: std::collections::HashMap<String, Upstream>,
    /// Peers of the cache hierarchy (forward mode), if any.
    pub peers: Option<std::sync::Arc<crate::upstream::peer::Peers>>,
    /// The cluster this node is a member of (`[cluster]`), if any.
    pub cluster: Option<std::sync::Arc<crate::upstream::cluster::Cluster>>,
    /// The HTTP cache (its stores outlive reloads; `behaviour` is this generation's).
    pub cache: crate::cache::lookup::Cache,
    /// Caps client connections across all listeners.
    pub connections: std::sync::Arc<tokio::sync::Semaphore>,
    /// Counters for `/metrics` and `/status`; created by `app` and carried over reloads.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Each reverse-mode site's counter slot in `metrics`, by index in
    /// `config.reverse.sites`.
    pub site_slots: Vec<usize>,
    /// Each reverse-mode site's upstream group, by index in `config.reverse.sites` (`None`: the
    /// group is missing): routing finds it by the site's index, without hashing its name.
    pub site_groups: Vec<Option<std::sync::Arc<crate::upstream::group::Group>>>,
    /// Caps connections per client address.
    pub client_slots: std::sync::Arc<client_slots::ClientSlots>,
    /// Carries requests from bumped tunnels to their origins (`[tls_intercept]`'s trust).
    pub bump_upstream: Option<Upstream>,
}

impl Shared {
    /// The client that carries requests to `group`'s servers.
    pub fn upstream_for(&self, group: &crate::upstream::group::Group) -> &Upstream {
        self.tls_upstreams
            .get(&group.config.name)
            .unwrap_or(&self.upstream)
    }

    /// Budget for opening an upstream connection.
    pub fn upstream_connect_timeout(&self) -> Duration {
        self.upstream_config.connect_timeout
    }
}

/// The current config generation, swapped whole by a reload.
///
/// Loading costs what handing a request its `Arc<Shared>` always cost (one reference count)
/// plus arc-swap's lock-free read, so the request path takes no lock to see a reload.
#[derive(Debug)]
pub struct Live(arc_swap::ArcSwap<Shared>);

impl Live {
    /// Starts at `shared`.
    pub fn new(shared: std::sync::Arc<Shared>) -> Self {
        Self(arc_swap::ArcSwap::new(shared))
    }

    /// The generation new requests run on.
    pub fn load(&self) -> std::sync::Arc<Shared> {
        self.0.load_full()
    }

    /// Makes `shared` current; returns the generation it replaces.
    pub fn swap(&self, shared: std::sync::Arc<Shared>) -> std::sync::Arc<Shared> {
        self.0.swap(shared)
    }
}
