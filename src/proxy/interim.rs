//! Forwarding an upstream's `102`/`103` interim responses to HTTP/1.1 clients.
//!
//! RFC 9110 §15.2: "A proxy MUST forward 1xx responses unless the proxy itself requested the
//! generation of the 1xx response." They arrive through the upstream request's
//! `upstream::informational::OnInformational` callback (our HTTP/1 client codec calls it; for
//! requests still on hyper's client it is bridged to `hyper::ext::on_informational`). hyper's
//! servers have no way to send one (hyperium/hyper #3815 and #4114; see
//! docs/interim-responses.md), and cuttle owns the client socket (`client_conn::ClientIo`), so
//! for HTTP/1.1 clients it writes the interim head there itself: the callback renders it into
//! this connection's `Outbox`, and
//! `ClientIo` writes the outbox before any byte the server (`h1`) writes next, but only while
//! it has nothing unflushed (the previous response is wholly on the wire), so an interim head
//! can only ever land between two messages, never inside one. `100` is left to the server (it
//! answers the client's own expectation when the body is read, `upstream::continue_gate`),
//! `101` is an upgrade (`upgrade`). HTTP/1.0 clients get none: "a server MUST NOT send a 1xx
//! response to an HTTP/1.0 client" (§15.2). HTTP/2 clients get none either (hyper's h2 server
//! has no API).
//!
//! The request path reaches its connection's outbox through a task-local the listener sets
//! once around an HTTP/1 connection (its requests run on the connection's task), so `next_hop`
//! needs no new parameter; work running on other tasks (background refreshes, HTTP/2 streams)
//! has none and forwards nothing. The server (`h1`) opens the outbox for each HTTP/1.1
//! request and closes it for each HTTP/1.0 one (`ClientIo::interim_for`).

use std::sync::Arc;

use http::HeaderMap;

tokio::task_local! {
    /// The outbox of the client connection the current request came on, when its client can
    /// take interim responses.
    pub static OUTBOX: Arc<super::client_conn::ConnActivity>;
}

/// The HTTP/1.1 bytes of an interim response to forward, or `None` for the statuses cuttle
/// does not forward this way (100, 101, anything outside 1xx). Hop-by-hop fields are removed
/// as for any forwarded message (RFC 9110 §7.6.1).
pub fn render(status: http::StatusCode, headers: &HeaderMap) -> Option<Vec<u8>> {
    let code = status.as_u16();
    if !(102..=199).contains(&code) {
        return None;
    }
    let mut headers = headers.clone();
    super::headers::remove_hop_by_hop(&mut headers);
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    let reason = match code {
        102 => "Processing",
        103 => "Early Hints",
        _ => status.canonical_reason().unwrap_or("Informational"),
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// The current request's connection, when it may be sent interim responses.
pub fn current() -> Option<Arc<super::client_conn::ConnActivity>> {
    OUTBOX
        .try_with(Arc::clone)
        .ok()
        .filter(|activity| activity.outbox.enabled())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_hints_are_rendered_without_hop_by_hop_fields() {
        let mut headers = HeaderMap::new();
        headers.insert("link", "</a.css>; rel=preload".parse().unwrap());
        headers.insert("connection", "x-secret".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        let out = render(http::StatusCode::from_u16(103).unwrap(), &headers).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
        );
        assert!(render(http::StatusCode::CONTINUE, &headers).is_none());
        assert!(render(http::StatusCode::SWITCHING_PROTOCOLS, &headers).is_none());
        assert!(render(http::StatusCode::OK, &headers).is_none());
    }
}
