//! The HTTP/1.1 keep-alive pool behind [`Upstream`](super::Upstream): per-server stacks of
//! idle connections, each request carried by our own codec (`upstream::h1`).
//!
//! A request takes its server's most recently used idle connection (checked with one
//! non-blocking read: a connection the server closed, or that holds bytes nobody asked for, is
//! dropped), or opens one, and runs the exchange on its own task: no connection task, no
//! channel, no wake-up between them. The response body gives the connection back when it ended
//! cleanly on a keep-alive connection (RFC 9112 §9.3); a body dropped half-way, or one that
//! failed, closes it. At most `max_per_server` idle connections are kept per server; one more
//! comes back only to close.
//!
//! The first [`FEW`] servers are found by a scan that compares authorities as written (a reverse
//! proxy's handful of servers, hashed and parsed by nothing; `a.test` and `a.test:80` are kept
//! apart, which costs sharing, never correctness); a forward proxy's many origins beyond those
//! are found by authority in a map.
//!
//! A connection idle for `timeouts.server_idle` is closed (a sweeper task per pool runs while
//! the pool holds connections) and never handed out. An idle connection the server closed (RFC
//! 9112 §9.3.1's race, seen by the check before the send) is dropped and the request goes on
//! the next one or a fresh one, as it went when hyper gave it back unsent; a request that was
//! written is never repeated here (`upstream::retry` decides whether another hop gets it).
//!
//! Requests with `Upgrade`, and CONNECT, go through hyper's `client::conn::http1` with
//! upgrades on (the connection may switch protocols and leave HTTP); such a connection is
//! never pooled again.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::Scheme;
use http::{Method, Request, Response, Uri};
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tower_service::Service as _;

use super::client::classify_hyper;
use super::connect::{ConnectError, Connector};
use super::h1::{self, Connection, Exchange, Form, Home, Message};
use super::informational::OnInformational;
use super::read_deadline::ReadDeadline;
use super::request_body::{ClientBodyError, RequestBody};
use super::response_body::ResponseBody;
use crate::clock;
use crate::error::{Error, ErrorKind};

/// Servers kept in the scanned list; more go to the map.
const FEW: usize = 8;

/// Idle connections kept per server by default; one more that comes back is closed.
pub const MAX_PER_SERVER: usize = 512;

/// The HTTP/1.1 connections of one [`Upstream`](super::Upstream); cheap to share.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connector: Connector,
    /// For the requests left to hyper (upgrades).
    builder: http1::Builder,
    /// Largest response head read (`limits.max_response_header_size` plus the status line).
    max_head: usize,
    idle_timeout: Duration,
    max_per_server: usize,
    /// Requests in absolute-form (to a peer cache), else origin-form (RFC 9112 §3.2).
    absolute_form: bool,
    servers: Mutex<Servers>,
    /// Itself, for the sweeper a returning connection may start.
    this: Weak<Inner>,
}

#[derive(Debug, Default)]
struct Servers {
    few: Vec<Server>,
    many: HashMap<Box<str>, Vec<Server>>,
    /// A sweeper task is running.
    sweeping: bool,
}

/// Where a request connects: borrowed from its URI, so looking one up allocates nothing. A
/// peer's pool has one server, whatever the URI: its key is empty.
#[derive(Debug, Clone, Copy)]
struct Key<'a> {
    https: bool,
    authority: &'a str,
}

#[derive(Debug)]
struct Server {
    https: bool,
    authority: Box<str>,
    /// Idle connections; the most recently used last.
    idle: Vec<Idle>,
}

#[derive(Debug)]
struct Idle {
    conn: Connection,
    /// When it went idle.
    since: Instant,
}

impl Pool {
    /// A pool that opens connections with `connector` and reads at most `max_buf_size` bytes
    /// of a response head.
    pub fn new(
        connector: Connector,
        idle_timeout: Duration,
        max_buf_size: usize,
        max_per_server: usize,
    ) -> Self {
        let mut builder = http1::Builder::new();
        builder.max_buf_size(max_buf_size);
        let absolute_form = connector.peer.is_some();
        Self {
            inner: Arc::new_cyclic(|this| Inner {
                connector,
                builder,
                max_head: max_buf_size,
                idle_timeout,
                max_per_server,
                absolute_form,
                servers: Mutex::new(Servers::default()),
                this: this.clone(),
            }),
        }
    }

    /// Idle connections kept now, for tests and metrics.
    pub fn open(&self) -> usize {
        let servers = self.inner.lock();
        servers
            .few
            .iter()
            .chain(servers.many.values().flatten())
            .map(|s| s.idle.len())
            .sum()
    }

    /// Sends `req` (absolute-form URI) on an idle connection to its server, or on a new one,
    /// and waits for the response head.
    pub async fn send(&self, req: Request<RequestBody>) -> Result<Response<ResponseBody>, Error> {
        self.send_with(req, None, None).await
    }

    /// [`send`](Self::send), with `on_informational` called for each interim response (one
    /// put in the request's extensions is used otherwise), and the wait for the response head
    /// ending at `deadline`, which a new connection moves on once it is made (connecting has
    /// `timeouts.connect` of its own).
    pub async fn send_with(
        &self,
        mut req: Request<RequestBody>,
        on_informational: Option<OnInformational>,
        deadline: Option<ReadDeadline>,
    ) -> Result<Response<ResponseBody>, Error> {
        let inner = &self.inner;
        let uri = std::mem::take(req.uri_mut());
        let key = inner.key(&uri)?;
        if !req.headers().contains_key(header::HOST) {
            if let Some(host) = host_field(&uri) {
                req.headers_mut().insert(header::HOST, host);
            }
        }
        if req.method() == Method::CONNECT || req.headers().contains_key(header::UPGRADE) {
            // Rare, and its future (hyper's handshake and exchange) is larger than our own
            // exchange: started out of line, so every request's future is not sized for it.
            let uri = &uri;
            return crate::out_of_line::start(|| async move {
                let upgradable =
                    self.send_upgradable(key, uri, req, on_informational, deadline.as_ref());
                match &deadline {
                    Some(deadline) => deadline.within(upgradable).await,
                    None => upgradable.await,
                }
            })
            .await;
        }
        let form = if inner.absolute_form {
            Form::Absolute
        } else {
            Form::Origin
        };
        let msg = Message::new(req, &uri, form, on_informational);
        let conn = match inner.take_idle(key) {
            Some(conn) => conn,
            None => {
                let conn = self.connect(&uri).await?;
                if let Some(deadline) = &deadline {
                    deadline.connected();
                }
                conn
            }
        };
        let mut exchange = Exchange::new(conn, msg);
        let max_head = inner.max_head;
        let head = poll_fn(|cx| exchange.poll_head(max_head, deadline.as_ref(), cx)).await?;
        let home = self.home(uri);
        Ok(exchange
            .into_response(head, Some(home))
            .map(ResponseBody::H1))
    }

    fn home(&self, uri: Uri) -> Home {
        Home {
            pool: Arc::clone(&self.inner) as Arc<dyn h1::Keep>,
            uri,
        }
    }

    /// Opens a connection to `uri`'s server (or the peer).
    async fn connect(&self, uri: &Uri) -> Result<Connection, Error> {
        let mut connector = self.inner.connector.clone();
        let io = connector
            .call(uri.clone())
            .await
            .map_err(|e| e.to_error())?;
        let info = Arc::new(io.inner().connected());
        Ok(Connection::new(io.into_inner(), info))
    }

    /// A request whose connection may switch protocols goes through hyper with upgrades on,
    /// on an idle connection or a new one that is never pooled again.
    async fn send_upgradable(
        &self,
        key: Key<'_>,
        uri: &Uri,
        mut req: Request<RequestBody>,
        on_informational: Option<OnInformational>,
        deadline: Option<&ReadDeadline>,
    ) -> Result<Response<ResponseBody>, Error> {
        let inner = &self.inner;
        *req.uri_mut() = if req.method() == Method::CONNECT {
            authority_form(uri)
        } else if inner.absolute_form {
            uri.clone()
        } else {
            origin_form(uri)
        };
        if let Some(on) =
            on_informational.or_else(|| req.extensions_mut().remove::<OnInformational>())
        {
            on.to_hyper(&mut req);
        }
        let conn = match inner.take_idle(key) {
            Some(conn) => conn,
            None => {
                let conn = self.connect(uri).await?;
                if let Some(deadline) = deadline {
                    deadline.connected();
                }
                conn
            }
        };
        let (io, info) = conn.into_parts();
        let (mut sender, conn) = inner
            .builder
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| classify_hyper(&e))?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upstream connection failed");
            }
        });
        match sender.send_request(req).await {
            Ok(mut response) => {
                info.get_extras(response.extensions_mut());
                Ok(response.map(ResponseBody::Hyper))
            }
            Err(e) => Err(classify_send(&e)),
        }
    }
}

impl h1::Keep for Inner {
    /// A connection whose exchange ended cleanly goes idle under its server, unless the
    /// server has its fill of idle ones (then it closes).
    fn keep(&self, uri: &Uri, conn: Connection) {
        let Ok(key) = self.key(uri) else {
            return;
        };
        let now = clock::instant();
        let mut servers = self.lock();
        let server = servers.entry(key);
        if server.idle.len() >= self.max_per_server {
            drop(servers);
            drop(conn);
            return;
        }
        server.idle.push(Idle { conn, since: now });
        if !servers.sweeping {
            servers.sweeping = true;
            tokio::spawn(sweep(self.this.clone(), self.idle_timeout));
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Servers> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server a request for `uri` goes to: the peer, or the URI's authority.
    fn key<'a>(&self, uri: &'a Uri) -> Result<Key<'a>, Error> {
        if self.connector.peer.is_some() {
            return Ok(Key {
                https: self.connector.tls.is_some(),
                authority: "",
            });
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ConnectError::InvalidDestination(uri.to_string()).to_error())?;
        Ok(Key {
            https: uri.scheme() == Some(&Scheme::HTTPS),
            authority: authority.as_str(),
        })
    }

    /// `key`'s most recently used idle connection that is still usable; drops expired and
    /// closed ones on the way (each turn takes one off the stack, so the loop ends).
    fn take_idle(&self, key: Key<'_>) -> Option<Connection> {
        let now = clock::instant();
        loop {
            let mut conn = {
                let mut servers = self.lock();
                let server = servers.find(key)?;
                let idle = server.idle.pop()?;
                if now.saturating_duration_since(idle.since) >= self.idle_timeout {
                    // The most recent one expired: so did all before it.
                    let expired = std::mem::take(&mut server.idle);
                    drop(servers);
                    drop(expired);
                    return None;
                }
                idle.conn
            };
            if conn.is_usable() {
                return Some(conn);
            }
        }
    }
}

impl Server {
    fn new(key: Key<'_>) -> Self {
        Self {
            https: key.https,
            authority: key.authority.into(),
            idle: Vec::new(),
        }
    }

    fn is(&self, key: Key<'_>) -> bool {
        self.https == key.https && *self.authority == *key.authority
    }

    /// Drops expired connections; the earliest moment another may expire.
    fn sweep(&mut self, now: Instant, idle_timeout: Duration) -> Option<Instant> {
        self.idle
            .retain(|idle| now.saturating_duration_since(idle.since) < idle_timeout);
        self.idle.iter().map(|idle| idle.since + idle_timeout).min()
    }
}

impl Servers {
    fn find(&mut self, key: Key<'_>) -> Option<&mut Server> {
        if let Some(i) = self.few.iter().position(|s| s.is(key)) {
            return self.few.get_mut(i);
        }
        if self.many.is_empty() {
            return None;
        }
        self.many
            .get_mut(key.authority)?
            .iter_mut()
            .find(|s| s.is(key))
    }

    /// `key`'s server, added if new.
    fn entry(&mut self, key: Key<'_>) -> &mut Server {
        let known = self.few.iter().position(|s| s.is(key));
        let i = match known {
            Some(i) => i,
            None if self.few.len() < FEW && !self.many.contains_key(key.authority) => {
                self.few.push(Server::new(key));
                self.few.len() - 1
            }
            None => {
                let list = self.many.entry(key.authority.into()).or_default();
                let at = match list.iter().position(|s| s.is(key)) {
                    Some(at) => at,
                    None => {
                        list.push(Server::new(key));
                        list.len() - 1
                    }
                };
                return &mut list[at];
            }
        };
        &mut self.few[i]
    }

    /// Drops expired connections and servers left with none; the earliest moment another may
    /// expire, or `None` when nothing is left.
    fn sweep(&mut self, now: Instant, idle_timeout: Duration) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut earliest = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        self.few.retain_mut(|s| {
            earliest(s.sweep(now, idle_timeout));
            !s.idle.is_empty()
        });
        self.many.retain(|_, list| {
            list.retain_mut(|s| {
                earliest(s.sweep(now, idle_timeout));
                !s.idle.is_empty()
            });
            !list.is_empty()
        });
        next
    }
}

/// Closes idle connections of `pool` as they expire; ends once the pool holds none (the next
/// connection kept starts another) or is gone.
async fn sweep(pool: Weak<Inner>, idle_timeout: Duration) {
    let mut until = Instant::now() + idle_timeout;
    loop {
        tokio::time::sleep_until(until).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let mut servers = pool.lock();
        let now = Instant::now();
        match servers.sweep(now, idle_timeout) {
            Some(next) => until = next.max(now + Duration::from_millis(1)),
            None => {
                servers.sweeping = false;
                return;
            }
        }
    }
}

/// `Host` from the URI's authority, without userinfo, the port only when not the default
/// (RFC 9110 §7.2).
fn host_field(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = if uri.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    };
    match uri.port_u16() {
        Some(port) if port != default => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

/// The request-target a server gets (RFC 9112 §3.2.1): path and query only.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(path) if path.as_str() != "/" => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(path.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    }
}

/// `CONNECT`'s request-target (RFC 9112 §3.2.3): the authority only.
fn authority_form(uri: &Uri) -> Uri {
    match uri.authority() {
        Some(authority) => {
            let mut parts = http::uri::Parts::default();
            parts.authority = Some(authority.clone());
            Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
        }
        None => uri.clone(),
    }
}

/// Finds the first error of type `T` in a source chain.
fn find_source<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Maps a failed exchange on hyper: the client's request body failing is the client's fault.
fn classify_send(err: &hyper::Error) -> Error {
    if let Some(body) = find_source::<ClientBodyError>(err) {
        return Error::new(ErrorKind::InvalidRequest, body.to_string());
    }
    classify_hyper(err)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::upstream::h1::test_origin::{answer, Act, Origin};
    use crate::upstream::Progress;

    /// Every miss's state holds these futures (inside each layer above them, up to the client
    /// connection's task). Sizes of the test build with hyper's upgradable exchange inline in
    /// the pool's future: 2,872 / 3,216 bytes; started out of line: 1,408 / 1,752. A rare path
    /// put back inline fails here.
    #[test]
    fn a_sends_future_is_sized_for_our_own_exchange() {
        fn size4<A, B, C, D, F>(_: impl Fn(A, B, C, D) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let pool = size4(Pool::send_with);
        let upstream = size4(crate::upstream::Upstream::send_with);
        eprintln!("Pool::send_with {pool} bytes, Upstream::send_with {upstream} bytes");
        assert!(pool <= 1_600, "Pool::send_with's future is {pool} bytes");
        assert!(
            upstream <= 2_000,
            "Upstream::send_with's future is {upstream} bytes"
        );
    }

    /// By path: `/ok` answers 5 bytes; `/close` answers and then closes without saying so;
    /// `/partial` sends 100 of 100,000 bytes and waits; `/slow` sends 5 bytes, waits 300 ms,
    /// sends 5 more.
    fn script(path: &str) -> Vec<Act> {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        match path {
            "/close" => answer(ok, true),
            "/partial" => {
                let mut partial = b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n".to_vec();
                partial.extend_from_slice(&[b'x'; 100]);
                answer(&partial, false)
            }
            "/slow" => vec![
                Act::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello".to_vec()),
                Act::Pause(Duration::from_millis(300)),
                Act::Send(b"world".to_vec()),
            ],
            _ => answer(ok, false),
        }
    }

    fn pool(idle: Duration, max_per_server: usize) -> Pool {
        let connector = Connector {
            timeout: Duration::from_secs(5),
            tls: None,
            peer: None,
            sessions: None,
        };
        Pool::new(connector, idle, 16 * 1024, max_per_server)
    }

    fn get(uri: &str) -> Request<RequestBody> {
        let mut req = Request::new(RequestBody::empty(Progress::new()));
        *req.uri_mut() = uri.parse().unwrap();
        req
    }

    /// Sends a GET and reads the whole body.
    async fn fetch(pool: &Pool, uri: &str) -> Vec<u8> {
        let response = pool.send(get(uri)).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        body
    }

    #[tokio::test]
    async fn idle_connections_are_reused_per_server_and_never_across_servers() {
        let (a, b) = (Origin::start(script).await, Origin::start(script).await);
        let pool = pool(Duration::from_secs(60), MAX_PER_SERVER);
        for _ in 0..3 {
            assert_eq!(fetch(&pool, &a.uri("/ok")).await, b"hello");
        }
        assert_eq!(fetch(&pool, &b.uri("/ok")).await, b"hello");
        assert_eq!(fetch(&pool, &a.uri("/ok")).await, b"hello");
        assert_eq!((a.accepted(), b.accepted()), (1, 1));
        assert_eq!(pool.open(), 2);
        // The response's body knows the server's address (for the access log).
        let response = pool.send(get(&a.uri("/ok"))).await.unwrap();
        assert_eq!(response.body().remote_addr(), Some(a.addr));
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_used_and_the_request_still_goes() {
        let origin = Origin::start(script).await;
        let pool = pool(Duration::from_secs(60), MAX_PER_SERVER);
        assert_eq!(fetch(&pool, &origin.uri("/close")).await, b"hello");
        // The close is seen by the check before the send: the request goes out once, on a new
        // connection.
        assert_eq!(fetch(&pool, &origin.uri("/ok")).await, b"hello");
        assert_eq!(origin.accepted(), 2);
        assert_eq!(fetch(&pool, &origin.uri("/ok")).await, b"hello");
        assert_eq!(origin.accepted(), 2);
    }

    #[tokio::test]
    async fn a_connection_whose_body_was_dropped_midway_is_closed_not_reused() {
        let origin = Origin::start(script).await;
        let pool = pool(Duration::from_secs(60), MAX_PER_SERVER);
        let response = pool.send(get(&origin.uri("/partial"))).await.unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
        drop(body);
        assert!(
            origin.closed(1).await,
            "the half-read connection stays open"
        );
        assert_eq!(fetch(&pool, &origin.uri("/ok")).await, b"hello");
        assert_eq!(origin.accepted(), 2);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let origin = Origin::start(script).await;
        let pool = pool(Duration::from_millis(200), MAX_PER_SERVER);
        assert_eq!(fetch(&pool, &origin.uri("/ok")).await, b"hello");
        assert_eq!(pool.open(), 1);
        // The sweeper closes it: the origin sees the close without another request.
        assert!(origin.closed(1).await, "the idle connection stays open");
        assert_eq!(pool.open(), 0);
        assert_eq!(fetch(&pool, &origin.uri("/ok")).await, b"hello");
        assert_eq!(origin.accepted(), 2);
    }

    #[tokio::test]
    async fn connections_per_server_are_bounded() {
        let origin = Origin::start(script).await;
        let pool = pool(Duration::from_secs(60), 1);
        let slow = origin.uri("/slow");
        let (one, two) = tokio::join!(fetch(&pool, &slow), fetch(&pool, &slow));
        assert_eq!(
            (one.as_slice(), two.as_slice()),
            (&b"helloworld"[..], &b"helloworld"[..])
        );
        assert_eq!(origin.accepted(), 2);
        // The one beyond the bound was closed after its exchange; the other is kept.
        assert!(origin.closed(1).await, "the unlisted connection stays open");
        assert_eq!(pool.open(), 1);
        assert_eq!(fetch(&pool, &origin.uri("/ok")).await, b"hello");
        assert_eq!(origin.accepted(), 2);
    }

    #[tokio::test]
    async fn origin_form_to_servers_and_absolute_form_to_peers() {
        let plain = Uri::from_static("http://a.test:8080/x?y=1");
        assert_eq!(origin_form(&plain), "/x?y=1");
        assert_eq!(origin_form(&Uri::from_static("http://a.test")), "/");
        assert_eq!(host_field(&plain).unwrap(), "a.test:8080");
        assert_eq!(
            host_field(&Uri::from_static("https://a.test:443/")).unwrap(),
            "a.test"
        );
        assert_eq!(
            authority_form(&Uri::from_static("http://a.test:443")),
            "a.test:443"
        );
    }
}
