//! From the file as written to each module's runtime config: defaults, cross-field checks,
//! and errors that name the file, line and key.
//!
//! Each module owns its `Config` type (`proxy::Config`, `upstream::Config`, ...); nothing outside
//! `config` sees the raw serde structs of `config::file`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::error::ConfigError;
use super::file::{self, AccessRule, AclDef, FileConfig};
use super::locate::{line_of, render, Seg};
use super::Config;
use crate::access::time::TimeSpec;
use crate::access::{Acl, Action, ProxyAuthUsers, Rule, Rules};
use crate::auth::{Authenticator, BasicConfig};
use crate::proxy::next_hop::HostHeader;
use crate::proxy::respond::{ErrorDetails, ErrorPages};
use crate::proxy::reverse::{HostPattern, ReverseConfig, Site};
use crate::proxy::tls::{LoadError as TlsLoadError, ServerTls};
use crate::proxy::{self, headers::ViaIdentity};
use crate::upstream::group::{GroupConfig, HealthCheckConfig, NextUpstream, ServerConfig};
use crate::upstream::hierarchy::{ParentSelection, PeerInfo, PeerKind};
use crate::upstream::peer::{HierarchyConfig, Monitor, PeerConfig};
use crate::upstream::select::Algorithm;
use crate::upstream::tls::{ClientTls, SetupError};
use crate::{cache, log, upstream};

mod slice;

/// The listener used when the file has none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";

/// Builds errors located in one source text.
pub(super) struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, path: &[Seg<'_>], reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line: line_of(self.src, path),
            key: render(path),
            reason: reason.into(),
        }
    }
}

/// Validates `raw` (parsed from `src`, named `file` in errors) into a [`Config`].
pub fn build(file: &str, src: &str, raw: FileConfig) -> Result<Config, ConfigError> {
    let cx = Ctx { file, src };
    let visible_hostname = match raw.visible_hostname.clone() {
        Some(name) => {
            if ViaIdentity::new(&name).is_none() {
                return Err(cx.err(
                    &[Seg::Key("visible_hostname")],
                    format!("`{name}` is not a valid host name token"),
                ));
            }
            name
        }
        None => system_hostname(),
    };
    if let Some(unique) = &raw.unique_hostname {
        if !proxy::headers::is_received_by(unique) {
            return Err(cx.err(
                &[Seg::Key("unique_hostname")],
                format!("`{unique}` is not a host name token with an optional port, like \"proxy1.example.net\" or \"proxy.example.net:3129\""),
            ));
        }
    }
    let listeners = build_listeners(&cx, &raw.http_port, raw.error_details)?;
    let error_pages = build_error_pages(&cx, &raw.error_pages)?;
    let access = build_access(&cx, &raw.acl, &raw.http_access)?;
    let auth = build_auth(&cx, &raw)?;
    let t = &raw.timeouts;
    for (key, value) in [
        ("connect", t.connect),
        ("read", t.read),
        ("client_header", t.client_header),
        ("request_start", t.request_start),
        ("client_idle", t.client_idle),
        ("server_idle", t.server_idle),
        ("client_read", t.client_read),
        ("client_write", t.client_write),
        ("tunnel_idle", t.tunnel_idle),
    ] {
        if value.0.is_zero() {
            return Err(cx.err(
                &[Seg::Key("timeouts"), Seg::Key(key)],
                "must be greater than zero",
            ));
        }
    }
    let l = &raw.limits;
    if l.max_connections == 0 {
        return Err(cx.err(
            &[Seg::Key("limits"), Seg::Key("max_connections")],
            "must be at least 1",
        ));
    }
    let size = |key: &'static str, value: bytesize::ByteSize, min: u64| {
        if value.as_u64() < min {
            return Err(cx.err(
                &[Seg::Key("limits"), Seg::Key(key)],
                format!("must be at least {min} bytes"),
            ));
        }
        usize::try_from(value.as_u64())
            .map_err(|_| cx.err(&[Seg::Key("limits"), Seg::Key(key)], "is too large"))
    };
    let max_request_header_size = size("max_request_header_size", l.max_request_header_size, 1024)?;
    let max_response_header_size =
        size("max_response_header_size", l.max_response_header_size, 1024)?;
    if l.max_uri_length < 64 {
        return Err(cx.err(
            &[Seg::Key("limits"), Seg::Key("max_uri_length")],
            "must be at least 64",
        ));
    }
    let f = &raw.forward;
    if f.connect_ports.is_empty() {
        tracing::info!("forward.connect_ports is empty: CONNECT is disabled");
    }
    let upstream_groups = build_groups(&cx, &raw.upstream)?;
    let hierarchy = build_hierarchy(&cx, &raw)?;
    let reverse = build_reverse(&cx, &raw.site, &raw.reverse, &upstream_groups)?;
    if listeners.iter().any(|l| l.mode == proxy::Mode::Reverse) && reverse.sites.is_empty() {
        return Err(cx.err(
            &[Seg::Key("http_port")],
            "a reverse port needs at least one [[site]] to serve",
        ));
    }
    let proxy = proxy::Config {
        visible_hostname,
        unique_hostname: raw.unique_hostname.clone(),
        listeners,
        timeouts: proxy::Timeouts {
            client_header: t.client_header.0,
            request_start: t.request_start.0,
            client_idle: t.client_idle.0,
            client_read: t.client_read.0,
            client_write: t.client_write.0,
            tunnel_idle: t.tunnel_idle.0,
            shutdown: t.shutdown.0,
        },
        limits: proxy::Limits {
            max_connections: l.max_connections,
            client_ip_max_connections: l.client_ip_max_connections,
            client_ip_limit_exempt: l.client_ip_limit_exempt.iter().map(|c| c.0).collect(),
            max_request_header_size,
            max_uri_length: l.max_uri_length,
        },
        forward: proxy::ForwardConfig {
            connect_ports: f.connect_ports.iter().map(|p| (p.low, p.high)).collect(),
            forwarded_for: match f.forwarded_for {
                file::ForwardedFor::On => proxy::ForwardedFor::On,
                file::ForwardedFor::Off => proxy::ForwardedFor::Off,
                file::ForwardedFor::Transparent => proxy::ForwardedFor::Transparent,
                file::ForwardedFor::Delete => proxy::ForwardedFor::Delete,
                file::ForwardedFor::Truncate => proxy::ForwardedFor::Truncate,
            },
            via: f.via,
            pass_proxy_authorization: f.pass_proxy_authorization,
            upgrade_protocols: upgrade_protocols(
                &cx,
                "forward",
                &f.http_upgrade_request_protocols,
            )?,
        },
        reverse,
        hierarchy,
        cluster: super::cluster::build(file, src, raw.cluster.as_ref())?,
        error_pages,
        cache_access: build_cache_access(&cx, &raw)?,
        icp: build_icp(&cx, &raw)?,
        tls_intercept: super::intercept::build(&cx, raw.tls_intercept.as_ref(), &raw.acl)?,
    };
    let upstream = upstream::Config {
        connect_timeout: t.connect.0,
        read_timeout: t.read.0,
        max_response_header_size,
        pool_idle_timeout: t.server_idle.0,
    };
    let accelerator = raw.http_port.iter().any(|p| p.mode == file::Mode::Reverse);
    let cache = build_cache(&cx, &raw, accelerator)?;
    let log = build_log(&cx, &raw.log)?;
    let admin = build_admin(&cx, &raw)?;
    if raw.workers > 1024 {
        return Err(cx.err(
            &[Seg::Key("workers")],
            "must be at most 1024 (0 = one per core)",
        ));
    }
    Ok(Config {
        workers: raw.workers,
        proxy,
        access,
        auth,
        upstream,
        upstream_groups,
        cache,
        log,
        admin,
    })
}

/// `[admin]`: the listen address (or `none`) and its access rules.
fn build_admin(cx: &Ctx<'_>, raw: &FileConfig) -> Result<crate::admin::Config, ConfigError> {
    let listen = match raw.admin.listen.as_deref().map(str::trim) {
        None => Some(crate::admin::DEFAULT_LISTEN.parse().map_err(|_| {
            cx.err(&[Seg::Key("admin")], "the built-in default address is invalid")
        })?),
        Some("none") => None,
        Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|_| {
            cx.err(
                &[Seg::Key("admin"), Seg::Key("listen")],
                format!(
                    "`{text}` is not an address and port; expected e.g. \"127.0.0.1:3180\", or \"none\" to disable the admin listener"
                ),
            )
        })?),
    };
    let access = if raw.admin.access.is_empty() {
        crate::admin::loopback_only()
    } else {
        let (acls, index) = build_acls(cx, &raw.acl)?;
        let rules = compile_rules_at(
            cx,
            &[Seg::Key("admin"), Seg::Key("access")],
            &raw.admin.access,
            &index,
        )?;
        Rules::new(acls, rules)
    };
    Ok(crate::admin::Config {
        listen,
        access,
        default_listen: raw.admin.listen.is_none(),
    })
}

fn build_groups(
    cx: &Ctx<'_>,
    raw: &std::collections::BTreeMap<String, file::UpstreamGroup>,
) -> Result<Vec<GroupConfig>, ConfigError> {
    let mut groups = Vec::with_capacity(raw.len());
    for (name, g) in raw {
        let at = |key| [Seg::Key("upstream"), Seg::Key(name), Seg::Key(key)];
        let algorithm = g.algorithm.parse::<Algorithm>().map_err(|_| {
            cx.err(
                &at("algorithm"),
                format!(
                    "`{}` is not one of round_robin, least_conn, ip_hash, hash, random_two",
                    g.algorithm
                ),
            )
        })?;
        if g.servers.is_empty() {
            return Err(cx.err(&at("servers"), "a group needs at least one server"));
        }
        let mut servers = Vec::with_capacity(g.servers.len());
        for (i, s) in g.servers.iter().enumerate() {
            let here = [
                Seg::Key("upstream"),
                Seg::Key(name),
                Seg::Key("servers"),
                Seg::Index(i),
            ];
            if crate::upstream::health::split_address(&s.address).is_none()
                || s.address.parse::<http::uri::Authority>().is_err()
            {
                return Err(cx.err(
                    &here,
                    format!(
                        "`{}` is not host:port like \"127.0.0.1:8080\" or \"app.internal:80\"",
                        s.address
                    ),
                ));
            }
            if s.weight == 0 {
                return Err(cx.err(&here, "weight must be at least 1"));
            }
            servers.push(ServerConfig {
                address: s.address.clone(),
                weight: s.weight,
                max_fails: s.max_fails,
                fail_timeout: s.fail_timeout.0,
                backup: s.backup,
                max_conns: s.max_conns,
                down: s.down,
            });
        }
        let mut next_upstream = NextUpstream::default();
        for (i, word) in g.next_upstream.iter().enumerate() {
            match word.as_str() {
                "error" => next_upstream.error = true,
                "timeout" => next_upstream.timeout = true,
                other => match other
                    .strip_prefix("http_")
                    .and_then(|c| c.parse::<u16>().ok())
                {
                    Some(code) if (500..600).contains(&code) => next_upstream.statuses.push(code),
                    _ => {
                        return Err(cx.err(
                            &[
                                Seg::Key("upstream"),
                                Seg::Key(name),
                                Seg::Key("next_upstream"),
                                Seg::Index(i),
                            ],
                            format!("`{other}` is not error, timeout or http_5xx"),
                        ))
                    }
                },
            }
        }
        let tls = build_group_tls(cx, name, g)?;
        let health_check = g.health_check.as_ref().map(|h| HealthCheckConfig {
            path: h.path.clone(),
            interval: h.interval.0,
            timeout: h.timeout.0,
            rise: h.rise.max(1),
            fall: h.fall.max(1),
            expect: (h.expect_status.low, h.expect_status.high),
        });
        groups.push(GroupConfig {
            name: name.clone(),
            algorithm,
            servers,
            retries: g.retries,
            next_upstream,
            health_check,
            tls,
        });
    }
    Ok(groups)
}

/// The TLS keys `[upstream.NAME]` and `[[peer]]` share.
struct TlsKeys<'a> {
    tls: bool,
    ca_file: Option<&'a str>,
    server_name: Option<&'a str>,
    verify: bool,
    protocols: Option<&'a [String]>,
}

/// A group's TLS client settings: trust roots loaded, server names checked.
fn build_group_tls(
    cx: &Ctx<'_>,
    name: &str,
    g: &file::UpstreamGroup,
) -> Result<Option<Arc<ClientTls>>, ConfigError> {
    let keys = TlsKeys {
        tls: g.tls,
        ca_file: g.tls_ca_file.as_deref(),
        server_name: g.tls_server_name.as_deref(),
        verify: g.tls_verify,
        protocols: g.protocols.as_deref(),
    };
    let hosts: Vec<_> = g
        .servers
        .iter()
        .enumerate()
        .map(|(i, server)| {
            let host = crate::upstream::health::split_address(&server.address)
                .map(|(host, _)| host)
                .unwrap_or_default();
            (vec![Seg::Key("servers"), Seg::Index(i)], host)
        })
        .collect();
    build_client_tls(cx, &[Seg::Key("upstream"), Seg::Key(name)], &keys, &hosts)
}

/// Client TLS settings for the group or peer at `prefix`: trust roots loaded, `protocols`
/// parsed, and each host of `hosts` (at its key path under `prefix`) checked as a name a
/// certificate can be verified against.
fn build_client_tls(
    cx: &Ctx<'_>,
    prefix: &[Seg<'_>],
    keys: &TlsKeys<'_>,
    hosts: &[(Vec<Seg<'_>>, String)],
) -> Result<Option<Arc<ClientTls>>, ConfigError> {
    fn under<'s>(prefix: &[Seg<'s>], tail: &[Seg<'s>]) -> Vec<Seg<'s>> {
        let mut path = prefix.to_vec();
        path.extend_from_slice(tail);
        path
    }
    let at = |key| under(prefix, &[Seg::Key(key)]);
    if !keys.tls {
        for (key, set) in [
            ("tls_ca_file", keys.ca_file.is_some()),
            ("tls_server_name", keys.server_name.is_some()),
            ("tls_verify", !keys.verify),
            ("protocols", keys.protocols.is_some()),
        ] {
            if set {
                return Err(cx.err(&at(key), "has no effect without `tls = true`"));
            }
        }
        return Ok(None);
    }
    let protocols = match keys.protocols {
        None => upstream::tls::Protocols::default(),
        Some(words) => upstream::tls::Protocols::parse(words)
            .map_err(|reason| cx.err(&at("protocols"), reason))?,
    };
    let roots = match keys.ca_file {
        None => upstream::tls::Roots::System,
        Some(path) => {
            let path = expand_home(path).ok_or_else(|| {
                cx.err(&at("tls_ca_file"), "starts with `~/` but HOME is not set")
            })?;
            upstream::tls::Roots::File(path)
        }
    };
    let settings = upstream::tls::Settings {
        roots,
        server_name: keys.server_name.map(str::to_owned),
        verify: keys.verify,
        protocols,
    };
    let tls = ClientTls::new(&settings).map_err(|e| match e {
        SetupError::CaFile(reason) => cx.err(&at("tls_ca_file"), reason),
        SetupError::ServerName(_) => cx.err(&at("tls_server_name"), e.to_string()),
        SetupError::SystemRoots(reason) | SetupError::Unsupported(reason) => {
            cx.err(&at("tls"), reason)
        }
    })?;
    for (path, host) in hosts {
        if let Err(e) = tls.server_name(host) {
            return Err(cx.err(
                &under(prefix, path),
                format!("{e}, so it cannot be checked against a certificate; set tls_server_name"),
            ));
        }
    }
    Ok(Some(Arc::new(tls)))
}

fn build_reverse(
    cx: &Ctx<'_>,
    sites: &[file::Site],
    raw: &file::Reverse,
    groups: &[GroupConfig],
) -> Result<ReverseConfig, ConfigError> {
    let mut out = Vec::with_capacity(sites.len());
    for (i, site) in sites.iter().enumerate() {
        let at = |key| [Seg::Key("site"), Seg::Index(i), Seg::Key(key)];
        if site.hosts.is_empty() {
            return Err(cx.err(&at("hosts"), "a site needs at least one host (or \"*\")"));
        }
        if !groups.iter().any(|g| g.name == site.upstream) {
            return Err(cx.err(
                &at("upstream"),
                format!(
                    "unknown upstream group `{}` (define [upstream.{}])",
                    site.upstream, site.upstream
                ),
            ));
        }
        let path_prefix = site.path_prefix.clone().unwrap_or_else(|| "/".to_owned());
        if !path_prefix.starts_with('/') {
            return Err(cx.err(&at("path_prefix"), "must start with /"));
        }
        let host_header = match site.host_header.as_deref() {
            None | Some("preserve") => HostHeader::Preserve,
            Some("upstream") => HostHeader::Upstream,
            Some(name) => HostHeader::Fixed(http::HeaderValue::from_str(name).map_err(|_| {
                cx.err(&at("host_header"), format!("`{name}` is not a valid Host"))
            })?),
        };
        let first = site.hosts.first().map_or("*", |h| h.trim());
        out.push(Site {
            name: if path_prefix == "/" {
                first.to_owned()
            } else {
                format!("{first}{path_prefix}")
            },
            hosts: site.hosts.iter().map(|h| HostPattern::parse(h)).collect(),
            path_prefix,
            upstream: site.upstream.clone(),
            host_header,
        });
    }
    Ok(ReverseConfig {
        sites: out,
        x_forwarded_proto: raw.x_forwarded_proto,
        forwarded: raw.forwarded,
        trusted_proxies: raw.trusted_proxies.iter().map(|c| c.0).collect(),
        upgrade_protocols: upgrade_protocols(cx, "reverse", &raw.http_upgrade_request_protocols)?,
    })
}

/// `http_upgrade_request_protocols` of `section`: protocol names (RFC 9110 §7.8
/// `protocol-name = token`), kept as written; matched case-insensitively.
fn upgrade_protocols(
    cx: &Ctx<'_>,
    section: &str,
    names: &[String],
) -> Result<Vec<String>, ConfigError> {
    for (i, name) in names.iter().enumerate() {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(cx.err(
                &[
                    Seg::Key(section),
                    Seg::Key("http_upgrade_request_protocols"),
                    Seg::Index(i),
                ],
                format!(
                    "`{name}` is not a protocol name (a token without a version), \
                     e.g. http_upgrade_request_protocols = [\"websocket\"]"
                ),
            ));
        }
    }
    Ok(names.to_vec())
}

/// `error_details` for a port: its own setting, else the global one, else its mode's default.
fn error_details(
    port: Option<file::ErrorDetails>,
    global: Option<file::ErrorDetails>,
    mode: proxy::Mode,
) -> ErrorDetails {
    match port.or(global) {
        Some(file::ErrorDetails::Full) => ErrorDetails::Full,
        Some(file::ErrorDetails::Minimal) => ErrorDetails::Minimal,
        None => ErrorDetails::default_for(mode),
    }
}

/// Largest custom error page: a page is sent from memory with every such error.
const MAX_ERROR_PAGE: u64 = 256 * 1024;

/// Reads `[error_pages]`: each key a status cuttle can generate (400-599), each value a
/// readable file of at most 256 KiB.
fn build_error_pages(
    cx: &Ctx<'_>,
    raw: &std::collections::BTreeMap<String, String>,
) -> Result<ErrorPages, ConfigError> {
    let mut pages = Vec::with_capacity(raw.len());
    for (code, path) in raw {
        let at = [Seg::Key("error_pages"), Seg::Key(code)];
        let status = code
            .parse::<u16>()
            .ok()
            .filter(|s| (400..=599).contains(s))
            .ok_or_else(|| {
                cx.err(
                    &at,
                    format!(
                        "`{code}` is not an error status 400-599; expected e.g. \
                         502 = \"/etc/cuttle/502.html\""
                    ),
                )
            })?;
        let len = std::fs::metadata(path)
            .map_err(|e| cx.err(&at, format!("cannot read `{path}`: {e}")))?
            .len();
        if len > MAX_ERROR_PAGE {
            return Err(cx.err(
                &at,
                format!("`{path}` is {len} bytes; an error page may be at most 256 KiB"),
            ));
        }
        let body =
            std::fs::read(path).map_err(|e| cx.err(&at, format!("cannot read `{path}`: {e}")))?;
        if std::str::from_utf8(&body).is_err() {
            return Err(cx.err(
                &at,
                format!("`{path}` is not UTF-8 (pages are sent as text/html; charset=utf-8)"),
            ));
        }
        pages.push((status, bytes::Bytes::from(body)));
    }
    Ok(ErrorPages::new(pages))
}

fn build_listeners(
    cx: &Ctx<'_>,
    ports: &[file::HttpPort],
    global_details: Option<file::ErrorDetails>,
) -> Result<Vec<proxy::ListenerConfig>, ConfigError> {
    if ports.is_empty() {
        let addr: SocketAddr = DEFAULT_LISTEN
            .parse()
            .map_err(|_| cx.err(&[Seg::Key("http_port")], "bad built-in default"))?;
        return Ok(vec![proxy::ListenerConfig {
            addr,
            mode: proxy::Mode::Forward,
            tls: None,
            error_details: error_details(None, global_details, proxy::Mode::Forward),
        }]);
    }
    let mut out: Vec<proxy::ListenerConfig> = Vec::with_capacity(ports.len());
    for (i, port) in ports.iter().enumerate() {
        if port.listen.port() != 0 && out.iter().any(|l| l.addr == port.listen) {
            return Err(cx.err(
                &[Seg::Key("http_port"), Seg::Index(i), Seg::Key("listen")],
                format!("{} is listed twice", port.listen),
            ));
        }
        let mode = match port.mode {
            file::Mode::Forward => proxy::Mode::Forward,
            file::Mode::Reverse => proxy::Mode::Reverse,
        };
        let tls = match &port.tls {
            Some(tls) => Some(build_port_tls(cx, i, tls, mode)?),
            None => None,
        };
        out.push(proxy::ListenerConfig {
            addr: port.listen,
            mode,
            tls,
            error_details: error_details(port.error_details, global_details, mode),
        });
    }
    Ok(out)
}

/// Loads a TLS port's certificate chain and key; HTTP/2 is offered on reverse ports only.
fn build_port_tls(
    cx: &Ctx<'_>,
    i: usize,
    raw: &file::PortTls,
    mode: proxy::Mode,
) -> Result<ServerTls, ConfigError> {
    let at = |key| {
        [
            Seg::Key("http_port"),
            Seg::Index(i),
            Seg::Key("tls"),
            Seg::Key(key),
        ]
    };
    let path = |key, value: &str| {
        expand_home(value).ok_or_else(|| cx.err(&at(key), "starts with `~/` but HOME is not set"))
    };
    let cert = path("cert", &raw.cert)?;
    let key = path("key", &raw.key)?;
    ServerTls::load(&cert, &key, mode == proxy::Mode::Reverse).map_err(|e| match e {
        TlsLoadError::Cert(reason) => cx.err(&at("cert"), reason),
        TlsLoadError::Key(reason) => cx.err(&at("key"), reason),
    })
}

fn build_access(
    cx: &Ctx<'_>,
    defs: &std::collections::BTreeMap<String, AclDef>,
    rules: &[AccessRule],
) -> Result<Rules, ConfigError> {
    let (acls, index) = build_acls(cx, defs)?;
    let compiled = compile_rules(cx, "http_access", rules, &index)?;
    if compiled.is_empty() {
        tracing::warn!("no http_access rules: every request will be denied");
    }
    Ok(Rules::new(acls, compiled))
}

/// The ACL table (index 0 is the built-in `all`) and each name's index.
pub(super) fn build_acls<'a>(
    cx: &Ctx<'_>,
    defs: &'a std::collections::BTreeMap<String, AclDef>,
) -> Result<(Vec<Acl>, HashMap<&'a str, usize>), ConfigError> {
    let mut acls = vec![Acl::All];
    let mut index: HashMap<&str, usize> = HashMap::from([("all", 0)]);
    for (name, def) in defs {
        let path = [Seg::Key("acl"), Seg::Key(name)];
        if name == "all" {
            return Err(cx.err(&path, "`all` is built in and cannot be redefined"));
        }
        if name.starts_with('!') || name.is_empty() {
            return Err(cx.err(&path, "ACL names may not be empty or start with `!`"));
        }
        let acl = match def {
            AclDef::Src(nets) if !nets.is_empty() => Acl::Src(nets.iter().map(|c| c.0).collect()),
            AclDef::Dst(nets) if !nets.is_empty() => Acl::Dst(nets.iter().map(|c| c.0).collect()),
            AclDef::Dstdomain(names) if !names.is_empty() => Acl::dst_domain(names.iter().cloned()),
            AclDef::Port(ports) if !ports.is_empty() => {
                Acl::Port(ports.iter().map(|p| (p.low, p.high)).collect())
            }
            AclDef::Method(methods) if !methods.is_empty() => {
                Acl::Method(methods.iter().map(|m| m.0.clone()).collect())
            }
            AclDef::UrlRegex(words) if !words.is_empty() => {
                Acl::UrlRegex(regex_set(cx, &path, "url_regex", words)?)
            }
            AclDef::UrlpathRegex(words) if !words.is_empty() => {
                Acl::UrlPathRegex(regex_set(cx, &path, "urlpath_regex", words)?)
            }
            AclDef::DstdomRegex(words) if !words.is_empty() => {
                Acl::DstDomRegex(regex_set(cx, &path, "dstdom_regex", words)?)
            }
            AclDef::Browser(words) if !words.is_empty() => {
                Acl::Browser(regex_set(cx, &path, "browser", words)?)
            }
            AclDef::Time(words) => Acl::Time(TimeSpec::parse_list(words).map_err(|reason| {
                cx.err(
                    &path,
                    format!("{reason}; expected like {{ time = [\"MTWHF\", \"08:00-17:00\"] }}"),
                )
            })?),
            AclDef::Maxconn(max) => Acl::MaxConn(*max),
            AclDef::ProxyAuth(words) if !words.is_empty() => {
                Acl::ProxyAuth(proxy_auth_users(cx, &path, words)?)
            }
            AclDef::SslServerName(names) if !names.is_empty() => Acl::SslServerName(
                names
                    .iter()
                    .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                    .collect(),
            ),
            _ => return Err(cx.err(&path, "an ACL needs at least one value")),
        };
        index.insert(name, acls.len());
        acls.push(acl);
    }
    Ok((acls, index))
}

/// A regex ACL's values as Squid reads them: `-i` makes the patterns after it
/// case-insensitive, `+i` case-sensitive again (the default).
fn regex_set(
    cx: &Ctx<'_>,
    path: &[Seg<'_>],
    kind: &str,
    words: &[String],
) -> Result<regex::bytes::RegexSet, ConfigError> {
    let mut insensitive = false;
    let mut patterns = Vec::with_capacity(words.len());
    for word in words {
        match word.as_str() {
            "-i" => insensitive = true,
            "+i" => insensitive = false,
            pattern => patterns.push(if insensitive {
                format!("(?i:{pattern})")
            } else {
                pattern.to_owned()
            }),
        }
    }
    let example = format!("expected like {{ {kind} = [\"-i\", \"\\\\.example\\\\.com$\"] }}");
    if patterns.is_empty() {
        return Err(cx.err(path, format!("no pattern, only flags; {example}")));
    }
    regex::bytes::RegexSet::new(&patterns)
        .map_err(|e| cx.err(path, format!("bad regex: {e}; {example}")))
}

/// `proxy_auth` values: `REQUIRED` alone, or user names, `-i` first to ignore case.
fn proxy_auth_users(
    cx: &Ctx<'_>,
    path: &[Seg<'_>],
    words: &[String],
) -> Result<ProxyAuthUsers, ConfigError> {
    let example =
        "expected { proxy_auth = [\"REQUIRED\"] } or { proxy_auth = [\"alice\", \"bob\"] }";
    match words {
        [only] if only == "REQUIRED" => return Ok(ProxyAuthUsers::Required),
        _ if words.iter().any(|w| w == "REQUIRED") => {
            return Err(cx.err(path, format!("REQUIRED stands alone; {example}")))
        }
        _ => {}
    }
    let (ignore_case, names) = match words.split_first() {
        Some((flag, rest)) if flag == "-i" => (true, rest),
        _ => (false, words),
    };
    if names.is_empty() || names.iter().any(|n| n.is_empty() || n.contains(':')) {
        return Err(cx.err(
            path,
            format!("user names may not be empty or hold `:`; {example}"),
        ));
    }
    Ok(if ignore_case {
        ProxyAuthUsers::IgnoringCase(names.iter().map(|n| n.to_ascii_lowercase()).collect())
    } else {
        ProxyAuthUsers::Exactly(names.to_vec())
    })
}

/// `[auth.basic]`: reads and checks the password file (so a reload reads it again).
fn build_auth(cx: &Ctx<'_>, raw: &FileConfig) -> Result<Option<Authenticator>, ConfigError> {
    let uses_proxy_auth = raw
        .acl
        .iter()
        .find(|(_, def)| matches!(def, AclDef::ProxyAuth(_)));
    let Some(basic) = &raw.auth.basic else {
        if let Some((name, _)) = uses_proxy_auth {
            return Err(cx.err(
                &[Seg::Key("acl"), Seg::Key(name)],
                "proxy_auth needs [auth.basic], like [auth.basic] password_file = \"/etc/cuttle/htpasswd\"",
            ));
        }
        return Ok(None);
    };
    let at = |key| [Seg::Key("auth"), Seg::Key("basic"), Seg::Key(key)];
    let path = expand_home(&basic.password_file)
        .ok_or_else(|| cx.err(&at("password_file"), "starts with `~/` but HOME is not set"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        cx.err(
            &at("password_file"),
            format!(
                "cannot read {}: {e}; create it with `htpasswd -c -B FILE USER`",
                path.display()
            ),
        )
    })?;
    let users = crate::auth::Htpasswd::parse(&text).map_err(|(line, reason)| {
        cx.err(
            &at("password_file"),
            format!("{}:{line}: {reason}", path.display()),
        )
    })?;
    if users.is_empty() {
        tracing::warn!(file = %path.display(), "the password file lists no users: every login fails");
    }
    if basic.max_failures == 0 {
        return Err(cx.err(
            &at("max_failures"),
            "must be at least 1, like max_failures = 10",
        ));
    }
    for (key, value) in [
        ("credentialsttl", basic.credentialsttl),
        ("failure_window", basic.failure_window),
    ] {
        if value.0.is_zero() {
            return Err(cx.err(&at(key), "must be greater than zero, like \"5m\""));
        }
    }
    Authenticator::new(BasicConfig {
        realm: basic.realm.clone(),
        password_file: path,
        users: Arc::new(users),
        credentials_ttl: basic.credentialsttl.0,
        max_failures: basic.max_failures,
        failure_window: basic.failure_window.0,
    })
    .map(Some)
    .ok_or_else(|| {
        cx.err(
            &at("realm"),
            "must be printable text without control characters, like realm = \"Example proxy\"",
        )
    })
}

/// Compiles one allow/deny rule list (`http_access`, `never_direct`, ...) named `list`.
fn compile_rules(
    cx: &Ctx<'_>,
    list: &'static str,
    rules: &[AccessRule],
    index: &HashMap<&str, usize>,
) -> Result<Vec<Rule>, ConfigError> {
    compile_rules_at(cx, &[Seg::Key(list)], rules, index)
}

/// [`compile_rules`] for a list at `list` (e.g. `admin.access`).
fn compile_rules_at(
    cx: &Ctx<'_>,
    list: &[Seg<'_>],
    rules: &[AccessRule],
    index: &HashMap<&str, usize>,
) -> Result<Vec<Rule>, ConfigError> {
    fn join<'a>(list: &[Seg<'a>], rest: &[Seg<'a>]) -> Vec<Seg<'a>> {
        list.iter().chain(rest).copied().collect()
    }
    let mut compiled = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let (action, names, key) = match (&rule.allow, &rule.deny) {
            (Some(names), None) => (Action::Allow, names, "allow"),
            (None, Some(names)) => (Action::Deny, names, "deny"),
            _ => {
                return Err(cx.err(
                    &join(list, &[Seg::Index(i)]),
                    "each rule needs exactly one of `allow` or `deny`",
                ))
            }
        };
        if names.is_empty() {
            return Err(cx.err(
                &join(list, &[Seg::Index(i), Seg::Key(key)]),
                "a rule needs at least one ACL name (use \"all\" to match everything)",
            ));
        }
        let mut conditions = Vec::with_capacity(names.len());
        for (j, name) in names.iter().enumerate() {
            let (negated, bare) = match name.strip_prefix('!') {
                Some(bare) => (true, bare),
                None => (false, name.as_str()),
            };
            let Some(&acl) = index.get(bare) else {
                return Err(cx.err(
                    &join(list, &[Seg::Index(i), Seg::Key(key), Seg::Index(j)]),
                    format!("unknown ACL `{bare}` (define it under [acl])"),
                ));
            };
            conditions.push((acl, negated));
        }
        compiled.push(Rule {
            action,
            conditions,
            text: format!("{} {}", action.as_str(), names.join(" ")),
        });
    }
    Ok(compiled)
}

fn build_hierarchy(cx: &Ctx<'_>, raw: &FileConfig) -> Result<Option<HierarchyConfig>, ConfigError> {
    if raw.peer.is_empty() {
        return Ok(None);
    }
    let selection = match raw.hierarchy.parent_selection.as_str() {
        "first_up" => ParentSelection::FirstUp,
        "round_robin" => ParentSelection::RoundRobin,
        "weighted_round_robin" => ParentSelection::WeightedRoundRobin,
        "carp" => ParentSelection::Carp,
        "sourcehash" => ParentSelection::SourceHash,
        other => {
            return Err(cx.err(
                &[Seg::Key("hierarchy"), Seg::Key("parent_selection")],
                format!("`{other}` is not one of first_up, round_robin, weighted_round_robin, carp, sourcehash"),
            ))
        }
    };
    let mut peers = Vec::with_capacity(raw.peer.len());
    for (i, p) in raw.peer.iter().enumerate() {
        let at = |key| [Seg::Key("peer"), Seg::Index(i), Seg::Key(key)];
        if p.host.is_empty() || p.port == 0 {
            return Err(cx.err(
                &at("host"),
                "a peer needs a host and a port, like host = \"parent.example\" and port = 3128",
            ));
        }
        let login = match &p.login {
            None => None,
            Some(credentials) if credentials.contains(':') => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                Some(
                    http::HeaderValue::from_str(&format!("Basic {encoded}"))
                        .map_err(|_| cx.err(&at("login"), "credentials must be printable"))?,
                )
            }
            Some(_) => return Err(cx.err(&at("login"), "use `user:password`")),
        };
        let keys = TlsKeys {
            tls: p.tls,
            ca_file: p.tls_ca_file.as_deref(),
            server_name: p.tls_server_name.as_deref(),
            verify: p.tls_verify,
            protocols: p.protocols.as_deref(),
        };
        let hosts = [(vec![Seg::Key("host")], p.host.clone())];
        let tls = build_client_tls(cx, &[Seg::Key("peer"), Seg::Index(i)], &keys, &hosts)?;

        let name = p.name.clone().unwrap_or_else(|| p.host.clone());
        // Squid refuses two cache_peers with one name: logs and CARP could not tell them apart.
        if let Some(j) = raw.peer[..i]
            .iter()
            .position(|q| q.name.as_ref().unwrap_or(&q.host) == &name)
        {
            let reason = if p.name.is_none() && raw.peer[j].name.is_none() {
                format!(
                    "peers {j} and {i} are both on host `{name}` and neither has a `name` (a \
                     peer is named after its host by default); give each its own, like \
                     name = \"{name}-{}\"",
                    p.port
                )
            } else {
                format!(
                    "`{name}` is already the name of peer {j}; peer names must be unique, like \
                     name = \"{name}-2\""
                )
            };
            return Err(cx.err(&at("name"), reason));
        }
        let monitor = build_monitor(cx, p, i)?;
        peers.push(PeerConfig {
            monitor,
            info: PeerInfo {
                name,
                kind: match p.kind {
                    file::PeerType::Parent => PeerKind::Parent,
                    file::PeerType::Sibling => PeerKind::Sibling,
                },
                weight: p.weight.max(1),
                no_query: p.no_query,
                default: p.default,
            },
            host: p.host.clone(),
            port: p.port,
            icp_port: p.icp_port.filter(|&port| port != 0),
            proxy_only: p.proxy_only,
            login,
            tls,
        });
    }
    let (acls, index) = build_acls(cx, &raw.acl)?;
    let never_direct = Rules::new(
        acls.clone(),
        compile_rules(cx, "never_direct", &raw.never_direct, &index)?,
    );
    let always_direct = Rules::new(
        acls,
        compile_rules(cx, "always_direct", &raw.always_direct, &index)?,
    );
    Ok(Some(HierarchyConfig {
        peers,
        selection,
        never_direct,
        always_direct,
        dead_time: raw.hierarchy.dead_peer_timeout.0,
    }))
}

/// `icp_port`, `[[icp_access]]`, `icp_query_timeout` (Squid's names).
fn build_icp(cx: &Ctx<'_>, raw: &FileConfig) -> Result<crate::icp::Config, ConfigError> {
    let access = if raw.icp_access.is_empty() {
        crate::icp::default_access()
    } else {
        let (acls, index) = build_acls(cx, &raw.acl)?;
        Rules::new(
            acls,
            compile_rules(cx, "icp_access", &raw.icp_access, &index)?,
        )
    };
    let query_timeout = match raw.icp_query_timeout.as_ref() {
        None => crate::icp::DEFAULT_QUERY_TIMEOUT,
        Some(t) if t.0.is_zero() => {
            return Err(cx.err(
                &[Seg::Key("icp_query_timeout")],
                "must be greater than zero, like icp_query_timeout = \"500ms\"",
            ))
        }
        Some(t) => t.0,
    };
    Ok(crate::icp::Config {
        port: raw.icp_port,
        access,
        query_timeout,
    })
}

/// `[[cache.access]]` (Squid `cache allow|deny`): empty rules allow everything.
fn build_cache_access(cx: &Ctx<'_>, raw: &FileConfig) -> Result<Rules, ConfigError> {
    let (acls, index) = build_acls(cx, &raw.acl)?;
    let rules = compile_rules_at(
        cx,
        &[Seg::Key("cache"), Seg::Key("access")],
        &raw.cache.access,
        &index,
    )?;
    Ok(Rules::new(acls, rules))
}

/// `[[store_id]]`: cache-key rewrites.
fn build_store_ids(
    cx: &Ctx<'_>,
    raw: &[file::StoreId],
) -> Result<Vec<cache::StoreIdRule>, ConfigError> {
    let mut rules = Vec::with_capacity(raw.len());
    for (i, rule) in raw.iter().enumerate() {
        let at = |key| [Seg::Key("store_id"), Seg::Index(i), Seg::Key(key)];
        let regex = regex::RegexBuilder::new(&rule.regex)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                cx.err(
                    &at("regex"),
                    format!(
                        "invalid regex: {e}; expected e.g. \"^http://[^/]+/debian/(pool/.*)$\""
                    ),
                )
            })?;
        // A `$n` beyond the regex's groups would silently expand to nothing and merge
        // unrelated URLs into one object.
        let groups = regex.captures_len();
        let mut chars = rule.replace.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            if c != '$' {
                continue;
            }
            let digits: String = std::iter::from_fn(|| chars.next_if(|(_, d)| d.is_ascii_digit()))
                .map(|(_, d)| d)
                .collect();
            if let Ok(n) = digits.parse::<usize>() {
                if n >= groups {
                    return Err(cx.err(
                        &at("replace"),
                        format!(
                            "`${n}` names a group the regex does not have ({} groups); expected e.g. \"http://debian.mirror.internal/$1\"",
                            groups.saturating_sub(1)
                        ),
                    ));
                }
            }
        }
        if rule.replace.trim().is_empty() {
            return Err(cx.err(
                &at("replace"),
                "is empty; expected a URL-like key such as \"http://debian.mirror.internal/$1\"",
            ));
        }
        rules.push(cache::StoreIdRule {
            regex,
            replace: rule.replace.clone(),
        });
    }
    Ok(rules)
}

/// A peer's `monitorurl` probe: an absolute `http://` URL (it is asked of the peer, like any
/// request sent to it), an interval (Squid's default 300s) and a timeout no longer than it.
fn build_monitor(cx: &Ctx<'_>, p: &file::Peer, i: usize) -> Result<Option<Monitor>, ConfigError> {
    let at = |key| [Seg::Key("peer"), Seg::Index(i), Seg::Key(key)];
    let Some(url) = &p.monitorurl else {
        if p.monitorinterval.is_some() || p.monitortimeout.is_some() {
            return Err(cx.err(
                &at("monitorurl"),
                "monitorinterval and monitortimeout need a monitorurl, like \
                 monitorurl = \"http://origin.example/health\"",
            ));
        }
        return Ok(None);
    };
    let uri = url
        .parse::<http::Uri>()
        .ok()
        .filter(|u| u.scheme() == Some(&http::uri::Scheme::HTTP) && u.host().is_some());
    let Some(uri) = uri else {
        return Err(cx.err(
            &at("monitorurl"),
            format!(
                "`{url}` is not an absolute http:// URL, like \"http://origin.example/health\""
            ),
        ));
    };
    let interval = p
        .monitorinterval
        .map_or(std::time::Duration::from_secs(300), |d| d.0);
    if interval.is_zero() {
        return Err(cx.err(&at("monitorinterval"), "must be more than 0, like \"30s\""));
    }
    let timeout = p
        .monitortimeout
        .map_or(std::time::Duration::from_secs(10), |d| d.0)
        .min(interval);
    if timeout.is_zero() {
        return Err(cx.err(&at("monitortimeout"), "must be more than 0, like \"5s\""));
    }
    Ok(Some(Monitor {
        url: uri,
        interval,
        timeout,
    }))
}

fn build_cache(
    cx: &Ctx<'_>,
    file: &FileConfig,
    accelerator: bool,
) -> Result<cache::Config, ConfigError> {
    let raw = &file.cache;
    let patterns = &file.refresh_pattern;
    let m = &raw.memory;
    if m.max_object_size > m.max_size {
        return Err(cx.err(
            &[
                Seg::Key("cache"),
                Seg::Key("memory"),
                Seg::Key("max_object_size"),
            ],
            "is larger than cache.memory.max_size",
        ));
    }
    let d = &raw.disk;
    let disk = if d.path.is_empty() {
        None
    } else {
        if d.max_object_size > d.max_size {
            return Err(cx.err(
                &[
                    Seg::Key("cache"),
                    Seg::Key("disk"),
                    Seg::Key("max_object_size"),
                ],
                "is larger than cache.disk.max_size",
            ));
        }
        let path = expand_home(&d.path).ok_or_else(|| {
            cx.err(
                &[Seg::Key("cache"), Seg::Key("disk"), Seg::Key("path")],
                "starts with `~/` but HOME is not set",
            )
        })?;
        if let Err(reason) = super::probe::cache_dir(&path) {
            return Err(cx.err(
                &[Seg::Key("cache"), Seg::Key("disk"), Seg::Key("path")],
                reason,
            ));
        }
        Some(cache::DiskConfig {
            path,
            max_size: d.max_size.as_u64(),
            max_object_size: d.max_object_size.as_u64(),
            load_gate: None,
        })
    };
    // RFC 9213 §2: CDN-Cache-Control targets "all CDN caches"; an accelerator is one.
    let default_fields: &[&str] = if accelerator {
        &["cuttle-cache-control", "cdn-cache-control"]
    } else {
        &["cuttle-cache-control"]
    };
    let names: Vec<String> = match &raw.targeted_fields {
        Some(names) => names.clone(),
        None => default_fields.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut targeted_fields = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let field = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            cx.err(
                &[
                    Seg::Key("cache"),
                    Seg::Key("targeted_fields"),
                    Seg::Index(i),
                ],
                format!("`{name}` is not a field name"),
            )
        })?;
        targeted_fields.push(field);
    }
    let max_object = m
        .max_object_size
        .as_u64()
        .max(disk.as_ref().map_or(0, |d| d.max_object_size));
    let slices = slice::build_slices(cx, &raw.slice, max_object)?;
    let mut refresh_patterns = Vec::with_capacity(patterns.len());
    for (i, p) in patterns.iter().enumerate() {
        let at = |key| [Seg::Key("refresh_pattern"), Seg::Index(i), Seg::Key(key)];
        let regex = regex::RegexBuilder::new(&p.regex)
            .case_insensitive(p.case_insensitive)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| cx.err(&at("regex"), format!("invalid regex: {e}")))?;
        if p.min.0 > p.max.0 {
            return Err(cx.err(&at("min"), "is larger than max"));
        }
        refresh_patterns.push(cache::RefreshPattern {
            regex,
            heuristic: cache::policy::Heuristic {
                min_secs: p.min.0.as_secs(),
                percent: p.percent,
                max_secs: p.max.0.as_secs(),
                override_lastmod: p.override_lastmod,
            },
            override_expire: p.override_expire,
            ignore_reload: p.ignore_reload,
            store_stale: p.store_stale,
        });
    }
    Ok(cache::Config {
        memory: cache::MemoryConfig {
            max_size: m.max_size.as_u64(),
            max_object_size: m.max_object_size.as_u64(),
        },
        disk,
        behaviour: cache::Behaviour {
            max_stale: raw.max_stale.0,
            targeted_fields,
            x_cache: raw.x_cache,
            status_name: {
                if sfv::TokenRef::from_str(&raw.status_name).is_err() {
                    return Err(cx.err(
                        &[Seg::Key("cache"), Seg::Key("status_name")],
                        format!("`{}` is not a structured-field token", raw.status_name),
                    ));
                }
                raw.status_name.clone()
            },
            range_offset_limit: raw.range_offset_limit.as_u64(),
            collapsed_forwarding: raw.collapsed_forwarding,
            collapsed_forwarding_timeout: raw.collapsed_forwarding_timeout.0,
            purge_from: raw.purge_from.iter().map(|c| c.0).collect(),
            store_set_cookie: raw.store_set_cookie,
            refresh_patterns,
            slices,
            negative_ttl: raw.negative_ttl.0,
            store_ids: build_store_ids(cx, &file.store_id)?,

            tag_fields: {
                let mut names = Vec::with_capacity(raw.tag_fields.len());
                for (i, name) in raw.tag_fields.iter().enumerate() {
                    let parsed = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        cx.err(
                            &[Seg::Key("cache"), Seg::Key("tag_fields"), Seg::Index(i)],
                            format!(
                                "`{name}` is not a field name (expected e.g. \"surrogate-key\")"
                            ),
                        )
                    })?;
                    names.push(parsed);
                }
                names
            },
            strip_tag_fields: raw.strip_tag_fields,
            purge_propagate: {
                for (i, peer) in raw.purge_propagate.iter().enumerate() {
                    let ok = peer.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                    });
                    if !ok {
                        return Err(cx.err(
                            &[Seg::Key("cache"), Seg::Key("purge_propagate"), Seg::Index(i)],
                            format!("`{peer}` is not host:port of an admin listener (expected e.g. \"10.0.0.2:3180\")"),
                        ));
                    }
                }
                raw.purge_propagate.clone()
            },
        },
    })
}

fn build_log(cx: &Ctx<'_>, raw: &file::Log) -> Result<log::Config, ConfigError> {
    let access_log = match raw.access_log.as_str() {
        "stdout" | "-" => log::Target::Stdout,
        "stderr" => log::Target::Stderr,
        "none" | "" => log::Target::None,
        path => {
            let at = [Seg::Key("log"), Seg::Key("access_log")];
            let path = expand_home(path)
                .ok_or_else(|| cx.err(&at, "starts with `~/` but HOME is not set"))?;
            super::probe::append_file(&path).map_err(|reason| cx.err(&at, reason))?;
            log::Target::File(path)
        }
    };
    if let Err(reason) = log::parse_filter(&raw.level) {
        return Err(cx.err(&[Seg::Key("log"), Seg::Key("level")], reason));
    }
    let format = match raw.access_log_format {
        file::AccessLogFormat::Squid => log::Format::Squid,
        file::AccessLogFormat::Combined => log::Format::Combined,
        file::AccessLogFormat::Json => log::Format::Json,
    };
    Ok(log::Config {
        access_log,
        access_log_flush: raw.access_log_flush.0,
        access_log_format: log::LineFormat {
            format,
            strip_query_terms: raw.strip_query_terms,
        },
        level: raw.level.clone(),
    })
}

/// Expands a leading `~/` to `$HOME/`.
pub fn expand_home(path: &str) -> Option<PathBuf> {
    match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(rest)),
        None => Some(PathBuf::from(path)),
    }
}

/// The machine's host name, for `Via` and error pages when none is configured.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|name| ViaIdentity::new(name).is_some())
        .unwrap_or_else(|| "localhost".to_owned())
}
