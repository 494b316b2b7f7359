//! The request path as an origin will resolve it, so that reverse-mode routing by path prefix
//! cannot be escaped with dot segments.
//!
//! A site with `path_prefix = "/public/"` must never forward `/public/../admin`, which the
//! origin serves as `/admin`. Before routing, dot segments are removed as RFC 3986 §5.2.4 says,
//! with percent-encoded dots decoded first (`%2E` is an unreserved `.`, §2.3 and §6.2.2.2, so
//! `/%2e%2e/` is a `..` segment); the normalised path is what is routed, keyed and forwarded.
//! A segment that is a dot segment only to *some* origins is refused instead (400): `..` glued
//! to an encoded slash or backslash (`..%2F`, `..%5C`, `..\`), which servers that decode them
//! resolve as a parent step, and `..;x` (Tomcat and others drop `;` parameters). Pure.

use std::borrow::Cow;

/// A path that different origins would resolve differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ambiguous dot segment in the request path")]
pub struct AmbiguousPath;

/// `path` with its dot segments removed (RFC 3986 §5.2.4); borrowed when nothing changes.
pub fn normalise(path: &str) -> Result<Cow<'_, str>, AmbiguousPath> {
    // Fast path: no dot, no escape and no backslash means no dot segment of any kind.
    if !path.bytes().any(|b| matches!(b, b'.' | b'%' | b'\\')) {
        return Ok(Cow::Borrowed(path));
    }
    let Some(rest) = path.strip_prefix('/') else {
        // Not origin-form (`*`, or empty): nothing to resolve against.
        return Ok(Cow::Borrowed(path));
    };
    let mut out: Vec<&str> = Vec::new();
    let mut changed = false;
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match dots(segment) {
            Some(Dots::One) => {
                changed = true;
                if last {
                    out.push("");
                }
            }
            Some(Dots::Two) => {
                changed = true;
                out.pop();
                if last {
                    out.push("");
                }
            }
            None => {
                if hides_dot_segment(segment) {
                    return Err(AmbiguousPath);
                }
                out.push(segment);
            }
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(path));
    }
    let mut normal = String::with_capacity(path.len());
    for segment in &out {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dots {
    One,
    Two,
}

/// Whether `segment` is `.` or `..`, each dot possibly written `%2E` / `%2e`.
fn dots(segment: &str) -> Option<Dots> {
    let mut count = 0;
    let mut rest = segment;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            rest = after;
        } else if rest.len() >= 3 && rest.get(..3).is_some_and(|e| e.eq_ignore_ascii_case("%2e")) {
            rest = rest.get(3..).unwrap_or("");
        } else {
            return None;
        }
        count += 1;
        if count > 2 {
            return None;
        }
    }
    match count {
        1 => Some(Dots::One),
        2 => Some(Dots::Two),
        _ => None,
    }
}

/// Whether `segment` holds a `..` once an encoded slash or backslash, a raw backslash, or a
/// `;` parameter is taken as some origins take it.
fn hides_dot_segment(segment: &str) -> bool {
    if !segment.contains('.') && !segment.contains('%') {
        return false;
    }
    let lower = segment.to_ascii_lowercase();
    lower
        .split(['\\', '/'])
        .flat_map(|piece| piece.split("%2f"))
        .flat_map(|piece| piece.split("%5c"))
        .map(|piece| piece.split(';').next().unwrap_or(""))
        .any(|piece| dots(piece) == Some(Dots::Two))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, AmbiguousPath> {
        normalise(path).map(Cow::into_owned)
    }

    #[test]
    fn rfc3986_remove_dot_segments_examples() {
        // RFC 3986 §5.2.4's own examples, and §5.4's.
        assert_eq!(norm("/a/b/c/./../../g").unwrap(), "/a/g");
        assert_eq!(norm("/mid/content=5/../6").unwrap(), "/mid/6");
        assert_eq!(norm("/b/c/.").unwrap(), "/b/c/");
        assert_eq!(norm("/b/c/..").unwrap(), "/b/");
        assert_eq!(norm("/../g").unwrap(), "/g");
        assert_eq!(norm("/..").unwrap(), "/");
        assert_eq!(norm("/./g/.").unwrap(), "/g/");
        assert_eq!(norm("/g.").unwrap(), "/g.");
        assert_eq!(norm("/..g").unwrap(), "/..g");
        assert_eq!(norm("/g..").unwrap(), "/g..");
    }

    #[test]
    fn percent_encoded_dots_are_dots() {
        for path in [
            "/public/%2e%2e/admin",
            "/public/%2E%2E/admin",
            "/public/.%2e/admin",
            "/public/%2e./admin",
        ] {
            assert_eq!(norm(path).unwrap(), "/admin", "{path}");
        }
        assert_eq!(norm("/public/%2e/x").unwrap(), "/public/x");
        assert_eq!(norm("/file%2ehtml").unwrap(), "/file%2ehtml");
        assert_eq!(norm("/a/%2e%2e%2e/b").unwrap(), "/a/%2e%2e%2e/b");
    }

    #[test]
    fn unchanged_paths_are_borrowed() {
        for path in ["/", "/a/b", "/a//b/", "/a%20b/c.html", "*", "/v1.2/x"] {
            assert!(
                matches!(normalise(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn dot_segments_some_origins_see_are_refused() {
        for path in [
            "/public/..%2Fadmin",
            "/public/..%2fadmin",
            "/public/%2e%2e%2Fadmin",
            "/public/..%5Cadmin",
            "/public/..\\admin",
            "/public/..;/admin",
            "/public/%2e%2e;jsessionid=1/admin",
            "/public/x%2F..%2F..%2Fadmin",
        ] {
            assert_eq!(norm(path), Err(AmbiguousPath), "{path}");
        }
        // Encoded slashes and parameters without a parent step are fine.
        assert_eq!(
            norm("/api/group%2Fproject").unwrap(),
            "/api/group%2Fproject"
        );
        assert_eq!(norm("/a;v=1/b").unwrap(), "/a;v=1/b");
    }
}
