//! The pooled HTTP client that carries requests to upstreams, and the mapping of its failures.
//!
//! HTTP/1.1 goes through our own keep-alive [`Pool`](super::pool::Pool) (per-server stacks of
//! idle connections, our own codec `upstream::h1`) with our own
//! [`Connector`](super::connect::Connector). It converts absolute-form URIs to origin-form for
//! origins. A TLS group or peer whose `protocols` allow `h2` sends through its
//! [`Sessions`](super::h2::Sessions) instead, which fall back to this pool when a server
//! chooses HTTP/1.1. The wait for a response header is bounded by the read timeout counted from the
//! request's last progress, and every failure becomes a typed [`Error`] so the proxy can answer
//! 502/503/504 with a page that names the cause.
//!
//! `limits.max_response_header_size` is checked here, to the byte, on the parsed head: hyper's
//! own limit is on its read buffer (which may hold body bytes too), so it is set above ours and
//! only stops heads far too large to parse.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};

use super::connect::Connector;
use super::h2::Sessions;
use super::informational::OnInformational;
use super::pool::{Pool, MAX_PER_SERVER};
use super::read_deadline::ReadDeadline;
use super::request_body::{Progress, RequestBody};
use super::response_body::ResponseBody;
use super::tls::ClientTls;
use super::Config;
use crate::error::{Error, ErrorKind};

/// hyper's h1 parser refuses buffers below this size.
const MIN_BUF_SIZE: usize = 8192;
/// Room in hyper's buffer beyond our header limit: the status line and the first body bytes
/// that arrive with the head.
const STATUS_LINE_ROOM: usize = 8192;

/// The client all upstream requests go through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstream {
    pool: Pool,
    /// With `h2` in `protocols`: the HTTP/2 connections, tried first.
    sessions: Option<Arc<Sessions>>,
    read_timeout: Duration,
    /// `limits.max_response_header_size`: the header section, field lines only.
    max_header_size: usize,
}

impl Upstream {
    /// A client for `config` that speaks plain HTTP only.
    pub fn new(config: &Config) -> Self {
        Self::build(config, None, None)
    }

    /// A client for `config` that also speaks HTTPS, trusting what `tls` trusts.
    ///
    /// Each TLS group gets its own client (so its own pool): the pool keys connections by
    /// scheme, host and port only, and a connection verified under one group's trust settings
    /// must never be handed to another group that shares the address.
    pub fn with_tls(config: &Config, tls: Arc<ClientTls>) -> Self {
        Self::build(config, Some(tls), None)
    }

    /// A client that sends every request, in absolute-form, to the cache at `host:port`
    /// (a `cache_peer`), over TLS with `tls`; one per peer, so each peer has its own pool.
    pub fn to_peer(config: &Config, host: &str, port: u16, tls: Option<Arc<ClientTls>>) -> Self {
        Self::build(config, tls, Some((host.to_owned(), port)))
    }

    fn build(config: &Config, tls: Option<Arc<ClientTls>>, peer: Option<(String, u16)>) -> Self {
        let sessions = tls
            .as_ref()
            .filter(|tls| tls.protocols().h2)
            .map(|tls| Sessions::new(Arc::clone(tls), peer.clone(), config));
        let connector = Connector {
            timeout: config.connect_timeout,
            tls,
            peer,
            sessions: sessions.clone(),
        };
        let pool = Pool::new(
            connector,
            config.pool_idle_timeout,
            (config.max_response_header_size + STATUS_LINE_ROOM).max(MIN_BUF_SIZE),
            MAX_PER_SERVER,
        );
        Self {
            pool,
            sessions,
            read_timeout: config.read_timeout,
            max_header_size: config.max_response_header_size,
        }
    }

    /// The read timeout, for callers that keep reading the body.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Sends `req` (absolute-form URI) and waits for the response header.
    ///
    /// The wait ends with [`ErrorKind::ReadTimeout`] once the request has made no progress (no
    /// body bytes sent, no header received) for the read timeout.
    pub async fn send(
        &self,
        req: Request<RequestBody>,
        progress: Arc<Progress>,
    ) -> Result<Response<ResponseBody>, Error> {
        self.send_with(req, progress, None).await
    }

    /// [`send`](Self::send), with `on_informational` called for each interim response.
    pub async fn send_with(
        &self,
        req: Request<RequestBody>,
        progress: Arc<Progress>,
        on_informational: Option<OnInformational>,
    ) -> Result<Response<ResponseBody>, Error> {
        let deadline = ReadDeadline {
            progress,
            timeout: self.read_timeout,
        };
        let response = match self.sessions.as_deref() {
            // Our HTTP/1.1 exchange watches the deadline on its connection's own timer.
            None => {
                self.pool
                    .send_with(req, on_informational, Some(deadline))
                    .await?
            }
            // Boxed: HTTP/2's exchange is twice the size of our HTTP/1 one, and inline it
            // would size every request's state (held by its client connection) for it.
            Some(sessions) => {
                let send = Box::pin(sessions.send(req, &self.pool, on_informational));
                deadline.within(send).await?
            }
        };
        check_header_size(response.headers(), self.max_header_size)?;
        Ok(response)
    }
}

/// The size of a header section as `limits.max_*_header_size` count it: each field line's
/// `name: value` and its CRLF (RFC 9112 §2.1), without the start line.
pub fn header_section_size(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// A response head larger than `limit` is an invalid response (502, like Squid's
/// `reply_header_max_size`).
fn check_header_size(headers: &http::HeaderMap, limit: usize) -> Result<(), Error> {
    let size = header_section_size(headers);
    if size > limit {
        return Err(Error::new(
            ErrorKind::InvalidResponse,
            format!(
                "the upstream's response header is {size} bytes; the limit is {limit} \
                 (limits.max_response_header_size)"
            ),
        ));
    }
    Ok(())
}

/// Maps a hyper protocol error on the upstream connection to a proxy error.
pub fn classify_hyper(err: &hyper::Error) -> Error {
    let cause = if err.is_parse_too_large() {
        "the upstream's response header is too large (limits.max_response_header_size)".to_owned()
    } else if err.is_parse_status() {
        "the upstream sent an invalid status line".to_owned()
    } else if err.is_parse() {
        format!(
            "the upstream sent an invalid HTTP response ({})",
            chain(err)
        )
    } else if err.is_incomplete_message() {
        "the upstream closed the connection before sending a complete response".to_owned()
    } else if err.is_timeout() {
        return Error::new(ErrorKind::ReadTimeout, chain(err));
    } else {
        format!("upstream connection failed: {}", chain(err))
    };
    Error::new(ErrorKind::InvalidResponse, cause)
}

/// An error and its causes on one line.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = e.source();
    }
    out
}
