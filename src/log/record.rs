//! What the access log knows about one finished transaction: the data every line format is
//! rendered from.
//!
//! The request path fills a record with cheap copies only (header values are refcounted
//! `Bytes`, the client text an `Arc<str>`); all rendering happens later in the writer task.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderValue;

/// One finished transaction.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// Wall-clock time the transaction ended.
    pub time: SystemTime,
    pub elapsed: Duration,
    /// The client address as logged (see [`client_text`]), rendered once per connection.
    pub client: Arc<str>,
    /// Squid result code (`TCP_MISS`, `TCP_TUNNEL`, `TCP_DENIED`, `NONE_NONE`...).
    pub code: &'static str,
    pub status: u16,
    /// Bytes sent to the client, header included.
    pub bytes: u64,
    /// Of [`bytes`](Self::bytes), the response body (or tunnelled data) alone.
    pub body_bytes: u64,
    pub method: http::Method,
    /// The request URL: absolute (`http://host/path?query`), `host:port` for CONNECT.
    pub url: String,
    /// The client sent an origin-form target (`GET /path`, as to an accelerator): request-line
    /// formats show the path alone, as the client wrote it.
    pub origin_form: bool,
    /// The client's HTTP version.
    pub version: http::Version,
    /// Authenticated user, if any.
    pub user: Option<String>,
    /// Squid hierarchy code (`HIER_DIRECT`, `HIER_NONE`...).
    pub hierarchy: &'static str,
    /// The next hop that served it, by name (host, peer name or group server).
    pub peer: Option<String>,
    /// The address of the upstream connection the response came on, when one was used.
    pub upstream_addr: Option<SocketAddr>,
    /// From sending the request upstream (connecting and any failover included) to having its
    /// response head and first body chunk, summed if the request went upstream more than once;
    /// `None` when nothing went upstream.
    pub upstream_wait: Option<Duration>,
    pub content_type: Option<HeaderValue>,
    /// The `Cache-Status` field as sent to the client (RFC 9211).
    pub cache_status: Option<HeaderValue>,
    /// The request's `Referer` field.
    pub referer: Option<HeaderValue>,
    /// The request's `User-Agent` field.
    pub user_agent: Option<HeaderValue>,
}

/// How a client address appears in the log: IPv4-mapped IPv6 addresses as plain IPv4.
pub fn client_text(ip: IpAddr) -> Arc<str> {
    Arc::from(ip.to_canonical().to_string())
}

/// A record with every field set, for format and writer tests.
#[cfg(test)]
pub(crate) fn sample() -> AccessRecord {
    use std::time::UNIX_EPOCH;
    AccessRecord {
        time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        elapsed: Duration::from_millis(45),
        client: client_text("::ffff:127.0.0.1".parse().unwrap()),
        code: "TCP_MISS",
        status: 200,
        bytes: 1234,
        body_bytes: 1000,
        method: http::Method::GET,
        url: "http://example.com/a b".into(),
        origin_form: false,
        version: http::Version::HTTP_11,
        user: None,
        hierarchy: "HIER_DIRECT",
        peer: Some("example.com".into()),
        upstream_addr: Some("192.0.2.7:80".parse().unwrap()),
        upstream_wait: Some(Duration::from_millis(12)),
        content_type: Some(HeaderValue::from_static("text/html; charset=utf-8")),
        cache_status: Some(HeaderValue::from_static("cuttle; fwd=miss; stored")),
        referer: Some(HeaderValue::from_static("http://example.com/")),
        user_agent: Some(HeaderValue::from_static("curl/8.5.0")),
    }
}
