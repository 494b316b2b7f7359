//! Proxy duties on header fields (RFC 9110 §7.6): hop-by-hop removal, `Via`, loop detection,
//! `Max-Forwards`, `X-Forwarded-For`, and joining HTTP/2 `Cookie` fields for HTTP/1.1.
//!
//! Pure functions over `HeaderMap`s, shared by every mode. Framing (`Transfer-Encoding`,
//! `Content-Length`) is left to hyper, which re-frames each message for its own connection once
//! the hop-by-hop fields are gone.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use crate::cache::policy::fields::is_token;

/// Fields that belong to one connection only. RFC 9110 §7.6.1: "intermediaries SHOULD remove or
/// replace fields that are known to require removal before forwarding ... Proxy-Connection,
/// Keep-Alive, TE, Transfer-Encoding, Upgrade". `Trailer` describes this hop's framing too.
static HOP_BY_HOP: [HeaderName; HOP_BY_HOP_LEN] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const HOP_BY_HOP_LEN: usize = 7;
/// Where `Connection` and `Transfer-Encoding` sit in [`HOP_BY_HOP`].
const CONNECTION_AT: usize = 0;
const TRANSFER_ENCODING_AT: usize = 5;

/// Where `name` sits in [`HOP_BY_HOP`]: one `match` on the (lowercase) name, which compiles to
/// a length switch and a compare, where comparing with each of the seven names did not.
fn hop_by_hop_at(name: &HeaderName) -> Option<usize> {
    match name.as_str() {
        "connection" => Some(0),
        "proxy-connection" => Some(1),
        "keep-alive" => Some(2),
        "te" => Some(3),
        "trailer" => Some(4),
        "transfer-encoding" => Some(5),
        "upgrade" => Some(6),
        _ => None,
    }
}

/// Removes hop-by-hop fields: those named in `Connection`, then the fixed list above.
///
/// RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header field before a
/// message is forwarded and, for each connection-option in this field, remove any header or
/// trailer field(s) from the message with the same name as the connection-option, and then remove
/// the Connection header field itself".
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which of the fixed fields are present, so only those pay
    // a hash lookup to be removed; most messages carry none or just `Connection`.
    let mut present = [false; HOP_BY_HOP_LEN];
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_at(name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // RFC 9112 §6.3: with both, "Transfer-Encoding overrides the Content-Length" and an
    // intermediary "MUST remove the received Content-Length field prior to forwarding".
    if present[TRANSFER_ENCODING_AT] {
        headers.remove(header::CONTENT_LENGTH);
    }
    // The usual `Connection: keep-alive` (or `close`) names no field: nothing to split.
    if present[CONNECTION_AT] && !names_no_field(headers.get_all(header::CONNECTION)) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // The usual options: `close` names no field, `keep-alive` goes with the list below.
            .filter(|name| {
                !name.eq_ignore_ascii_case("close") && !name.eq_ignore_ascii_case("keep-alive")
            })
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, here)| *here) {
        headers.remove(name);
    }
}

/// Whether the `Connection` field lines are each just `keep-alive` or `close` (any case): the
/// options that name no other field.
fn names_no_field(values: http::header::GetAll<'_, HeaderValue>) -> bool {
    values.iter().all(|v| {
        let v = v.as_bytes();
        v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
    })
}

/// Prepares a client request's fields for the next hop.
///
/// `Proxy-Authorization` is meant for this proxy (RFC 9110 §11.7.2) and is removed unless the
/// admin configured it to be relayed to a cooperating parent.
pub fn strip_request(headers: &mut HeaderMap, pass_proxy_authorization: bool) {
    remove_hop_by_hop(headers);
    if !pass_proxy_authorization {
        headers.remove(header::PROXY_AUTHORIZATION);
    }
}

/// Joins the `Cookie` fields of an HTTP/2 request into one, for an HTTP/1.1 next hop.
///
/// RFC 9113 §8.2.3: "If there are multiple cookie header fields after decompression, these MUST
/// be concatenated into a single octet string using the two-octet delimiter of 0x3b, 0x20 ("; ")
/// before being passed into a non-HTTP/2 context, such as an HTTP/1.1 connection".
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    // Each part was a valid field value, so their join is one too.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// This proxy's names and its `Via` entry, pre-rendered for each protocol version.
///
/// Two names, as in Squid: `visible_hostname` (the pseudonym error pages and `X-Cache` show)
/// and `unique_hostname`, the received-by of our `Via` entry (RFC 9110 §7.6.3: `received-by =
/// pseudonym [ ":" port ]`) and what loop detection looks for. Squid writes its
/// `unique_hostname` into `Via` and searches incoming `Via` for it; cuttle's default unique name
/// is `visible_hostname:port` (the first listening port), so several instances on one host,
/// each with its own port, are told apart while a request that comes back is still caught.
#[derive(Debug, Clone)]
pub struct ViaIdentity {
    /// Squid's `visible_hostname`.
    pseudonym: String,
    /// Squid's `unique_hostname`: our Via received-by, compared case-insensitively.
    received_by: String,
    /// `<version> <received_by> (cuttle/<crate version>)` for 1.0, 1.1 and 2.
    entries: [HeaderValue; 3],
}

/// Whether `name` is a valid received-by: a token, optionally with `:port`.
pub fn is_received_by(name: &str) -> bool {
    match name.rsplit_once(':') {
        Some((host, port)) => is_token(host) && port.parse::<u16>().is_ok(),
        None => is_token(name),
    }
}

impl ViaIdentity {
    /// An identity whose visible and unique names are both `pseudonym`; `None` if it is not
    /// a valid token.
    pub fn new(pseudonym: &str) -> Option<Self> {
        Self::with_unique(pseudonym, pseudonym)
    }

    /// An identity showing `pseudonym` and writing (and looking for) `unique` in `Via`;
    /// `None` if `pseudonym` is not a token or `unique` not a token with an optional `:port`.
    pub fn with_unique(pseudonym: &str, unique: &str) -> Option<Self> {
        if !is_token(pseudonym) || !is_received_by(unique) {
            return None;
        }
        let entry = |version: &str| {
            HeaderValue::from_str(&format!(
                "{version} {unique} (cuttle/{})",
                env!("CARGO_PKG_VERSION")
            ))
            .ok()
        };
        Some(Self {
            pseudonym: pseudonym.to_owned(),
            received_by: unique.to_owned(),
            entries: [entry("1.0")?, entry("1.1")?, entry("2")?],
        })
    }

    /// The visible name (Squid `visible_hostname`).
    pub fn pseudonym(&self) -> &str {
        &self.pseudonym
    }

    /// The unique name (Squid `unique_hostname`), our Via received-by.
    pub fn unique(&self) -> &str {
        &self.received_by
    }

    /// The entry for a message received with `version` (RFC 9110 §7.6.3: "the received-protocol
    /// indicates the protocol and protocol version used by the upstream sender of the message").
    pub fn entry(&self, version: Version) -> &HeaderValue {
        match version {
            Version::HTTP_09 | Version::HTTP_10 => &self.entries[0],
            Version::HTTP_2 | Version::HTTP_3 => &self.entries[2],
            _ => &self.entries[1],
        }
    }

    /// Appends our entry to `Via`, keeping earlier entries first (one combined field line).
    pub fn append(&self, headers: &mut HeaderMap, received: Version) {
        let ours = self.entry(received);
        // One lookup both finds earlier entries and places ours.
        let mut entry = match headers.entry(header::VIA) {
            http::header::Entry::Vacant(entry) => {
                entry.insert(ours.clone());
                return;
            }
            http::header::Entry::Occupied(entry) => entry,
        };
        let mut combined: Vec<u8> = Vec::with_capacity(128);
        for value in entry.iter() {
            combined.extend_from_slice(value.as_bytes());
            combined.extend_from_slice(b", ");
        }
        combined.extend_from_slice(ours.as_bytes());
        match HeaderValue::from_bytes(&combined) {
            Ok(value) => {
                entry.insert(value);
            }
            Err(_) => entry.append(ours.clone()),
        }
    }

    /// True when a `Via` member was received by us (its received-by, port included, is our
    /// unique name): the request has looped back (RFC 9110 §7.6.3: Via is used for "avoiding
    /// request loops").
    pub fn is_loop(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::VIA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(via_members)
            .filter_map(received_by)
            .any(|by| by.eq_ignore_ascii_case(&self.received_by))
    }
}

/// Splits a Via field value into members, ignoring commas inside comments.
fn via_members(value: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    let mut start = 0usize;
    let mut members = Vec::new();
    for (i, c) in value.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                members.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    members.push(&value[start..]);
    members.into_iter()
}

/// The received-by (with its port, if any) of one Via member: `1.1 host:3128 (comment)` gives
/// `host:3128`.
fn received_by(member: &str) -> Option<&str> {
    let mut parts = member.split_whitespace();
    let _protocol = parts.next()?;
    parts.next()
}

/// What `Max-Forwards` asks of us for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxForwards {
    /// Not TRACE/OPTIONS, or no (valid) field: forward unchanged.
    Forward,
    /// Forward with this decremented value.
    Decrement(u32),
    /// The value is zero: answer as the final recipient.
    Respond,
}

/// RFC 9110 §7.6.2: "If the received value is zero (0), the intermediary MUST NOT forward the
/// request; instead, the intermediary MUST respond as the final recipient. If the received
/// Max-Forwards value is greater than zero, the intermediary MUST generate an updated
/// Max-Forwards field ... the received value decremented by one (1)".
pub fn max_forwards(method: &Method, headers: &HeaderMap) -> MaxForwards {
    if method != Method::TRACE && method != Method::OPTIONS {
        return MaxForwards::Forward;
    }
    let Some(value) = headers.get(header::MAX_FORWARDS) else {
        return MaxForwards::Forward;
    };
    match value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(0) => MaxForwards::Respond,
        Some(n) => MaxForwards::Decrement(u32::try_from(n - 1).unwrap_or(u32::MAX)),
        None => MaxForwards::Forward,
    }
}

/// Squid's `forwarded_for` behaviours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedFor {
    /// Append the client address.
    On,
    /// Append `unknown`.
    Off,
    /// Leave as received.
    Transparent,
    /// Remove the field.
    Delete,
    /// Replace with the client address alone.
    Truncate,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Applies the configured `X-Forwarded-For` behaviour for a client at `client`.
///
/// One lookup of the field serves both reading what was received and setting the new value
/// (in place, as `insert` would), and a lone address (nothing received to append to, or
/// `truncate`) is written without a growing buffer.
pub fn apply_forwarded_for(headers: &mut HeaderMap, mode: ForwardedFor, client: IpAddr) {
    use http::header::Entry;
    match mode {
        ForwardedFor::Transparent => return,
        ForwardedFor::Delete => {
            headers.remove(&X_FORWARDED_FOR);
            return;
        }
        ForwardedFor::On | ForwardedFor::Off | ForwardedFor::Truncate => {}
    }
    let ours = |value: &mut String| {
        if mode == ForwardedFor::Off {
            value.push_str("unknown");
        } else {
            push_ip(value, client.to_canonical());
        }
    };
    let lone = || {
        if mode == ForwardedFor::Off {
            return Ok(HeaderValue::from_static("unknown"));
        }
        ip_value(client.to_canonical())
    };
    match headers.entry(&X_FORWARDED_FOR) {
        Entry::Vacant(entry) => {
            if let Ok(value) = lone() {
                entry.insert(value);
            }
        }
        Entry::Occupied(mut entry) => {
            let value = if mode == ForwardedFor::Truncate {
                lone()
            } else {
                let mut value = String::with_capacity(64);
                for previous in entry.iter().filter_map(|v| v.to_str().ok()) {
                    value.push_str(previous);
                    value.push_str(", ");
                }
                ours(&mut value);
                HeaderValue::from_str(&value)
            };
            if let Ok(value) = value {
                entry.insert(value);
            }
        }
    }
}

/// Longest text of an IP address (a full IPv6 address with an embedded IPv4 one:
/// `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const IP_TEXT_MAX: usize = 45;

/// `ip` in its usual text form as a field value, written on the stack first so the value
/// is its one exact-size allocation.
fn ip_value(ip: IpAddr) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    use std::io::Write as _;
    let mut buf = [0u8; IP_TEXT_MAX];
    let mut rest = &mut buf[..];
    let written = match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            let mut ok = true;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    ok &= rest.write_all(b".").is_ok();
                }
                ok &= rest.write_all(digits.format(octet).as_bytes()).is_ok();
            }
            ok
        }
        IpAddr::V6(v6) => write!(rest, "{v6}").is_ok(),
    };
    let len = IP_TEXT_MAX - rest.len();
    if written {
        HeaderValue::from_bytes(buf.get(..len).unwrap_or_default())
    } else {
        // Unreachable (every address fits); the growing form then.
        let mut text = String::new();
        push_ip(&mut text, ip);
        HeaderValue::from_str(&text)
    }
}

/// Appends `ip` in its usual text form; IPv4 digit by digit, since this runs per request and
/// `Display` for addresses goes through the formatting machinery.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// The first transfer coding in `headers` other than `chunked`, if any (RFC 9112 §6.1).
pub fn unsupported_coding(headers: &http::HeaderMap) -> Option<String> {
    for value in headers.get_all(http::header::TRANSFER_ENCODING) {
        let text = String::from_utf8_lossy(value.as_bytes());
        for member in text.split(',') {
            let coding = member.split(';').next().unwrap_or("").trim();
            if !coding.is_empty() && !coding.eq_ignore_ascii_case("chunked") {
                return Some(coding.to_ascii_lowercase());
            }
        }
    }
    None
}

/// The `protocol-name` of `protocol-name ["/" protocol-version]`.
pub fn protocol_name(protocol: &str) -> &str {
    protocol.split('/').next().unwrap_or("").trim()
}

/// The members of a comma-separated list field (RFC 9110 §5.6.1), empty ones skipped.
pub fn upgrade_members<'a>(
    values: http::header::GetAll<'a, HeaderValue>,
) -> impl Iterator<Item = &'a str> {
    values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|member| !member.is_empty())
}

/// Checks a 101 against the `Upgrade` that was sent: RFC 9110 §15.2.2 "The server MUST
/// generate an Upgrade header field in the response", and §7.8 "A server MUST NOT switch to a
/// protocol that was not indicated by the client in the corresponding request's Upgrade
/// header field". Only protocol names are compared: a server may name the version it chose.
pub fn switch_is_valid(offered: &HeaderValue, response: &HeaderMap) -> bool {
    let offered: Vec<&str> = offered
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(protocol_name)
        .filter(|name| !name.is_empty())
        .collect();
    let mut chosen = upgrade_members(response.get_all(header::UPGRADE)).peekable();
    chosen.peek().is_some()
        && chosen.all(|p| {
            offered
                .iter()
                .any(|o| o.eq_ignore_ascii_case(protocol_name(p)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_positions_name_their_fields() {
        assert_eq!(HOP_BY_HOP[CONNECTION_AT], header::CONNECTION);
        assert_eq!(HOP_BY_HOP[TRANSFER_ENCODING_AT], header::TRANSFER_ENCODING);
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_at(name), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop_at(&header::HOST), None);
    }

    #[test]
    fn http2_cookie_fields_are_joined_with_semicolon_space() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2; c=3");
        let mut one = HeaderMap::new();
        one.insert(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        join_cookies(&mut one);
        assert_eq!(one[header::COOKIE], "a=1; b=2");
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn connection_named_fields_and_fixed_hop_by_hop_are_removed() {
        let mut h = map(&[
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("cache-control", "no-cache"),
        ]);
        strip_request(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("cache-control"));
    }

    #[test]
    fn content_length_is_dropped_when_transfer_encoding_framed_the_message() {
        let mut h = map(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        remove_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
        let mut h = map(&[("content-length", "5")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h["content-length"], "5");
    }

    #[test]
    fn proxy_authorization_can_be_passed() {
        let mut h = map(&[("proxy-authorization", "Basic Zm9vOmJhcg==")]);
        strip_request(&mut h, true);
        assert!(h.contains_key("proxy-authorization"));
    }

    #[test]
    fn via_is_appended_after_existing_entries() {
        let via = ViaIdentity::new("proxy.example").unwrap();
        let mut h = map(&[("via", "1.0 fred")]);
        via.append(&mut h, Version::HTTP_10);
        let value = h.get("via").unwrap().to_str().unwrap();
        assert_eq!(
            value,
            format!(
                "1.0 fred, 1.0 proxy.example (cuttle/{})",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn via_loop_detected_by_pseudonym_with_or_without_port() {
        let via = ViaIdentity::new("Proxy.Example").unwrap();
        assert!(via.is_loop(&map(&[("via", "1.1 a, 1.1 proxy.example (cuttle/0.1, x)")])));
        assert!(
            !via.is_loop(&map(&[("via", "1.1 proxy.example:3128")])),
            "another instance on the same host"
        );
        assert!(!via.is_loop(&map(&[("via", "1.1 other (proxy.example)")])));
        assert!(!via.is_loop(&HeaderMap::new()));
    }

    #[test]
    fn the_unique_name_with_its_port_is_written_and_detected() {
        let a = ViaIdentity::with_unique("host.example", "host.example:3128").unwrap();
        let b = ViaIdentity::with_unique("host.example", "host.example:3129").unwrap();
        assert_eq!(a.pseudonym(), "host.example");
        let mut headers = HeaderMap::new();
        b.append(&mut headers, Version::HTTP_11);
        assert!(
            headers[header::VIA]
                .to_str()
                .unwrap()
                .starts_with("1.1 host.example:3129 (cuttle/"),
            "{headers:?}"
        );
        assert!(!a.is_loop(&headers), "B's entry is not A's");
        assert!(b.is_loop(&headers), "B sees its own entry come back");
        a.append(&mut headers, Version::HTTP_11);
        assert!(a.is_loop(&headers) && b.is_loop(&headers));
        assert!(ViaIdentity::with_unique("h", "h:x").is_none());
        assert!(ViaIdentity::with_unique("h", "h:99999").is_none());
    }

    #[test]
    fn invalid_pseudonym_rejected() {
        assert!(ViaIdentity::new("bad host").is_none());
        assert!(ViaIdentity::new("").is_none());
        // Every RFC 9110 §5.6.2 tchar is allowed ('#' and '%' were refused before).
        assert!(ViaIdentity::new("cache#1%a").is_some());
        assert!(ViaIdentity::new("a\"b").is_none());
    }

    #[test]
    fn max_forwards_only_for_trace_and_options() {
        let zero = map(&[("max-forwards", "0")]);
        let five = map(&[("max-forwards", "5")]);
        assert_eq!(max_forwards(&Method::GET, &zero), MaxForwards::Forward);
        assert_eq!(max_forwards(&Method::TRACE, &zero), MaxForwards::Respond);
        assert_eq!(
            max_forwards(&Method::OPTIONS, &five),
            MaxForwards::Decrement(4)
        );
        assert_eq!(
            max_forwards(&Method::OPTIONS, &map(&[("max-forwards", "x")])),
            MaxForwards::Forward
        );
    }

    #[test]
    fn forwarded_for_modes() {
        let ip: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        let mut h = map(&[("x-forwarded-for", "192.0.2.1")]);
        apply_forwarded_for(&mut h, ForwardedFor::On, ip);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.0.0.7");
        apply_forwarded_for(&mut h, ForwardedFor::Truncate, ip);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        apply_forwarded_for(&mut h, ForwardedFor::Off, ip);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7, unknown");
        apply_forwarded_for(&mut h, ForwardedFor::Transparent, ip);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7, unknown");
        apply_forwarded_for(&mut h, ForwardedFor::Delete, ip);
        assert!(!h.contains_key("x-forwarded-for"));
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.255.9",
            "255.255.255.255",
            "::1",
            "2001:db8::5",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
            assert_eq!(ip_value(ip).unwrap(), ip.to_string().as_str());
        }
    }

    #[test]
    fn forwarded_for_without_a_received_field() {
        let ip: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        for (mode, expected) in [
            (ForwardedFor::On, Some("10.0.0.7")),
            (ForwardedFor::Truncate, Some("10.0.0.7")),
            (ForwardedFor::Off, Some("unknown")),
            (ForwardedFor::Transparent, None),
            (ForwardedFor::Delete, None),
        ] {
            let mut h = HeaderMap::new();
            h.insert("x-before", HeaderValue::from_static("1"));
            apply_forwarded_for(&mut h, mode, ip);
            assert_eq!(
                h.get("x-forwarded-for").map(|v| v.to_str().unwrap()),
                expected,
                "{mode:?}"
            );
        }
        // Set in place: where the received field was, its repeats folded into one.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        h.append("x-after", HeaderValue::from_static("1"));
        h.append("x-forwarded-for", HeaderValue::from_static("192.0.2.2"));
        apply_forwarded_for(&mut h, ForwardedFor::On, ip);
        let fields: Vec<_> = h
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            fields,
            [
                ("x-forwarded-for", "192.0.2.1, 192.0.2.2, 10.0.0.7"),
                ("x-after", "1")
            ]
        );
    }

    #[test]
    fn only_chunked_is_a_supported_transfer_coding() {
        let te = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(http::header::TRANSFER_ENCODING, v.parse().unwrap());
            }
            unsupported_coding(&h)
        };
        assert_eq!(te(&[]), None);
        assert_eq!(te(&["chunked"]), None);
        assert_eq!(te(&["Chunked"]), None);
        assert_eq!(te(&["gzip, chunked"]).as_deref(), Some("gzip"));
        assert_eq!(te(&["gzip", "chunked"]).as_deref(), Some("gzip"));
        assert_eq!(te(&["x-custom;q=1, chunked"]).as_deref(), Some("x-custom"));
    }
}
