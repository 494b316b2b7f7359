//! What every mode (forward, reverse, tunnel) shares about a client request: the connection
//! it came on, the loop and access checks, and how it ends (a logged response or an error
//! page). Kept apart from `service`, which dispatches to the modes, so the modes never import
//! their dispatcher back.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Response};

use super::body::ProxyBody;
use super::client_conn::ConnActivity;
use super::transaction::{code, Transaction};
use super::{respond, Live, Mode, Shared};
use crate::access::{AccessRequest, RequestFacts, Verdict};
use crate::error::{Error, ErrorKind, Side};

/// What a request knows about the connection it came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `peer`'s address as the access log writes it, rendered once per connection.
    pub client_text: Arc<str>,
    /// The listening address the client connected to.
    pub local: SocketAddr,
    pub mode: Mode,
    /// How much this port's error pages tell (`error_details`).
    pub error_details: respond::ErrorDetails,
    /// The client spoke TLS to us (an `https` port): reverse mode says so upstream.
    pub tls: bool,
    pub activity: Arc<ConnActivity>,
    /// The current config generation; each request loads it once (see [`Live`]).
    pub live: Arc<Live>,
    /// This connection's slot under `limits.max_connections` and its address's
    /// `client_ip_max_connections`; CONNECT tunnels keep a clone.
    pub permit: Arc<super::client_slots::ConnSlot>,
    /// Set on a connection inside a bumped CONNECT tunnel: the origin its requests are for.
    pub bumped: Option<Arc<BumpedOrigin>>,
    /// How `bump` serves HTTP on a connection it opened inside a tunnel; the listener's own
    /// serving, handed down so that `bump` does not import the listener (which imports the
    /// request path that leads to `bump`).
    pub serve_inner: ServeInner,
}

/// A byte stream a connection can be served on (a TLS stream inside a tunnel).
pub trait InnerStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> InnerStream for T {}

/// Serves HTTP on a stream for a connection: HTTP/2 when the flag says ALPN chose it.
pub type ServeInner = fn(
    Box<dyn InnerStream>,
    Arc<ConnInfo>,
    bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The origin of a bumped tunnel: every request inside is for it, whatever its Host says
/// (the CONNECT was authorised, and the certificate minted, for this name only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BumpedOrigin {
    /// As in the CONNECT target (IPv6 literals in brackets).
    pub host: String,
    pub port: u16,
}

impl BumpedOrigin {
    /// The absolute `https` URI of a request inside the tunnel: its path and query on this
    /// origin. A CONNECT inside a bumped tunnel has no such URI and is refused.
    pub fn absolute(&self, uri: &http::Uri, method: &Method) -> Result<http::Uri, Error> {
        if method == Method::CONNECT {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "CONNECT inside an intercepted tunnel",
            ));
        }
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let text = if self.port == 443 {
            format!("https://{}{path}", self.host)
        } else {
            format!("https://{}:{}{path}", self.host, self.port)
        };
        text.parse()
            .map_err(|_| Error::new(ErrorKind::InvalidRequest, "Invalid URL"))
    }
}

/// Attaches `txn` to the response for logging, or answers with the error page.
pub fn finish(
    mut txn: Box<Transaction>,
    result: Result<Response<ProxyBody>, Error>,
    shared: &Shared,
) -> Response<ProxyBody> {
    match result {
        Ok(mut response) => {
            match response.body().hit_head() {
                Some(hit) => txn.respond_hit(response.status(), hit),
                None => txn.respond(&response),
            }
            // A switched connection logs when its relay ends, not when the 101 is sent.
            if let Some(handoff) = response
                .extensions_mut()
                .remove::<super::handoff::Handoff>()
            {
                handoff.send(txn);
                return response;
            }
            response.map(|body| body.with_transaction(txn))
        }
        Err(err) => reply_error(txn, &err, shared),
    }
}

/// Answers with the error page for `err` and logs the transaction with it.
pub fn reply_error(mut txn: Box<Transaction>, err: &Error, shared: &Shared) -> Response<ProxyBody> {
    txn.code = match err.side() {
        _ if err.is_denied() => code::TCP_DENIED,
        Side::Upstream => code::TCP_MISS,
        Side::Downstream | Side::Internal => code::NONE,
    };
    tracing::debug!(url = %txn.url, error = %err, "request failed");
    let mut response = respond::error_response_with(
        err,
        &txn.url,
        shared.via.pseudonym(),
        txn.error_details,
        &shared.config.error_pages,
    );
    if err.kind() == ErrorKind::ProxyAuthRequired {
        if let Some(auth) = &shared.auth {
            // RFC 9110 §15.5.8: a 407 "MUST send a Proxy-Authenticate header field".
            response
                .headers_mut()
                .insert(http::header::PROXY_AUTHENTICATE, auth.challenge().clone());
        }
    }
    txn.respond(&response);
    response.map(|body| body.with_transaction(txn))
}

/// Applies `http_access` to a request for `host:port` without resolving it (reverse mode:
/// the destination is a configured group; forward mode uses `destination::check`). Reverse
/// ports do not ask for proxy credentials (`facts.can_challenge` is false there), so a
/// `proxy_auth` ACL does not match.
pub fn check_access(
    shared: &Shared,
    peer: SocketAddr,
    method: &Method,
    host: &str,
    port: u16,
    facts: RequestFacts<'_>,
) -> Result<(), Error> {
    let verdict = shared.access.check(&AccessRequest {
        src: peer.ip(),
        host,
        port,
        method,
        dst: None,
        facts,
    });
    match verdict {
        Verdict::Allow => Ok(()),
        Verdict::Deny(rule) | Verdict::AuthRequired(rule) => Err(Error::new(
            ErrorKind::AccessDenied,
            format!("access denied ({rule})"),
        )),
    }
}

/// Refuses a request seen before (our own `Via` entry is in it).
pub fn check_loop(shared: &Shared, headers: &http::HeaderMap) -> Result<(), Error> {
    if shared.via.is_loop(headers) {
        return Err(Error::new(
            ErrorKind::ForwardingLoop,
            format!(
                "forwarding loop detected: the request already passed through {}",
                shared.via.pseudonym()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bumped_request_keeps_the_tunnels_origin_whatever_it_names() {
        let origin = BumpedOrigin {
            host: "registry.test".to_owned(),
            port: 443,
        };
        let origin_form: http::Uri = "/pkg/a?v=1".parse().unwrap();
        assert_eq!(
            origin.absolute(&origin_form, &Method::GET).unwrap(),
            "https://registry.test/pkg/a?v=1"
        );
        // An h2 request names its own authority; the tunnel's wins.
        let elsewhere: http::Uri = "https://elsewhere.test:8443/x".parse().unwrap();
        let other_port = BumpedOrigin {
            host: "[::1]".to_owned(),
            port: 8443,
        };
        assert_eq!(
            other_port.absolute(&elsewhere, &Method::GET).unwrap(),
            "https://[::1]:8443/x"
        );
        let connect: http::Uri = "a.test:443".parse().unwrap();
        assert!(origin.absolute(&connect, &Method::CONNECT).is_err());
    }
}
