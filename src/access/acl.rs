//! ACL matchers: the `acl NAME TYPE VALUES...` half of Squid access control.
//!
//! Each ACL tests one property of a request (client address, destination domain, destination
//! port, method). Matching is pure and allocation-free; `access::Rules` combines ACLs into ordered
//! allow/deny rules.

use std::net::IpAddr;

use http::Method;
use ipnet::IpNet;

use super::host;

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
        }
    }
}

/// Squid `dstdomain` semantics: a leading dot matches the domain and every subdomain.
fn domain_matches(pattern: &str, host: &str) -> bool {
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
}
