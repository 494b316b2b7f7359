//! Serving a bumped CONNECT tunnel: answer 200, read the client's TLS ClientHello, finish the
//! handshake with a leaf minted for the tunnel's host, then serve the HTTP (h2 or http/1.1, as
//! ALPN chose) inside as ordinary forward requests for `https://host:port/...`.
//!
//! The tunnel is bumped for the host of the CONNECT, which `http_access` and the
//! `[tls_intercept]` rules judged. A ClientHello whose SNI names another host ends the
//! connection (it would ask a certificate for a name nobody authorised); a CONNECT to an
//! address literal is served for that address, whatever the SNI. Requests inside keep the
//! tunnel's origin whatever their Host says (`request::BumpedOrigin`). The CONNECT itself is
//! logged, as Squid does, as `NONE_NONE/200` when the bumped connection closes; each request
//! inside gets its own line with its full URL.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use tokio_rustls::rustls;

use super::body::ProxyBody;
use super::client_body::ClientBody;
use super::client_conn::ConnActivity;
use super::request::{BumpedOrigin, ConnInfo};
use super::transaction::{code, Transaction};
use super::{Mode, Shared};
use crate::access::{AccessRequest, RequestFacts};
use crate::tls_intercept::rules::Decision;
use crate::tls_intercept::Intercept;

/// The `[tls_intercept]` decision for a CONNECT to `host:port`, already allowed by
/// `http_access`, from the connection `conn` (with its verified `user`, if any).
pub fn decide(
    intercept: &Intercept,
    conn: &ConnInfo,
    req: &Request<ClientBody>,
    host: &str,
    port: u16,
    user: Option<&str>,
) -> Decision {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let request = AccessRequest {
        src: conn.peer.ip(),
        host,
        port,
        method: req.method(),
        dst: None,
        facts: RequestFacts {
            url: req.uri().authority().map_or("", |a| a.as_str()),
            user,
            server_name: Some(bare),
            ..RequestFacts::default()
        },
    };
    intercept.rules.decide(&request)
}

/// Answers a CONNECT that is to be bumped with 200 and serves the tunnel once the client
/// switches; `host` and `port` are its (checked) target.
pub fn handle(
    mut req: Request<ClientBody>,
    conn: &ConnInfo,
    shared: &Shared,
    mut txn: Box<Transaction>,
    host: &str,
    port: u16,
) -> Response<ProxyBody> {
    let Some(intercept) = shared.config.tls_intercept.clone() else {
        // `tunnel` bumps only with a configured section; nothing to serve without one.
        txn.abort();
        let mut response = Response::new(ProxyBody::empty());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return response;
    };
    txn.code = code::NONE;
    let on_upgrade = super::switch::on(&mut req);
    conn.activity.switch();
    let timeouts = &shared.config.timeouts;
    let inner = Arc::new(ConnInfo {
        peer: conn.peer,
        client_text: Arc::clone(&conn.client_text),
        local: conn.local,
        mode: Mode::Forward,
        error_details: conn.error_details,
        tls: true,
        activity: ConnActivity::with_request_start(
            timeouts.client_header,
            timeouts.request_start,
            timeouts.client_idle,
            timeouts.client_write,
        ),
        live: Arc::clone(&conn.live),
        permit: Arc::clone(&conn.permit),
        bumped: Some(Arc::new(BumpedOrigin {
            host: host.to_owned(),
            port,
        })),
        serve_inner: conn.serve_inner,
    });
    let handshake_timeout = timeouts.client_header;
    let clock = Arc::clone(&shared.clock);
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::OK;
    response
        .extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(
            b"Connection established",
        ));
    txn.respond(&response);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                txn.abort();
                tracing::debug!(error = %e, "CONNECT upgrade failed");
                return;
            }
        };
        let now = clock.now();
        match handshake(upgraded, &inner, intercept, handshake_timeout, now).await {
            Ok((stream, h2)) => {
                (inner.serve_inner)(Box::new(stream), Arc::clone(&inner), h2).await;
                txn.complete();
            }
            Err(reason) => {
                txn.abort();
                tracing::debug!(peer = %inner.peer, url = %txn.url, %reason, "bumped handshake failed");
            }
        }
    });
    response
}

/// The server side of the client's TLS handshake inside the tunnel, with a leaf for the
/// tunnel's host; returns the stream and whether ALPN chose `h2`.
async fn handshake<IO>(
    io: IO,
    conn: &ConnInfo,
    intercept: Arc<Intercept>,
    timeout: std::time::Duration,
    now: std::time::SystemTime,
) -> Result<(tokio_rustls::server::TlsStream<IO>, bool), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let origin = conn.bumped.as_deref().ok_or("not a bumped connection")?;
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = tokio::time::timeout(timeout, acceptor)
        .await
        .map_err(|_| format!("no ClientHello within {timeout:?}"))?
        .map_err(|e| format!("bad ClientHello: {e}"))?;
    let bare = origin.host.trim_start_matches('[').trim_end_matches(']');
    let is_address = bare.parse::<std::net::IpAddr>().is_ok();
    if let Some(sni) = start.client_hello().server_name() {
        if !is_address && !sni.trim_end_matches('.').eq_ignore_ascii_case(bare) {
            return Err(format!(
                "SNI `{sni}` is not the CONNECT host `{bare}`; refusing to mint for it"
            ));
        }
    }
    let name = bare.to_owned();
    let minting = Arc::clone(&intercept);
    let config = tokio::task::spawn_blocking(move || minting.minter.server_config(&name, now))
        .await
        .map_err(|e| format!("minting task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(timeout, start.into_stream(config))
        .await
        .map_err(|_| format!("no TLS handshake within {timeout:?}"))?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    Ok((stream, h2))
}
