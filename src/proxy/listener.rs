//! Accepting client connections and serving HTTP on them until shutdown.
//!
//! Plain ports speak HTTP/1.1 (browsers and tools send absolute-form requests and CONNECT over
//! HTTP/1.1), served by our own HTTP/1 server (`h1`; an oversized request head gets a real
//! 431). TLS ports (see `tls`) first run the handshake, bounded by the client header timeout; a
//! failed handshake just closes the connection. Then the protocol ALPN chose is served: `h2`
//! with hyper's `http2` server, anything else with the same `h1` server as plain ports.
//! Connections are capped by a semaphore permit taken before `accept`, so excess clients wait in
//! the kernel's backlog instead of exhausting memory or file descriptors; one client address
//! may hold at most `client_ip_max_connections` of them (`client_slots`), and is answered 429
//! at once beyond that. On shutdown the accept
//! loop stops and each connection is asked to finish its current requests and close (an idle
//! HTTP/1 connection at once, a busy one after its response; GOAWAY on HTTP/2); `app` waits
//! for them with a deadline.
//!
//! Each accepted connection takes the port's settings (mode, TLS) and the connection-level
//! limits and timers from the config generation current at accept time; its requests each load
//! the generation current when they arrive (see [`Live`]). So a reload changes a kept port's
//! mode or certificate for new connections without closing the socket.
//!
//! Both protocols read through `client_conn`'s timers. On HTTP/2 those see frames, not requests:
//! a control frame (PING, WINDOW_UPDATE) on an idle connection starts the header deadline, so an
//! idle HTTP/2 connection may be closed after `client_header` rather than `client_idle`.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::body::ProxyBody;
use super::client_body::ClientBody;
use super::client_conn::{ClientIo, ConnActivity};
use super::client_slots::{ConnSlot, REJECTION};
use super::h1;
use super::request::{ConnInfo, InnerStream};
use super::service::handle;
use super::tls::{self, ServerTls};
use super::{Live, Mode, Shared};
use crate::clock;

/// Room for the method, spaces and version around the URI in a request line.
const REQUEST_LINE_OVERHEAD: usize = 64;

/// The largest request head (request line and header section) `shared`'s limits allow.
fn max_head(shared: &Shared) -> usize {
    let limits = &shared.config.limits;
    // hyper's limit covers the request line and the header section together. It is set to
    // the sum of our two limits, and `service` checks each one on its own, so a long URI gets
    // 414 and a big header 431, as configured.
    limits.max_request_header_size + limits.max_uri_length + REQUEST_LINE_OVERHEAD
}

/// The HTTP/1 connection settings for `shared`'s limits.
///
/// The server (`h1`) does not read the socket while a request is being answered (hyper's
/// `half_close`, which this replaced): a client that leaves mid-request is noticed when its
/// response is written (the write fails and drops the response, as any client write error
/// does), and a client that shuts down its sending side after the request still gets the
/// response (RFC 9112 §9.6: "a TCP connection that is half-closed by the client does not
/// delimit a request message, nor does it imply that the client is no longer interested in a
/// response"). The trade-off: a client that closes while its request still waits upstream (a
/// slow origin, a collapsed fetch) is noticed only when its response is written, so that
/// fetch runs to its end (and may fill the cache, as Squid's quick_abort lets a fetch finish)
/// and the connection holds its slot until then, bounded by the upstream timeouts.
fn http1_settings(shared: &Shared) -> h1::Settings {
    h1::Settings {
        max_head: max_head(shared),
    }
}

/// The hyper HTTP/2 connection settings for `shared`'s limits.
fn http2_builder(shared: &Shared) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        // RFC 9113 §6.5.2 SETTINGS_MAX_HEADER_LIST_SIZE: the same head budget as HTTP/1.
        .max_header_list_size(u32::try_from(max_head(shared)).unwrap_or(u32::MAX));
    builder
}

/// Both protocol builders, configured once per listener and config generation.
struct Builders {
    generation: u64,
    http1: h1::Settings,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn for_generation(shared: &Shared) -> Self {
        Self {
            generation: shared.generation,
            http1: http1_settings(shared),
            http2: http2_builder(shared),
        }
    }
}

/// What a port does with the connections it accepts; a reload may replace it.
#[derive(Debug, Clone)]
pub struct PortSettings {
    pub mode: Mode,
    /// TLS termination: clients speak HTTPS to this port.
    pub tls: Option<ServerTls>,
    /// How much this port's error pages tell.
    pub error_details: super::respond::ErrorDetails,
}

/// Accepts connections on `listener` until `shutdown` turns true (or its sender is dropped);
/// then asks this port's connections to finish.
pub async fn serve(
    listener: TcpListener,
    port: Arc<arc_swap::ArcSwap<PortSettings>>,
    live: Arc<Live>,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(error = %e, "listener has no local address");
            return;
        }
    };
    // The cap is one semaphore for the whole process, kept across reloads.
    let (connections, mut builders) = {
        let shared = live.load();
        (
            Arc::clone(&shared.connections),
            Arc::new(Builders::for_generation(&shared)),
        )
    };
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let shared = live.load();
        if builders.generation != shared.generation {
            builders = Arc::new(Builders::for_generation(&shared));
        }
        let settings = port.load();
        let tls = settings.tls.clone();
        let client_slot = match shared.client_slots.try_take(peer.ip()) {
            Ok(slot) => slot,
            Err(count) => {
                tracing::debug!(%peer, count, "client_ip_max_connections reached; refused");
                reject(stream, tls.is_some());
                continue;
            }
        };
        let conn_shutdown = shutdown.clone();
        let builders = Arc::clone(&builders);
        let info = Arc::new(ConnInfo {
            peer,
            client_text: crate::log::access::client_text(peer.ip()),
            local,
            mode: settings.mode,
            error_details: settings.error_details,
            tls: tls.is_some(),
            activity: ConnActivity::with_request_start(
                shared.config.timeouts.client_header,
                shared.config.timeouts.request_start,
                shared.config.timeouts.client_idle,
                shared.config.timeouts.client_write,
            ),
            live: Arc::clone(&live),
            // Shared with tunnels, which outlive the HTTP connection that opened them.
            permit: Arc::new(ConnSlot::new(permit, client_slot)),
            bumped: None,
            serve_inner,
        });
        tokio::spawn(serve_connection(stream, tls, info, builders, conn_shutdown));
    }
}

/// Turns away a connection over its address's limit without waiting for anything: a plain
/// port gets the 429 if the socket takes it at once (it is empty, so it does), a TLS port just
/// the close. Nothing is spawned, so a flood of refused connections costs no memory.
fn reject(stream: TcpStream, tls: bool) {
    if !tls {
        let _ = stream.try_write(REJECTION);
    }
    if let Ok(stream) = stream.into_std() {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Serves one accepted connection: plain HTTP/1.1, or TLS and then what ALPN chose.
async fn serve_connection(
    stream: TcpStream,
    tls: Option<ServerTls>,
    info: Arc<ConnInfo>,
    builders: Arc<Builders>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let peer = info.peer;
    let result = match tls {
        None => serve_http1(stream, info, builders.http1, shutdown).await,
        // Boxed: a TLS connection's state (the TLS stream, the handshake, HTTP/2) is larger
        // than a plain one's, and inline it would set the size of every connection's task.
        Some(tls) => Box::pin(serve_tls(stream, tls, info, builders, shutdown)).await,
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}

/// The TLS handshake, then HTTP/2 or HTTP/1.x as ALPN chose.
async fn serve_tls(
    stream: TcpStream,
    tls: ServerTls,
    info: Arc<ConnInfo>,
    builders: Arc<Builders>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // The handshake counts against the first request's header deadline.
    let timeout = info.live.load().config.timeouts.client_header;
    let stream = match tls.accept(stream, timeout).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(peer = %info.peer, error = %e, "TLS handshake failed");
            return Ok(());
        }
    };
    if tls::negotiated_h2(&stream) {
        serve_http2(stream, info, &builders.http2, shutdown)
            .await
            .map_err(std::io::Error::other)
    } else {
        serve_http1(stream, info, builders.http1, shutdown).await
    }
}

/// Serves a connection opened inside a bumped tunnel (`bump`) until it ends, with the
/// builders of the generation current now; shutdown does not reach it (nor its tunnel).
fn serve_inner(
    io: Box<dyn InnerStream>,
    info: Arc<ConnInfo>,
    h2: bool,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let shared = info.live.load();
        let peer = info.peer;
        let (_keep, shutdown) = watch::channel(false);
        let result = if h2 {
            serve_http2(io, info, &http2_builder(&shared), shutdown)
                .await
                .map_err(std::io::Error::other)
        } else {
            serve_http1(io, info, http1_settings(&shared), shutdown).await
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "bumped connection ended with an error");
        }
    })
}

/// HTTP/1.x on `io` (a socket or a TLS stream) with our own server (`h1`), with upgrades
/// for CONNECT.
async fn serve_http1<T>(
    io: T,
    info: Arc<ConnInfo>,
    settings: h1::Settings,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::clone(&info.activity);
    let io = ClientIo::new(io, Arc::clone(&activity));
    let stop = Arc::new(AtomicBool::new(false));
    let service =
        move |req: Request<h1::H1Body>| handle(req.map(ClientBody::H1), Arc::clone(&info));
    // The requests run on this task: one task-local for the whole connection gives them its
    // outbox (`interim`) without a scope per request.
    let conn = pin!(super::interim::OUTBOX.scope(
        activity,
        h1::serve(io, settings, Arc::clone(&stop), service),
    ));
    until_shutdown(conn, |_| stop.store(true, Ordering::Relaxed), shutdown).await
}

/// HTTP/2 on a TLS stream whose ALPN chose `h2`.
async fn serve_http2<T>(
    io: T,
    info: Arc<ConnInfo>,
    builder: &http2::Builder<TokioExecutor>,
    shutdown: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(ClientIo::new(io, Arc::clone(&info.activity)));
    let conn = pin!(builder.serve_connection(io, service(info)));
    until_shutdown(conn, |c| c.graceful_shutdown(), shutdown).await
}

/// The per-request service of a connection.
fn service(
    info: Arc<ConnInfo>,
) -> impl Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible, Future: Send>
{
    service_fn(move |req| {
        let info = Arc::clone(&info);
        async move { Ok::<_, Infallible>(handle(req.map(ClientBody::Hyper), info).await) }
    })
}

/// Drives `conn` to its end; once shutdown is requested, asks it to finish gracefully first.
///
/// `conn` is pinned by the caller: taken by value, it would be held twice in this function's
/// state (as its argument and as the pinned local), doubling every connection's task.
///
/// The shutdown future is polled once to register the task's waker, and again only when the
/// channel has changed or the task's waker is another: polling a registered `watch` wait takes
/// the channel's waiter lock, which every connection of the process shares, and the
/// connection is woken two or three times per request.
async fn until_shutdown<C, E>(
    mut conn: Pin<&mut C>,
    graceful: impl FnOnce(Pin<&mut C>),
    shutdown: watch::Receiver<bool>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let probe = shutdown.clone();
    let mut shutdown = shutdown;
    let mut stop = pin!(stopped(&mut shutdown));
    let mut registered: Option<Waker> = None;
    let stopped = poll_fn(|cx| {
        // One clock read each for the whole poll (`clock::during_poll`).
        if let Poll::Ready(result) = clock::during_poll(|| conn.as_mut().poll(cx)) {
            return Poll::Ready(Some(result));
        }
        let current = registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if current && !probe.has_changed().unwrap_or(true) {
            return Poll::Pending;
        }
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        registered = Some(cx.waker().clone());
        Poll::Pending
    })
    .await;
    match stopped {
        Some(result) => result,
        None => {
            graceful(conn.as_mut());
            conn.await
        }
    }
}

/// Resolves once shutdown has been requested (or the sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns (an async fn's future), without calling it.
    fn returned_size<A, B, C, D, E, F>(_: impl Fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A connection's task holds this future for the connection's whole life, idle keep-alive
    /// time included (its request futures are inline in it): 10,496 bytes, where it was
    /// 36,400 with the connection's future held twice by `until_shutdown` and every plain
    /// connection sized for a TLS one, 13,280 with the cache's rare branches inline
    /// (`caching::tests`) and 11,296 with the pool's upgradable exchange inline
    /// (`pool::tests`). A regression of any shows here.
    #[test]
    fn a_connections_task_stays_small() {
        let size = returned_size(serve_connection);
        eprintln!("serve_connection's future: {size} bytes");
        assert!(
            size <= 11 * 1024,
            "serve_connection's future is {size} bytes"
        );
    }

    /// Every poll of a connection's future runs inside `clock::during_poll`, so a request's
    /// layers share one clock read per poll (15 reads per no-store miss were 6).
    #[tokio::test]
    async fn a_connections_poll_reads_the_clock_once() {
        let (_tx, shutdown) = watch::channel(false);
        let conn = std::pin::pin!(async {
            let first = clock::instant();
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(clock::instant(), first, "a second read within the poll");
            tokio::task::yield_now().await;
            assert!(clock::instant() > first, "the next poll reads again");
            Ok::<(), ()>(())
        });
        until_shutdown(conn, |_| {}, shutdown).await.unwrap();
    }
}
