//! Reverse mode (an accelerator, Squid `http_port ... accel`): map a request's Host (and path)
//! to a configured site, and the site to an upstream group.
//!
//! The path is routed after its dot segments are resolved (`target_path`), so `/public/../x`
//! is routed, keyed and forwarded as `/x`. Only configured sites are served: an unknown Host gets 421 Misdirected Request (RFC 9110
//! §15.5.20) and never reaches any upstream, so an accelerator port cannot be used as an open
//! proxy. The request keeps its Host by default; its effective URI (`http://host/path`, or
//! `https://...` on a TLS port) is the cache key, so the cache works unchanged in this mode and
//! keeps the http and https variants of a page apart.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};

use super::authorize::Requester;
use super::body::ProxyBody;
use super::caching;
use super::client_body::ClientBody;
use super::headers::{self, MaxForwards};
use super::next_hop::{HostHeader, Target};
use super::request::{check_access, check_loop, finish, ConnInfo};
use super::target_path;
use super::transaction::Transaction;
use super::upgrade;
use super::Shared;
use crate::error::{Error, ErrorKind};

/// A host name pattern of a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Any host.
    Any,
    /// Exactly this name (lower case).
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com` (stored as the suffix with its dot).
    Suffix(String),
}

impl HostPattern {
    /// Parses `*`, `*.suffix` or a name.
    pub fn parse(text: &str) -> Self {
        let text = text.trim().trim_end_matches('.').to_ascii_lowercase();
        if text == "*" {
            Self::Any
        } else if let Some(suffix) = text.strip_prefix('*') {
            Self::Suffix(suffix.to_owned())
        } else {
            Self::Exact(text)
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(name) => host == name,
            Self::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

/// One accelerated site.
#[derive(Debug, Clone)]
pub struct Site {
    /// The site's name in metrics: its first host as written, then its path prefix if not `/`.
    pub name: String,
    pub hosts: Vec<HostPattern>,
    pub path_prefix: String,
    /// Name of the upstream group.
    pub upstream: String,
    pub host_header: HostHeader,
}

/// Reverse-mode settings.
#[derive(Debug, Clone, Default)]
pub struct ReverseConfig {
    /// Checked in order; the first site whose host and path prefix match serves the request.
    pub sites: Vec<Site>,
    pub x_forwarded_proto: bool,
    pub forwarded: bool,
    /// Clients whose forwarding fields are trusted and appended to (`trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Protocols a client may switch to (`http_upgrade_request_protocols`; `proxy::upgrade`).
    pub upgrade_protocols: Vec<String>,
}

/// The first site for `host` and `path`, with its index in `sites`.
pub fn find_site<'a>(sites: &'a [Site], host: &str, path: &str) -> Option<(usize, &'a Site)> {
    sites.iter().enumerate().find(|(_, site)| {
        site.hosts.iter().any(|p| p.matches(host)) && path.starts_with(&site.path_prefix)
    })
}

/// Handles one request on a reverse port; `host` is its Host field, already parsed (and
/// checked) by `service`.
pub async fn handle(
    req: Request<ClientBody>,
    host: Option<Authority>,
    conn: &ConnInfo,
    shared: &Arc<Shared>,
    mut txn: Box<Transaction>,
) -> Response<ProxyBody> {
    txn.mode = super::Mode::Reverse;
    let result = route(req, host, conn, shared, &mut txn).await;
    finish(txn, result, shared)
}

async fn route(
    req: Request<ClientBody>,
    host: Option<Authority>,
    conn: &ConnInfo,
    shared: &Arc<Shared>,
    txn: &mut Transaction,
) -> Result<Response<ProxyBody>, Error> {
    let (mut parts, body) = req.into_parts();
    let authority = request_authority(&parts, host)?;
    resolve_dot_segments(&mut parts.uri)?;
    let host = crate::cache::policy::key::host_of(authority.as_str()).trim_end_matches('.');
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    };
    let (index, site) = find_site(&shared.config.reverse.sites, &host, parts.uri.path())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownSite,
                format!("no site is configured for host `{host}` on this accelerator port"),
            )
        })?;
    txn.site = Some(index);
    let group = shared
        .site_groups
        .get(index)
        .cloned()
        .flatten()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("upstream group `{}` is missing", site.upstream),
            )
        })?;
    check_loop(shared, &parts.headers)?;
    // url_regex sees the absolute URL, as Squid rebuilds it for an accelerated request.
    let absolute = shared.access.needs_url().then(|| {
        let scheme = if conn.tls { "https" } else { "http" };
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        format!("{scheme}://{authority}{target}")
    });
    let who = Requester::new(
        shared,
        conn.mode,
        conn.peer.ip(),
        absolute.as_deref().unwrap_or(&txn.url),
        &parts.uri,
        &parts.headers,
    );
    check_access(
        shared,
        conn.peer,
        &parts.method,
        &host,
        conn.local.port(),
        who.facts,
    )?;
    match headers::max_forwards(&parts.method, &parts.headers) {
        // RFC 9110 §7.6.2: "If the received value is zero (0), the recipient MUST NOT forward
        // the request; instead, the recipient MUST respond as the final recipient."
        MaxForwards::Respond => return Ok(super::forward::answer_as_final_recipient(&parts)),
        MaxForwards::Forward => {}
        MaxForwards::Decrement(n) => {
            parts
                .headers
                .insert(header::MAX_FORWARDS, HeaderValue::from(n));
        }
    }
    let upgrade = upgrade::requested(
        parts.version,
        &parts.headers,
        &shared.config.reverse.upgrade_protocols,
    );
    headers::strip_request(
        &mut parts.headers,
        shared.config.forward.pass_proxy_authorization,
    );
    if parts.version == http::Version::HTTP_2 {
        headers::join_cookies(&mut parts.headers);
    }

    // The effective request URI (RFC 9110 §7.1) keys the cache, as in forward mode. Its scheme is
    // the one the client used: "https" if the request was received over a secured connection
    // (§7.1 names the scheme by the connection, not by any header).
    let scheme = if conn.tls {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // The log's URL, written out directly rather than through `Uri`'s Display.
    let mut url = String::with_capacity(
        scheme.as_str().len() + 3 + authority.as_str().len() + path_and_query.as_str().len(),
    );
    url.push_str(scheme.as_str());
    url.push_str("://");
    url.push_str(authority.as_str());
    url.push_str(path_and_query.as_str());
    parts.uri = Uri::builder()
        .scheme(scheme)
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("bad request target: {e}"),
            )
        })?;
    txn.url = url;
    let target = Target::Group {
        group,
        host_header: site.host_header.clone(),
        client_host: authority,
        client_tls: conn.tls,
    };
    if let upgrade::Requested::Allowed(offer) = upgrade {
        return upgrade::handle(conn, shared, txn, parts, body, target, offer).await;
    }
    caching::handle(conn, shared, txn, parts, body, target).await
}

/// Removes dot segments from the request path before it is routed, keyed or forwarded, so a
/// site's `path_prefix` cannot be escaped (`proxy::target_path`); ambiguous ones are a 400.
fn resolve_dot_segments(uri: &mut Uri) -> Result<(), Error> {
    let normal = match target_path::normalise(uri.path()) {
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(()),
        Ok(std::borrow::Cow::Owned(normal)) => normal,
        Err(e) => return Err(Error::new(ErrorKind::InvalidRequest, e.to_string())),
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{normal}?{query}"),
        None => normal,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(path_and_query)
            .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("bad path: {e}")))?,
    );
    *uri = Uri::from_parts(parts)
        .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("bad path: {e}")))?;
    Ok(())
}

/// The authority a request is for: the absolute-form target's, else the Host field's.
///
/// Userinfo is refused (400): RFC 9110 §7.2 defines Host as `uri-host [ ":" port ]`, and §4.2.4
/// says a recipient SHOULD treat userinfo in an http URI as an error. Accepting it would route
/// and key `evil.example@site.example` as `site.example` while the upstream saw the whole
/// string as its Host.
fn request_authority(
    parts: &http::request::Parts,
    host: Option<Authority>,
) -> Result<Authority, Error> {
    let authority = match (parts.uri.authority(), host) {
        (Some(authority), _) => authority.clone(),
        (None, Some(host)) => host,
        (None, None) => {
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Error::new(ErrorKind::InvalidRequest, "the request has no Host"))?;
            host.parse::<Authority>().map_err(|_| {
                Error::new(ErrorKind::InvalidRequest, format!("invalid Host `{host}`"))
            })?
        }
    };
    if authority.as_str().contains('@') {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "invalid Host: user information is not allowed in a Host",
        ));
    }
    Ok(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(hosts: &[&str], prefix: &str, upstream: &str) -> Site {
        Site {
            name: hosts.first().copied().unwrap_or("*").to_owned(),
            hosts: hosts.iter().map(|h| HostPattern::parse(h)).collect(),
            path_prefix: prefix.to_owned(),
            upstream: upstream.to_owned(),
            host_header: HostHeader::Preserve,
        }
    }

    #[test]
    fn sites_match_exact_suffix_any_and_path_prefix_in_order() {
        let sites = vec![
            site(&["www.example.com"], "/api/", "api"),
            site(&["www.example.com", "*.example.org"], "/", "web"),
            site(&["*"], "/", "fallback"),
        ];
        let pick = |h: &str, p: &str| find_site(&sites, h, p).map(|(_, s)| s.upstream.as_str());
        assert_eq!(pick("www.example.com", "/api/v1"), Some("api"));
        assert_eq!(pick("www.example.com", "/index"), Some("web"));
        assert_eq!(pick("cdn.example.org", "/x"), Some("web"));
        assert_eq!(
            pick("example.org", "/x"),
            Some("fallback"),
            "*.example.org needs a label"
        );
        let strict = &sites[..2];
        assert!(find_site(strict, "evil.test", "/").is_none());
    }
}
