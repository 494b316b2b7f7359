//! Opening TCP connections to upstreams, with errors that say exactly what failed.
//!
//! hyper-util's `HttpConnector` reports every failure as an opaque "connect error"; a proxy needs
//! to tell a name that does not resolve from a refused port from a timeout, because each gets a
//! different status and error page. This connector resolves with tokio (getaddrinfo on the
//! blocking pool), tries each address in turn within one overall timeout, and returns a typed
//! [`ConnectError`]. It serves both the pooled HTTP client and CONNECT tunnels.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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
}

impl ConnectError {
    /// The proxy error this becomes: DNS and refused are 503 (as in Squid), timeouts 504.
    pub fn to_error(&self) -> Error {
        let kind = match self {
            Self::Dns { .. } | Self::NoAddresses { .. } => ErrorKind::DnsFailed,
            Self::Timeout { .. } => ErrorKind::ConnectTimeout,
            Self::Refused { .. } | Self::Io { .. } => ErrorKind::ConnectFailed,
            Self::InvalidDestination(_) => ErrorKind::InvalidRequest,
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

/// The connector the pooled client uses: origin-form requests straight to the URI's authority.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Overall budget for resolving and connecting.
    pub timeout: Duration,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| ConnectError::InvalidDestination(uri.to_string()))?
                .to_owned();
            let port = uri.port_u16().unwrap_or(80);
            connect(&host, port, timeout).await.map(TokioIo::new)
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
}
