//! Cache keys: the primary key (normalised URI) and the Vary secondary key.
//!
//! RFC 9111 §2 notes that caches which only store GET (and HEAD) "only use the
//! URI as the cache key"; GET and HEAD therefore share a key here. The
//! secondary key implements §4.1's matching of the request fields a response's
//! `Vary` nominates.

use super::fields::{field_lines, is_token, split_list};
use http::header::{HeaderMap, HeaderName, ACCEPT_ENCODING, ACCEPT_LANGUAGE, VARY};
use http::Uri;

/// Default port of a scheme, for the normalisations of RFC 9110 §4.2.3/§4.3.1.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

/// Normalised (scheme, host, port) of an absolute URI: its origin (RFC 9110 §4.3.1).
///
/// The port is always present here (default filled in when known), with
/// leading zeros removed; None when the URI is not absolute.
pub fn origin(uri: &Uri) -> Option<(String, String, Option<u16>)> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let port = uri.port_u16().or_else(|| default_port(&scheme));
    Some((scheme, host, port))
}

/// Primary cache key for an absolute URI; None when not absolute.
///
/// RFC 9110 §4.2.3: omit a default port, use "/" for an empty path, lowercase
/// scheme and host, and do not percent-encode unreserved characters. Userinfo
/// and the fragment are never part of the key.
pub fn primary_key(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    let host = host_of(authority);
    if host.is_empty() {
        return None;
    }
    let path = uri.path();
    let query = uri.query();
    let mut key = String::with_capacity(
        scheme.len() + host.len() + path.len() + query.map_or(0, str::len) + 10,
    );
    push_lowercase(&mut key, scheme);
    let scheme_len = key.len();
    key.push_str("://");
    push_lowercase(&mut key, host);
    if let Some(p) = port_of(authority) {
        if Some(p) != default_port(key.get(..scheme_len).unwrap_or("")) {
            key.push(':');
            key.push_str(itoa::Buffer::new().format(p));
        }
    }
    if path.is_empty() {
        key.push('/');
    } else {
        normalise_percent(path, &mut key);
    }
    if let Some(q) = query {
        key.push('?');
        normalise_percent(q, &mut key);
    }
    Some(key)
}

/// The host of an authority as `http::uri::Authority::host` gives it (after any userinfo;
/// an IP literal with its brackets), by one byte scan each way: this runs for every request
/// (the cache key, reverse-mode routing), where `host`'s two string searches cost ~400
/// instructions.
pub fn host_of(authority: &str) -> &str {
    let start = authority
        .bytes()
        .rposition(|b| b == b'@')
        .map_or(0, |at| at + 1);
    let host_port = authority.get(start..).unwrap_or("");
    let end = if host_port.starts_with('[') {
        host_port
            .bytes()
            .position(|b| b == b']')
            .map_or(host_port.len(), |close| close + 1)
    } else {
        host_port
            .bytes()
            .position(|b| b == b':')
            .unwrap_or(host_port.len())
    };
    host_port.get(..end).unwrap_or(host_port)
}

/// The port of an authority as `http::uri::Authority::port_u16` gives it: what follows its
/// last `:`, when that is a number that fits.
pub fn port_of(authority: &str) -> Option<u16> {
    let colon = authority.bytes().rposition(|b| b == b':')?;
    authority.get(colon + 1..)?.parse().ok()
}

/// Appends `s` in ASCII lowercase.
fn push_lowercase(out: &mut String, s: &str) {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        out.extend(s.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        out.push_str(s);
    }
}

/// Decodes %XX of unreserved characters and upper-cases the hex of the rest (RFC 3986 §6.2.2);
/// everything else, raw non-ASCII characters included, is kept exactly as received, so two
/// strings give the same result only if they are equivalent under §6.2.2.
fn normalise_percent(s: &str, out: &mut String) {
    if !s.contains('%') {
        out.push_str(s);
        return;
    }
    let bytes = s.as_bytes();
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i.saturating_add(1)).and_then(|c| hex_val(*c));
            let lo = bytes.get(i.saturating_add(2)).and_then(|c| hex_val(*c));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                let v = hi.saturating_mul(16).saturating_add(lo);
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(v));
                } else {
                    out.push('%');
                    out.push(hex_digit(hi));
                    out.push(hex_digit(lo));
                }
                i = i.saturating_add(3);
                continue;
            }
        }
        if b.is_ascii() {
            out.push(char::from(b));
            i = i.saturating_add(1);
            continue;
        }
        // A raw non-ASCII character is copied as it came, never reread byte by byte: "é" sent
        // raw stays "é" (and so differs from "%C3%A9", which RFC 3986 does not make equivalent
        // to it, and from the Latin-1 reading "Ã©" of its bytes).
        match s.get(i..).and_then(|rest| rest.chars().next()) {
            Some(c) => {
                out.push(c);
                i = i.saturating_add(c.len_utf8());
            }
            None => i = i.saturating_add(1),
        }
    }
}

/// Upper-case hex digit for the low nibble of `n`.
fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n & 15), 16).map_or('0', |c| c.to_ascii_uppercase())
}

fn hex_val(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The request fields a response varies on (RFC 9110 §12.5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarySpec {
    /// `Vary: *` — "always fails to match" (RFC 9111 §4.1).
    Star,
    /// Lower-cased, de-duplicated, sorted field names (empty when no Vary).
    Fields(Vec<HeaderName>),
}

/// Parses every Vary line of a response.
///
/// A member that is not a valid field name cannot be matched reliably, so it
/// is treated like "*" (the response is never reused without validation).
pub fn vary_fields(resp_headers: &HeaderMap) -> VarySpec {
    let mut names: Vec<HeaderName> = Vec::new();
    for line in field_lines(resp_headers, &VARY) {
        for member in split_list(&line) {
            if member == "*" || !is_token(member) {
                return VarySpec::Star;
            }
            match HeaderName::from_bytes(member.as_bytes()) {
                Ok(n) => names.push(n),
                Err(_) => return VarySpec::Star,
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    VarySpec::Fields(names)
}

/// Secondary key for looking up a request: the nominated request fields, normalised; None
/// for `Vary: *`. Where `Accept-Encoding` is nominated there is one key per stored coding the
/// request accepts, so see [`secondary_keys`]; this gives the most preferred one.
pub fn secondary_key(spec: &VarySpec, req_headers: &HeaderMap) -> Option<String> {
    secondary_keys(spec, req_headers).next()
}

/// Every secondary key a request may be served under, most preferred first (empty for
/// `Vary: *`).
///
/// Per §4.1, lines are combined with ", " and whitespace is normalised (OWS around commas
/// removed, runs collapsed, ends trimmed; quoted strings are left alone). "If ... a header field
/// is absent from a request, it can only match another request if it is also absent there":
/// absent fields are encoded as `name!`, present ones as `name=value`, so absent ≠ empty.
/// `Accept-Encoding` and `Accept-Language` are normalised by their meaning
/// ([`negotiation`]): the first becomes one key per coding the request accepts.
pub fn secondary_keys<'a>(
    spec: &'a VarySpec,
    req_headers: &'a HeaderMap,
) -> impl Iterator<Item = String> + 'a {
    let names: &[HeaderName] = match spec {
        VarySpec::Fields(names) => names,
        VarySpec::Star => &[],
    };
    let star = matches!(spec, VarySpec::Star);
    // Built one at a time: a lookup usually stops at the first key.
    let codings = if names.contains(&ACCEPT_ENCODING) {
        negotiation::accepted_codings(req_headers)
    } else {
        Vec::new()
    };
    let plain = (!star && codings.is_empty()).then(|| build_secondary(names, req_headers, None));
    plain.into_iter().chain(
        codings
            .into_iter()
            .map(move |coding| build_secondary(names, req_headers, Some(&coding))),
    )
}

/// The secondary key a response is stored under: the request's fields as in
/// [`secondary_keys`], with `Accept-Encoding` replaced by the coding the response carries.
pub fn stored_secondary_key(
    spec: &VarySpec,
    req_headers: &HeaderMap,
    resp_headers: &HeaderMap,
) -> Option<String> {
    let VarySpec::Fields(names) = spec else {
        return None;
    };
    let coding = names
        .contains(&ACCEPT_ENCODING)
        .then(|| negotiation::response_coding(resp_headers));
    Some(build_secondary(names, req_headers, coding.as_deref()))
}

fn build_secondary(names: &[HeaderName], req_headers: &HeaderMap, coding: Option<&str>) -> String {
    let mut key = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            key.push('\n');
        }
        key.push_str(name.as_str());
        if let (true, Some(coding)) = (name == ACCEPT_ENCODING, coding) {
            key.push('=');
            key.push_str(coding);
            continue;
        }
        let lines: Vec<&[u8]> = req_headers
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        if lines.is_empty() {
            key.push('!');
            continue;
        }
        key.push('=');
        if name == ACCEPT_LANGUAGE {
            if let Some(normalised) = negotiation::normalised_language(&lines) {
                key.push_str(&normalised);
                continue;
            }
        }
        let combined = lines.join(&b", "[..]);
        normalise_ws(&combined, &mut key);
    }
    key
}

/// Whitespace normalisation of a field value, escaping '%' and non-ASCII bytes.
fn normalise_ws(value: &[u8], out: &mut String) {
    let mut buf: Vec<u8> = Vec::with_capacity(value.len());
    let mut in_quotes = false;
    let mut escaped = false;
    let mut pending_space = false;
    for &b in value {
        if in_quotes {
            buf.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = false;
            }
            continue;
        }
        match b {
            b' ' | b'\t' => pending_space = true,
            b',' => {
                pending_space = false;
                buf.push(b',');
            }
            _ => {
                if pending_space && !buf.is_empty() && buf.last() != Some(&b',') {
                    buf.push(b' ');
                }
                pending_space = false;
                if b == b'"' {
                    in_quotes = true;
                }
                buf.push(b);
            }
        }
    }
    for b in buf {
        if b == b'%' || !b.is_ascii() || b.is_ascii_control() {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 15));
        } else {
            out.push(char::from(b));
        }
    }
}

/// True when a request with `req_headers` may be served the response stored under
/// `stored_secondary` (never for `Vary: *`).
pub fn vary_matches(spec: &VarySpec, stored_secondary: &str, req_headers: &HeaderMap) -> bool {
    secondary_keys(spec, req_headers).any(|k| k == stored_secondary)
}

pub mod negotiation;

#[cfg(test)]
mod tests;
