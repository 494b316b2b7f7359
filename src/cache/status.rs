//! Building this cache's `Cache-Status` member (RFC 9211).
//!
//! The field is a structured-field List; each cache on the path appends one member, "the last
//! member represents the cache closest to the user" (§2), so an upstream cache's members are kept
//! and ours goes last. Serialisation goes through `sfv`, so values are always well-formed.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The field name.
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why a request went forward (RFC 9211 §2.2), most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    Bypass,
    Method,
    UriMiss,
    VaryMiss,
    Miss,
    Request,
    Stale,
    Partial,
}

impl Fwd {
    /// The token for this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Method => "method",
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Miss => "miss",
            Self::Request => "request",
            Self::Stale => "stale",
            Self::Partial => "partial",
        }
    }
}

/// What this cache did with one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// Served from the cache without going forward (§2.1). Exclusive with `fwd`.
    pub hit: bool,
    /// Why the request went forward (§2.2).
    pub fwd: Option<Fwd>,
    /// The next hop's status when it differs from ours (§2.3), e.g. 304 on revalidation.
    pub fwd_status: Option<u16>,
    /// Remaining freshness in seconds; negative when stale (§2.4).
    pub ttl: Option<i64>,
    /// The response was stored (§2.5).
    pub stored: bool,
    /// This request waited for another one's response (§2.6): Some(true) if reused.
    pub collapsed: Option<bool>,
    /// Implementation detail (§2.8): a token like `memory` or `stale-while-revalidate`.
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    /// A hit.
    pub fn hit(ttl: i64, detail: &'static str) -> Self {
        Self {
            hit: true,
            ttl: Some(ttl),
            detail: Some(detail),
            ..Self::default()
        }
    }

    /// A forward for `fwd`.
    pub fn forward(fwd: Fwd) -> Self {
        Self {
            fwd: Some(fwd),
            ..Self::default()
        }
    }

    /// Renders our member, named `cache`.
    ///
    /// This runs on every response, so sfv serialises each *shape* of member once per thread
    /// (everything but the two Integers, `fwd-status` and `ttl`, which it renders as 0) and each
    /// response splices its numbers into that template, written the way sfv writes an Integer
    /// (RFC 9651 §4.1.4: optional `-`, then decimal digits).
    pub fn render(&self, cache: &str) -> Option<String> {
        let mut out = String::with_capacity(64);
        self.render_to(cache, &mut out).then_some(out)
    }

    /// [`render`](Self::render), appended to `out` (left as it was when it fails), so a
    /// caller can keep our member in a buffer it shares with other values.
    pub fn render_to(&self, cache: &str, out: &mut String) -> bool {
        let start = out.len();
        let done = render_from_template(self, cache, out).is_some();
        if !done {
            out.truncate(start);
        }
        done
    }

    /// Renders our member through sfv, field by field.
    fn render_with_sfv(&self, cache: &str) -> Option<String> {
        let mut list = sfv::ListSerializer::new();
        let name = sfv::TokenRef::from_str(cache).ok()?;
        let mut member = list.bare_item(name);
        if self.hit {
            member = member.parameter(sfv::KeyRef::constant("hit"), true);
        }
        if let Some(fwd) = self.fwd {
            member = member.parameter(
                sfv::KeyRef::constant("fwd"),
                sfv::TokenRef::constant(fwd.as_str()),
            );
        }
        if let Some(status) = self.fwd_status {
            member = member.parameter(
                sfv::KeyRef::constant("fwd-status"),
                sfv::Integer::constant(i64::from(status)),
            );
        }
        if let Some(ttl) = self.ttl {
            let ttl = sfv::Integer::try_from(ttl.clamp(-MAX_INTEGER, MAX_INTEGER)).ok()?;
            member = member.parameter(sfv::KeyRef::constant("ttl"), ttl);
        }
        if self.stored {
            member = member.parameter(sfv::KeyRef::constant("stored"), true);
        }
        if let Some(collapsed) = self.collapsed {
            member = member.parameter(sfv::KeyRef::constant("collapsed"), collapsed);
        }
        if let Some(detail) = self.detail {
            if let Ok(token) = sfv::TokenRef::from_str(detail) {
                let _ = member.parameter(sfv::KeyRef::constant("detail"), token);
            }
        }
        list.finish()
    }

    /// Appends our member to `headers`' `Cache-Status`, keeping upstream caches' members first.
    /// One lookup of the field both finds theirs and places ours.
    pub fn append_to(&self, headers: &mut HeaderMap, cache: &str) {
        use http::header::Entry;
        let Some(ours) = self.render(cache) else {
            return;
        };
        match headers.entry(&CACHE_STATUS) {
            Entry::Vacant(entry) => {
                // The usual case: ours is the only member; hand over the rendered bytes as
                // they are.
                if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(ours)) {
                    entry.insert(value);
                }
            }
            Entry::Occupied(mut entry) => {
                let mut joined = String::new();
                for theirs in entry
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter(|v| !v.trim().is_empty())
                {
                    joined.push_str(theirs);
                    joined.push_str(", ");
                }
                let value = if joined.is_empty() {
                    HeaderValue::from_maybe_shared(bytes::Bytes::from(ours))
                } else {
                    joined.push_str(&ours);
                    HeaderValue::from_str(&joined)
                };
                if let Ok(value) = value {
                    entry.insert(value);
                }
            }
        }
    }
}

/// The largest magnitude an sfv Integer may have (RFC 9651 §3.3.1: at most 15 digits).
const MAX_INTEGER: i64 = 999_999_999_999_999;

/// Our member from its shape's template; see [`CacheStatus::render`].
fn render_from_template(status: &CacheStatus, cache: &str, out: &mut String) -> Option<()> {
    use std::cell::RefCell;
    /// (cache name, shape) -> the shape rendered by sfv, cut where its numbers go.
    type Templates = Vec<(String, CacheStatus, Vec<String>)>;
    thread_local! {
        static TEMPLATES: RefCell<Templates> = const { RefCell::new(Vec::new()) };
    }
    // sfv writes parameters in the order they were added: fwd-status before ttl.
    let numbers = [status.fwd_status.map(i64::from), status.ttl];
    let shape = CacheStatus {
        fwd_status: status.fwd_status.map(|_| 0),
        ttl: status.ttl.map(|_| 0),
        ..status.clone()
    };
    TEMPLATES.with(|cell| {
        let mut templates = cell.borrow_mut();
        let found = templates
            .iter()
            .position(|(name, s, _)| *s == shape && name == cache);
        let index = match found {
            Some(index) => index,
            None => {
                let pieces = template_pieces(&shape.render_with_sfv(cache)?, &shape)?;
                // Bounded: a few dozen shapes exist (hit/forward reasons × flags × details).
                if templates.len() >= 64 {
                    templates.clear();
                }
                templates.push((cache.to_owned(), shape, pieces));
                templates.len() - 1
            }
        };
        let (_, _, pieces) = templates.get(index)?;
        let mut pieces = pieces.iter();
        out.push_str(pieces.next()?);
        let mut digits = itoa::Buffer::new();
        for value in numbers.into_iter().flatten() {
            out.push_str(digits.format(value.clamp(-MAX_INTEGER, MAX_INTEGER)));
            out.push_str(pieces.next()?);
        }
        Some(())
    })
}

/// `rendered` (a shape whose Integers are 0) cut around those zeros: one more piece than
/// numbers. Neither a token nor a key can hold `;` or `=`, so each marker occurs once.
fn template_pieces(rendered: &str, shape: &CacheStatus) -> Option<Vec<String>> {
    let markers = [
        (";fwd-status=", shape.fwd_status.is_some()),
        (";ttl=", shape.ttl.is_some()),
    ];
    let mut pieces = Vec::with_capacity(3);
    let mut rest = rendered;
    for (marker, present) in markers {
        if !present {
            continue;
        }
        let at = rest.find(marker)? + marker.len();
        let (before, after) = rest.split_at(at);
        pieces.push(before.to_owned());
        rest = after.strip_prefix('0')?;
    }
    pieces.push(rest.to_owned());
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_renders_as_rfc9211_example_shape() {
        let s = CacheStatus::hit(42, "memory");
        assert_eq!(
            s.render("cuttle").unwrap(),
            "cuttle;hit;ttl=42;detail=memory"
        );
    }

    #[test]
    fn forward_with_status_and_stored() {
        let s = CacheStatus {
            fwd: Some(Fwd::Stale),
            fwd_status: Some(304),
            ttl: Some(-3),
            stored: true,
            ..CacheStatus::default()
        };
        assert_eq!(
            s.render("cuttle").unwrap(),
            "cuttle;fwd=stale;fwd-status=304;ttl=-3;stored"
        );
    }

    #[test]
    fn appends_after_upstream_members() {
        let mut h = HeaderMap::new();
        h.insert(&CACHE_STATUS, HeaderValue::from_static("parent; hit"));
        CacheStatus::forward(Fwd::UriMiss).append_to(&mut h, "cuttle");
        assert_eq!(h[&CACHE_STATUS], "parent; hit, cuttle;fwd=uri-miss");
    }

    #[test]
    fn templates_render_exactly_what_sfv_renders() {
        let fwds = [
            None,
            Some(Fwd::Bypass),
            Some(Fwd::Method),
            Some(Fwd::UriMiss),
            Some(Fwd::VaryMiss),
            Some(Fwd::Miss),
            Some(Fwd::Request),
            Some(Fwd::Stale),
            Some(Fwd::Partial),
        ];
        let ttls = [
            None,
            Some(0),
            Some(-1),
            Some(42),
            Some(i64::MAX),
            Some(i64::MIN),
        ];
        let details = [
            None,
            Some("memory"),
            Some("stale-while-revalidate"),
            Some("not a token"),
        ];
        let mut checked = 0;
        for name in [
            "cuttle", "edge-1", "a.b_c", "*x", "a:b/c", "Bad Name", "1abc", "",
        ] {
            for (hit, stored) in [(false, false), (false, true), (true, false), (true, true)] {
                for fwd in fwds {
                    for fwd_status in [None, Some(304), Some(0), Some(u16::MAX)] {
                        for ttl in ttls {
                            for collapsed in [None, Some(true), Some(false)] {
                                for detail in details {
                                    let status = CacheStatus {
                                        hit,
                                        fwd,
                                        fwd_status,
                                        ttl,
                                        stored,
                                        collapsed,
                                        detail,
                                    };
                                    assert_eq!(
                                        status.render(name),
                                        status.render_with_sfv(name),
                                        "{name} {status:?}"
                                    );
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 8 * 4 * 9 * 4 * 6 * 3 * 4);
        assert_eq!(CacheStatus::hit(5, "memory").render("Bad Name"), None);
    }
}
