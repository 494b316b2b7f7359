//! Accepting client connections and serving HTTP/1.x on them until shutdown.
//!
//! Forward proxies speak HTTP/1.1 to their clients (browsers and tools send absolute-form
//! requests and CONNECT over HTTP/1.1), so this uses hyper's `http1` server directly rather than
//! hyper-util's auto (h1+h2) builder: it exposes `max_header_size`, which turns an oversized
//! request header into a real 431. Connections are capped by a semaphore permit taken before
//! `accept`, so excess clients wait in the kernel's backlog instead of exhausting memory or file
//! descriptors. On shutdown the accept loop stops and each connection is asked to finish its
//! current request and close (hyper's graceful shutdown); `app` waits for them with a deadline.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::client_conn::{ClientIo, ConnActivity};
use super::service::{handle, ConnInfo};
use super::Shared;

/// hyper refuses buffers below this.
const MIN_BUF_SIZE: usize = 8192;
/// Room for the method, spaces and version around the URI in a request line.
const REQUEST_LINE_OVERHEAD: usize = 64;

/// The hyper connection settings for `shared`'s limits.
fn http1_builder(shared: &Shared) -> http1::Builder {
    let limits = &shared.config.limits;
    // hyper's limit covers the request line and the header section together. It is set to
    // the sum of our two limits, and `service` checks each one on its own, so a long URI gets
    // 414 and a big header 431, as configured.
    let max_head = limits.max_request_header_size + limits.max_uri_length + REQUEST_LINE_OVERHEAD;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // `client_conn` implements header and idle deadlines itself (see its docs).
        .header_read_timeout(None)
        .keep_alive(true)
        .max_header_size(max_head)
        .max_buf_size(max_head.max(MIN_BUF_SIZE) + MIN_BUF_SIZE);
    builder
}

/// Accepts connections on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    mode: super::Mode,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(error = %e, "listener has no local address");
            return;
        }
    };
    let builder = http1_builder(&shared);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&shared.connections).acquire_owned() => match permit {
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
        let conn_shutdown = shutdown.clone();
        let shared = Arc::clone(&shared);
        let builder = builder.clone();
        let info = Arc::new(ConnInfo {
            peer,
            local,
            mode,
            activity: ConnActivity::new(
                shared.config.timeouts.client_header,
                shared.config.timeouts.client_idle,
                shared.config.timeouts.client_write,
            ),
            shared,
            // Shared with tunnels, which outlive the HTTP connection that opened them.
            permit: Arc::new(permit),
        });
        tokio::spawn(serve_connection(stream, info, builder, conn_shutdown));
    }
}

async fn serve_connection(
    stream: TcpStream,
    info: Arc<ConnInfo>,
    builder: http1::Builder,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let peer = info.peer;
    let io = TokioIo::new(ClientIo::new(stream, Arc::clone(&info.activity)));
    let service = service_fn(move |req| {
        let info = Arc::clone(&info);
        async move { Ok::<_, std::convert::Infallible>(handle(req, info).await) }
    });
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}

/// Resolves once shutdown has been requested (or the sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
