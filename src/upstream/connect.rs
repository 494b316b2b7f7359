//! Opening connections to upstreams (TCP, and TLS on top for `https`), with errors that say
//! exactly what failed.
//!
//! hyper-util's `HttpConnector` reports every failure as an opaque "connect error"; a proxy needs
//! to tell a name that does not resolve from a refused port from a timeout from an untrusted
//! certificate, because each gets a different status and error page. This connector resolves
//! with tokio (getaddrinfo on the blocking pool; numeric hosts and `localhost` without it),
//! tries each address in turn, runs the TLS
//! handshake when the URI's scheme is `https` (or the peer has `tls = true`), all within one
//! overall timeout, and returns a typed [`ConnectError`]. It serves the pooled HTTP client, the
//! HTTP/2 sessions, health checks and CONNECT tunnels (TCP to origins, TLS or TCP to parents).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Scheme;
use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::h2::Sessions;
use super::stream::{Counted, UpstreamStream};
use super::tls::{self, ClientTls};
use crate::access::host::{self, HostKind};
use crate::error::{Error, ErrorKind};

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}: {source}")]
    Dns { host: String, source: io::Error },
    #[error("{host} resolves to no addresses")]
    NoAddresses { host: String },
    #[error("connection to {addr} refused")]
    Refused { addr: SocketAddr },
    #[error("connection to {host}:{port} timed out after {after:?}")]
    Timeout {
        host: String,
        port: u16,
        after: Duration,
    },
    #[error("connection to {addr} failed: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    #[error("invalid destination `{0}`")]
    InvalidDestination(String),
    #[error("TLS handshake with {host}:{port} failed: {source}")]
    Tls {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("`{0}` is https but its upstream group has no TLS settings")]
    TlsNotConfigured(String),
}

impl ConnectError {
    /// The proxy error this becomes: DNS and refused are 503 (as in Squid), timeouts 504.
    /// No connection means no request byte left: every one is [`Error::before_sending`].
    pub fn to_error(&self) -> Error {
        let kind = match self {
            Self::Dns { .. } | Self::NoAddresses { .. } => ErrorKind::DnsFailed,
            Self::Timeout { .. } => ErrorKind::ConnectTimeout,
            Self::Refused { .. } | Self::Io { .. } => ErrorKind::ConnectFailed,
            Self::InvalidDestination(_) => ErrorKind::InvalidRequest,
            Self::Tls { source, .. } if tls::is_certificate_error(source) => {
                ErrorKind::TlsCertificate
            }
            Self::Tls { .. } => ErrorKind::TlsProtocol,
            Self::TlsNotConfigured(_) => ErrorKind::Internal,
        };
        Error::new(kind, self.to_string()).before_sending()
    }
}

/// Resolves `host` for `port` within `timeout`: address literals in every spelling a resolver
/// accepts, and `localhost` names, without DNS (see [`crate::access::host`]); other names with
/// getaddrinfo. A host that looks numeric but is no valid address is refused, never looked up.
///
/// The proxy resolves once, checks `dst` ACLs against every address, and then connects only
/// to those addresses ([`connect_addrs`]), so a second lookup can never return something else.
pub async fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    match host::classify(host) {
        HostKind::Address(ip) => return Ok(vec![SocketAddr::new(ip, port)]),
        HostKind::Localhost => {
            return Ok(host::LOOPBACK
                .iter()
                .map(|&ip| SocketAddr::new(ip, port))
                .collect())
        }
        HostKind::Invalid => return Err(ConnectError::InvalidDestination(host.to_owned())),
        HostKind::Name => {}
    }
    let name = host_only.strip_suffix('.').unwrap_or(host_only);
    if name.eq_ignore_ascii_case("invalid")
        || name
            .len()
            .checked_sub(".invalid".len())
            .and_then(|start| name.get(start..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".invalid"))
    {
        // RFC 6761 §6.4: resolvers "SHOULD recognize them as invalid and immediately return
        // negative"; no query leaves the machine.
        return Err(ConnectError::Dns {
            host: host_only.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, ".invalid names never resolve"),
        });
    }
    let lookup = tokio::net::lookup_host((host_only, port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(source)) => {
            return Err(ConnectError::Dns {
                host: host_only.to_owned(),
                source,
            })
        }
        Err(_) => {
            return Err(ConnectError::Timeout {
                host: host_only.to_owned(),
                port,
                after: timeout,
            })
        }
    };
    if addrs.is_empty() {
        return Err(ConnectError::NoAddresses {
            host: host_only.to_owned(),
        });
    }
    Ok(addrs)
}

/// Connects to the first of `addrs` (already resolved, and checked) that accepts, within
/// `timeout`; `host` names the destination in errors.
pub async fn connect_addrs(
    host: &str,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    let attempt = async {
        let mut last = None;
        for &addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Small writes (headers) should not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    last = Some(ConnectError::Refused { addr });
                }
                Err(source) => last = Some(ConnectError::Io { addr, source }),
            }
        }
        Err(last.unwrap_or_else(|| ConnectError::NoAddresses {
            host: host_only.to_owned(),
        }))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout {
            host: host_only.to_owned(),
            port: addrs.first().map_or(0, SocketAddr::port),
            after: timeout,
        }),
    }
}

/// Connects to `host:port`, trying each resolved address, all within `timeout`.
pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let deadline = Instant::now() + timeout;
    let addrs = resolve(host, port, timeout).await?;
    let left = deadline.saturating_duration_since(Instant::now());
    connect_addrs(host, &addrs, left).await
}

/// Which ALPN list a TLS handshake offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// `http/1.1` only: for the HTTP/1.1 pool, health checks and CONNECT to a parent.
    Http1,
    /// What the group's or peer's `protocols` allow (see [`super::h2`]).
    Negotiate,
}

/// Connects to `host:port` and runs the TLS handshake offering `offer`; all within `timeout`.
pub async fn connect_tls(
    host: &str,
    port: u16,
    tls: &ClientTls,
    offer: Offer,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let deadline = Instant::now() + timeout;
    let tcp = connect(host, port, timeout).await?;
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    let handshake = async {
        match offer {
            Offer::Http1 => tls.handshake(host_only, tcp).await,
            Offer::Negotiate => tls.handshake_negotiating(host_only, tcp).await,
        }
    };
    match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(ConnectError::Tls {
            host: host_only.to_owned(),
            port,
            source,
        }),
        Err(_) => Err(ConnectError::Timeout {
            host: host_only.to_owned(),
            port,
            after: timeout,
        }),
    }
}

/// Connects to `host:port` and, with `tls`, runs the handshake (offering `http/1.1`); all
/// within `timeout`.
pub async fn connect_stream(
    host: &str,
    port: u16,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<UpstreamStream, ConnectError> {
    match tls {
        None => connect(host, port, timeout)
            .await
            .map(UpstreamStream::Plain),
        Some(tls) => connect_tls(host, port, tls, Offer::Http1, timeout)
            .await
            .map(|stream| UpstreamStream::Tls(Box::new(stream))),
    }
}

/// Where a request for `uri` connects: the peer when there is one, else the URI's host and
/// port (443 for `https`, 80 otherwise).
pub fn destination(uri: &Uri, peer: Option<&(String, u16)>) -> Result<(String, u16), ConnectError> {
    if let Some((host, port)) = peer {
        return Ok((host.clone(), *port));
    }
    let host = uri
        .host()
        .ok_or_else(|| ConnectError::InvalidDestination(uri.to_string()))?;
    let https = uri.scheme() == Some(&Scheme::HTTPS);
    Ok((
        host.to_owned(),
        uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
    ))
}

/// Upstream connections open now (see [`Counted`]).
pub fn open_connections() -> u64 {
    super::stream::open_connections()
}

/// The connector the pooled client uses: origin-form requests straight to the URI's authority,
/// over TLS when the scheme is `https`; or every request to a peer, over TLS when the peer has
/// TLS settings.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Overall budget for resolving, connecting and the TLS handshake.
    pub timeout: Duration,
    /// Trust settings for `https` URIs (a client without them refuses `https`), or for the
    /// connection to the peer itself.
    pub tls: Option<Arc<ClientTls>>,
    /// A parent or sibling cache (`host`, `port`) to send every request to, whatever the URI.
    pub peer: Option<(String, u16)>,
    /// The HTTP/2 sessions of the same client: a connection on which the server chose
    /// HTTP/1.1 in ALPN is parked there and taken here, so that it is not wasted.
    pub sessions: Option<Arc<Sessions>>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Counted>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        let tls = self.tls.clone();
        let peer = self.peer.clone();
        let sessions = self.sessions.clone();
        Box::pin(async move {
            let (host, port) = destination(&uri, peer.as_ref())?;
            if let Some(parked) = sessions.and_then(|s| s.take_parked(&host, port)) {
                return Ok(TokioIo::new(parked));
            }
            let stream = match (peer.is_some(), uri.scheme() == Some(&Scheme::HTTPS), &tls) {
                (true, _, None) => UpstreamStream::Peer(connect(&host, port, timeout).await?),
                (true, _, Some(tls)) => UpstreamStream::PeerTls(Box::new(
                    connect_tls(&host, port, tls, Offer::Http1, timeout).await?,
                )),
                (false, false, _) => connect_stream(&host, port, None, timeout).await?,
                (false, true, Some(tls)) => connect_stream(&host, port, Some(tls), timeout).await?,
                (false, true, None) => return Err(ConnectError::TlsNotConfigured(uri.to_string())),
            };
            Ok(TokioIo::new(Counted::new(stream)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_port_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = connect("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Refused { .. }), "{err}");
        assert_eq!(err.to_error().kind(), ErrorKind::ConnectFailed);
    }

    #[tokio::test]
    async fn numeric_and_localhost_hosts_resolve_without_dns_and_junk_is_refused() {
        let t = Duration::from_secs(1);
        for form in ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::1]"] {
            let addrs = resolve(form, 8080, t).await.unwrap();
            assert_eq!(addrs.len(), 1, "{form}");
            assert!(addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080));
        }
        let err = resolve("shop.example.INVALID.", 80, t).await.unwrap_err();
        assert!(matches!(err, ConnectError::Dns { .. }), "{err}");
        let local = resolve("app.localhost", 80, t).await.unwrap();
        assert!(local.len() == 2 && local.iter().all(|a| a.ip().is_loopback()));
        // Numeric-looking but no address: refused (400), never handed to a resolver.
        for junk in ["256.0.0.1", "1.2.3.4.5", "0x1ffffffff"] {
            let err = resolve(junk, 80, t).await.unwrap_err();
            assert!(
                matches!(err, ConnectError::InvalidDestination(_)),
                "{junk}: {err}"
            );
            assert_eq!(err.to_error().kind(), ErrorKind::InvalidRequest);
        }
    }

    #[test]
    fn each_failure_maps_to_its_status_kind() {
        // No real lookup here: tests never leave 127.0.0.0/8.
        let dns = ConnectError::Dns {
            host: "example.invalid".into(),
            source: io::Error::other("not found"),
        };
        assert_eq!(dns.to_error().kind(), ErrorKind::DnsFailed);
        let timeout = ConnectError::Timeout {
            host: "h".into(),
            port: 1,
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.to_error().kind(), ErrorKind::ConnectTimeout);
    }

    #[test]
    fn tls_handshake_failures_are_certificate_or_protocol_errors() {
        use tokio_rustls::rustls;
        let tls = |source: rustls::Error| ConnectError::Tls {
            host: "origin.test".into(),
            port: 443,
            source: io::Error::new(io::ErrorKind::InvalidData, source),
        };
        let untrusted = tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(untrusted.to_error().kind(), ErrorKind::TlsCertificate);
        let garbage = tls(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        assert_eq!(garbage.to_error().kind(), ErrorKind::TlsProtocol);
        assert!(garbage.to_string().contains("origin.test:443"), "{garbage}");
    }

    #[tokio::test]
    async fn https_without_tls_settings_is_refused_before_connecting() {
        use tower_service::Service as _;
        let mut connector = Connector {
            timeout: Duration::from_secs(1),
            tls: None,
            peer: None,
            sessions: None,
        };
        let uri: Uri = "https://127.0.0.1:1/".parse().unwrap();
        let err = connector.call(uri).await.unwrap_err();
        assert!(matches!(err, ConnectError::TlsNotConfigured(_)), "{err}");
    }
}
