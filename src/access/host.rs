//! Host names as resolvers read them, so that an address check sees the address a connection
//! would really reach.
//!
//! `getaddrinfo` (through `inet_aton`) accepts far more than dotted quads: `127.1`,
//! `2130706433`, `0x7f000001`, `0177.0.0.1` and `0` are all addresses of this machine. A `dst`
//! ACL that recognised only canonical literals could be bypassed with any of them, so cuttle
//! reads numeric hosts itself with the WHATWG URL Standard's IPv4 parser (the same rules as
//! `inet_aton`: one to four parts, each decimal, octal with a leading `0` or hex with `0x`, the
//! last part filling the remaining bytes), and treats `localhost` and every name under it as
//! loopback without asking DNS (RFC 6761 §6.3). Pure: no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses `localhost` names (RFC 6761 §6.3), IPv4 first.
pub const LOOPBACK: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// What a host string denotes before any DNS lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// An address, in any spelling a resolver accepts.
    Address(IpAddr),
    /// `localhost` or a name under it: this machine's loopback addresses ([`LOOPBACK`]).
    Localhost,
    /// A name that only DNS can answer for.
    Name,
    /// Looks numeric (its last label is a number) but is no valid address: WHATWG says such a
    /// host is a failure, and a resolver must never be asked about it.
    Invalid,
}

/// Classifies `host` (as in a URI: IPv6 in brackets, any case, optional trailing dot).
pub fn classify(host: &str) -> HostKind {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return HostKind::Address(ip);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.eq_ignore_ascii_case("localhost")
        || name
            .len()
            .checked_sub(".localhost".len())
            .and_then(|start| name.get(start..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"))
    {
        // RFC 6761 §6.3: "localhost." and names falling within it resolve to loopback.
        return HostKind::Localhost;
    }
    if !ends_in_a_number(host) {
        return HostKind::Name;
    }
    match parse_ipv4(host) {
        Some(ip) => HostKind::Address(IpAddr::V4(ip)),
        None => HostKind::Invalid,
    }
}

/// Whether any address `host` denotes without DNS (a literal in any accepted spelling, or
/// loopback for `localhost` names) satisfies `f`; `false` for names only DNS can answer.
pub fn any_address(host: &str, f: impl Fn(IpAddr) -> bool) -> bool {
    match classify(host) {
        HostKind::Address(ip) => f(ip),
        HostKind::Localhost => LOOPBACK.iter().any(|&ip| f(ip)),
        HostKind::Name | HostKind::Invalid => false,
    }
}

/// WHATWG URL "ends in a number": the last non-empty label is all digits or a `0x` number.
fn ends_in_a_number(host: &str) -> bool {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let last = trimmed.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// WHATWG URL IPv4 parser (the `inet_aton` forms).
fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = trimmed.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|p| parse_number(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return None;
    }
    // The last part fills the bytes the others leave: 4 bytes for one part, 1 for four.
    let free_bits = 8 * (4 - init.len());
    if *last >= 1u64 << free_bits {
        return None;
    }
    let mut value = *last;
    for (i, &n) in init.iter().enumerate() {
        value |= n << (8 * (3 - i));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// One part: `0x` hex, leading-`0` octal, or decimal; `None` if not a number or too large.
fn parse_number(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if let Some(octal) = part.strip_prefix('0').filter(|rest| !rest.is_empty()) {
            (octal, 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // "0x" alone is zero in WHATWG; an empty part ("1..2") is not a number.
        return (radix == 16).then_some(0);
    }
    // Anything longer cannot be a 32-bit value even after leading zeros; refuse it.
    if digits.len() > 32 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(host: &str) -> Option<IpAddr> {
        match classify(host) {
            HostKind::Address(ip) => Some(ip),
            _ => None,
        }
    }

    #[test]
    fn every_inet_aton_spelling_of_loopback_is_loopback() {
        let loopback = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        for form in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0177.0.0.1",
            "0x7f.1",
            "127.000.000.001",
            "127.0.0.1.",
        ] {
            assert_eq!(v4(form), loopback, "{form}");
        }
        assert_eq!(v4("0"), Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    }

    #[test]
    fn link_local_spellings_parse_to_the_metadata_address() {
        let metadata = Some(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)));
        for form in [
            "169.254.169.254",
            "2852039166",
            "0xa9fea9fe",
            "0251.0376.0251.0376",
            "169.254.43518",
            "0xa9.0xfe.0xa9.0xfe",
        ] {
            assert_eq!(v4(form), metadata, "{form}");
        }
    }

    #[test]
    fn localhost_names_are_loopback_without_dns() {
        for name in ["localhost", "LocalHost.", "app.localhost", "a.b.LOCALHOST."] {
            assert_eq!(classify(name), HostKind::Localhost, "{name}");
            assert!(any_address(name, |ip| ip.is_loopback()), "{name}");
        }
        assert_eq!(classify("notlocalhost"), HostKind::Name);
        assert_eq!(classify("localhost.example"), HostKind::Name);
    }

    #[test]
    fn names_and_invalid_numbers() {
        assert_eq!(classify("example.com"), HostKind::Name);
        assert_eq!(classify("1.2.3.example"), HostKind::Name);
        assert_eq!(classify("256.1.1.1"), HostKind::Invalid);
        assert_eq!(classify("1.2.3.4.5"), HostKind::Invalid);
        assert_eq!(classify("4294967296"), HostKind::Invalid);
        assert_eq!(classify("08.1.1.1"), HostKind::Invalid);
        assert_eq!(classify("1..1"), HostKind::Invalid);
        assert_eq!(
            classify("[::ffff:127.0.0.1]"),
            HostKind::Address("::ffff:127.0.0.1".parse().unwrap())
        );
    }
}
