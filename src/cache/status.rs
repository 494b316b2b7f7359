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
    /// A plain hit (the hot path) is rendered from a per-thread template: sfv serialises
    /// `<cache>;hit;ttl=0;detail=<detail>` once, and each hit splices its `ttl` in, written the
    /// way sfv writes an Integer (RFC 9651 §4.1.4: optional `-`, then decimal digits).
    pub fn render(&self, cache: &str) -> Option<String> {
        if let (true, None, None, Some(ttl), false, None, Some(detail)) = (
            self.hit,
            self.fwd,
            self.fwd_status,
            self.ttl,
            self.stored,
            self.collapsed,
            self.detail,
        ) {
            return render_hit(cache, ttl, detail);
        }
        self.render_with_sfv(cache)
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
    pub fn append_to(&self, headers: &mut HeaderMap, cache: &str) {
        let Some(ours) = self.render(cache) else {
            return;
        };
        let mut existing = headers
            .get_all(&CACHE_STATUS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty())
            .peekable();
        let value = if existing.peek().is_none() {
            // The usual case: ours is the only member; hand over the rendered bytes as they are.
            HeaderValue::from_maybe_shared(bytes::Bytes::from(ours))
        } else {
            let mut joined = existing.collect::<Vec<_>>().join(", ");
            joined.push_str(", ");
            joined.push_str(&ours);
            HeaderValue::from_str(&joined)
        };
        if let Ok(value) = value {
            headers.insert(&CACHE_STATUS, value);
        }
    }
}

/// The largest magnitude an sfv Integer may have (RFC 9651 §3.3.1: at most 15 digits).
const MAX_INTEGER: i64 = 999_999_999_999_999;

/// A hit member from its template; see [`CacheStatus::render`].
fn render_hit(cache: &str, ttl: i64, detail: &'static str) -> Option<String> {
    use std::cell::RefCell;
    /// (cache name, detail) -> the text before and after the ttl digits.
    type Templates = Vec<(String, &'static str, String, String)>;
    thread_local! {
        static TEMPLATES: RefCell<Templates> = const { RefCell::new(Vec::new()) };
    }
    TEMPLATES.with(|cell| {
        let mut templates = cell.borrow_mut();
        let found = templates
            .iter()
            .position(|(name, d, _, _)| name == cache && *d == detail);
        let index = match found {
            Some(index) => index,
            None => {
                let sample = CacheStatus::hit(0, detail).render_with_sfv(cache)?;
                // Neither a token nor a key can hold `;` or `=`, so this marker occurs once.
                let at = sample.find(";ttl=0")? + ";ttl=".len();
                let (before, after) = sample.split_at(at);
                let after = after.strip_prefix('0')?;
                // Bounded: a handful of (name, detail) pairs exist in one configuration.
                if templates.len() >= 16 {
                    templates.clear();
                }
                templates.push((
                    cache.to_owned(),
                    detail,
                    before.to_owned(),
                    after.to_owned(),
                ));
                templates.len() - 1
            }
        };
        let (_, _, before, after) = templates.get(index)?;
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(ttl.clamp(-MAX_INTEGER, MAX_INTEGER));
        let mut out = String::with_capacity(before.len() + digits.len() + after.len());
        out.push_str(before);
        out.push_str(digits);
        out.push_str(after);
        Some(out)
    })
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
    fn hit_template_renders_exactly_what_sfv_renders() {
        for name in ["cuttle", "edge-1", "a.b_c"] {
            for detail in ["memory", "disk", "stale-while-revalidate", "max-stale"] {
                for ttl in [0, 1, -1, 42, -3600, 86_400, i64::MAX, i64::MIN] {
                    let status = CacheStatus::hit(ttl, detail);
                    assert_eq!(
                        status.render(name),
                        status.render_with_sfv(name),
                        "{name} {detail} {ttl}"
                    );
                }
            }
        }
        assert_eq!(CacheStatus::hit(5, "memory").render("Bad Name"), None);
    }
}
