//! The config file as written: raw serde structs, nothing validated across fields.
//!
//! Every struct denies unknown fields so a typo is an error with a line number, not a silently
//! ignored setting. Leaf values that can be checked alone (CIDRs, ports, durations, sizes) are
//! parsed here, so serde reports them at their exact position. Cross-field checks (an ACL name
//! used by a rule must exist, ...) happen in `config::build`, which turns these structs into each
//! module's own runtime `Config`. Names follow Squid where Squid has one (`http_port`, `acl`,
//! `http_access`, `visible_hostname`, `forwarded_for`, `cache_dir`-like `cache.disk`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Name used in error pages; defaults to the machine's hostname.
    pub visible_hostname: Option<String>,
    /// Name in `Via` and for loop detection (Squid `unique_hostname`); defaults to
    /// `visible_hostname:port` with the first listening port, so several instances can run
    /// on one host.
    pub unique_hostname: Option<String>,
    /// Runtime worker threads; 0 (the default) means one per CPU core.
    #[serde(default)]
    pub workers: usize,
    /// Listening ports (Squid `http_port`); defaults to one forward port on 127.0.0.1:3128.
    #[serde(default)]
    pub http_port: Vec<HttpPort>,
    /// Named access-control lists (Squid `acl`).
    #[serde(default)]
    pub acl: BTreeMap<String, AclDef>,
    /// Ordered allow/deny rules over ACL names (Squid `http_access`); first match wins.
    #[serde(default)]
    pub http_access: Vec<AccessRule>,
    /// Proxy authentication for `proxy_auth` ACLs (Squid `auth_param`).
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub forward: Forward,
    #[serde(default)]
    pub cache: Cache,
    /// Heuristic freshness per URL (Squid `refresh_pattern`); first match wins.
    #[serde(default)]
    pub refresh_pattern: Vec<RefreshPattern>,
    /// Cache-key rewrites (Squid `store_id`); first match wins.
    #[serde(default)]
    pub store_id: Vec<StoreId>,
    /// Accelerated sites on reverse ports: Host (and path prefix) to upstream group.
    #[serde(default)]
    pub site: Vec<Site>,
    /// Upstream groups (nginx `upstream`, Squid `cache_peer ... originserver`).
    #[serde(default)]
    pub upstream: BTreeMap<String, UpstreamGroup>,
    /// Reverse-mode request headers.
    #[serde(default)]
    pub reverse: Reverse,
    /// Parent and sibling caches (Squid `cache_peer`).
    #[serde(default)]
    pub peer: Vec<Peer>,
    /// How parents are chosen and how long unreachable peers are skipped.
    #[serde(default)]
    pub hierarchy: Hierarchy,
    /// Cluster mode: the members that share one cache, each key owned by one of them.
    pub cluster: Option<Cluster>,
    /// Requests that must go through a parent (Squid `never_direct`), as allow/deny rules.
    #[serde(default)]
    pub never_direct: Vec<AccessRule>,
    /// Requests that must go direct (Squid `always_direct`), as allow/deny rules.
    #[serde(default)]
    pub always_direct: Vec<AccessRule>,
    /// Where the ICP server listens, UDP `host:port` (Squid `icp_port`, usually 3130); unset:
    /// no ICP server.
    #[serde(default, deserialize_with = "optional_socket_addr")]
    pub icp_port: Option<SocketAddr>,
    /// Who may send us ICP queries (Squid `icp_access`), as allow/deny rules; default:
    /// loopback and private networks.
    #[serde(default)]
    pub icp_access: Vec<AccessRule>,
    /// How long a miss waits for the ICP replies of peers with an `icp_port` (Squid
    /// `icp_query_timeout`); default 2s.
    pub icp_query_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub log: Log,
    /// The admin listener (`/metrics`, `/status`, `/cache`).
    #[serde(default)]
    pub admin: Admin,
    /// How much error pages tell on every port that does not say (`full` or `minimal`);
    /// without it, `minimal` on reverse ports and `full` on forward ports.
    pub error_details: Option<ErrorDetails>,
    /// The operator's HTML page per status code (`502 = "/etc/cuttle/502.html"`), read at load.
    #[serde(default)]
    pub error_pages: BTreeMap<String, String>,
    /// TLS interception of CONNECT tunnels (bump / splice / deny); absent: splice all.
    pub tls_intercept: Option<super::intercept::RawTlsIntercept>,
}

/// `[admin]`: the admin listener and who may use it.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// `host:port`, or `"none"` to disable; default `127.0.0.1:3180`.
    pub listen: Option<String>,
    /// Allow/deny rules over `[acl]` names, checked against the connecting peer; default:
    /// loopback clients only.
    #[serde(default)]
    pub access: Vec<AccessRule>,
}

/// How much an error page tells.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ErrorDetails {
    /// Cause (which may name an upstream), URL, proxy name and version.
    Full,
    /// The status only.
    Minimal,
}

/// One `refresh_pattern` line: `regex`, then Squid's min / percent / max.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshPattern {
    pub regex: String,
    #[serde(default)]
    pub case_insensitive: bool,
    pub min: HumanDuration,
    pub percent: u32,
    pub max: HumanDuration,
    /// Squid's `override-expire`: `min` also holds over a shorter explicit lifetime.
    #[serde(default, rename = "override-expire", alias = "override_expire")]
    pub override_expire: bool,
    /// Squid's `override-lastmod`: `min` also holds over the Last-Modified factor.
    #[serde(default, rename = "override-lastmod", alias = "override_lastmod")]
    pub override_lastmod: bool,
    /// Squid's `ignore-reload`: a client's reload (`no-cache`, `max-age=0`) does not bypass
    /// a fresh stored response.
    #[serde(default, rename = "ignore-reload", alias = "ignore_reload")]
    pub ignore_reload: bool,
    /// Squid's `store-stale`: store responses RFC 9111 §3 gives no freshness to (they are
    /// revalidated before use).
    #[serde(default, rename = "store-stale", alias = "store_stale")]
    pub store_stale: bool,
}

/// One `store_id` rewrite (Squid `store_id`, declaratively): URLs matching `regex` are stored
/// under `replace` (with `$1`.. from the match), so mirrors of one file share one object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreId {
    pub regex: String,
    pub replace: String,
}

/// One listening port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPort {
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub mode: Mode,
    /// Terminate TLS on this port (Squid `https_port`).
    #[serde(default)]
    pub tls: Option<PortTls>,
    /// How much error pages on this port tell; overrides the global `error_details`.
    pub error_details: Option<ErrorDetails>,
}

/// A TLS port's certificate chain and private key, PEM files (paths relative to the working
/// directory).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortTls {
    /// The certificate chain, leaf first.
    pub cert: String,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: String,
}

/// What a listening port does with requests.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A browser/system proxy: absolute-form requests and CONNECT.
    #[default]
    Forward,
    /// An accelerator in front of origin servers (Squid `http_port ... accel`).
    Reverse,
}

/// One cache peer (Squid `cache_peer HOST TYPE PORT ... OPTIONS`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub host: String,
    pub port: u16,
    /// The peer's ICP port (Squid `cache_peer ... ICP-PORT`, usually 3130): it is asked over
    /// ICP (RFC 2186) before a miss is forwarded. Unset or 0: never (a sibling is then asked
    /// over HTTP with `only-if-cached`).
    pub icp_port: Option<u16>,
    /// `parent` or `sibling`.
    #[serde(rename = "type")]
    pub kind: PeerType,
    /// Name used in logs and for CARP (Squid `name=`); defaults to `host`.
    pub name: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Don't store what this peer served.
    #[serde(default)]
    pub proxy_only: bool,
    /// Never ask this sibling.
    #[serde(default)]
    pub no_query: bool,
    /// The parent of last resort.
    #[serde(default)]
    pub default: bool,
    /// `user:password` sent as Basic `Proxy-Authorization` to this peer.
    pub login: Option<String>,
    /// Speak TLS to the peer itself (Squid `cache_peer ... tls`).
    #[serde(default)]
    pub tls: bool,
    /// PEM certificates to trust for the peer instead of the system's roots.
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// The name sent in SNI and checked against the certificate; default: `host`.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Check the peer's certificate (turn off only for testing).
    #[serde(default = "default_true")]
    pub tls_verify: bool,
    /// ALPN: `h2`, `http/1.1` or both; default `http/1.1` only.
    #[serde(default)]
    pub protocols: Option<Vec<String>>,

    /// An absolute `http://` URL requested through this peer to probe it (Squid `monitorurl=`).
    pub monitorurl: Option<String>,
    /// Time between probes (Squid `monitorinterval=`); default 300s, as in Squid.
    pub monitorinterval: Option<HumanDuration>,
    /// How long one probe may take (Squid `monitortimeout=`); default 10s, never more than
    /// the interval.
    pub monitortimeout: Option<HumanDuration>,
}

/// `[cluster]`: the members of a cluster; the same file can serve every member, each picking
/// itself with `self` or `--cluster-self`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// This node's member name.
    #[serde(rename = "self")]
    pub self_name: Option<String>,
    #[serde(default)]
    pub member: Vec<ClusterMember>,
    /// Time between connection probes of each other member; default 2s.
    pub probe_interval: Option<HumanDuration>,
    /// How long one probe may take; default 1s.
    pub probe_timeout: Option<HumanDuration>,
    /// How long a member whose connection failed is skipped unless a probe revives it
    /// (Squid `dead_peer_timeout`); default 10s.
    pub dead_peer_timeout: Option<HumanDuration>,
    /// How long a non-owner serves its copy of a very hot object; unset: no hot copies.
    pub hot_copy_ttl: Option<HumanDuration>,
    /// Largest body kept as a hot copy; default 64 KiB.
    pub hot_copy_max_size: Option<ByteSize>,
    /// Lookups of one key within `hot_copy_ttl` that make it hot; default 10.
    pub hot_copy_threshold: Option<u32>,
    /// Memory all hot copies may take; default 16 MiB.
    pub hot_copy_memory: Option<ByteSize>,
}

/// One `[[cluster.member]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterMember {
    /// Hashed by CARP to place keys: keep it stable when the address changes.
    pub name: String,
    /// `host:port` where the other members reach this one (its proxy port).
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `host:port` of its admin listener, where admin purges (`POST /purge`) at the other
    /// members are sent; unset: its address's host with this node's admin port.
    pub admin: Option<String>,
}

/// Squid's peer types.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PeerType {
    Parent,
    Sibling,
}

/// Hierarchy settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hierarchy {
    /// `first_up`, `round_robin`, `weighted_round_robin`, `carp` or `sourcehash`.
    pub parent_selection: String,
    /// How long an unreachable peer is skipped (Squid `dead_peer_timeout`).
    pub dead_peer_timeout: HumanDuration,
}

impl Default for Hierarchy {
    fn default() -> Self {
        Self {
            parent_selection: "first_up".to_owned(),
            dead_peer_timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// One accelerated site.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Host names: exact (`www.example.com`), suffix (`*.example.com`), or `*` for any.
    pub hosts: Vec<String>,
    /// Only requests whose path starts with this (default `/`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// The upstream group serving the site.
    pub upstream: String,
    /// `Host` sent upstream: `preserve` (default), `upstream` (the server's address), or a name.
    #[serde(default)]
    pub host_header: Option<String>,
}

/// One upstream group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamGroup {
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    #[serde(deserialize_with = "server_list")]
    pub servers: Vec<UpstreamServer>,
    /// Extra attempts on other servers after a failure (nginx `proxy_next_upstream_tries` - 1).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Which failures move an idempotent request to the next server (nginx
    /// `proxy_next_upstream`): `error`, `timeout`, `http_500`, `http_502`, `http_503`, `http_504`.
    #[serde(default = "default_next_upstream")]
    pub next_upstream: Vec<String>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// Speak HTTPS to the servers.
    #[serde(default)]
    pub tls: bool,
    /// PEM certificates to trust for the servers instead of the system's roots.
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// The name sent in SNI and checked against the certificates; default: each server's host.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Check the servers' certificates (turn off only for testing).
    #[serde(default = "default_true")]
    pub tls_verify: bool,
    /// ALPN: `h2`, `http/1.1` or both; default `http/1.1` only.
    #[serde(default)]
    pub protocols: Option<Vec<String>>,
}

fn default_true() -> bool {
    true
}

fn default_algorithm() -> String {
    "round_robin".to_owned()
}

fn default_retries() -> u32 {
    2
}

fn default_next_upstream() -> Vec<String> {
    vec!["error".to_owned(), "timeout".to_owned()]
}

/// One server in a group (nginx `server` line): a table, or just its address as a string
/// (`servers = ["10.0.0.11:8080"]`, what an nginx admin writes first) for all the defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamServer {
    /// `host:port`; names are resolved again for each new connection.
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Failures within `fail_timeout` that take the server out for `fail_timeout`; 0 disables.
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    #[serde(default = "default_fail_timeout")]
    pub fail_timeout: HumanDuration,
    #[serde(default)]
    pub backup: bool,
    /// Most simultaneous requests; 0 = no limit.
    #[serde(default)]
    pub max_conns: u32,
    #[serde(default)]
    pub down: bool,
}

/// `servers`: each entry a table or an address string.
fn server_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<UpstreamServer>, D::Error> {
    /// One entry of the list.
    struct Entry(UpstreamServer);

    impl<'de> Deserialize<'de> for Entry {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(EntryVisitor)
        }
    }

    struct EntryVisitor;

    impl<'de> Visitor<'de> for EntryVisitor {
        type Value = Entry;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a server: \"10.0.0.11:8080\" or { address = \"10.0.0.11:8080\", weight = 2 }",
            )
        }

        fn visit_str<E: de::Error>(self, address: &str) -> Result<Entry, E> {
            // Read as the table `{ address = "..." }`, so every other field gets the default
            // the struct declares.
            let table = de::value::MapDeserializer::new(std::iter::once(("address", address)));
            UpstreamServer::deserialize(table).map(Entry)
        }

        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
            UpstreamServer::deserialize(de::value::MapAccessDeserializer::new(map)).map(Entry)
        }
    }

    let entries = Vec::<Entry>::deserialize(d)?;
    Ok(entries.into_iter().map(|Entry(server)| server).collect())
}

fn default_weight() -> u32 {
    1
}

fn default_max_fails() -> u32 {
    1
}

fn default_fail_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// Active health checks for a group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    #[serde(default = "default_check_timeout")]
    pub timeout: HumanDuration,
    /// Consecutive successes that bring a server back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take it out.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Healthy statuses, e.g. `"200-399"`.
    #[serde(default = "default_expect")]
    pub expect_status: PortRange,
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

fn default_check_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

fn default_rise() -> u32 {
    2
}

fn default_fall() -> u32 {
    3
}

fn default_expect() -> PortRange {
    PortRange {
        low: 200,
        high: 399,
    }
}

/// Request headers added in reverse mode.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reverse {
    /// Add `X-Forwarded-Proto`.
    pub x_forwarded_proto: bool,
    /// Add an RFC 7239 `Forwarded` element (`for`, `proto`, `host`).
    pub forwarded: bool,
    /// Clients (proxies in front of cuttle) whose `Forwarded` / `X-Forwarded-*` fields are kept
    /// and appended to; from anyone else they are replaced by cuttle's own.
    pub trusted_proxies: Vec<Cidr>,
    /// Protocols a client may switch to with `Upgrade` on reverse ports (Squid
    /// `http_upgrade_request_protocols`); others are ignored (RFC 9110 §7.8).
    pub http_upgrade_request_protocols: Vec<String>,
}

impl Default for Reverse {
    fn default() -> Self {
        Self {
            x_forwarded_proto: true,
            forwarded: true,
            trusted_proxies: Vec::new(),
            http_upgrade_request_protocols: vec!["websocket".to_owned()],
        }
    }
}

/// One ACL: exactly one matcher type, as in Squid (`acl NAME TYPE VALUES...`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum AclDef {
    /// Client address in one of these networks.
    Src(Vec<Cidr>),
    /// Destination address literal in one of these networks (Squid `dst`; names are not
    /// resolved for this check).
    Dst(Vec<Cidr>),
    /// Destination host equals a name, or ends with a `.suffix` (matching the bare name too).
    Dstdomain(Vec<String>),
    /// Destination port in one of these ports or ranges.
    Port(Vec<PortRange>),
    /// Request method is one of these.
    Method(Vec<MethodName>),
    /// Squid `url_regex`: regexes over the whole URL; `-i` makes the ones after it
    /// case-insensitive, `+i` case-sensitive again.
    #[serde(rename = "url_regex")]
    UrlRegex(Vec<String>),
    /// Squid `urlpath_regex`: regexes over the path and query.
    #[serde(rename = "urlpath_regex")]
    UrlpathRegex(Vec<String>),
    /// Squid `dstdom_regex`: regexes over the destination host.
    #[serde(rename = "dstdom_regex")]
    DstdomRegex(Vec<String>),
    /// Squid `browser`: regexes over the `User-Agent` field.
    Browser(Vec<String>),
    /// Squid `time`: day letters (`SMTWHFA`, `D` weekdays) and/or `HH:MM-HH:MM`, local time.
    Time(Vec<String>),
    /// Squid `maxconn`: the client's address holds more than this many connections.
    Maxconn(usize),
    /// Squid `proxy_auth`: `["REQUIRED"]` (any verified user) or user names (`-i` first
    /// for any case); needs `[auth.basic]`.
    #[serde(rename = "proxy_auth")]
    ProxyAuth(Vec<String>),
    /// Squid `ssl::server_name`: the TLS server name (the CONNECT host, or the SNI inside a
    /// bumped connection) equals a name or ends with a `.suffix`; for `[tls_intercept]` rules.
    #[serde(rename = "ssl::server_name")]
    SslServerName(Vec<String>),
}

/// `[auth]`: how `proxy_auth` ACLs learn who a client is.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// `[auth.basic]`: Basic credentials checked against an htpasswd file.
    pub basic: Option<BasicAuth>,
}

/// `[auth.basic]` (Squid `auth_param basic ...`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The password file in Apache's htpasswd format (bcrypt, `{SHA}` or `$apr1$` entries),
    /// relative to the working directory; read at load and again at each reload.
    pub password_file: String,
    /// Shown in the client's login prompt (Squid `realm`).
    #[serde(default = "default_realm")]
    pub realm: String,
    /// How long verified credentials are trusted without checking the hash again (Squid
    /// `credentialsttl`).
    #[serde(default = "default_credentialsttl")]
    pub credentialsttl: HumanDuration,
    /// Failed attempts from one client address before it gets 407 unchecked.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// How long failures are counted, from an address's first failure.
    #[serde(default = "default_failure_window")]
    pub failure_window: HumanDuration,
}

fn default_realm() -> String {
    "cuttle proxy".to_owned()
}

fn default_credentialsttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

fn default_max_failures() -> u32 {
    10
}

fn default_failure_window() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

/// One `http_access` line: `{ allow = ["a", "!b"] }` or `{ deny = [...] }`; all ACLs must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

/// Timeouts, all human durations ("30s", "2m").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect to an upstream (Squid `connect_timeout`).
    pub connect: HumanDuration,
    /// Longest wait for any upstream read, header or body (Squid `read_timeout`).
    pub read: HumanDuration,
    /// A client must send a complete request header within this (Squid `request_timeout`).
    pub client_header: HumanDuration,
    /// A new connection must send its first byte within this (Squid `request_start_timeout`;
    /// at most `client_header`).
    pub request_start: HumanDuration,
    /// An idle keep-alive client connection is closed after this (`client_idle_pconn_timeout`).
    pub client_idle: HumanDuration,
    /// An idle keep-alive connection to an upstream server is closed after this (Squid
    /// `server_idle_pconn_timeout`).
    pub server_idle: HumanDuration,
    /// Longest wait for the next piece of a request body.
    pub client_read: HumanDuration,
    /// Longest a response write may stay blocked by a client that stopped reading (Squid
    /// `write_timeout`, nginx `send_timeout`).
    pub client_write: HumanDuration,
    /// A CONNECT tunnel or a switched (`Upgrade`) connection with no traffic either way is
    /// closed after this.
    pub tunnel_idle: HumanDuration,
    /// On SIGTERM, in-flight requests get this long to finish (Squid `shutdown_lifetime`).
    pub shutdown: HumanDuration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = |secs| HumanDuration(Duration::from_secs(secs));
        Self {
            connect: s(10),
            read: s(60),
            client_header: s(30),
            request_start: s(10),
            client_idle: s(120),
            server_idle: s(90),
            client_read: s(60),
            client_write: s(60),
            tunnel_idle: s(600),
            shutdown: s(30),
        }
    }
}

/// Size and count limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Simultaneous client connections; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Connections one client address may hold (Squid `client_ip_max_connections`); 0 =
    /// unlimited. Beyond it a new connection is answered 429 and closed.
    pub client_ip_max_connections: usize,
    /// Client networks `client_ip_max_connections` does not count (loopback by default).
    pub client_ip_limit_exempt: Vec<Cidr>,
    /// Request header section, without the request line (Squid `request_header_max_size`): 431.
    #[serde(deserialize_with = "size")]
    pub max_request_header_size: ByteSize,
    /// Request-target length: 414.
    pub max_uri_length: usize,
    /// Upstream response header section (Squid `reply_header_max_size`): 502.
    #[serde(deserialize_with = "size")]
    pub max_response_header_size: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            client_ip_max_connections: 256,
            client_ip_limit_exempt: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            max_request_header_size: ByteSize::kib(64),
            max_uri_length: 8192,
            max_response_header_size: ByteSize::kib(64),
        }
    }
}

/// Forward-proxy behaviour.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Forward {
    /// Ports CONNECT may tunnel to; anything else is 403 whatever `http_access` says.
    pub connect_ports: Vec<PortRange>,
    /// What to do with `X-Forwarded-For` (Squid `forwarded_for`).
    pub forwarded_for: ForwardedFor,
    /// Add a `Via` entry to requests and responses (Squid `via`).
    pub via: bool,
    /// Forward the client's `Proxy-Authorization` upstream instead of removing it.
    pub pass_proxy_authorization: bool,
    /// Protocols a client may switch to with `Upgrade` in an absolute-form request (Squid
    /// `http_upgrade_request_protocols`); none by default, as in Squid.
    pub http_upgrade_request_protocols: Vec<String>,
}

impl Default for Forward {
    fn default() -> Self {
        Self {
            connect_ports: vec![PortRange {
                low: 443,
                high: 443,
            }],
            forwarded_for: ForwardedFor::On,
            via: true,
            pass_proxy_authorization: false,
            http_upgrade_request_protocols: Vec::new(),
        }
    }
}

/// Squid's `forwarded_for` values.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForwardedFor {
    /// Append the client address.
    #[default]
    On,
    /// Append `unknown`.
    Off,
    /// Leave the field as received.
    Transparent,
    /// Remove the field.
    Delete,
    /// Replace the field with the client address alone.
    Truncate,
}

/// One `[[cache.slice]]` rule: objects it matches are fetched with range requests of `size`
/// bytes and stored block by block (nginx `slice`). First match wins.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceRule {
    /// Matches the request URL (like `refresh_pattern`).
    #[serde(default)]
    pub url_regex: Option<String>,
    /// Matches the host: exact (`dl.example.com`) or a suffix (`*.example.com`).
    #[serde(default)]
    pub site: Option<String>,
    /// Block size, e.g. `"1 MiB"`.
    #[serde(deserialize_with = "size")]
    pub size: ByteSize,
}

/// Cache behaviour and storage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    /// Serve stale up to this long past expiry when the upstream cannot be reached (Squid
    /// `max_stale`); 0 = never without a `stale-if-error`. Default one day (see README).
    pub max_stale: HumanDuration,
    /// RFC 9213 targeted fields that override Cache-Control for this cache, in order.
    /// Default: `cuttle-cache-control`, plus `cdn-cache-control` when a port is in reverse mode.
    pub targeted_fields: Option<Vec<String>>,
    /// Add Squid's `X-Cache: HIT|MISS from <host>`.
    pub x_cache: bool,
    /// This cache's name in `Cache-Status` (RFC 9211 §2); give each cache of a hierarchy its own.
    pub status_name: String,
    /// A Range request starting below this offset fetches (and caches) the whole object
    /// (Squid `range_offset_limit`); beyond it the Range is passed through.
    #[serde(deserialize_with = "size")]
    pub range_offset_limit: ByteSize,
    /// Concurrent misses on one URL make one upstream request (Squid `collapsed_forwarding`).
    pub collapsed_forwarding: bool,
    /// How long collapsed requests wait for the first one's response.
    pub collapsed_forwarding_timeout: HumanDuration,
    /// Client networks allowed to send PURGE.
    pub purge_from: Vec<Cidr>,
    /// Keep `Set-Cookie` in stored responses, so hits replay it to every client. Off by
    /// default: a cookie goes only to the client whose request fetched the response.
    pub store_set_cookie: bool,
    /// How long error answers without explicit freshness are cached (Squid `negative_ttl`,
    /// default 0: never, as RFC 9111 §3 asks).
    pub negative_ttl: HumanDuration,
    /// What may be served from and stored in the cache (Squid `cache allow|deny`), as
    /// allow/deny rules over `[acl]` names; none: everything cacheable is.
    pub access: Vec<AccessRule>,

    /// Response fields read as surrogate keys (tags), also the PURGE request fields naming tags
    /// to purge. Default `["surrogate-key", "cache-tag"]`.
    pub tag_fields: Vec<String>,
    /// Remove the tag fields from responses sent to clients.
    pub strip_tag_fields: bool,
    /// Admin listeners (`host:port`) of other caches every purge is forwarded to.
    pub purge_propagate: Vec<String>,
    /// Slice mode (nginx `slice`): matching objects are fetched and stored as blocks.
    pub slice: Vec<SliceRule>,
    pub memory: MemoryCache,
    pub disk: DiskCache,
}

impl Default for Cache {
    fn default() -> Self {
        let loopback = |s: &str| s.parse().map(Cidr).ok();
        Self {
            max_stale: HumanDuration(Duration::from_secs(86_400)),
            targeted_fields: None,
            x_cache: false,
            status_name: "cuttle".to_owned(),
            range_offset_limit: ByteSize::mib(1),
            collapsed_forwarding: true,
            collapsed_forwarding_timeout: HumanDuration(Duration::from_secs(30)),
            purge_from: ["127.0.0.0/8", "::1/128"]
                .into_iter()
                .filter_map(loopback)
                .collect(),
            store_set_cookie: false,
            negative_ttl: HumanDuration(Duration::ZERO),
            access: Vec::new(),

            tag_fields: vec!["surrogate-key".to_owned(), "cache-tag".to_owned()],
            strip_tag_fields: true,
            purge_propagate: Vec::new(),
            slice: Vec::new(),
            memory: MemoryCache::default(),
            disk: DiskCache::default(),
        }
    }
}

/// The in-memory tier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryCache {
    #[serde(deserialize_with = "size")]
    pub max_size: ByteSize,
    #[serde(deserialize_with = "size")]
    pub max_object_size: ByteSize,
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self {
            max_size: ByteSize::mib(256),
            max_object_size: ByteSize::mib(1),
        }
    }
}

/// The on-disk tier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskCache {
    /// Directory; a leading `~/` means the user's home directory. Empty disables the tier.
    pub path: String,
    #[serde(deserialize_with = "size")]
    pub max_size: ByteSize,
    #[serde(deserialize_with = "size")]
    pub max_object_size: ByteSize,
}

impl Default for DiskCache {
    fn default() -> Self {
        Self {
            path: "~/.cache/cuttle".to_owned(),
            max_size: ByteSize::gib(1),
            max_object_size: ByteSize::mib(128),
        }
    }
}

/// Logging.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `stdout`, `stderr`, `none`, or a file path (appended to).
    pub access_log: String,
    /// Access-log line format: `squid` (Squid's native), `combined` (Apache/nginx) or `json`.
    pub access_log_format: AccessLogFormat,
    /// Squid's `strip_query_terms`: log URLs without what follows their `?`.
    pub strip_query_terms: bool,
    /// Longest time a written line may wait in the buffer before it is flushed (nginx's
    /// `flush=`; `0s` flushes every batch, Squid's `buffered_logs off`).
    pub access_log_flush: HumanDuration,
    /// Diagnostics level for `tracing` (`error`..`trace`, or a filter like `cuttle=debug`).
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            access_log: "stdout".to_owned(),
            access_log_format: AccessLogFormat::Squid,
            strip_query_terms: true,
            access_log_flush: HumanDuration(Duration::from_millis(500)),
            level: "info".to_owned(),
        }
    }
}

/// Access-log line formats.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    #[default]
    Squid,
    Combined,
    Json,
}

// === leaf value types, checked where they stand ===

/// A network in CIDR notation; a bare address means a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(Self(net.trunc()));
        }
        s.parse::<std::net::IpAddr>()
            .map(|ip| Self(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("`{s}` is not an address or CIDR network"))
    }
}

/// An inclusive port range; a single port is `low == high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a port (1-65535) or a range like `1025-65535`");
        let (low, high) = match s.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let low: u16 = low.parse().map_err(|_| bad())?;
        let high: u16 = high.parse().map_err(|_| bad())?;
        if low == 0 || low > high {
            return Err(bad());
        }
        Ok(Self { low, high })
    }
}

/// An HTTP method name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodName(pub http::Method);

impl FromStr for MethodName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        http::Method::from_bytes(s.as_bytes())
            .map(Self)
            .map_err(|_| format!("`{s}` is not a method name"))
    }
}

/// A duration written for humans: "30s", "2m", "1h 30m", "250ms".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// Longest duration accepted anywhere: larger values would overflow deadline arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s)
            .map_err(|e| format!("`{s}` is not a duration like \"30s\" or \"2m\": {e}"))?;
        if d > MAX_DURATION {
            return Err(format!("`{s}` is longer than the maximum of 365 days"));
        }
        Ok(Self(d))
    }
}

/// Deserialises a string through `FromStr`, keeping the parse message.
struct FromStrVisitor<T>(std::marker::PhantomData<T>, &'static str);

impl<T: FromStr<Err = String>> Visitor<'_> for FromStrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        v.to_string().parse().map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        v.to_string().parse().map_err(E::custom)
    }
}

macro_rules! deserialize_from_str {
    ($ty:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(FromStrVisitor(std::marker::PhantomData, $expecting))
            }
        }
    };
}

deserialize_from_str!(Cidr, "an address or CIDR network string");
deserialize_from_str!(PortRange, "a port number or a \"low-high\" range");
deserialize_from_str!(MethodName, "a method name string");
deserialize_from_str!(HumanDuration, "a duration string like \"30s\"");

/// What a size error shows as the expected form.
pub const SIZE_EXAMPLE: &str = "a size like \"256 MiB\", \"64 KiB\" or a number of bytes";
/// What an address error shows as the expected form.
pub const ADDR_EXAMPLE: &str = "an IP address and port like \"127.0.0.1:3128\" or \"[::1]:3128\"";

/// Deserialises a size: `"256 MiB"`, `"64 KiB"`, `"1 GB"` or a plain number of bytes; the
/// error shows the expected form.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    struct SizeVisitor;
    impl Visitor<'_> for SizeVisitor {
        type Value = ByteSize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(SIZE_EXAMPLE)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
            v.parse::<ByteSize>()
                .map_err(|_| E::custom(format!("`{v}` is not {SIZE_EXAMPLE}")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
            Ok(ByteSize::b(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
            u64::try_from(v)
                .map(ByteSize::b)
                .map_err(|_| E::custom(format!("`{v}` is not {SIZE_EXAMPLE}")))
        }
    }
    d.deserialize_any(SizeVisitor)
}

/// Deserialises a listening address, an IP literal and a port (names are not resolved for a
/// socket to bind); the error shows the expected form.
pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    struct AddrVisitor;
    impl Visitor<'_> for AddrVisitor {
        type Value = SocketAddr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(ADDR_EXAMPLE)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
            v.parse()
                .map_err(|_| E::custom(format!("`{v}` is not {ADDR_EXAMPLE}")))
        }
    }
    d.deserialize_any(AddrVisitor)
}

/// An optional `host:port` ([`socket_addr`] when present).
pub fn optional_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_a_table_or_just_its_address() {
        let group: UpstreamGroup = toml::from_str(
            "servers = [\"10.0.0.11:8080\", { address = \"10.0.0.12:8080\", weight = 3, backup = true }]",
        )
        .unwrap();
        let [short, table] = &group.servers[..] else {
            panic!("two servers: {:?}", group.servers);
        };
        assert_eq!(short.address, "10.0.0.11:8080");
        assert_eq!(
            (
                short.weight,
                short.max_fails,
                short.fail_timeout.0,
                short.backup
            ),
            (1, 1, Duration::from_secs(10), false),
            "a string gets the table's defaults"
        );
        assert_eq!(table.address, "10.0.0.12:8080");
        assert_eq!((table.weight, table.backup), (3, true));
        // A table still refuses unknown keys, and anything else says what it expects.
        let e = toml::from_str::<UpstreamGroup>("servers = [{ address = \"a:1\", wieght = 2 }]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wieght"), "{e}");
        let e = toml::from_str::<UpstreamGroup>("servers = [8080]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"10.0.0.11:8080\" or { address"), "{e}");
    }

    #[test]
    fn cidr_accepts_networks_and_bare_addresses() {
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap().0.to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().0.to_string(), "::1/128");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
    }

    #[test]
    fn port_ranges_parse_and_reject_nonsense() {
        assert_eq!(
            "1025-65535".parse::<PortRange>().unwrap(),
            PortRange {
                low: 1025,
                high: 65535
            }
        );
        assert_eq!(
            "443".parse::<PortRange>().unwrap(),
            PortRange {
                low: 443,
                high: 443
            }
        );
        assert!("0".parse::<PortRange>().is_err());
        assert!("90-80".parse::<PortRange>().is_err());
        assert!("70000".parse::<PortRange>().is_err());
    }

    #[test]
    fn durations_are_human() {
        assert_eq!(
            "250ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(250)
        );
        assert!("soon".parse::<HumanDuration>().is_err());
        assert!("292400000000years".parse::<HumanDuration>().is_err());
    }
}
