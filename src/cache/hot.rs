//! Hot copies: the small, short-lived copies a cluster member keeps of very hot objects that
//! another member owns (`[cluster] hot_copy_ttl`), so that a key every client asks for does not
//! cost its owner one request per request at every member.
//!
//! A member that is not a key's owner stores nothing in its cache for it (`proxy::caching::
//! cluster`); here it may keep one copy, in memory only, when all of these hold:
//! - the key is hot: `hot_copy_threshold` lookups for it reached this member within
//!   `hot_copy_ttl` ([`HotCopies::touch`]);
//! - the owner said the response is storable: its `Cache-Status` member says `hit` or `stored`
//!   (RFC 9211 §2.1, §2.5), so the owner's own cache rules (`[[cache.access]]`, `store_id`...)
//!   decided it, and RFC 9111 §3 holds here as well for a shared cache: no `private`, no
//!   `no-store`, no `no-cache` (every reuse would need validation), no `Set-Cookie` (one
//!   client's state), no `Authorization` in the request (§3.5), no `Vary` (a copy is kept per
//!   URL only), a complete `200` with a `Content-Length` of at most `hot_copy_max_size`;
//! - it is fresh ([`eligible`]).
//!
//! A copy is served until the earlier of `hot_copy_ttl` after it arrived and the end of the
//! owner's freshness (RFC 9111 §4.2), through the same reuse rules as a stored response (a
//! client's `no-cache` or `max-age=0` goes to the owner). The copies are bounded by
//! `hot_copy_memory` (moka evicts by size) and never written to disk. Every purge and
//! invalidation reaches them through the cache façade (`Cache::purge`, `Cache::invalidate`):
//! a URL purge removes its copy, a prefix or regex purge the copies whose key matches, and a
//! tag purge every copy (the owner strips tag fields from what it sends, so a member cannot
//! know a copy's tags). A soft purge removes too: a copy is never revalidated, the next
//! request goes to the owner, which revalidates its own entry. A copy whose fetch started
//! before a purge is not kept (the purge epoch).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};

use super::invalidate::{Purge, Target};
use super::meta::StoredHead;
use super::policy::ResponseDirectives;

/// Most keys whose lookups are counted at once (each costs a key and a counter).
const COUNTED_KEYS: u64 = 64 * 1024;

/// `[cluster] hot_copy_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotCopyConfig {
    /// Longest time a copy is served (`hot_copy_ttl`), also the window the threshold counts in.
    pub ttl: Duration,
    /// Largest body kept (`hot_copy_max_size`).
    pub max_size: u64,
    /// Lookups within `ttl` that make a key hot (`hot_copy_threshold`).
    pub threshold: u32,
    /// Bytes all copies may take (`hot_copy_memory`).
    pub memory: u64,
}

/// One copy.
#[derive(Debug)]
pub struct HotCopy {
    pub head: Arc<StoredHead>,
    pub body: Bytes,
    /// When it stops being served (`hot_copy_ttl` or the owner's freshness, earlier first).
    pub until: SystemTime,
}

/// The copies of one member, and the lookup counts that make keys hot.
pub struct HotCopies {
    pub config: HotCopyConfig,
    copies: moka::sync::Cache<String, Arc<HotCopy>>,
    counts: moka::sync::Cache<String, Arc<AtomicU32>>,
    /// Bumped by every purge: a copy fetched across one is not kept.
    epoch: AtomicU64,
}

impl std::fmt::Debug for HotCopies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotCopies")
            .field("config", &self.config)
            .field("entries", &self.copies.entry_count())
            .finish_non_exhaustive()
    }
}

impl HotCopies {
    pub fn new(config: HotCopyConfig) -> Self {
        let copies = moka::sync::Cache::builder()
            .max_capacity(config.memory)
            .weigher(|key: &String, copy: &Arc<HotCopy>| {
                let head: usize = copy
                    .head
                    .headers
                    .iter()
                    .map(|(n, v)| n.as_str().len() + v.len() + 32)
                    .sum();
                u32::try_from(key.len() + head + copy.body.len() + 256).unwrap_or(u32::MAX)
            })
            .time_to_live(config.ttl)
            .build();
        let counts = moka::sync::Cache::builder()
            .max_capacity(COUNTED_KEYS)
            .time_to_live(config.ttl)
            .build();
        Self {
            config,
            copies,
            counts,
            epoch: AtomicU64::new(0),
        }
    }

    /// The copy of `primary`, if one is still to be served at `now`.
    pub fn get(&self, primary: &str, now: SystemTime) -> Option<Arc<HotCopy>> {
        let copy = self.copies.get(primary)?;
        if now >= copy.until {
            self.copies.invalidate(primary);
            return None;
        }
        Some(copy)
    }

    /// Counts one lookup of `primary`; `true` once the key is hot (`threshold` lookups within
    /// `ttl` of the first one counted).
    pub fn touch(&self, primary: &str) -> bool {
        let count = self
            .counts
            .get_with_by_ref(primary, || Arc::new(AtomicU32::new(0)));
        count.fetch_add(1, Ordering::Relaxed).saturating_add(1) >= self.config.threshold
    }

    /// The purge epoch now: taken before a copy's fetch starts, handed to [`Self::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps `copy` for `primary` unless a purge came after `epoch`; `true` if kept.
    pub fn insert(&self, primary: &str, copy: HotCopy, epoch: u64) -> bool {
        if self.epoch() != epoch {
            return false;
        }
        self.copies.insert(primary.to_owned(), Arc::new(copy));
        // A purge between the check and the insert: remove what may have escaped it.
        if self.epoch() != epoch {
            self.copies.invalidate(primary);
            return false;
        }
        true
    }

    /// Removes the copy of `primary` (an invalidation, RFC 9111 §4.4).
    pub fn remove(&self, primary: &str) -> bool {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.copies.remove(primary).is_some()
    }

    /// Applies `purge` to the copies (a soft one removes too); how many were removed.
    pub fn purge(&self, purge: &Purge) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match &purge.target {
            Target::Url(primary) => usize::from(self.copies.remove(primary).is_some()),
            Target::Tags(_) => self.remove_where(|_| true),
            Target::Prefix(prefix) => self.remove_where(|key| key.starts_with(prefix.as_str())),
            Target::Regex(regex) => self.remove_where(|key| regex.is_match(key)),
        }
    }

    fn remove_where(&self, matches: impl Fn(&str) -> bool) -> usize {
        let keys: Vec<Arc<String>> = self
            .copies
            .iter()
            .filter(|(key, _)| matches(key))
            .map(|(key, _)| key)
            .collect();
        keys.iter()
            .filter(|key| self.copies.remove(key.as_str()).is_some())
            .count()
    }

    /// Copies held now (approximate: moka counts lazily).
    pub fn entries(&self) -> u64 {
        self.copies.run_pending_tasks();
        self.copies.entry_count()
    }
}

/// The request a copy would be made from may give one: a plain `GET` (no range, no
/// conditional, so the owner answers `200` with the whole body) without `Authorization`
/// (RFC 9111 §3.5) or `no-store`.
pub fn request_eligible(method: &Method, headers: &HeaderMap, no_store: bool) -> bool {
    method == Method::GET
        && !no_store
        && !headers.contains_key(header::AUTHORIZATION)
        && !headers.contains_key(header::RANGE)
        && !headers.contains_key(header::IF_NONE_MATCH)
        && !headers.contains_key(header::IF_MODIFIED_SINCE)
        && !headers.contains_key(header::IF_MATCH)
        && !headers.contains_key(header::IF_UNMODIFIED_SINCE)
        && !headers.contains_key(header::IF_RANGE)
}

/// Whether the owner's response may become a copy; `Err` names why not. `owner_status` is the
/// owner's `Cache-Status` member (the last one); `fresh_for` the owner's freshness left.
pub fn eligible(
    config: &HotCopyConfig,
    status: StatusCode,
    headers: &HeaderMap,
    directives: &ResponseDirectives,
    fresh_for: i64,
) -> Result<(), &'static str> {
    if status != StatusCode::OK {
        return Err("status");
    }
    if !owner_stored(headers) {
        return Err("owner-did-not-store");
    }
    if directives.no_store {
        return Err("no-store");
    }
    if directives.private.is_some() {
        return Err("private");
    }
    if directives.no_cache.is_some() {
        return Err("no-cache");
    }
    if headers.contains_key(header::SET_COOKIE) || headers.contains_key("set-cookie2") {
        return Err("set-cookie");
    }
    if headers.contains_key(header::VARY) {
        return Err("vary");
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        None => return Err("no-length"),
        Some(n) if n > config.max_size => return Err("too-large"),
        Some(_) => {}
    }
    if fresh_for <= 0 {
        return Err("stale");
    }
    Ok(())
}

/// Whether the last `Cache-Status` member (the owner's: we have not added ours yet) says
/// `hit` or `stored` (RFC 9211 §2.1, §2.5).
fn owner_stored(headers: &HeaderMap) -> bool {
    let Some(last) = headers
        .get_all(&super::status::CACHE_STATUS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .rfind(|m| !m.trim().is_empty())
    else {
        return false;
    };
    last.split(';').skip(1).any(|param| {
        let name = param.split('=').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("hit") || name.eq_ignore_ascii_case("stored")
    })
}

/// When a copy arriving at `now` stops being served: `ttl` later, or when the owner's
/// freshness (`fresh_for` seconds) ends, whichever is earlier.
pub fn served_until(now: SystemTime, ttl: Duration, fresh_for: i64) -> SystemTime {
    let fresh = Duration::from_secs(u64::try_from(fresh_for).unwrap_or(0));
    now + ttl.min(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::effective_response_directives;

    fn config() -> HotCopyConfig {
        HotCopyConfig {
            ttl: Duration::from_secs(5),
            max_size: 1024,
            threshold: 3,
            memory: 1 << 20,
        }
    }

    fn response(fields: &[(&str, &str)]) -> (HeaderMap, ResponseDirectives) {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let directives = effective_response_directives(&headers, &[]);
        (headers, directives)
    }

    const GOOD: &[(&str, &str)] = &[
        ("cache-control", "max-age=60"),
        ("content-length", "10"),
        ("cache-status", "owner;fwd=miss;stored"),
    ];

    #[test]
    fn only_shared_cacheable_small_fresh_stored_responses_qualify() {
        let c = config();
        let (h, d) = response(GOOD);
        assert_eq!(eligible(&c, StatusCode::OK, &h, &d, 60), Ok(()));
        assert_eq!(
            eligible(&c, StatusCode::NOT_FOUND, &h, &d, 60),
            Err("status")
        );
        assert_eq!(eligible(&c, StatusCode::OK, &h, &d, 0), Err("stale"));
        let refuse = |extra: (&str, &str), why: &str| {
            let mut fields = GOOD.to_vec();
            fields.push(extra);
            let (h, d) = response(&fields);
            assert_eq!(
                eligible(&c, StatusCode::OK, &h, &d, 60),
                Err(why),
                "{extra:?}"
            );
        };
        refuse(("cache-control", "private"), "private");
        refuse(("cache-control", "no-store"), "no-store");
        refuse(("cache-control", "no-cache"), "no-cache");
        refuse(("set-cookie", "s=1"), "set-cookie");
        refuse(("vary", "accept-encoding"), "vary");
        let (h, d) = response(&[
            ("cache-control", "max-age=60"),
            ("content-length", "2048"),
            ("cache-status", "owner;hit"),
        ]);
        assert_eq!(eligible(&c, StatusCode::OK, &h, &d, 60), Err("too-large"));
        let (h, d) = response(&[
            ("cache-control", "max-age=60"),
            ("content-length", "10"),
            ("cache-status", "owner;hit, origin-cdn;fwd=uri-miss"),
        ]);
        assert_eq!(
            eligible(&c, StatusCode::OK, &h, &d, 60),
            Err("owner-did-not-store"),
            "only the last member (the owner's) counts"
        );
        let (h, d) = response(&[("cache-control", "max-age=60"), ("content-length", "10")]);
        assert_eq!(
            eligible(&c, StatusCode::OK, &h, &d, 60),
            Err("owner-did-not-store")
        );
    }

    #[test]
    fn requests_with_credentials_ranges_or_validators_make_no_copy() {
        let mut h = HeaderMap::new();
        assert!(request_eligible(&Method::GET, &h, false));
        assert!(!request_eligible(&Method::HEAD, &h, false));
        assert!(!request_eligible(&Method::GET, &h, true));
        h.insert(header::AUTHORIZATION, "Basic eDp5".parse().unwrap());
        assert!(!request_eligible(&Method::GET, &h, false));
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, "bytes=0-1".parse().unwrap());
        assert!(!request_eligible(&Method::GET, &h, false));
    }

    #[test]
    fn freshness_is_capped_by_the_ttl_and_the_owner() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ttl = Duration::from_secs(5);
        assert_eq!(served_until(now, ttl, 60), now + ttl);
        assert_eq!(served_until(now, ttl, 2), now + Duration::from_secs(2));
    }

    fn copy(until: SystemTime) -> HotCopy {
        HotCopy {
            head: Arc::new(StoredHead {
                status: StatusCode::OK,
                headers: crate::cache::meta::StoredFields::from_map(&HeaderMap::new()),
                request_time: SystemTime::UNIX_EPOCH,
                response_time: SystemTime::UNIX_EPOCH,
                url: "http://a/".into(),
                body_len: 2,
                derived: Default::default(),
            }),
            body: Bytes::from_static(b"hi"),
            until,
        }
    }

    #[test]
    fn hot_after_the_threshold_and_purges_remove_copies() {
        let hot = HotCopies::new(config());
        assert!(!hot.touch("http://a/x"));
        assert!(!hot.touch("http://a/x"));
        assert!(hot.touch("http://a/x"), "third lookup within the ttl");
        assert!(!hot.touch("http://a/y"));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = now + Duration::from_secs(5);
        for key in ["http://a/x", "http://a/img/1", "http://b/z"] {
            let epoch = hot.epoch();
            assert!(hot.insert(key, copy(later), epoch));
        }
        assert!(hot.get("http://a/x", now).is_some());
        assert!(hot.get("http://a/x", later).is_none(), "past its time");
        let url = |u: &str| Purge {
            target: Target::Url(u.to_owned()),
            soft: true,
        };
        assert_eq!(
            hot.purge(&url("http://a/x")),
            0,
            "already dropped as expired"
        );
        let prefix = Purge {
            target: Target::Prefix("http://a/img/".to_owned()),
            soft: false,
        };
        assert_eq!(hot.purge(&prefix), 1);
        assert!(hot.get("http://b/z", now).is_some());
        let tags = Purge {
            target: Target::Tags(vec!["t".to_owned()]),
            soft: false,
        };
        assert_eq!(hot.purge(&tags), 1, "a tag purge drops every copy");
        assert!(hot.get("http://b/z", now).is_none());
    }

    #[test]
    fn a_copy_fetched_across_a_purge_is_not_kept() {
        let hot = HotCopies::new(config());
        let epoch = hot.epoch();
        hot.remove("http://a/x");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = now + Duration::from_secs(5);
        assert!(!hot.insert("http://a/x", copy(later), epoch));
        assert!(hot.get("http://a/x", now).is_none());
    }
}
