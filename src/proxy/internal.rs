//! Requests for the proxy itself rather than for an origin, answered here and never forwarded.
//!
//! Squid answers its internal URLs, `/squid-internal-*` (a Squid child fetching a parent's
//! cache digest asks for `/squid-internal-periodic/store_digest`), itself: cuttle has no such
//! objects and answers 404, logged as Squid logs its own 404 for one (`TCP_MISS/404
//! HIER_NONE/-`). An absolute-form URL naming our own listening address (`http://127.0.0.1:3128/`
//! sent to the proxy on 127.0.0.1:3128) would otherwise be forwarded to ourselves, come back,
//! and only then be caught as a loop; it gets the same 404 at once.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};

use super::body::ProxyBody;
use super::headers::ViaIdentity;
use super::transaction::{code, Transaction};

/// Squid's prefix for its internal URLs.
const INTERNAL_PREFIX: &str = "/squid-internal-";

/// What a request for the proxy itself asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Internal {
    /// A Squid internal URL (`/squid-internal-*`).
    SquidInternal,
    /// Any other URL on our own address.
    Ourselves,
}

/// Whether a request on a forward port (`local` is the listening address it came in on) is for
/// the proxy itself: an origin-form `/squid-internal-*` target, or an absolute-form target
/// naming our address, our name or (on a loopback or wildcard listener) `localhost`, with our
/// port.
pub fn classify<B>(req: &Request<B>, local: SocketAddr, via: &ViaIdentity) -> Option<Internal> {
    let uri = req.uri();
    let internal = uri.path().starts_with(INTERNAL_PREFIX);
    match uri.scheme() {
        None => internal.then_some(Internal::SquidInternal),
        Some(_) if names_us(uri, local, via) => Some(if internal {
            Internal::SquidInternal
        } else {
            Internal::Ourselves
        }),
        Some(_) => None,
    }
}

/// `uri`'s authority is one of our names with our port.
fn names_us(uri: &Uri, local: SocketAddr, via: &ViaIdentity) -> bool {
    let Some(host) = uri.host() else {
        return false;
    };
    if uri.port_u16().unwrap_or(80) != local.port() {
        return false;
    }
    let ours = local.ip().to_canonical();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            let ip = ip.to_canonical();
            ip == ours || (ours.is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))
        }
        Err(_) => {
            let unique_host = via.unique().split(':').next().unwrap_or("");
            host.eq_ignore_ascii_case(via.pseudonym())
                || host.eq_ignore_ascii_case(unique_host)
                || (host.eq_ignore_ascii_case("localhost")
                    && (ours.is_loopback() || ours.is_unspecified()))
        }
    }
}

/// The 404 for a request for the proxy itself, noted on `txn` for the access log.
pub fn answer(what: Internal, txn: &mut Transaction) -> Response<ProxyBody> {
    let text = match what {
        Internal::SquidInternal => {
            "Not Found: this cache has no Squid internal objects (no cache digest).\n"
        }
        Internal::Ourselves => {
            "Not Found: this URL names the proxy itself; it is not forwarded. \
             Configure the proxy in your client and ask for the origin's URL instead.\n"
        }
    };
    let mut response = Response::new(ProxyBody::full(text));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    txn.code = code::TCP_MISS;
    txn.respond(&response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via() -> ViaIdentity {
        ViaIdentity::with_unique("proxy.example", "proxy.example:3128").unwrap()
    }

    fn req(target: &str) -> Request<()> {
        Request::builder().uri(target).body(()).unwrap()
    }

    #[test]
    fn squid_internal_paths_and_our_own_address_are_ours() {
        let local: SocketAddr = "127.0.0.1:3128".parse().unwrap();
        let via = via();
        for (target, expected) in [
            (
                "/squid-internal-periodic/store_digest",
                Some(Internal::SquidInternal),
            ),
            (
                "http://127.0.0.1:3128/squid-internal-periodic/store_digest",
                Some(Internal::SquidInternal),
            ),
            ("http://127.0.0.1:3128/", Some(Internal::Ourselves)),
            ("http://localhost:3128/x", Some(Internal::Ourselves)),
            ("http://PROXY.example:3128/x", Some(Internal::Ourselves)),
            ("http://127.0.0.1:3129/", None),
            ("http://127.0.0.2:3128/", None),
            ("http://origin.example/squid-internal-x", None),
            ("/index.html", None),
        ] {
            assert_eq!(classify(&req(target), local, &via), expected, "{target}");
        }
        let wildcard: SocketAddr = "0.0.0.0:3128".parse().unwrap();
        assert_eq!(
            classify(&req("http://127.0.0.1:3128/"), wildcard, &via),
            Some(Internal::Ourselves)
        );
        let v6: SocketAddr = "[::1]:3128".parse().unwrap();
        assert_eq!(
            classify(&req("http://[::1]:3128/"), v6, &via),
            Some(Internal::Ourselves)
        );
    }
}
