//! The HTTP cache: RFC 9111 policy, keys, storage tiers, and the façade the proxy calls.
//!
//! - pure: `policy` (RFC 9111/5861/9213 decisions, `now` a parameter), `key` (primary and Vary
//!   keys; kept in `policy`, whose field parsing it shares), `serve` (stored response to client response), `status` (RFC 9211 Cache-Status),
//!   `phase` (the named phases of a request in the cache), `result` (what it ended in);
//! - I/O: `store` (moka memory tier, cacache disk tier), `fill` (storing while relaying),
//!   `collapse` (collapsed forwarding), `tap` (read-while-writer: a fill's bytes for its waiters);
//! - `invalidate`: purges by URL, tag and ban (hard or soft), through a per-URL and per-tag
//!   index the store keeps;
//! - `parts`, `slice`: partial content (RFC 9111 §3.3-3.4) stored as ranges of a URL, and
//!   slice mode, which fetches and stores large objects as fixed-size blocks;
//! - `lookup::Cache`: the façade; `decision`: what a lookup leads to ([`decision::Decision`]).
//!   The cache never fetches: it answers, the proxy acts.

pub mod collapse;
pub mod decision;
pub mod fill;
pub mod hot;
pub mod invalidate;
pub mod lookup;
pub mod meta;
pub mod parts;
pub mod phase;
pub mod policy;
mod purging;
pub mod result;
pub mod serve;
pub mod slice;
pub mod status;
pub mod store;
pub mod tap;

/// Cache keys live with the policy they follow (RFC 9111 §2, §4.1); named here for callers.
pub use policy::key;

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use policy::Heuristic;

/// Cache settings from `[cache]` and `[[refresh_pattern]]`.
#[derive(Debug, Clone)]
pub struct Config {
    pub memory: MemoryConfig,
    /// `None` when the disk tier is disabled (`cache.disk.path = ""`).
    pub disk: Option<DiskConfig>,
    pub behaviour: Behaviour,
}

/// How the cache treats requests (as opposed to where it stores them).
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Serve stale this long past expiry when the upstream cannot be reached (Squid
    /// `max_stale`; never on a 5xx answer, RFC 9111 §4.2.4).
    pub max_stale: Duration,
    /// RFC 9213 targeted fields, most specific first.
    pub targeted_fields: Vec<HeaderName>,
    pub x_cache: bool,
    /// Our member's name in `Cache-Status`.
    pub status_name: String,
    pub range_offset_limit: u64,
    pub collapsed_forwarding: bool,
    pub collapsed_forwarding_timeout: Duration,
    pub purge_from: Vec<IpNet>,
    /// Keep `Set-Cookie` in stored heads (hits then replay it to everyone); off by default.
    pub store_set_cookie: bool,
    pub refresh_patterns: Vec<RefreshPattern>,
    /// Slice mode rules (`[[cache.slice]]`), first match wins.
    pub slices: Vec<slice::SliceRule>,
    /// Lifetime of error answers without explicit freshness (Squid `negative_ttl`; 0: off).
    pub negative_ttl: Duration,
    /// Cache-key rewrites (Squid `store_id`), first match wins.
    pub store_ids: Vec<StoreIdRule>,

    /// Response fields read as surrogate keys (tags); also the PURGE request fields naming
    /// tags to purge (`cache.tag_fields`).
    pub tag_fields: Vec<HeaderName>,
    /// Remove the tag fields from responses sent to clients (`cache.strip_tag_fields`).
    pub strip_tag_fields: bool,
    /// Admin listeners of other caches that every purge is forwarded to
    /// (`cache.purge_propagate`, `host:port`).
    pub purge_propagate: Vec<String>,
}

impl Behaviour {
    /// The first `refresh_pattern` matching `url` (Squid: first match wins).
    pub fn refresh_pattern_for(&self, url: &str) -> Option<&RefreshPattern> {
        self.refresh_patterns.iter().find(|p| p.regex.is_match(url))
    }

    /// The heuristic for `url`: the first matching `refresh_pattern`, else RFC 9111's default.
    pub fn heuristic_for(&self, url: &str) -> Heuristic {
        self.refresh_pattern_for(url)
            .map_or_else(Heuristic::default, |p| p.heuristic)
    }

    /// The key `primary` is stored under: the first matching `store_id` rewrite, else itself.
    pub fn store_id(&self, primary: String) -> String {
        for rule in &self.store_ids {
            if let Some(captures) = rule.regex.captures(&primary) {
                let mut key = String::with_capacity(rule.replace.len() + 32);
                captures.expand(&rule.replace, &mut key);
                return key;
            }
        }
        primary
    }

    /// Whether a configured rule lets a response be stored that RFC 9111 §3 alone would not
    /// (it has no explicit freshness and a status that is not heuristically cacheable):
    /// `refresh_pattern ... store-stale`, or `negative_ttl` for an error status.
    pub fn extra_storage_permission(&self, url: &str, status: http::StatusCode) -> bool {
        (!self.negative_ttl.is_zero() && policy::is_negatively_cacheable(status))
            || (self.refresh_patterns.iter().any(|p| p.store_stale)
                && self.refresh_pattern_for(url).is_some_and(|p| p.store_stale))
    }

    /// Applies `ignore-reload` of the `refresh_pattern` matching `url`: a client's reload
    /// (`no-cache`, `Pragma: no-cache`, `max-age=0`) is treated as a plain request.
    pub fn apply_ignore_reload(&self, url: &str, request: &mut policy::RequestDirectives) {
        // Every cacheable request passes here: the regexes run only for a reload, and only when
        // some pattern has the option.
        let reload = request.no_cache || request.max_age == Some(0);
        if reload
            && self.refresh_patterns.iter().any(|p| p.ignore_reload)
            && self
                .refresh_pattern_for(url)
                .is_some_and(|p| p.ignore_reload)
        {
            request.no_cache = false;
            if request.max_age == Some(0) {
                request.max_age = None;
            }
        }
    }
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            max_stale: Duration::from_secs(86_400),
            targeted_fields: vec![HeaderName::from_static("cuttle-cache-control")],
            x_cache: false,
            status_name: "cuttle".to_owned(),
            range_offset_limit: 1 << 20,
            collapsed_forwarding: true,
            collapsed_forwarding_timeout: Duration::from_secs(30),
            purge_from: Vec::new(),
            store_set_cookie: false,
            refresh_patterns: Vec::new(),
            slices: Vec::new(),
            negative_ttl: Duration::ZERO,
            store_ids: Vec::new(),

            tag_fields: invalidate::tags::default_fields(),
            strip_tag_fields: true,
            purge_propagate: Vec::new(),
        }
    }
}

/// One Squid `refresh_pattern` with its options.
#[derive(Debug, Clone)]
pub struct RefreshPattern {
    pub regex: regex::Regex,
    pub heuristic: Heuristic,
    /// `override-expire`: an explicit lifetime shorter than `min` is raised to `min`.
    pub override_expire: bool,
    /// `ignore-reload`: client reloads do not bypass fresh stored responses.
    pub ignore_reload: bool,
    /// `store-stale`: store responses without freshness information.
    pub store_stale: bool,
}

/// One `store_id` rewrite: a match of `regex` on the primary key becomes `replace`
/// (`$1`.. expanded).
#[derive(Debug, Clone)]
pub struct StoreIdRule {
    pub regex: regex::Regex,
    pub replace: String,
}

/// The memory tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Total bytes of bodies and heads held in memory.
    pub max_size: u64,
    /// Larger objects are not kept in memory.
    pub max_object_size: u64,
}

/// The disk tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub max_size: u64,
    pub max_object_size: u64,
    /// Holds the index's background load while closed: a test hook, never from the file.
    pub load_gate: Option<store::LoadGate>,
}

impl Default for DiskConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("cache"),
            max_size: 1 << 30,
            max_object_size: 128 << 20,
            load_gate: None,
        }
    }
}
