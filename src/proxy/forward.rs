//! Forward mode: relay an absolute-form request to the origin it names.
//!
//! Order of checks: scheme, forwarding loop (our `Via`), `http_access` (on the resolved
//! addresses when a `dst` ACL needs them: `proxy::destination`), `Max-Forwards`; then
//! an allowed `Upgrade` goes to `proxy::upgrade`; otherwise the cache decides
//! (`proxy::caching`), and whatever must go upstream goes to the origin named
//! by the URI through `proxy::next_hop`.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::Scheme;
use http::{Method, Request, Response, StatusCode};

use super::authorize::Requester;
use super::body::ProxyBody;
use super::caching;
use super::client_body::ClientBody;
use super::destination;
use super::headers::{self, MaxForwards};
use super::next_hop::Target;
use super::request::{check_loop, finish, ConnInfo};
use super::transaction::{hier, Transaction};
use super::upgrade;
use super::Shared;
use crate::error::{Error, ErrorKind};

/// Forwards one absolute-form request.
pub async fn handle(
    req: Request<ClientBody>,
    conn: &ConnInfo,
    shared: &Arc<Shared>,
    mut txn: Box<Transaction>,
) -> Response<ProxyBody> {
    let host = req.uri().host().map(str::to_owned);
    let result = forward(req, conn, shared, &mut txn).await;
    if let (Err(err), Some(host)) = (&result, host) {
        note_failed_attempt(&mut txn, err, shared, host);
    }
    finish(txn, result, shared)
}

/// Squid logs a direct attempt that failed after its address was known (the connection was
/// refused or timed out, the reply was bad) as `HIER_DIRECT/<origin>`, and one that never got
/// that far (denied, DNS failure) as `HIER_NONE/-`. Without peers every attempt is direct;
/// with peers the failed hop is not known here and the line stays `HIER_NONE/-`.
fn note_failed_attempt(txn: &mut Transaction, err: &Error, shared: &Shared, host: String) {
    let attempted = matches!(
        err.kind(),
        ErrorKind::ConnectFailed
            | ErrorKind::ConnectTimeout
            | ErrorKind::ReadTimeout
            | ErrorKind::InvalidResponse
            | ErrorKind::TlsProtocol
            | ErrorKind::TlsCertificate
    );
    if attempted && shared.peers.is_none() && txn.hierarchy == hier::NONE {
        txn.hierarchy = hier::HIER_DIRECT;
        txn.peer = Some(host);
    }
}

async fn forward(
    req: Request<ClientBody>,
    conn: &ConnInfo,
    shared: &Arc<Shared>,
    txn: &mut Transaction,
) -> Result<Response<ProxyBody>, Error> {
    let (mut parts, body) = req.into_parts();
    // `https` only inside a bumped tunnel (`bump`), which made the URI itself.
    let https = conn.bumped.is_some() && parts.uri.scheme() == Some(&Scheme::HTTPS);
    if parts.uri.scheme() != Some(&Scheme::HTTP) && !https {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "unsupported URL scheme `{}`; HTTPS goes through CONNECT",
                parts.uri.scheme_str().unwrap_or("")
            ),
        ));
    }
    let (host, port) = match parts.uri.authority() {
        Some(a) if !a.host().is_empty() => (
            a.host().to_owned(),
            a.port_u16().unwrap_or(if https { 443 } else { 80 }),
        ),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "Invalid URL: no host",
            ))
        }
    };
    check_loop(shared, &parts.headers)?;
    let mut who = Requester::new(
        shared,
        conn.mode,
        conn.peer.ip(),
        &txn.url,
        &parts.uri,
        &parts.headers,
    );
    let checked = destination::check(shared, &mut who, &parts.method, &host, port, false).await;
    txn.user = who.user.take();
    let resolution = checked?;

    match headers::max_forwards(&parts.method, &parts.headers) {
        MaxForwards::Respond => return Ok(answer_as_final_recipient(&parts)),
        MaxForwards::Decrement(n) => {
            parts
                .headers
                .insert(header::MAX_FORWARDS, HeaderValue::from(n));
        }
        MaxForwards::Forward => {}
    }
    let upgrade = upgrade::requested(
        parts.version,
        &parts.headers,
        &shared.config.forward.upgrade_protocols,
    );
    headers::strip_request(
        &mut parts.headers,
        shared.config.forward.pass_proxy_authorization,
    );
    // The hierarchy code and peer are set by `next_hop` once the request really goes out.
    let target = Target::Origin(resolution);
    if let upgrade::Requested::Allowed(offer) = upgrade {
        if https {
            // `upgrade` relays over plain TCP: never send a bumped request that way.
            return Err(Error::new(
                ErrorKind::NotImplemented,
                "protocol upgrades inside an intercepted tunnel are not supported; splice this site",
            ));
        }
        return upgrade::handle(conn, shared, txn, parts, body, target, offer).await;
    }
    caching::handle(conn, shared, txn, parts, body, target).await
}

/// RFC 9110 §7.6.2: with `Max-Forwards: 0`, TRACE and OPTIONS are answered here.
pub(super) fn answer_as_final_recipient(parts: &http::request::Parts) -> Response<ProxyBody> {
    if parts.method == Method::TRACE {
        // RFC 9110 §9.3.8: reflect the request, excluding fields likely to hold secrets.
        let mut echo = format!("TRACE {} {:?}\r\n", parts.uri, parts.version);
        for (name, value) in &parts.headers {
            if matches!(
                name.as_str(),
                "authorization" | "proxy-authorization" | "cookie"
            ) {
                continue;
            }
            echo.push_str(name.as_str());
            echo.push_str(": ");
            echo.push_str(&String::from_utf8_lossy(value.as_bytes()));
            echo.push_str("\r\n");
        }
        echo.push_str("\r\n");
        let mut response = Response::new(ProxyBody::full(echo));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("message/http"),
        );
        return response;
    }
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, CONNECT"),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}
