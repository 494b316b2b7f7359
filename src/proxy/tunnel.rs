//! CONNECT tunnels: HTTPS (or anything else) through the proxy as opaque bytes.
//!
//! The target port must be in `forward.connect_ports` (default 443 only) whatever `http_access`
//! says, so a misconfigured rule list cannot turn cuttle into an SMTP relay. The upstream
//! connection is opened *before* answering 200, so a failure gets a proper error page. After the
//! upgrade, bytes are copied both ways until either side closes or nothing moves for
//! `timeouts.tunnel_idle`. The transaction travels with the tunnel task and is logged (with the
//! byte count) when the tunnel closes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::authorize::Requester;
use super::body::ProxyBody;
use super::client_body::ClientBody;
use super::destination::{self, Resolution};
use super::request::{check_loop, reply_error, ConnInfo};
use super::transaction::{code, hier, Transaction};
use super::Shared;
use crate::access::{AccessRequest, RequestFacts};
use crate::error::{Error, ErrorKind};
use crate::tls_intercept::rules::Action;
use crate::upstream::connect::{connect, connect_addrs};
use crate::upstream::hierarchy::Hop;
use crate::upstream::peer::{connect_through, Peers};
use crate::upstream::retry::Replay;
use crate::upstream::stream::UpstreamStream;
use crate::upstream::walk::{self, Walk};
use crate::upstream::Progress;

/// Handles one CONNECT request.
pub async fn handle(
    mut req: Request<ClientBody>,
    conn: &ConnInfo,
    shared: &Shared,
    mut txn: Box<Transaction>,
) -> Response<ProxyBody> {
    let Opened {
        stream: upstream,
        hierarchy,
        peer,
    } = match open(&req, conn, shared, &mut txn).await {
        Ok(Plan::Splice(opened)) => opened,
        Ok(Plan::Bump { host, port }) => {
            return super::bump::handle(req, conn, shared, txn, &host, port)
        }
        Err(err) => return reply_error(txn, &err, shared),
    };
    txn.code = code::TCP_TUNNEL;
    txn.hierarchy = hierarchy;
    txn.peer = Some(peer);
    let on_upgrade = super::switch::on(&mut req);
    conn.activity.switch();
    let idle = shared.config.timeouts.tunnel_idle;
    // The tunnel counts against max_connections until it closes.
    let permit = Arc::clone(&conn.permit);
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::OK;
    response
        .extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(
            b"Connection established",
        ));
    txn.respond(&response);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                relay(upgraded, upstream, idle, *txn).await;
                drop(permit);
            }
            Err(e) => {
                txn.abort();
                tracing::debug!(error = %e, "CONNECT upgrade failed");
            }
        }
    });
    response
}

/// What becomes of an allowed CONNECT (`[tls_intercept]`; without it, always a splice).
enum Plan {
    /// Relay bytes to this upstream connection.
    Splice(Opened),
    /// Terminate TLS here (`bump`); the requests inside go upstream on their own.
    Bump { host: String, port: u16 },
}

/// A tunnel's upstream connection and how it was reached (for the access log).
struct Opened {
    stream: UpstreamStream,
    /// `HIER_DIRECT`, or the code of the parent the CONNECT went through.
    hierarchy: &'static str,
    /// The target host (direct) or the parent's name.
    peer: String,
}

impl Opened {
    fn direct(stream: UpstreamStream, host: &str) -> Self {
        Self {
            stream,
            hierarchy: hier::HIER_DIRECT,
            peer: host.to_owned(),
        }
    }
}

/// Checks the request and connects to its target (unless it is to be bumped).
async fn open(
    req: &Request<ClientBody>,
    conn: &ConnInfo,
    shared: &Shared,
    txn: &mut Transaction,
) -> Result<Plan, Error> {
    let authority = req.uri().authority().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidRequest,
            "CONNECT needs a host:port target",
        )
    })?;
    let host = authority.host();
    let port = authority
        .port_u16()
        .ok_or_else(|| Error::new(ErrorKind::InvalidRequest, "CONNECT target has no port"))?;
    let allowed = shared
        .config
        .forward
        .connect_ports
        .iter()
        .any(|&(low, high)| (low..=high).contains(&port));
    if !allowed {
        return Err(Error::new(
            ErrorKind::AccessDenied,
            format!("CONNECT to port {port} is not allowed (forward.connect_ports)"),
        ));
    }
    check_loop(shared, req.headers())?;
    // A direct tunnel needs the addresses anyway: resolve once, check them, connect to them.
    let direct_only = shared.peers.is_none();
    // HTTPS through CONNECT is authenticated like any other request: the credentials are on
    // the CONNECT itself (RFC 9110 §11.7.2), before any byte is tunnelled.
    let mut who = Requester::new(
        shared,
        conn.mode,
        conn.peer.ip(),
        &txn.url,
        req.uri(),
        req.headers(),
    );
    let checked = destination::check(shared, &mut who, req.method(), host, port, direct_only).await;
    txn.user = who.user.take();
    let resolution = checked?;
    if let Some(intercept) = &shared.config.tls_intercept {
        let decision = super::bump::decide(intercept, conn, req, host, port, txn.user.as_deref());
        tracing::debug!(target = %authority, action = decision.action.as_str(), reason = %decision.reason, "tls_intercept");
        match decision.action {
            Action::Bump => {
                return Ok(Plan::Bump {
                    host: host.to_owned(),
                    port,
                })
            }
            Action::Deny => {
                return Err(Error::new(
                    ErrorKind::AccessDenied,
                    format!("access denied ({})", decision.reason),
                ))
            }
            Action::Splice => {}
        }
    }
    let timeout = shared.upstream_connect_timeout();
    if let Some(peers) = &shared.peers {
        return open_through_hierarchy(peers, conn, req, host, port, &resolution, timeout)
            .await
            .map(Plan::Splice);
    }
    let stream = connect_direct(host, port, &resolution, timeout).await?;
    Ok(Plan::Splice(Opened::direct(stream, host)))
}

/// Connects to the checked addresses, or (only when no rule needed them) resolves `host` now.
async fn connect_direct(
    host: &str,
    port: u16,
    resolution: &Resolution,
    timeout: std::time::Duration,
) -> Result<UpstreamStream, Error> {
    match resolution {
        Resolution::Checked(addrs) => connect_addrs(host, addrs, timeout).await,
        Resolution::Unneeded => connect(host, port, timeout).await,
        Resolution::Failed(kind, cause) => return Err(Error::new(*kind, cause.to_string())),
    }
    .map(UpstreamStream::Plain)
    .map_err(|e| e.to_error())
}

/// CONNECT through the hierarchy (`upstream::walk`, as for requests): parents in order, each
/// asked with CONNECT, then direct unless `never_direct`. Siblings never carry tunnels. No
/// byte of the tunnel has moved before the 200, so any parent's failure moves on to the next.
async fn open_through_hierarchy(
    peers: &Peers,
    conn: &ConnInfo,
    req: &Request<ClientBody>,
    host: &str,
    port: u16,
    resolution: &Resolution,
    timeout: std::time::Duration,
) -> Result<Opened, Error> {
    let access = AccessRequest {
        src: conn.peer.ip(),
        host,
        port,
        method: req.method(),
        dst: None,
        facts: RequestFacts::default(),
    };
    let key = format!("{host}:{port}");
    let hops = walk::plan(peers, &access, &resolution.ips(), &key);
    let mut walk = Walk::new(peers, hops, Replay::Always, false, "for CONNECT");
    while let Some(hop) = walk.next_hop() {
        let Hop::Parent { index, code } = hop else {
            let stream = connect_direct(host, port, resolution, timeout).await?;
            return Ok(Opened::direct(stream, host));
        };
        let Some(peer) = peers.config.peers.get(index) else {
            continue;
        };
        let tls = peer.tls.as_deref();
        let login = peer.login.as_ref();
        match connect_through(&peer.host, peer.port, tls, &key, login, timeout).await {
            Ok(stream) => {
                walk.answered(hop);
                return Ok(Opened {
                    stream,
                    hierarchy: code,
                    peer: peer.info.name.clone(),
                });
            }
            Err(err) => walk.failed(hop, err)?,
        }
    }
    Err(walk.finish())
}

/// Copies bytes both ways until a side closes or the tunnel idles out; logs `txn` with the
/// bytes sent to the client. Also relays switched protocols (`upgrade`).
pub(super) async fn relay<C, U>(mut client: C, upstream: U, idle: Duration, mut txn: Transaction)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let progress = Progress::new();
    let to_client = Arc::new(AtomicU64::new(0));
    let mut upstream = Tracked {
        inner: upstream,
        progress: Arc::clone(&progress),
        read_bytes: Arc::clone(&to_client),
    };
    {
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        // Each turn either ends the tunnel or finds fresh traffic, so the loop ends.
        loop {
            let deadline = progress.last() + idle;
            tokio::select! {
                result = &mut copy => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "tunnel closed with an error");
                    }
                    break;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if progress.last() + idle <= tokio::time::Instant::now() {
                        tracing::debug!(url = %txn.url, "tunnel idle; closing");
                        break;
                    }
                }
            }
        }
    }
    txn.body_bytes = to_client.load(Ordering::Relaxed);
    txn.complete();
}

/// The upstream side of a tunnel, noting traffic in both directions.
struct Tracked<S> {
    inner: S,
    progress: Arc<Progress>,
    /// Bytes read from the upstream, i.e. sent on to the client.
    read_bytes: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.progress.touch();
            self.read_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            if n > 0 {
                self.progress.touch();
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
