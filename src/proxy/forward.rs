//! Forward mode: relay an absolute-form request to the origin it names.
//!
//! Order of checks: scheme, forwarding loop (our `Via`), `http_access`, `Max-Forwards`; then the
//! request is rewritten for the next hop (hop-by-hop fields out, `Host` from the URI, `Via` and
//! `X-Forwarded-For` in) and sent. The response header is held until the first body frame
//! arrives, so an upstream whose body is broken from its first byte (bad chunked framing) still
//! gets the client a clean 502 instead of a truncated 200; after that, the body streams.

use http::header::{self, HeaderValue};
use http::uri::Scheme;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use super::body::ProxyBody;
use super::headers::{self, MaxForwards};
use super::service::{check_access, check_loop, reply_error, ConnInfo};
use super::transaction::{code, hier, Transaction};
use crate::error::{Error, ErrorKind};
use crate::upstream::client::classify_hyper;
use crate::upstream::{Progress, RequestBody};

/// Forwards one absolute-form request.
pub async fn handle(
    req: Request<Incoming>,
    conn: &ConnInfo,
    mut txn: Transaction,
) -> Response<ProxyBody> {
    match forward(req, conn, &mut txn).await {
        Ok(response) => {
            txn.respond(&response);
            response.map(|body| body.with_transaction(txn))
        }
        Err(err) => reply_error(txn, &err, &conn.shared),
    }
}

async fn forward(
    req: Request<Incoming>,
    conn: &ConnInfo,
    txn: &mut Transaction,
) -> Result<Response<ProxyBody>, Error> {
    let shared = &conn.shared;
    let (mut parts, body) = req.into_parts();
    if parts.uri.scheme() != Some(&Scheme::HTTP) {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "unsupported URL scheme `{}`; HTTPS goes through CONNECT",
                parts.uri.scheme_str().unwrap_or("")
            ),
        ));
    }
    let (host, port, authority) = match parts.uri.authority() {
        Some(a) if !a.host().is_empty() => (
            a.host().to_owned(),
            a.port_u16().unwrap_or(80),
            a.as_str().to_owned(),
        ),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "Invalid URL: no host",
            ))
        }
    };
    check_loop(shared, &parts.headers)?;
    check_access(shared, conn.peer, &parts.method, &host, port)?;

    match headers::max_forwards(&parts.method, &parts.headers) {
        MaxForwards::Respond => return Ok(answer_as_final_recipient(&parts)),
        MaxForwards::Decrement(n) => {
            parts
                .headers
                .insert(header::MAX_FORWARDS, HeaderValue::from(n));
        }
        MaxForwards::Forward => {}
    }

    let forward_config = &shared.config.forward;
    headers::strip_request(&mut parts.headers, forward_config.pass_proxy_authorization);
    // RFC 9112 §3.2.2: "When a proxy receives a request with an absolute-form of
    // request-target, the proxy MUST ignore the received Host header field (if any) and instead
    // replace it with the host information of the request-target."
    let host_value = HeaderValue::from_str(authority.rsplit('@').next().unwrap_or(&authority))
        .map_err(|_| Error::new(ErrorKind::InvalidRequest, "Invalid URL: bad host"))?;
    parts.headers.insert(header::HOST, host_value);
    if forward_config.via {
        shared.via.append(&mut parts.headers, parts.version);
    }
    headers::apply_forwarded_for(
        &mut parts.headers,
        forward_config.forwarded_for,
        conn.peer.ip(),
    );
    parts.version = http::Version::HTTP_11;

    let progress = Progress::new();
    let body = if body.is_end_stream() {
        RequestBody::empty(progress.clone())
    } else {
        RequestBody::streaming(body, shared.config.timeouts.client_read, progress.clone())
    };
    txn.code = code::TCP_MISS;
    txn.hierarchy = hier::DIRECT;
    txn.peer = Some(host);

    let response = shared
        .upstream
        .send(Request::from_parts(parts, body), progress)
        .await?;
    let (mut parts, mut body) = response.into_parts();
    let received = parts.version;
    headers::remove_hop_by_hop(&mut parts.headers);
    if forward_config.via {
        shared.via.append(&mut parts.headers, received);
    }
    parts.version = http::Version::HTTP_11;

    let read_timeout = shared.upstream.read_timeout();
    let first = if body.is_end_stream() {
        None
    } else {
        match tokio::time::timeout(read_timeout, body.frame()).await {
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::ReadTimeout,
                    format!("the upstream sent a header but no body within {read_timeout:?}"),
                ))
            }
            Ok(None) => None,
            Ok(Some(Err(e))) => return Err(classify_hyper(&e)),
            Ok(Some(Ok(frame))) => Some(frame),
        }
    };
    Ok(Response::from_parts(
        parts,
        ProxyBody::upstream(first, body, read_timeout),
    ))
}

/// RFC 9110 §7.6.2: with `Max-Forwards: 0`, TRACE and OPTIONS are answered here.
fn answer_as_final_recipient(parts: &http::request::Parts) -> Response<ProxyBody> {
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
