//! HTTP/2 to upstream servers over TLS: one connection per destination, multiplexing concurrent
//! requests, chosen by ALPN (`protocols` with `h2`).
//!
//! hyper-util's pooled client can switch to HTTP/2 after ALPN as well, but it keys connections
//! by the request URI's authority: a parent would get one connection per origin, and a group's
//! `:authority` would have to be the server's address rather than the Host the client asked
//! for. It also lets concurrent first requests each open a connection. Here each destination (a
//! group's server, or a peer) has one [`Slot`]: the first request opens the connection while the
//! others wait for it (single flight, a failure included), and then all share it. When the
//! server chooses `http/1.1` instead, that connection is parked for the HTTP/1.1 pool's
//! connector to take, and requests go to that pool until the choice is checked again after
//! [`HTTP1_RECHECK`]. A connection unused for `pool_idle_timeout` is let go: hyper closes it
//! once its last stream ends.
//!
//! Requests are rewritten for HTTP/2 in [`into_h2`]: the `Host` the next hop would have got
//! becomes `:authority` (RFC 9113 §8.3.1) and connection-specific fields go (§8.2.2).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use super::client::classify_hyper;
use super::connect::{connect_tls, destination, Offer};
use super::informational::OnInformational;
use super::pool::Pool;
use super::request_body::RequestBody;
use super::stream::{Counted, UpstreamStream};
use super::tls::{self, ClientTls};
use crate::error::{Error, ErrorKind};

/// How long a server that chose `http/1.1` is taken at its word before ALPN is tried again: an
/// upgrade to HTTP/2 is noticed without a reload, at the cost of one handshake per interval
/// (and that connection still serves the HTTP/1.1 pool).
pub const HTTP1_RECHECK: Duration = Duration::from_secs(300);

/// PING an HTTP/2 connection with streams open after this much silence, so that a server that
/// vanished fails its requests within `KEEPALIVE_TIMEOUT` more rather than at the read timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The HTTP/2 connections of one client (a TLS group, or a peer), by destination.
#[derive(Debug)]
pub struct Sessions {
    tls: Arc<ClientTls>,
    /// A peer's `host`, `port`: every request goes there.
    peer: Option<(String, u16)>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    builder: http2::Builder<TokioExecutor>,
    /// One slot per destination; the lock is held only to find or add one.
    slots: Mutex<HashMap<(String, u16), Arc<Slot>>>,
    /// Numbers connections, so a watcher knows whether the slot still holds its own.
    next_id: AtomicU64,
}

/// One destination's connection, and how to get one.
#[derive(Debug, Default)]
struct Slot {
    /// Held while a connection is being opened, so concurrent requests wait for that one.
    state: tokio::sync::Mutex<State>,
    /// Open attempts finished, so a request that waited on a failed attempt shares its error
    /// instead of trying again (one after the other, each up to the connect timeout).
    attempts: AtomicU64,
    /// A TLS connection on which the server chose HTTP/1.1, for the HTTP/1.1 pool.
    parked: Mutex<Option<Counted>>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Empty,
    Ready {
        sender: http2::SendRequest<RequestBody>,
        id: u64,
        /// When the last request started on it (for the idle timeout).
        last_used: Instant,
    },
    /// The server chose HTTP/1.1: use the HTTP/1.1 pool until then.
    Http1 { until: Instant },
    /// Attempt number `attempt` failed with `error`.
    Failed { attempt: u64, error: Error },
}

/// Where one request goes.
enum Route {
    H2 {
        sender: http2::SendRequest<RequestBody>,
        id: u64,
    },
    Http1,
}

/// A freshly opened connection.
enum Opened {
    H2(http2::SendRequest<RequestBody>),
    Http1(Counted),
}

impl Sessions {
    /// Sessions to the servers named by request URIs, or to `peer`, trusting what `tls` trusts.
    pub fn new(
        tls: Arc<ClientTls>,
        peer: Option<(String, u16)>,
        config: &super::Config,
    ) -> Arc<Self> {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        // hyper's limit counts 32 bytes more per field than ours (RFC 9113 §6.5.2); ours is
        // checked to the byte on the parsed head, so this one only has to be larger.
        let header_list = config
            .max_response_header_size
            .saturating_mul(2)
            .saturating_add(16 * 1024);
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(header_list).unwrap_or(u32::MAX))
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        Arc::new(Self {
            tls,
            peer,
            connect_timeout: config.connect_timeout,
            idle_timeout: config.pool_idle_timeout,
            builder,
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// Sends `req` over this destination's HTTP/2 connection, or over `http1` when the server
    /// chose HTTP/1.1, and waits for the response head.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
        http1: &Pool,
        mut on_informational: Option<OnInformational>,
    ) -> Result<Response<super::ResponseBody>, Error> {
        let (host, port) = destination(req.uri(), self.peer.as_ref()).map_err(|e| e.to_error())?;
        let slot = self.slot(&host, port);
        // A connection that closed just before the send gives the request back; the second
        // turn opens a new one.
        for _ in 0..2 {
            match self.route(&slot, &host, port).await? {
                // The caller bounds the whole wait (`ReadDeadline::within`).
                Route::Http1 => return http1.send_with(req, on_informational.take(), None).await,
                Route::H2 { mut sender, id } => {
                    let as_http1 = (req.uri().clone(), req.headers().get(header::HOST).cloned());
                    into_h2(&mut req)?;
                    match sender.try_send_request(req).await {
                        Ok(response) => return Ok(response.map(super::ResponseBody::Hyper)),
                        Err(mut failed) => {
                            let Some(mut back) = failed.take_message() else {
                                return Err(classify_hyper(failed.error()));
                            };
                            forget(&slot, id).await;
                            let (uri, host_field) = as_http1;
                            *back.uri_mut() = uri;
                            *back.version_mut() = Version::HTTP_11;
                            if let Some(value) = host_field {
                                back.headers_mut().insert(header::HOST, value);
                            }
                            req = back;
                        }
                    }
                }
            }
        }
        Err(Error::new(
            ErrorKind::InvalidResponse,
            format!(
                "the HTTP/2 connections to {host}:{port} kept closing before a request was sent"
            ),
        )
        .before_sending())
    }

    /// A connection the server opened as HTTP/1.1, for the HTTP/1.1 pool's connector.
    pub fn take_parked(&self, host: &str, port: u16) -> Option<Counted> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.get(&(host.to_owned(), port))?;
        let mut parked = slot.parked.lock().unwrap_or_else(|p| p.into_inner());
        parked.take()
    }

    fn slot(&self, host: &str, port: u16) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry((host.to_owned(), port)).or_default())
    }

    /// The connection to use for one request, opening one when there is none.
    async fn route(&self, slot: &Arc<Slot>, host: &str, port: u16) -> Result<Route, Error> {
        let seen = slot.attempts.load(Ordering::Acquire);
        let mut state = slot.state.lock().await;
        let now = Instant::now();
        match &mut *state {
            State::Ready {
                sender,
                id,
                last_used,
            } if !sender.is_closed() => {
                *last_used = now;
                return Ok(Route::H2 {
                    sender: sender.clone(),
                    id: *id,
                });
            }
            State::Http1 { until } if now < *until => return Ok(Route::Http1),
            State::Failed { attempt, error } if *attempt > seen => return Err(error.clone()),
            _ => {}
        }
        let opened = self.open(host, port).await;
        let attempt = slot.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match opened {
            Ok(Opened::H2(sender)) => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                *state = State::Ready {
                    sender: sender.clone(),
                    id,
                    last_used: Instant::now(),
                };
                watch_idle(Arc::downgrade(slot), id, self.idle_timeout);
                Ok(Route::H2 { sender, id })
            }
            Ok(Opened::Http1(stream)) => {
                *slot.parked.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream);
                *state = State::Http1 {
                    until: Instant::now() + HTTP1_RECHECK,
                };
                tracing::debug!(%host, port, "upstream chose http/1.1 in ALPN");
                Ok(Route::Http1)
            }
            Err(error) => {
                *state = State::Failed {
                    attempt,
                    error: error.clone(),
                };
                Err(error)
            }
        }
    }

    /// Connects, offering what `protocols` allows, and sets up HTTP/2 if the server chose it.
    async fn open(&self, host: &str, port: u16) -> Result<Opened, Error> {
        let timeout = self.connect_timeout;
        let deadline = Instant::now() + timeout;
        let stream = connect_tls(host, port, &self.tls, Offer::Negotiate, timeout)
            .await
            .map_err(|e| e.to_error())?;
        let wrap = |stream| match self.peer {
            Some(_) => UpstreamStream::PeerTls(Box::new(stream)),
            None => UpstreamStream::Tls(Box::new(stream)),
        };
        if !tls::negotiated_h2(&stream) {
            if !self.tls.protocols().http1 {
                return Err(Error::new(
                    ErrorKind::TlsProtocol,
                    format!(
                        "{host}:{port} did not choose h2 in ALPN, and protocols = [\"h2\"] \
                         allows nothing else"
                    ),
                )
                .before_sending());
            }
            return Ok(Opened::Http1(Counted::new(wrap(stream))));
        }
        let io = TokioIo::new(Counted::new(wrap(stream)));
        let (sender, conn) = tokio::time::timeout_at(deadline, self.builder.handshake(io))
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::ConnectTimeout,
                    format!("HTTP/2 handshake with {host}:{port} timed out after {timeout:?}"),
                )
                .before_sending()
            })?
            // The connection preface comes before any request: nothing of one was sent.
            .map_err(|e| classify_hyper(&e).before_sending())?;
        let (host, port) = (host.to_owned(), port);
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%host, port, %error, "upstream HTTP/2 connection failed");
            }
        });
        Ok(Opened::H2(sender))
    }
}

/// Empties `slot` if it still holds connection `id` (which turned out to be closed).
async fn forget(slot: &Slot, id: u64) {
    let mut state = slot.state.lock().await;
    if matches!(&*state, State::Ready { id: current, .. } if *current == id) {
        *state = State::Empty;
    }
}

/// Lets connection `id` go once nothing has started on it for `idle`: dropping the last
/// sender makes hyper close it after its open streams end.
fn watch_idle(slot: Weak<Slot>, id: u64, idle: Duration) {
    tokio::spawn(async move {
        let mut wait = idle;
        loop {
            tokio::time::sleep(wait).await;
            let Some(slot) = slot.upgrade() else {
                return;
            };
            let mut state = slot.state.lock().await;
            let State::Ready {
                id: current,
                last_used,
                sender,
            } = &*state
            else {
                return;
            };
            if *current != id {
                return;
            }
            let quiet = last_used.elapsed();
            if sender.is_closed() || quiet >= idle {
                *state = State::Empty;
                return;
            }
            wait = idle.saturating_sub(quiet);
        }
    });
}

/// Connection-specific fields, which an HTTP/2 message must not contain (RFC 9113 §8.2.2:
/// "An endpoint MUST NOT generate an HTTP/2 message containing connection-specific header
/// fields"); `TE` is the exception, with the value `trailers` only.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Rewrites a request prepared for HTTP/1.1 for HTTP/2.
///
/// RFC 9113 §8.3.1: "An intermediary that forwards a request over HTTP/2 MUST construct an
/// :authority pseudo-header field using the authority information from the control data of the
/// original request" and clients "MUST NOT generate a request with a Host header field that
/// differs from the :authority": the `Host` the next hop would have got becomes `:authority`
/// and is not sent twice. The URI's scheme (`https` for a group, the origin's for a peer) is
/// `:scheme`.
pub fn into_h2<B>(req: &mut Request<B>) -> Result<(), Error> {
    let headers = req.headers_mut();
    for name in CONNECTION_SPECIFIC {
        headers.remove(HeaderName::from_static(name));
    }
    let trailers = headers
        .get(header::TE)
        .map(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    match trailers {
        Some(true) => {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        Some(false) => {
            headers.remove(header::TE);
        }
        None => {}
    }
    if let Some(host) = headers.remove(header::HOST) {
        let bad = || Error::new(ErrorKind::InvalidRequest, "Invalid URL: bad host");
        let authority = http::uri::Authority::try_from(host.as_bytes()).map_err(|_| bad())?;
        let mut parts = req.uri().clone().into_parts();
        parts.authority = Some(authority);
        if parts.scheme.is_none() {
            parts.scheme = Some(http::uri::Scheme::HTTPS);
        }
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| bad())?;
    }
    *req.version_mut() = Version::HTTP_2;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_becomes_authority_and_connection_fields_go() {
        let mut req = Request::get("https://127.0.0.1:8443/a?b=1")
            .header("host", "www.example.test:8080")
            .header("connection", "close")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("transfer-encoding", "chunked")
            .header("upgrade", "websocket")
            .header("te", "gzip")
            .header("accept", "*/*")
            .body(())
            .unwrap();
        into_h2(&mut req).unwrap();
        assert_eq!(req.uri(), "https://www.example.test:8080/a?b=1");
        assert_eq!(req.version(), Version::HTTP_2);
        let names: Vec<_> = req.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept"]);

        // A peer's request keeps the origin's scheme; `TE: trailers` is allowed.
        let mut req = Request::get("http://origin.test/x")
            .header("host", "origin.test")
            .header("te", "Trailers")
            .body(())
            .unwrap();
        into_h2(&mut req).unwrap();
        assert_eq!(req.uri(), "http://origin.test/x");
        assert_eq!(req.headers()["te"], "trailers");
        assert!(req.headers().get("host").is_none());
    }

    #[test]
    fn a_host_that_is_no_authority_is_refused() {
        let mut req = Request::get("https://127.0.0.1/")
            .header("host", "a b")
            .body(())
            .unwrap();
        let err = into_h2(&mut req).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    }
}
