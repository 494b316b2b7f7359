//! Forward mode: relay an absolute-form request to the origin it names.
//!
//! Order of checks: scheme, forwarding loop (our `Via`), `http_access`, `Max-Forwards`; then
//! the cache decides (`proxy::caching`), and whatever must go upstream goes through [`send`]:
//! the request is rewritten for the next hop (hop-by-hop fields out, `Host` from the URI,
//! `Via` and `X-Forwarded-For` in) and the response header is held until the first body frame
//! arrives, so an upstream whose body is broken from its first byte (bad chunked framing) still
//! gets the client a clean 502 instead of a truncated 200; after that, the body streams.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Scheme;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};

use super::body::ProxyBody;
use super::headers::{self, MaxForwards};
use super::service::{check_access, check_loop, reply_error, ConnInfo};
use super::transaction::{hier, Transaction};
use super::{caching, Shared};
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
    let (host, port) = match parts.uri.authority() {
        Some(a) if !a.host().is_empty() => (a.host().to_owned(), a.port_u16().unwrap_or(80)),
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
    headers::strip_request(
        &mut parts.headers,
        shared.config.forward.pass_proxy_authorization,
    );
    txn.hierarchy = hier::DIRECT;
    txn.peer = Some(host);
    caching::handle(conn, txn, parts, body).await
}

/// A response from upstream, head received, first body frame (if any) already read.
#[derive(Debug)]
pub struct Upstreamed {
    /// Hop-by-hop fields removed; no `Via` added yet.
    pub parts: http::response::Parts,
    pub first: Option<Frame<Bytes>>,
    pub body: Incoming,
}

impl Upstreamed {
    /// The Content-Length the upstream declared, if any and valid.
    pub fn content_length(&self) -> Option<u64> {
        self.parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }
}

/// What to send upstream.
#[derive(Debug)]
pub struct Outgoing {
    pub method: Method,
    pub uri: Uri,
    /// The client's protocol version, recorded in `Via`.
    pub version: Version,
    /// End-to-end fields (hop-by-hop already removed).
    pub headers: HeaderMap,
    pub body: Option<Incoming>,
    pub client: IpAddr,
}

/// Sends `out` to its origin and waits for the response head and first body frame.
pub async fn send(shared: &Shared, out: Outgoing) -> Result<Upstreamed, Error> {
    let Outgoing {
        method,
        uri,
        version,
        mut headers,
        body,
        client,
    } = out;
    let forward_config = &shared.config.forward;
    // RFC 9112 §3.2.2: "When a proxy receives a request with an absolute-form of
    // request-target, the proxy MUST ignore the received Host header field (if any) and instead
    // replace it with the host information of the request-target."
    let authority = uri
        .authority()
        .map(|a| {
            a.as_str()
                .rsplit('@')
                .next()
                .unwrap_or(a.as_str())
                .to_owned()
        })
        .unwrap_or_default();
    let host_value = HeaderValue::from_str(&authority)
        .map_err(|_| Error::new(ErrorKind::InvalidRequest, "Invalid URL: bad host"))?;
    headers.insert(header::HOST, host_value);
    if forward_config.via {
        shared.via.append(&mut headers, version);
    }
    headers::apply_forwarded_for(&mut headers, forward_config.forwarded_for, client);

    let progress = Progress::new();
    let body = match body {
        Some(body) if !body.is_end_stream() => {
            RequestBody::streaming(body, shared.config.timeouts.client_read, progress.clone())
        }
        _ => RequestBody::empty(progress.clone()),
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let response = shared.upstream.send(request, progress).await?;
    let (mut parts, mut body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);

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
    Ok(Upstreamed { parts, first, body })
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
