//! Opening connections to upstreams (TCP, and TLS on top for `https`), with errors that say
//! exactly what failed.
//!
//! hyper-util's `HttpConnector` reports every failure as an opaque "connect error"; a proxy needs
//! to tell a name that does not resolve from a refused port from a timeout from an untrusted
//! certificate, because each gets a different status and error page. This connector resolves
//! with tokio (getaddrinfo on the blocking pool), tries each address in turn, runs the TLS
//! handshake when the URI's scheme is `https`, all within one overall timeout, and returns a
//! typed [`ConnectError`]. It serves the pooled HTTP client, health checks and (TCP only)
//! CONNECT tunnels.

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

use super::stream::{Counted, UpstreamStream};
use super::tls::{self, ClientTls};
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
        Error::new(kind, self.to_string())
    }
}

/// Connects to `host:port`, trying each resolved address, all within `timeout`.
pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    let attempt = async {
        let addrs: Vec<SocketAddr> = match host_only.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host_only, port))
                .await
                .map_err(|source| ConnectError::Dns {
                    host: host_only.to_owned(),
                    source,
                })?
                .collect(),
        };
        let mut last = None;
        for addr in addrs {
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
            port,
            after: timeout,
        }),
    }
}

/// Connects to `host:port` and, with `tls`, runs the handshake; all within `timeout`.
pub async fn connect_stream(
    host: &str,
    port: u16,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<UpstreamStream, ConnectError> {
    let deadline = Instant::now() + timeout;
    let tcp = connect(host, port, timeout).await?;
    let Some(tls) = tls else {
        return Ok(UpstreamStream::Plain(tcp));
    };
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout_at(deadline, tls.handshake(host_only, tcp)).await {
        Ok(Ok(stream)) => Ok(UpstreamStream::Tls(Box::new(stream))),
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

/// Upstream connections open now (see [`Counted`]).
pub fn open_connections() -> u64 {
    super::stream::open_connections()
}

/// The connector the pooled client uses: origin-form requests straight to the URI's authority,
/// over TLS when the scheme is `https`.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Overall budget for resolving, connecting and the TLS handshake.
    pub timeout: Duration,
    /// Trust settings for `https` URIs; a client without them refuses `https`.
    pub tls: Option<Arc<ClientTls>>,
    /// A parent or sibling cache (`host`, `port`) to send every request to, whatever the URI.
    pub peer: Option<(String, u16)>,
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
        if let Some((host, port)) = self.peer.clone() {
            return Box::pin(async move {
                connect(&host, port, timeout)
                    .await
                    .map(|tcp| TokioIo::new(Counted::new(UpstreamStream::Peer(tcp))))
            });
        }
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| ConnectError::InvalidDestination(uri.to_string()))?
                .to_owned();
            let https = uri.scheme() == Some(&Scheme::HTTPS);
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tls = match (https, &tls) {
                (false, _) => None,
                (true, Some(tls)) => Some(tls.as_ref()),
                (true, None) => return Err(ConnectError::TlsNotConfigured(uri.to_string())),
            };
            connect_stream(&host, port, tls, timeout)
                .await
                .map(|stream| TokioIo::new(Counted::new(stream)))
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
        };
        let uri: Uri = "https://127.0.0.1:1/".parse().unwrap();
        let err = connector.call(uri).await.unwrap_err();
        assert!(matches!(err, ConnectError::TlsNotConfigured(_)), "{err}");
    }
}
