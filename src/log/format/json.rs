//! One JSON object per line. Every key is always present (`null` when unknown), so a log
//! pipeline can rely on the shape:
//!
//! | key | value |
//! |---|---|
//! | `time` | end of the transaction, RFC 3339 in UTC with milliseconds |
//! | `unix` | the same as seconds since the epoch, with milliseconds (Squid's `%ts.%03tu`) |
//! | `elapsed_ms` | request received to response finished, in ms (µs precision) |
//! | `client` | client address |
//! | `method`, `url`, `http_version` | the request (`url` after `strip_query_terms`) |
//! | `status` | status sent (0 when none was) |
//! | `bytes`, `body_bytes` | bytes sent to the client, with and without the header |
//! | `result_code` | Squid result code (`TCP_MEM_HIT`, `TCP_MISS`, ...) |
//! | `hierarchy_code` | Squid hierarchy code (`HIER_DIRECT`, `FIRSTUP_PARENT`, ...) |
//! | `peer` | name of the next hop (host, peer or group server) |
//! | `upstream_addr` | address of the upstream connection used |
//! | `upstream_wait_ms` | request sent upstream to response head and first body chunk in (summed if sent twice) |
//! | `cache_status` | the `Cache-Status` field sent to the client |
//! | `content_type`, `user`, `referer`, `user_agent` | as named |
//!
//! Field values that are not UTF-8 have their bad bytes replaced with U+FFFD; serde_json
//! escapes quotes, backslashes and C0 controls; DEL, the C1 controls and U+2028/U+2029 are
//! escaped here too, so no reader splits a record.

use std::borrow::Cow;
use std::time::Duration;

use serde::Serialize;

use super::super::record::AccessRecord;
use super::time::Civil;
use super::version_text;

/// The keys of a line, in order: pinned by tests and documented in the README.
pub const KEYS: [&str; 20] = [
    "time",
    "unix",
    "elapsed_ms",
    "client",
    "method",
    "url",
    "http_version",
    "status",
    "bytes",
    "body_bytes",
    "result_code",
    "hierarchy_code",
    "peer",
    "upstream_addr",
    "upstream_wait_ms",
    "cache_status",
    "content_type",
    "user",
    "referer",
    "user_agent",
];

/// One line's object; field order is [`KEYS`]'s.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    unix: f64,
    elapsed_ms: f64,
    client: &'a str,
    method: &'a str,
    url: &'a str,
    http_version: &'static str,
    status: u16,
    bytes: u64,
    body_bytes: u64,
    result_code: &'static str,
    hierarchy_code: &'static str,
    peer: Option<&'a str>,
    upstream_addr: Option<String>,
    upstream_wait_ms: Option<f64>,
    cache_status: Option<Cow<'a, str>>,
    content_type: Option<Cow<'a, str>>,
    user: Option<&'a str>,
    referer: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
}

/// Appends one JSON line (with a trailing newline) for `rec`, showing `url`.
pub fn write(rec: &AccessRecord, url: &str, out: &mut String) {
    let since = rec
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let line = Line {
        time: rfc3339(&Civil::of(rec.time)),
        // One division of an exact integer: the nearest double to `secs.millis`, which
        // serde_json prints back as exactly those digits.
        unix: whole(since.as_millis()) / 1000.0,
        elapsed_ms: millis(rec.elapsed),
        client: &rec.client,
        method: rec.method.as_str(),
        url,
        http_version: version_text(rec.version),
        status: rec.status,
        bytes: rec.bytes,
        body_bytes: rec.body_bytes,
        result_code: rec.code,
        hierarchy_code: rec.hierarchy,
        peer: rec.peer.as_deref(),
        upstream_addr: rec.upstream_addr.map(|a| a.to_string()),
        upstream_wait_ms: rec.upstream_wait.map(millis),
        cache_status: rec.cache_status.as_ref().map(text),
        content_type: rec.content_type.as_ref().map(text),
        user: rec.user.as_deref(),
        referer: rec.referer.as_ref().map(text),
        user_agent: rec.user_agent.as_ref().map(text),
    };
    // Serialising plain strings and numbers cannot fail; were it to, the line is marked
    // rather than silently lost.
    match serde_json::to_string(&line) {
        Ok(json) => push_escaping_line_ends(out, &json),
        Err(e) => {
            out.push_str(r#"{"error":"#);
            out.push_str(&serde_json::Value::from(e.to_string()).to_string());
            out.push('}');
        }
    }
    out.push('\n');
}

/// Appends serde_json's output, escaping what it leaves raw but some readers act on: DEL and
/// the C1 controls (U+0085 NEL ends a line for Python's `splitlines` and log shippers; U+009B
/// starts a terminal escape) and the line and paragraph separators U+2028/U+2029. They can only
/// occur inside strings, where `\uXXXX` means the same character, so one record stays one line.
fn push_escaping_line_ends(out: &mut String, json: &str) {
    let raw = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !json.contains(raw) {
        out.push_str(json);
        return;
    }
    for c in json.chars() {
        if raw(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
}

/// A field value as text.
fn text(value: &http::HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}

/// `d` in milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    whole(d.as_micros()) / 1000.0
}

/// An integer as a double (exact up to 2^53, far beyond any time logged here).
fn whole(n: u128) -> f64 {
    u64::try_from(n).unwrap_or(u64::MAX) as f64
}

/// `2023-11-14T22:13:20.123Z`.
fn rfc3339(t: &Civil) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}
