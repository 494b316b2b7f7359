//! ACL matchers: the `acl NAME TYPE VALUES...` half of Squid access control.
//!
//! Each ACL tests one property of a request (client address, destination domain, destination
//! port, method, URL, User-Agent, time of day, connection count, authenticated user), with
//! Squid's type names and semantics. Matching is pure and allocation-free: what is not in the
//! request line (the time, the client's connection count, the user) is handed in as
//! [`RequestFacts`]; `access::Rules` combines ACLs into ordered allow/deny rules.

use std::net::IpAddr;

use http::Method;
use ipnet::IpNet;
use regex::bytes::RegexSet;

use super::host;
use super::time::{LocalTime, TimeSpec};

/// What an ACL looks at in a request.
#[derive(Debug)]
pub struct AccessRequest<'a> {
    /// The client's address (IPv4-mapped IPv6 addresses are compared as IPv4).
    pub src: IpAddr,
    /// Destination host name or address literal, as in the request (any case).
    pub host: &'a str,
    /// Destination port.
    pub port: u16,
    pub method: &'a Method,
    /// One address `host` resolved to, when the proxy resolved it for a `dst` check
    /// ([`super::Rules::check_resolved`] checks each address in turn).
    pub dst: Option<IpAddr>,
    /// The rest of what the newer ACL types look at; `RequestFacts::default()` where a list
    /// cannot use them (the admin listener, the hierarchy's direct rules).
    pub facts: RequestFacts<'a>,
}

/// What `url_regex`, `urlpath_regex`, `browser`, `time`, `maxconn` and `proxy_auth` look at.
/// The request path fills in only what some rule needs (see [`super::Rules::needs_time`] and
/// its siblings); an unset fact makes its ACL not match.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The URL as Squid's `url_regex` sees it: absolute, or `host:port` for CONNECT.
    pub url: &'a str,
    /// The path and query (`urlpath_regex`); empty for CONNECT, which has none.
    pub path: &'a str,
    /// The `User-Agent` field's bytes (`browser`).
    pub user_agent: Option<&'a [u8]>,
    /// The client's local wall time (`time`).
    pub local_time: Option<LocalTime>,
    /// Connections the client's address holds now, this one included (`maxconn`).
    pub client_connections: usize,
    /// The user whose credentials were verified (`proxy_auth`).
    pub user: Option<&'a str>,
    /// Whether a `proxy_auth` ACL without a user may ask for credentials (a forward port
    /// answers 407); where it may not (reverse ports), it simply does not match.
    pub can_challenge: bool,
    /// The TLS server name (`ssl::server_name`): the CONNECT host, or the host of a request
    /// inside a bumped connection (which is the SNI the client sent; see `tls_intercept`).
    pub server_name: Option<&'a str>,
}

/// One named matcher.
#[derive(Debug, Clone)]
pub enum Acl {
    /// Matches every request (Squid's built-in `all`).
    All,
    /// Client address inside one of these networks.
    Src(Vec<IpNet>),
    /// Destination address inside one of these networks (Squid `dst`): the resolved address
    /// when the proxy resolved the host, else the host as an address literal in any spelling a
    /// resolver accepts (`127.1`, `0x7f000001`, `localhost`; see [`host`]).
    Dst(Vec<IpNet>),
    /// Destination host: `example.com` matches exactly; `.example.com` matches it and subdomains.
    DstDomain(Vec<String>),
    /// Destination port in one of these inclusive ranges.
    Port(Vec<(u16, u16)>),
    /// Method is one of these.
    Method(Vec<Method>),
    /// Squid `url_regex`: the whole URL matches one of these.
    UrlRegex(RegexSet),
    /// Squid `urlpath_regex`: the path and query (no scheme or host) match one of these.
    UrlPathRegex(RegexSet),
    /// Squid `dstdom_regex`: the destination host as written matches one of these.
    DstDomRegex(RegexSet),
    /// Squid `browser`: the `User-Agent` field matches one of these.
    Browser(RegexSet),
    /// Squid `time`: the local wall time falls in one of these day-and-time windows.
    Time(Vec<TimeSpec>),
    /// Squid `maxconn N`: the client's address holds *more than* N connections.
    MaxConn(usize),
    /// Squid `proxy_auth`: a verified user (any, for `REQUIRED`), or one of these names.
    ProxyAuth(ProxyAuthUsers),
    /// Squid `ssl::server_name`: the TLS server name (CONNECT host or SNI), `dstdomain`-style
    /// (`.example.com` matches it and its subdomains); no name, no match.
    SslServerName(Vec<String>),
}

/// Which users a `proxy_auth` ACL accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyAuthUsers {
    /// `REQUIRED`: anyone whose credentials check out.
    Required,
    /// These names exactly (Squid compares user names case-sensitively).
    Exactly(Vec<String>),
    /// These names in any case (Squid's `-i`); stored lower-cased.
    IgnoringCase(Vec<String>),
}

impl Acl {
    /// A `dstdomain` ACL; names are stored lower-cased without a trailing dot.
    pub fn dst_domain(names: impl IntoIterator<Item = String>) -> Self {
        Self::DstDomain(
            names
                .into_iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        )
    }

    /// Whether this ACL matches the request.
    pub fn matches(&self, req: &AccessRequest<'_>) -> bool {
        match self {
            Self::All => true,
            Self::Src(nets) => {
                let src = req.src.to_canonical();
                nets.iter().any(|net| net.contains(&src))
            }
            Self::Dst(nets) => {
                let inside = |ip: IpAddr| {
                    let ip = ip.to_canonical();
                    nets.iter().any(|net| net.contains(&ip))
                };
                match req.dst {
                    Some(ip) => inside(ip),
                    None => host::any_address(req.host, inside),
                }
            }
            Self::DstDomain(names) => {
                let host = req.host.trim_end_matches('.');
                names.iter().any(|name| domain_matches(name, host))
            }
            Self::Port(ranges) => ranges
                .iter()
                .any(|&(low, high)| (low..=high).contains(&req.port)),
            Self::Method(methods) => methods.iter().any(|m| m == req.method),
            Self::UrlRegex(set) => set.is_match(req.facts.url.as_bytes()),
            // Squid's urlpath_regex never matches a CONNECT: it has no path.
            Self::UrlPathRegex(set) => {
                !req.facts.path.is_empty() && set.is_match(req.facts.path.as_bytes())
            }
            Self::DstDomRegex(set) => set.is_match(req.host.as_bytes()),
            Self::Browser(set) => req.facts.user_agent.is_some_and(|ua| set.is_match(ua)),
            Self::Time(specs) => req
                .facts
                .local_time
                .is_some_and(|now| specs.iter().any(|spec| spec.contains(now))),
            Self::MaxConn(max) => req.facts.client_connections > *max,
            Self::ProxyAuth(users) => req.facts.user.is_some_and(|user| users.accepts(user)),
            Self::SslServerName(names) => req.facts.server_name.is_some_and(|server| {
                let server = server.trim_end_matches('.');
                names.iter().any(|name| domain_matches(name, server))
            }),
        }
    }

    /// Whether matching needs a verified user: a `proxy_auth` ACL met by a request without one
    /// asks for credentials (see [`super::Rules::check`]).
    pub fn is_proxy_auth(&self) -> bool {
        matches!(self, Self::ProxyAuth(_))
    }
}

impl ProxyAuthUsers {
    /// Whether `user` (already verified) is accepted.
    pub fn accepts(&self, user: &str) -> bool {
        match self {
            Self::Required => true,
            Self::Exactly(names) => names.iter().any(|n| n == user),
            Self::IgnoringCase(names) => names.iter().any(|n| n.eq_ignore_ascii_case(user)),
        }
    }
}

/// Squid `dstdomain` semantics: a leading dot matches the domain and every subdomain.
pub(crate) fn domain_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('.') {
        Some(bare) => {
            host.eq_ignore_ascii_case(bare)
                || (host.len() > pattern.len()
                    && host
                        .get(host.len() - pattern.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(pattern)))
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(src: &str, host: &'a str, port: u16, method: &'a Method) -> AccessRequest<'a> {
        AccessRequest {
            src: src.parse().unwrap(),
            host,
            port,
            method,
            dst: None,
            facts: RequestFacts::default(),
        }
    }

    #[test]
    fn src_matches_networks_and_mapped_ipv4() {
        let acl = Acl::Src(vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(acl.matches(&req("10.9.8.7", "h", 80, &Method::GET)));
        assert!(acl.matches(&req("::ffff:10.9.8.7", "h", 80, &Method::GET)));
        assert!(!acl.matches(&req("11.0.0.1", "h", 80, &Method::GET)));
    }

    #[test]
    fn dstdomain_dot_prefix_matches_domain_and_subdomains_only() {
        let acl = Acl::dst_domain([".Example.com".to_owned()]);
        assert!(acl.matches(&req("1.1.1.1", "example.com", 80, &Method::GET)));
        assert!(acl.matches(&req("1.1.1.1", "www.EXAMPLE.com.", 80, &Method::GET)));
        assert!(!acl.matches(&req("1.1.1.1", "badexample.com", 80, &Method::GET)));
        let exact = Acl::dst_domain(["example.com".to_owned()]);
        assert!(!exact.matches(&req("1.1.1.1", "www.example.com", 80, &Method::GET)));
    }

    #[test]
    fn dst_matches_address_literals_including_bracketed_ipv6() {
        let acl = Acl::Dst(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert!(acl.matches(&req("10.0.0.1", "127.0.0.1", 80, &Method::GET)));
        assert!(acl.matches(&req("10.0.0.1", "[::1]", 80, &Method::GET)));
        assert!(acl.matches(&req("10.0.0.1", "[::ffff:127.0.0.2]", 80, &Method::GET)));
        assert!(!acl.matches(&req("10.0.0.1", "example.com", 80, &Method::GET)));
        assert!(!acl.matches(&req("10.0.0.1", "192.0.2.1", 80, &Method::GET)));
    }

    #[test]
    fn dst_matches_every_spelling_of_an_address_and_the_resolved_address() {
        let acl = Acl::Dst(vec![
            "127.0.0.0/8".parse().unwrap(),
            "169.254.0.0/16".parse().unwrap(),
        ]);
        for host in [
            "127.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "localhost",
        ] {
            assert!(
                acl.matches(&req("10.0.0.1", host, 80, &Method::GET)),
                "{host}"
            );
        }
        for host in [
            "169.254.43518",
            "2852039166",
            "0xa9fea9fe",
            "0251.0376.0251.0376",
        ] {
            assert!(
                acl.matches(&req("10.0.0.1", host, 443, &Method::CONNECT)),
                "{host}"
            );
        }
        // A name is judged by what it resolved to.
        let mut resolved = req("10.0.0.1", "metadata.example", 80, &Method::GET);
        assert!(!acl.matches(&resolved));
        resolved.dst = Some("169.254.169.254".parse().unwrap());
        assert!(acl.matches(&resolved));
    }

    #[test]
    fn port_and_method() {
        let ports = Acl::Port(vec![(443, 443), (1025, 65535)]);
        assert!(ports.matches(&req("1.1.1.1", "h", 443, &Method::GET)));
        assert!(ports.matches(&req("1.1.1.1", "h", 8080, &Method::GET)));
        assert!(!ports.matches(&req("1.1.1.1", "h", 25, &Method::GET)));
        let connect = Acl::Method(vec![Method::CONNECT]);
        assert!(connect.matches(&req("1.1.1.1", "h", 443, &Method::CONNECT)));
        assert!(!connect.matches(&req("1.1.1.1", "h", 443, &Method::GET)));
    }

    fn set(patterns: &[&str]) -> RegexSet {
        RegexSet::new(patterns).unwrap()
    }

    #[test]
    fn regex_types_look_at_their_own_part_of_the_request() {
        let get = Method::GET;
        let mut r = req("1.1.1.1", "Downloads.Example.com", 80, &get);
        r.facts.url = "http://Downloads.Example.com/setup.exe?x=1";
        r.facts.path = "/setup.exe?x=1";
        r.facts.user_agent = Some(b"Wget/1.21");
        assert!(Acl::UrlRegex(set(&[r"\.exe\?"])).matches(&r));
        assert!(!Acl::UrlRegex(set(&[r"\.EXE"])).matches(&r));
        assert!(Acl::UrlRegex(set(&[r"(?i:\.EXE)"])).matches(&r));
        assert!(Acl::UrlPathRegex(set(&["^/setup"])).matches(&r));
        assert!(
            !Acl::UrlPathRegex(set(&["^http"])).matches(&r),
            "no scheme or host"
        );
        assert!(Acl::DstDomRegex(set(&[r"^downloads\.", r"Example"])).matches(&r));
        assert!(!Acl::DstDomRegex(set(&[r"^downloads\."])).matches(&req("1.1.1.1", "x", 80, &get)));
        assert!(Acl::Browser(set(&["^Wget/"])).matches(&r));
        assert!(!Acl::Browser(set(&["curl"])).matches(&r));
        r.facts.user_agent = None;
        assert!(
            !Acl::Browser(set(&[".*"])).matches(&r),
            "no User-Agent, no match"
        );
        // A CONNECT has no path: urlpath_regex never matches it, as in Squid.
        let connect = Method::CONNECT;
        let mut tunnel = req("1.1.1.1", "h", 443, &connect);
        tunnel.facts.url = "h:443";
        assert!(!Acl::UrlPathRegex(set(&[".*"])).matches(&tunnel));
        assert!(Acl::UrlRegex(set(&["^h:443$"])).matches(&tunnel));
    }

    #[test]
    fn maxconn_matches_above_the_number_and_proxy_auth_needs_a_user() {
        let get = Method::GET;
        let mut r = req("1.1.1.1", "h", 80, &get);
        r.facts.client_connections = 2;
        assert!(!Acl::MaxConn(2).matches(&r));
        r.facts.client_connections = 3;
        assert!(Acl::MaxConn(2).matches(&r));
        let required = Acl::ProxyAuth(ProxyAuthUsers::Required);
        let listed = Acl::ProxyAuth(ProxyAuthUsers::Exactly(vec!["Bob".into()]));
        let any_case = Acl::ProxyAuth(ProxyAuthUsers::IgnoringCase(vec!["bob".into()]));
        assert!(!required.matches(&r));
        r.facts.user = Some("bob");
        assert!(required.matches(&r) && any_case.matches(&r) && !listed.matches(&r));
        r.facts.user = Some("Bob");
        assert!(listed.matches(&r) && any_case.matches(&r));
    }
}
