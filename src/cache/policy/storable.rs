//! May a shared cache store this response? (RFC 9111 §3, §3.1, §3.3, §3.5.)
//!
//! The proxy asks this once per upstream response, before teeing the body into
//! storage. The answer is a typed reason so that logs and `Cache-Status:
//! detail=` can say *why* something was not stored.
//!
//! Choice: responses carrying `Vary: *` are refused ("vary-star"). RFC 9111
//! §4.1 says such a response "always fails to match", so storing it would only
//! waste space.

use super::cache_control::{RequestDirectives, ResponseDirectives};
use super::freshness::is_heuristically_cacheable;
use crate::cache::key::{vary_fields, VarySpec};
use http::header::{
    HeaderMap, HeaderName, AUTHORIZATION, CONNECTION, EXPIRES, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, StatusCode};

use super::fields::{field_lines, split_list};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const PROXY_AUTHENTICATION_INFO: HeaderName = HeaderName::from_static("proxy-authentication-info");

/// Everything [`check_storable`] looks at for one request/response pair.
#[derive(Debug, Clone, Copy)]
pub struct StoreInput<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request header fields (only `Authorization` is consulted).
    pub request_headers: &'a HeaderMap,
    /// Parsed request Cache-Control.
    pub request: &'a RequestDirectives,
    /// Response status.
    pub status: StatusCode,
    /// Response header fields.
    pub response_headers: &'a HeaderMap,
    /// Effective response directives (Cache-Control or targeted field).
    pub response: &'a ResponseDirectives,
    /// Declared body length, if known.
    pub content_length: Option<u64>,
    /// Largest object this cache will store.
    pub max_object_size: u64,
    /// Whether the whole body was (or will be) received.
    pub complete: bool,
    /// Whether the store supports partial (206 / incomplete 200) entries (§3.3).
    pub allow_partial: bool,
    /// A configured rule (`negative_ttl`, `refresh_pattern ... store-stale`) lets this response
    /// be stored without any of §3's freshness conditions.
    pub extra_permission: bool,
}

/// Why a response was not stored; `as_str` gives the log / Cache-Status token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// Method other than GET/HEAD.
    Method,
    /// Non-final, 304, or not-understood status (with must-understand).
    Status,
    /// 206 while partial storage is not supported.
    Partial,
    /// Incomplete body while partial storage is not supported.
    Incomplete,
    /// `no-store` in the request or response.
    NoStore,
    /// Unqualified `private`.
    Private,
    /// Request had `Authorization` and nothing allows shared caching.
    Authorization,
    /// `Vary: *` can never be reused.
    VaryStar,
    /// Nothing in §3's final list (explicit freshness, public, heuristic status).
    NoFreshnessInfo,
    /// Content-Length above the configured maximum.
    TooLarge,
}

impl NotStorable {
    /// Short kebab-case reason for logs and `Cache-Status; detail=`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::Status => "status",
            NotStorable::Partial => "partial",
            NotStorable::Incomplete => "incomplete",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::VaryStar => "vary-star",
            NotStorable::NoFreshnessInfo => "no-freshness-info",
            NotStorable::TooLarge => "too-large",
        }
    }
}

impl std::fmt::Display for NotStorable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status codes whose caching semantics this cache implements (§3 "understood").
pub fn status_understood(status: StatusCode, allow_partial: bool) -> bool {
    match status.as_u16() {
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 451 | 501 => {
            true
        }
        206 => allow_partial,
        _ => false,
    }
}

/// Applies RFC 9111 §3 for a shared cache; Ok means "may store".
pub fn check_storable(input: &StoreInput<'_>) -> Result<(), NotStorable> {
    let resp = input.response;
    // §3: "the request method is understood by the cache" — we key GET/HEAD only.
    if *input.method != Method::GET && *input.method != Method::HEAD {
        return Err(NotStorable::Method);
    }
    // §3: "the response status code is final"; a 304 is never stored itself,
    // it only freshens a stored response (§4.3.4).
    let status = input.status;
    if status.is_informational() || status == StatusCode::NOT_MODIFIED {
        return Err(NotStorable::Status);
    }
    let understood = status_understood(status, input.allow_partial);
    // §3: "if the response status code is 206 or 304, or the must-understand
    // cache directive is present: the cache understands the response status code".
    if status == StatusCode::PARTIAL_CONTENT && !input.allow_partial {
        return Err(NotStorable::Partial);
    }
    if resp.must_understand && !understood {
        return Err(NotStorable::Status);
    }
    // §3.3: an incomplete response may be stored only for GET 200 (or as a 206)
    // and only by a cache that supports Range/Content-Range.
    if !input.complete {
        let partial_ok = input.allow_partial
            && *input.method == Method::GET
            && (status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT);
        if !partial_ok {
            return Err(NotStorable::Incomplete);
        }
    }
    // §5.2.1.5: request no-store: "MUST NOT store any part of either this
    // request or any response to it".
    if input.request.no_store {
        return Err(NotStorable::NoStore);
    }
    // §5.2.2.3: "the cache SHOULD ignore the no-store directive if it
    // understands and implements the status code's caching requirements".
    if resp.no_store && !(resp.must_understand && understood) {
        return Err(NotStorable::NoStore);
    }
    // §5.2.2.7: "The unqualified private response directive indicates that a
    // shared cache MUST NOT store the response".
    if resp.private.as_ref().is_some_and(|p| p.is_unqualified()) {
        return Err(NotStorable::Private);
    }
    // §3.5: "must-revalidate ..., public ..., and s-maxage" allow shared
    // caching of responses to requests with Authorization.
    if input.request_headers.contains_key(AUTHORIZATION)
        && !(resp.public || resp.s_maxage.is_some() || resp.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    if vary_fields(input.response_headers) == VarySpec::Star {
        return Err(NotStorable::VaryStar);
    }
    if !input.extra_permission && !has_storage_permission(status, input.response_headers, resp) {
        return Err(NotStorable::NoFreshnessInfo);
    }
    if *input.method == Method::GET
        && input
            .content_length
            .is_some_and(|len| len > input.max_object_size)
    {
        return Err(NotStorable::TooLarge);
    }
    Ok(())
}

/// §3's final bullet: "the response contains at least one of the following".
fn has_storage_permission(status: StatusCode, headers: &HeaderMap, d: &ResponseDirectives) -> bool {
    // RFC 9213 §2.2: with a targeted field in use, Expires is ignored.
    let expires = !d.targeted && headers.contains_key(EXPIRES);
    d.public
        || expires
        || d.max_age.is_some()
        || d.s_maxage.is_some()
        || is_heuristically_cacheable(status)
}

/// Field names a shared cache must drop before storing: qualified `private` (§5.2.2.7).
///
/// Qualified `no-cache` fields are *not* stripped here: they may be stored
/// but need validation (or removal) before reuse (§5.2.2.4).
pub fn fields_to_strip(directives: &ResponseDirectives) -> Vec<HeaderName> {
    directives
        .private
        .iter()
        .flat_map(|p| p.0.iter())
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect()
}

/// Every field §3.1 excludes from storage, plus qualified `private` fields.
///
/// Covers the Connection field and the options it lists, the usual hop-by-hop
/// fields (RFC 9110 §7.6.1), and the proxy-specific authentication fields
/// ("Proxy-Authenticate ..., Proxy-Authentication-Info ..., and Proxy-Authorization").
pub fn storage_excluded_fields(
    headers: &HeaderMap,
    directives: &ResponseDirectives,
) -> Vec<HeaderName> {
    let mut out = vec![
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
        PROXY_AUTHENTICATE,
        PROXY_AUTHENTICATION_INFO,
        PROXY_AUTHORIZATION,
    ];
    for line in field_lines(headers, &CONNECTION) {
        for opt in split_list(&line) {
            if let Ok(name) = HeaderName::from_bytes(opt.as_bytes()) {
                out.push(name);
            }
        }
    }
    out.extend(fields_to_strip(directives));
    let mut dedup: Vec<HeaderName> = Vec::with_capacity(out.len());
    for n in out {
        if !dedup.contains(&n) {
            dedup.push(n);
        }
    }
    dedup
}

#[cfg(test)]
mod tests;
