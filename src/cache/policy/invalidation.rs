//! Which stored responses an unsafe request invalidates (RFC 9111 §4.4).
//!
//! The proxy calls this after forwarding a non-GET/HEAD request and receiving
//! the origin's answer; every returned URI's entries are removed (or marked
//! invalid). Location / Content-Location are only honoured on the same origin
//! as the target, which stops one site from flushing another's entries.

use crate::cache::key::{origin, primary_key};
use crate::cache::policy::fields::single_value;
use http::header::{HeaderMap, HeaderName, CONTENT_LOCATION, LOCATION};
use http::{Method, StatusCode, Uri};

/// RFC 9110 §9.2.1 safe methods: GET, HEAD, OPTIONS and TRACE.
pub fn is_safe_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// URIs whose stored responses must be invalidated after this exchange.
///
/// §4.4: "A cache MUST invalidate the target URI ... when it receives a
/// non-error status code in response to an unsafe request method (including
/// methods whose safety is unknown)", may invalidate Location and
/// Content-Location, but "MUST NOT trigger an invalidation under these
/// conditions if the origin ... of the URI to be invalidated differs from that
/// of the target URI". "A "non-error response" is one with a 2xx (Successful)
/// or 3xx (Redirection) status code." Returns nothing for a non-absolute target.
pub fn invalidation_targets(
    method: &Method,
    status: StatusCode,
    effective_uri: &Uri,
    resp_headers: &HeaderMap,
) -> Vec<Uri> {
    if is_safe_method(method) || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let Some(target_origin) = origin(effective_uri) else {
        return Vec::new();
    };
    let mut out = vec![effective_uri.clone()];
    let mut keys: Vec<String> = primary_key(effective_uri).into_iter().collect();
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(candidate) = header_uri(resp_headers, &name, effective_uri) else {
            continue;
        };
        if origin(&candidate).as_ref() != Some(&target_origin) {
            continue;
        }
        if let Some(k) = primary_key(&candidate) {
            if !keys.contains(&k) {
                keys.push(k);
                out.push(candidate);
            }
        }
    }
    out
}

fn header_uri(headers: &HeaderMap, name: &HeaderName, base: &Uri) -> Option<Uri> {
    let value = single_value(headers, name)?;
    resolve_reference(base, &value)
}

/// Resolves a URI reference against an absolute base (RFC 3986 §5.2, no fragment).
pub fn resolve_reference(base: &Uri, reference: &str) -> Option<Uri> {
    let reference = reference.split('#').next().unwrap_or_default().trim();
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    if has_scheme(reference) {
        return reference.parse().ok();
    }
    let resolved = if let Some(rest) = reference.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if reference.starts_with('/') {
        let (path, query) = split_query(reference);
        format!("{scheme}://{authority}{}{query}", remove_dot_segments(path))
    } else if reference.is_empty() {
        return Some(base.clone());
    } else if let Some(q) = reference.strip_prefix('?') {
        format!("{scheme}://{authority}{}?{q}", base.path())
    } else {
        let (path, query) = split_query(reference);
        let base_path = base.path();
        let dir = base_path
            .rfind('/')
            .and_then(|i| base_path.get(..=i))
            .unwrap_or("/");
        let merged = format!("{dir}{path}");
        format!(
            "{scheme}://{authority}{}{query}",
            remove_dot_segments(&merged)
        )
    };
    resolved.parse().ok()
}

fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

fn split_query(s: &str) -> (&str, &str) {
    match s.find('?') {
        Some(i) => (s.get(..i).unwrap_or(s), s.get(i..).unwrap_or("")),
        None => (s, ""),
    }
}

/// RFC 3986 §5.2.4 remove_dot_segments, on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn targets(method: Method, status: u16, uri: &str, h: &HeaderMap) -> Vec<String> {
        invalidation_targets(
            &method,
            StatusCode::from_u16(status).unwrap(),
            &uri.parse().unwrap(),
            h,
        )
        .iter()
        .map(|u| u.to_string())
        .collect()
    }

    #[test]
    fn safe_methods_never_invalidate() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(targets(m, 200, "http://a.com/x", &hm(&[])).is_empty());
        }
    }

    #[test]
    fn unsafe_method_with_success_invalidates_target() {
        assert_eq!(
            targets(Method::POST, 200, "http://a.com/x", &hm(&[])),
            vec!["http://a.com/x"]
        );
        assert_eq!(
            targets(Method::DELETE, 204, "http://a.com/x", &hm(&[])).len(),
            1
        );
    }

    #[test]
    fn unknown_method_is_treated_as_unsafe() {
        let m = Method::from_bytes(b"FROB").unwrap();
        assert_eq!(targets(m, 303, "http://a.com/x", &hm(&[])).len(), 1);
    }

    #[test]
    fn error_status_does_not_invalidate() {
        assert!(targets(Method::PUT, 404, "http://a.com/x", &hm(&[])).is_empty());
        assert!(targets(Method::PUT, 500, "http://a.com/x", &hm(&[])).is_empty());
        assert!(targets(Method::PUT, 100, "http://a.com/x", &hm(&[])).is_empty());
    }

    #[test]
    fn same_origin_location_and_content_location_are_invalidated() {
        let h = hm(&[
            ("location", "/new"),
            ("content-location", "http://A.com:80/cl"),
        ]);
        assert_eq!(
            targets(Method::POST, 201, "http://a.com/x", &h),
            vec!["http://a.com/x", "http://a.com/new", "http://A.com:80/cl"]
        );
    }

    #[test]
    fn cross_origin_location_is_not_invalidated() {
        let h = hm(&[
            ("location", "http://evil.com/x"),
            ("content-location", "https://a.com/x"),
        ]);
        assert_eq!(
            targets(Method::POST, 200, "http://a.com/x", &h),
            vec!["http://a.com/x"]
        );
        let h = hm(&[("location", "http://a.com:8080/x")]);
        assert_eq!(targets(Method::POST, 200, "http://a.com/x", &h).len(), 1);
    }

    #[test]
    fn relative_location_resolves_against_target() {
        let h = hm(&[("location", "../c/d?q=1#frag")]);
        assert_eq!(
            targets(Method::PUT, 200, "http://a.com/p/q/r", &h),
            vec!["http://a.com/p/q/r", "http://a.com/p/c/d?q=1"]
        );
    }

    #[test]
    fn network_path_reference_keeps_scheme() {
        let base: Uri = "https://a.com/x".parse().unwrap();
        assert_eq!(
            resolve_reference(&base, "//b.com/y").unwrap().to_string(),
            "https://b.com/y"
        );
        assert_eq!(
            resolve_reference(&base, "?z").unwrap().to_string(),
            "https://a.com/x?z"
        );
        assert_eq!(
            resolve_reference(&base, "./").unwrap().to_string(),
            "https://a.com/"
        );
    }

    #[test]
    fn duplicate_targets_are_reported_once() {
        let h = hm(&[
            ("location", "http://a.com:80/x"),
            ("content-location", "/x"),
        ]);
        assert_eq!(targets(Method::POST, 200, "http://a.com/x", &h).len(), 1);
    }

    #[test]
    fn non_absolute_target_yields_nothing() {
        assert!(targets(Method::POST, 200, "/x", &hm(&[])).is_empty());
    }
}
