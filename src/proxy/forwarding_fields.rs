//! The forwarding fields a reverse proxy writes for the origin: `X-Forwarded-Proto` and
//! RFC 7239 `Forwarded`, after removing what an untrusted client claimed. Used by `next_hop`
//! when a request really goes upstream; apart from `reverse` (which builds the targets
//! `next_hop` sends to) so neither imports the other back.

use http::header::{self, HeaderName, HeaderValue};
use http::uri::Authority;

use super::headers;

/// The reverse-mode settings these fields follow (from `reverse::ReverseConfig`).
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub x_forwarded_proto: bool,
    pub forwarded: bool,
    /// Clients whose forwarding fields are trusted and appended to (`trusted_proxies`).
    pub trusted_proxies: &'a [ipnet::IpNet],
}

/// The fields through which a client tells an origin who it is and how it connected. From an
/// untrusted client they are lies waiting to be believed, so they are removed before cuttle
/// adds its own (Squid's `forwarded_for truncate` and nginx's `proxy_set_header
/// X-Forwarded-For $remote_addr`, for the whole family).
static CLIENT_FORWARDING_FIELDS: [HeaderName; 6] = [
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-real-ip"),
];

/// Fields a forwarded request may gain on its way out (`X-Forwarded-Proto`, `Forwarded`, `Via`,
/// `X-Forwarded-For`): room for them is made once rather than by growing the map per insert.
const ADDED_FIELDS: usize = 4;

/// `X-Forwarded-Proto` and RFC 7239 `Forwarded`, as configured, for a request from `client`
/// (over TLS when `tls`) for `authority`. Unless `client` is one of `trusted_proxies`, the
/// forwarding fields it sent are removed first (RFC 7239 §8.1: a proxy's own element is the
/// only one it can vouch for), so the origin sees one element, ours, and `X-Forwarded-For`
/// (added later by `forward.forwarded_for`) is the real peer alone.
pub(super) fn add_forwarding_fields(
    reverse: &Policy<'_>,
    client: std::net::IpAddr,
    tls: bool,
    authority: &Authority,
    headers: &mut http::HeaderMap,
) {
    let client_ip = client.to_canonical();
    let trusted = reverse
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&client_ip));
    // One pass over the names finds whether any is present; most requests carry none, and
    // then no name is hashed.
    if !trusted
        && headers
            .keys()
            .any(|name| CLIENT_FORWARDING_FIELDS.contains(name))
    {
        for name in CLIENT_FORWARDING_FIELDS.iter() {
            headers.remove(name);
        }
    }
    headers.reserve(ADDED_FIELDS);
    const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
    let proto = if tls { "https" } else { "http" };
    if reverse.x_forwarded_proto {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if reverse.forwarded {
        // RFC 7239 §6: IPv6 addresses are quoted and bracketed.
        let ip = client.to_canonical();
        let mut element = String::with_capacity(64);
        element.push_str("for=");
        if ip.is_ipv6() {
            element.push_str("\"[");
            headers::push_ip(&mut element, ip);
            element.push_str("]\"");
        } else {
            headers::push_ip(&mut element, ip);
        }
        element.push_str(";proto=");
        element.push_str(proto);
        element.push_str(";host=");
        push_token_or_quoted(&mut element, authority.as_str());
        // From an untrusted client there is none left to append to.
        let previous = trusted
            .then(|| headers.get(header::FORWARDED))
            .flatten()
            .and_then(|v| v.to_str().ok());
        let combined = match previous {
            Some(previous) => format!("{previous}, {element}"),
            None => element,
        };
        if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(combined)) {
            headers.insert(header::FORWARDED, value);
        }
    }
}

/// RFC 7239 §4 values are tokens or quoted strings; `host:port` needs quotes. Appends `value`
/// to `out` as a token when it is one, else quoted with `\\` and `"` escaped.
fn push_token_or_quoted(out: &mut String, value: &str) {
    if value.bytes().all(crate::cache::policy::fields::is_tchar) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for ch in value.chars() {
        if ch == '\\' || ch == '"' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_values_are_quoted_when_needed() {
        let quoted = |value: &str| {
            let mut out = String::from("host=");
            push_token_or_quoted(&mut out, value);
            out
        };
        assert_eq!(quoted("example.com"), "host=example.com");
        assert_eq!(quoted("example.com:8080"), "host=\"example.com:8080\"");
        assert_eq!(quoted("a\"b\\c"), "host=\"a\\\"b\\\\c\"");
    }
}
