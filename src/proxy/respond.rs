//! The one place where an [`Error`] becomes a status code and an error page.
//!
//! Pages are short HTML in Squid's spirit: what failed, for which URL, and by which proxy.
//! Every generated error also carries `Proxy-Status` (RFC 9209) so that tools can read the cause
//! without parsing HTML, and `Cache-Control: no-store` so nobody caches it.
//!
//! How much a page tells is [`ErrorDetails`]: `full` (forward ports, where the client is the
//! operator's own user) names the cause, which may hold an internal upstream address, and the
//! proxy's name and version; `minimal` (reverse ports, where the client is the public) says only
//! the status. An operator's own page for a status ([`ErrorPages`]) replaces the generated one.

use std::collections::HashMap;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::ProxyBody;
use crate::error::{Error, ErrorKind};

/// The status code for each kind of failure.
///
/// A name that does not resolve and a refused connection are 503, as in Squid (`ERR_DNS_FAIL`,
/// `ERR_CONNECT_FAIL`): the upstream is unavailable, which is not an invalid reply (502).
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
        ErrorKind::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ErrorKind::AccessDenied | ErrorKind::ForwardingLoop => StatusCode::FORBIDDEN,
        ErrorKind::ProxyAuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        ErrorKind::DnsFailed | ErrorKind::ConnectFailed => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::ConnectTimeout | ErrorKind::ReadTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::InvalidResponse => StatusCode::BAD_GATEWAY,
        // A next hop we cannot talk to securely gave no valid response: 502, as in Squid
        // (ERR_SECURE_CONNECT_FAIL) and nginx.
        ErrorKind::TlsProtocol | ErrorKind::TlsCertificate => StatusCode::BAD_GATEWAY,
        ErrorKind::NotInCache | ErrorKind::MustRevalidate => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::UnknownSite => StatusCode::MISDIRECTED_REQUEST,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::NoUpstream => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The RFC 9209 error type for each kind of failure (§2.3).
pub fn proxy_status_error(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::UriTooLong | ErrorKind::HeaderTooLarge => {
            "http_request_error"
        }
        ErrorKind::AccessDenied | ErrorKind::ProxyAuthRequired => "http_request_denied",
        ErrorKind::ForwardingLoop => "proxy_loop_detected",
        ErrorKind::DnsFailed => "dns_error",
        ErrorKind::ConnectFailed => "connection_refused",
        ErrorKind::ConnectTimeout => "connection_timeout",
        ErrorKind::ReadTimeout => "connection_read_timeout",
        ErrorKind::InvalidResponse => "http_protocol_error",
        // §2.3.13: "The intermediary encountered a TLS error when communicating with the next hop."
        ErrorKind::TlsProtocol => "tls_protocol_error",
        // §2.3.14: "The intermediary encountered an error verifying the certificate presented by
        // the next hop."
        ErrorKind::TlsCertificate => "tls_certificate_error",
        ErrorKind::NotInCache => "proxy_internal_response",
        ErrorKind::MustRevalidate => "destination_unavailable",
        ErrorKind::UnknownSite => "destination_not_found",
        ErrorKind::NotImplemented => "http_request_error",
        ErrorKind::NoUpstream => "destination_unavailable",
        ErrorKind::Internal => "proxy_internal_error",
    }
}

pub use super::error_details::ErrorDetails;

/// Operator-supplied HTML pages by status code (`[error_pages]`), read once at config load.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages(HashMap<u16, Bytes>);

impl ErrorPages {
    /// Pages from `(status, contents)` pairs.
    pub fn new(pages: impl IntoIterator<Item = (u16, Bytes)>) -> Self {
        Self(pages.into_iter().collect())
    }

    /// The page for `status`, if the operator configured one.
    pub fn get(&self, status: StatusCode) -> Option<&Bytes> {
        self.0.get(&status.as_u16())
    }
}

/// Builds the `Proxy-Status` value: `<proxy>; error=<type>; details="<cause>"` (no `details`
/// when `details` is minimal).
fn proxy_status(proxy: &str, err: &Error, details: ErrorDetails) -> Option<HeaderValue> {
    let mut ser = sfv::ListSerializer::new();
    let name = sfv::TokenRef::from_str(proxy).ok()?;
    let error = sfv::TokenRef::from_str(proxy_status_error(err.kind())).ok()?;
    if details == ErrorDetails::Minimal {
        ser.bare_item(name)
            .parameter(sfv::KeyRef::constant("error"), error);
        return HeaderValue::from_str(&ser.finish()?).ok();
    }
    // sf-string allows printable ASCII only; replace anything else.
    let printable: String = err
        .cause()
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    let details = sfv::StringRef::from_str(&printable).ok()?;
    ser.bare_item(name)
        .parameter(sfv::KeyRef::constant("error"), error)
        .parameter(sfv::KeyRef::constant("details"), details);
    HeaderValue::from_str(&ser.finish()?).ok()
}

/// Escapes text for HTML element content and attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The error response for `err` while fetching `url`, generated by proxy `hostname`, with
/// full details and no custom pages (forward ports' default).
pub fn error_response(err: &Error, url: &str, hostname: &str) -> Response<ProxyBody> {
    error_response_with(
        err,
        url,
        hostname,
        ErrorDetails::Full,
        &ErrorPages::default(),
    )
}

/// The error response for `err` while fetching `url`, generated by proxy `hostname`, telling
/// what `details` allows, or the operator's page for its status from `pages`.
pub fn error_response_with(
    err: &Error,
    url: &str,
    hostname: &str,
    details: ErrorDetails,
    pages: &ErrorPages,
) -> Response<ProxyBody> {
    let status = status_for(err.kind());
    let reason = status.canonical_reason().unwrap_or("Error");
    let page = if let Some(custom) = pages.get(status) {
        custom.clone()
    } else if details == ErrorDetails::Minimal {
        Bytes::from(format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\n\
             <body>\n<h1>{code} {reason}</h1>\n</body></html>\n",
            code = status.as_u16(),
        ))
    } else {
        Bytes::from(full_page(err, url, hostname, status, reason))
    };
    let mut response = Response::new(ProxyBody::full(page));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(value) = proxy_status(hostname, err, details) {
        headers.insert(http::HeaderName::from_static("proxy-status"), value);
    }
    response
}

/// The `full` page: what failed, for which URL, and by which proxy.
fn full_page(err: &Error, url: &str, hostname: &str, status: StatusCode, reason: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ERROR: {code} {reason}</title></head>\n\
         <body>\n<h1>ERROR</h1>\n<h2>The requested URL could not be retrieved</h2>\n\
         <p>While trying to retrieve the URL: <a href=\"{url}\">{url}</a></p>\n\
         <p>The following error was encountered: <strong>{cause}</strong> ({kind})</p>\n\
         <hr>\n<address>Generated by {host} (cuttle/{version})</address>\n</body></html>\n",
        code = status.as_u16(),
        url = escape_html(url),
        cause = escape_html(err.cause()),
        kind = err.kind().as_str(),
        host = escape_html(hostname),
        version = env!("CARGO_PKG_VERSION"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn every_kind_has_the_documented_status() {
        let cases = [
            (ErrorKind::InvalidRequest, 400),
            (ErrorKind::UriTooLong, 414),
            (ErrorKind::HeaderTooLarge, 431),
            (ErrorKind::AccessDenied, 403),
            (ErrorKind::ProxyAuthRequired, 407),
            (ErrorKind::ForwardingLoop, 403),
            (ErrorKind::DnsFailed, 503),
            (ErrorKind::ConnectFailed, 503),
            (ErrorKind::ConnectTimeout, 504),
            (ErrorKind::ReadTimeout, 504),
            (ErrorKind::InvalidResponse, 502),
            (ErrorKind::TlsProtocol, 502),
            (ErrorKind::TlsCertificate, 502),
            (ErrorKind::NotInCache, 504),
            (ErrorKind::MustRevalidate, 504),
            (ErrorKind::UnknownSite, 421),
            (ErrorKind::NotImplemented, 501),
            (ErrorKind::NoUpstream, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in cases {
            assert_eq!(status_for(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn tls_failures_have_their_rfc_9209_error_types() {
        assert_eq!(
            proxy_status_error(ErrorKind::TlsProtocol),
            "tls_protocol_error"
        );
        assert_eq!(
            proxy_status_error(ErrorKind::TlsCertificate),
            "tls_certificate_error"
        );
        let err = Error::new(ErrorKind::TlsCertificate, "unknown issuer");
        let response = error_response(&err, "https://h/", "proxy1");
        assert_eq!(response.status(), 502);
        assert_eq!(
            response.headers()["proxy-status"],
            "proxy1;error=tls_certificate_error;details=\"unknown issuer\""
        );
    }

    #[tokio::test]
    async fn page_names_cause_and_url_escaped_and_proxy_status_is_structured() {
        let err = Error::new(ErrorKind::InvalidResponse, "garbage <status> line");
        let response = error_response(&err, "http://h/<x>", "proxy1");
        assert_eq!(response.status(), 502);
        assert_eq!(
            response.headers()["proxy-status"],
            "proxy1;error=http_protocol_error;details=\"garbage <status> line\""
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let page = std::str::from_utf8(&body).unwrap();
        assert!(page.contains("garbage &lt;status&gt; line"), "{page}");
        assert!(page.contains("http://h/&lt;x&gt;"), "{page}");
        assert!(page.contains("ERR_INVALID_RESP"), "{page}");
    }
}
