//! The crate-wide error: what went wrong, on which side, and why.
//!
//! A proxy error is always one of a small set of [`ErrorKind`]s, each of which `proxy::respond`
//! maps to exactly one status code and error page. The [`Side`] says whose fault it is (the
//! client, the upstream, or us), which the access log and `Proxy-Status` report. Leaf modules keep
//! their own precise error types (for example `upstream::connect::ConnectError`) and convert into
//! this one at the edge, keeping the human-readable cause.

use std::fmt;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something we cannot or will not serve.
    Downstream,
    /// The next hop (origin or peer) failed or misbehaved.
    Upstream,
    /// Something inside cuttle failed.
    Internal,
}

/// What went wrong. Each kind has one status code (see `proxy::respond`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or unsupported (400).
    InvalidRequest,
    /// The request URI is longer than `limits.max_uri_length` (414).
    UriTooLong,
    /// The request header section is larger than `limits.max_request_header_size` (431).
    HeaderTooLarge,
    /// An `http_access` rule or the CONNECT port list denied the request (403).
    AccessDenied,
    /// A `proxy_auth` rule needs credentials the request lacks or got wrong (407 with a
    /// `Proxy-Authenticate` challenge, RFC 9110 §15.5.8; Squid's ERR_CACHE_ACCESS_DENIED).
    ProxyAuthRequired,
    /// The request already passed through this proxy (403, like Squid).
    ForwardingLoop,
    /// The destination name does not resolve (503, like Squid's ERR_DNS_FAIL).
    DnsFailed,
    /// The TCP connection to the upstream was refused or failed (503, like ERR_CONNECT_FAIL).
    ConnectFailed,
    /// The TCP connection to the upstream did not complete in time (504).
    ConnectTimeout,
    /// The upstream did not answer within the read timeout (504).
    ReadTimeout,
    /// The upstream answered with something that is not valid HTTP (502).
    InvalidResponse,
    /// The TLS handshake with the upstream failed for a protocol reason (502).
    TlsProtocol,
    /// The upstream's TLS certificate was not acceptable: untrusted, wrong name, expired (502).
    TlsCertificate,
    /// `only-if-cached` and nothing usable is stored (504, RFC 9111 §5.2.1.7).
    NotInCache,
    /// A stale response that must be revalidated, and the origin is unreachable (504, §5.2.2.2).
    MustRevalidate,
    /// No configured site serves this Host on a reverse port (421, RFC 9110 §15.5.20).
    UnknownSite,
    /// The request uses something cuttle does not implement, such as a transfer coding other
    /// than chunked (501, RFC 9112 §6.1; Squid's ERR_UNSUP_REQ).
    NotImplemented,
    /// No server of an upstream group is available (503).
    NoUpstream,
    /// A fault inside cuttle (500).
    Internal,
}

impl ErrorKind {
    /// Short stable name for logs, in Squid's `ERR_*` vocabulary where one exists.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "ERR_INVALID_REQ",
            Self::UriTooLong => "ERR_TOO_BIG",
            Self::HeaderTooLarge => "ERR_TOO_BIG",
            Self::AccessDenied => "ERR_ACCESS_DENIED",
            Self::ProxyAuthRequired => "ERR_CACHE_ACCESS_DENIED",
            Self::ForwardingLoop => "ERR_FORWARDING_LOOP",
            Self::DnsFailed => "ERR_DNS_FAIL",
            Self::ConnectFailed => "ERR_CONNECT_FAIL",
            Self::ConnectTimeout => "ERR_CONNECT_TIMEOUT",
            Self::ReadTimeout => "ERR_READ_TIMEOUT",
            Self::InvalidResponse => "ERR_INVALID_RESP",
            Self::TlsProtocol | Self::TlsCertificate => "ERR_SECURE_CONNECT_FAIL",
            Self::NotInCache => "ERR_ONLY_IF_CACHED_MISS",
            Self::MustRevalidate => "ERR_MUST_REVALIDATE",
            Self::UnknownSite => "ERR_UNKNOWN_SITE",
            Self::NotImplemented => "ERR_UNSUP_REQ",
            Self::NoUpstream => "ERR_NO_UPSTREAM",
            Self::Internal => "ERR_INTERNAL",
        }
    }

    /// The side this kind of failure belongs to.
    pub fn side(self) -> Side {
        match self {
            Self::InvalidRequest
            | Self::UriTooLong
            | Self::HeaderTooLarge
            | Self::AccessDenied
            | Self::ProxyAuthRequired
            | Self::ForwardingLoop
            | Self::NotInCache
            | Self::UnknownSite
            | Self::NotImplemented => Side::Downstream,
            Self::DnsFailed
            | Self::ConnectFailed
            | Self::ConnectTimeout
            | Self::ReadTimeout
            | Self::InvalidResponse
            | Self::TlsProtocol
            | Self::TlsCertificate
            | Self::MustRevalidate
            | Self::NoUpstream => Side::Upstream,
            Self::Internal => Side::Internal,
        }
    }
}

/// How much of a request reached the next hop before it failed: the one fact every retry
/// decision starts from (`upstream::retry`). Set where the error is made: the connector
/// (`upstream::connect`, TLS included) and the HTTP/2 session setup know that no request byte
/// left; everything else is [`Sent::Maybe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// No byte of the request reached the next hop: the name did not resolve, the connection
    /// was refused or timed out, the TLS handshake failed. Always safe to send elsewhere, and
    /// the hop could not be reached (its liveness counts a failure).
    Nothing,
    /// The request may have been (partly) received and acted on.
    Maybe,
}

/// A proxy error: a kind plus the human-readable cause shown on the error page.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    cause: String,
    sent: Sent,
}

impl Error {
    /// A new error of `kind` explained by `cause`.
    pub fn new(kind: ErrorKind, cause: impl Into<String>) -> Self {
        Self {
            kind,
            cause: cause.into(),
            sent: Sent::Maybe,
        }
    }

    /// This error happened before any byte of the request was sent (see [`Sent::Nothing`]).
    #[must_use]
    pub fn before_sending(mut self) -> Self {
        self.sent = Sent::Nothing;
        self
    }

    /// True when nothing of the request reached the next hop: the one rule for "the hop was
    /// unreachable, and another may be asked" (`upstream::retry` builds on it).
    pub fn nothing_sent(&self) -> bool {
        self.sent == Sent::Nothing
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whose fault it is.
    pub fn side(&self) -> Side {
        self.kind.side()
    }

    /// The human-readable cause.
    pub fn cause(&self) -> &str {
        &self.cause
    }

    /// True for upstream timeouts (connect or read).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ConnectTimeout | ErrorKind::ReadTimeout
        )
    }

    /// True when the request was refused by policy (access rules or a loop).
    pub fn is_denied(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::AccessDenied | ErrorKind::ProxyAuthRequired | ErrorKind::ForwardingLoop
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.cause)
    }
}

impl std::error::Error for Error {}

/// Result alias for proxy operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Boxed error for body streams and other cold paths.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
