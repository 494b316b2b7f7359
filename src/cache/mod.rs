//! The HTTP cache: RFC 9111 policy, keys, storage tiers, and the façade the proxy calls.
//!
//! - pure: `policy` (RFC 9111/5861/9213 decisions, `now` a parameter), `key` (primary and Vary
//!   keys), `serve` (stored response to client response), `status` (RFC 9211 Cache-Status);
//! - I/O: `store` (moka memory tier, cacache disk tier), `fill` (storing while relaying),
//!   `collapse` (collapsed forwarding);
//! - `invalidate`: purges by URL, tag and ban (hard or soft), through a per-URL and per-tag
//!   index the store keeps;
//! - `lookup::Cache`: the façade. The cache never fetches: it answers, the proxy acts.

pub mod collapse;
pub mod fill;
pub mod invalidate;
pub mod key;
pub mod lookup;
pub mod meta;
pub mod policy;
pub mod result;
pub mod serve;
pub mod status;
pub mod store;

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
    /// The heuristic for `url`: the first matching `refresh_pattern`, else RFC 9111's default.
    pub fn heuristic_for(&self, url: &str) -> Heuristic {
        self.refresh_patterns
            .iter()
            .find(|p| p.regex.is_match(url))
            .map_or_else(Heuristic::default, |p| p.heuristic)
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
            tag_fields: invalidate::tags::default_fields(),
            strip_tag_fields: true,
            purge_propagate: Vec::new(),
        }
    }
}

/// One Squid `refresh_pattern`.
#[derive(Debug, Clone)]
pub struct RefreshPattern {
    pub regex: regex::Regex,
    pub heuristic: Heuristic,
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
}

impl Default for DiskConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("cache"),
            max_size: 1 << 30,
            max_object_size: 128 << 20,
        }
    }
}
