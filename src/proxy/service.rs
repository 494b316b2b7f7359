//! The per-request entry point: limits, then dispatch by request form.
//!
//! RFC 9112 §3.2 request-target forms decide the mode of a request on a forward port:
//! `CONNECT host:port` (authority-form) opens a tunnel, `GET http://host/path` (absolute-form)
//! is forwarded; origin-form requests (`GET /path`) are not for a forward proxy and get 400
//! `Invalid URL`, as in Squid, except Squid's internal URLs, which `proxy::internal` answers
//! (as it does absolute-form URLs naming the proxy itself). Every path ends in a response
//! carrying its [`Transaction`], so every request is logged exactly once.

use std::sync::Arc;

use http::uri::Authority;
use http::{Method, Request, Response};

use super::body::ProxyBody;
use super::client_body::ClientBody;
use super::request::{check_access, reply_error, ConnInfo};
use super::transaction::Transaction;
use super::{forward, internal, reverse, tunnel, Limits, Mode};
use crate::error::{Error, ErrorKind};

/// Handles one request; never fails (errors become error pages).
///
/// The request runs start to end on the config generation current when it arrived, so a
/// reload never changes the rules under a request in flight. Interim responses reach an
/// HTTP/1 client through the connection's outbox, set once per connection (`interim`).
pub async fn handle(mut req: Request<ClientBody>, conn: Arc<ConnInfo>) -> Response<ProxyBody> {
    let in_flight = conn.activity.begin();
    let shared = conn.live.load();
    // Inside a bumped tunnel every request is for the tunnel's origin, over https.
    let mut refused = None;
    if let Some(origin) = &conn.bumped {
        match origin.absolute(req.uri(), req.method()) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(err) => refused = Some(err),
        }
    }
    let url = if req.method() == Method::CONNECT {
        req.uri()
            .authority()
            .map_or_else(|| req.uri().to_string(), ToString::to_string)
    } else {
        without_userinfo(req.uri())
    };
    // Boxed at once: it rides the whole request path (~470 bytes) and ends on the body.
    let mut txn = Box::new(Transaction::new(
        Arc::clone(&shared),
        Arc::clone(&conn.client_text),
        req.method(),
        url,
        Some(in_flight),
    ));
    // An accelerator's clients write origin-form targets (HTTP/2 ones too, as `:path`).
    let origin_form = req.method() != Method::CONNECT
        && (conn.mode == Mode::Reverse || req.uri().scheme().is_none());
    txn.note_request(&req, origin_form);
    txn.error_details = conn.error_details;
    if let Some(err) = refused {
        return reply_error(txn, &err, &shared);
    }
    let host = match check_limits(&req, &shared.config.limits)
        .and_then(|()| check_host(&req))
        .and_then(|host| check_transfer_coding(req.headers()).map(|()| host))
    {
        Ok(host) => host,
        Err(err) => return reply_error(txn, &err, &shared),
    };
    if conn.mode == Mode::Reverse {
        return reverse::handle(req, host, &conn, &shared, txn).await;
    }
    if req.method() == Method::CONNECT {
        return tunnel::handle(req, &conn, &shared, txn).await;
    }
    if let Some(what) = internal::classify(&req, conn.local, &shared.via) {
        // `http_access` still decides who may ask us anything.
        let ours = conn.local.ip().to_string();
        let facts = crate::access::RequestFacts {
            url: &txn.url,
            path: req.uri().path(),
            ..Default::default()
        };
        let port = conn.local.port();
        if let Err(err) = check_access(&shared, conn.peer, req.method(), &ours, port, facts) {
            return reply_error(txn, &err, &shared);
        }
        let response = internal::answer(what, &mut txn);
        return response.map(|body| body.with_transaction(txn));
    }
    if req.uri().scheme().is_some() && req.uri().authority().is_some() {
        return forward::handle(req, &conn, &shared, txn).await;
    }
    let err = Error::new(
        ErrorKind::InvalidRequest,
        "Invalid URL: this is a proxy; requests must use an absolute URL (http://host/path)",
    );
    reply_error(txn, &err, &shared)
}

/// The URI for logs and error pages, without `user:password@` credentials.
///
/// The text is what `Uri`'s `Display` writes, copied into one exact-size string: this runs on
/// every request, and the formatting machinery cost more than the copy.
pub fn without_userinfo(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str();
    let authority = uri.authority().map(|authority| {
        let text = authority.as_str();
        text.rsplit('@').next().unwrap_or(text)
    });
    let (path, query) = (uri.path(), uri.query());
    let len = scheme.map_or(0, |s| s.len() + 3)
        + authority.map_or(0, str::len)
        + path.len()
        + query.map_or(0, |q| q.len() + 1);
    let mut text = String::with_capacity(len);
    if let Some(scheme) = scheme {
        text.push_str(scheme);
        text.push_str("://");
    }
    if let Some(authority) = authority {
        text.push_str(authority);
    }
    text.push_str(path);
    if let Some(query) = query {
        text.push('?');
        text.push_str(query);
    }
    text
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
/// request message that lacks a Host header field and to any request message that contains
/// more than one Host header field line or a Host header field with an invalid field value."
/// A valid value is `uri-host [ ":" port ]` (RFC 9110 §7.2): no userinfo; empty is allowed.
/// Returns the parsed value when there is a non-empty one (reverse mode routes on it).
fn check_host<B>(req: &Request<B>) -> Result<Option<Authority>, Error> {
    let bad = |cause: &str| Err(Error::new(ErrorKind::InvalidRequest, cause.to_owned()));
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return bad("more than one Host field (RFC 9112 §3.2)");
    }
    let Some(value) = first else {
        if req.version() == http::Version::HTTP_11 {
            return bad("an HTTP/1.1 request needs a Host field (RFC 9112 §3.2)");
        }
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    match value
        .to_str()
        .ok()
        .filter(|text| !text.contains('@'))
        .and_then(|text| text.parse::<Authority>().ok())
    {
        Some(authority) => Ok(Some(authority)),
        None => bad("invalid Host field value (RFC 9110 §7.2)"),
    }
}

/// RFC 9112 §6.1: "A server that receives a request message with a transfer coding it does not
/// understand SHOULD respond with 501 (Not Implemented)." cuttle decodes only `chunked`; any
/// other coding (`gzip, chunked`) would otherwise be dropped with the hop-by-hop field while
/// its coded bytes went upstream as if they were the content.
fn check_transfer_coding(headers: &http::HeaderMap) -> Result<(), Error> {
    match super::headers::unsupported_coding(headers) {
        Some(coding) => Err(Error::new(
            ErrorKind::NotImplemented,
            format!("transfer coding `{coding}` is not supported (only chunked)"),
        )),
        None => Ok(()),
    }
}

/// URI length (414) and header-section size (431), measured as on the wire.
fn check_limits<B>(req: &Request<B>, limits: &Limits) -> Result<(), Error> {
    let uri = req.uri();
    let uri_len = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_length {
        return Err(Error::new(
            ErrorKind::UriTooLong,
            format!(
                "the request URI is {uri_len} bytes; the limit is {}",
                limits.max_uri_length
            ),
        ));
    }
    let header_len: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_len > limits.max_request_header_size {
        return Err(Error::new(
            ErrorKind::HeaderTooLarge,
            format!(
                "the request header is {header_len} bytes; the limit is {}",
                limits.max_request_header_size
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text `Uri`'s `Display` writes, with the credentials cut out of the authority.
    fn displayed(uri: &http::Uri) -> String {
        let text = uri.to_string();
        match uri.authority() {
            Some(authority) if authority.as_str().contains('@') => {
                let bare = authority.as_str().rsplit('@').next().unwrap_or("");
                text.replacen(authority.as_str(), bare, 1)
            }
            _ => text,
        }
    }

    #[test]
    fn log_url_is_the_displayed_uri_without_credentials() {
        for target in [
            "/",
            "/a/b?c=d&e",
            "/?",
            "*",
            "http://example.com",
            "http://example.com/",
            "http://example.com:8080/p?q",
            "https://user:pw@example.com/secret?x",
            "http://a@b@example.com/",
            "example.com:443",
        ] {
            let uri: http::Uri = target.parse().unwrap();
            assert_eq!(without_userinfo(&uri), displayed(&uri), "{target}");
        }
        let uri: http::Uri = "http://user:pw@example.com/".parse().unwrap();
        assert_eq!(without_userinfo(&uri), "http://example.com/");
    }
}
