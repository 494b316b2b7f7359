//! The proxy's counters: what `/metrics` and `/status` report.
//!
//! The request path calls [`Metrics::record`] once per finished transaction. Everything it
//! touches is in the calling thread's shard (`shard`), so counting adds no lock and no atomic
//! that another worker writes; a scrape sums the shards ([`Metrics::totals`]). The top-URL
//! summary (`top`) sits behind a per-shard mutex that the request path only `try_lock`s: it
//! never waits (a scrape copying the shard makes that one sample be skipped).
//!
//! `Metrics` is created once by `app` and outlives config reloads: counters never reset. This
//! module is a leaf under `proxy`: it knows cache results, not requests or sockets.

pub mod shard;
pub mod top;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::cache::result::{CacheResult, ResultKind};
use shard::{Counter, Sharded};
pub use top::TopUrl;

/// Reverse-mode sites counted separately; later ones are counted under the last slot's name.
pub const MAX_SITES: usize = 64;

/// Which kind of port a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeClass {
    Forward,
    Reverse,
}

impl ModeClass {
    pub const ALL: [ModeClass; 2] = [Self::Forward, Self::Reverse];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Reverse => "reverse",
        }
    }
}

/// Methods by what a cache may do with them (RFC 9110 §9.2.1 safe methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// GET, HEAD, OPTIONS, TRACE.
    Safe,
    /// POST, PUT, DELETE, PATCH.
    Unsafe,
    Connect,
    /// Anything else (PURGE, extension methods).
    Other,
}

impl MethodClass {
    pub const ALL: [MethodClass; 4] = [Self::Safe, Self::Unsafe, Self::Connect, Self::Other];

    pub fn of(method: &http::Method) -> Self {
        use http::Method;
        if method == Method::GET
            || method == Method::HEAD
            || method == Method::OPTIONS
            || method == Method::TRACE
        {
            Self::Safe
        } else if method == Method::POST
            || method == Method::PUT
            || method == Method::DELETE
            || method == Method::PATCH
        {
            Self::Unsafe
        } else if method == Method::CONNECT {
            Self::Connect
        } else {
            Self::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Safe => "safe",
            Self::Unsafe => "unsafe",
            Self::Connect => "connect",
            Self::Other => "other",
        }
    }
}

/// Status classes; `other` is a request answered with no status (the client left first).
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn status_class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 5,
    }
}

const REQUEST_CELLS: usize = 2 * 4 * 6;

fn request_cell(mode: ModeClass, method: MethodClass, status: usize) -> usize {
    (mode as usize * 4 + method as usize) * 6 + status.min(5)
}

/// One worker's counters.
#[derive(Debug)]
struct Shard {
    requests: [Counter; REQUEST_CELLS],
    results: [Counter; ResultKind::ALL.len()],
    to_clients: Counter,
    from_upstream: Counter,
    /// (to clients, from upstream) per site slot.
    sites: [[Counter; 2]; MAX_SITES],
    top: Mutex<top::TopK>,
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| Counter::default()),
            results: std::array::from_fn(|_| Counter::default()),
            to_clients: Counter::default(),
            from_upstream: Counter::default(),
            sites: std::array::from_fn(|_| [Counter::default(), Counter::default()]),
            top: Mutex::new(top::TopK::default()),
        }
    }
}

/// What one finished transaction adds.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub mode: ModeClass,
    pub method: MethodClass,
    /// 0 when no response was sent.
    pub status: u16,
    pub result: Option<CacheResult>,
    /// Body bytes sent to the client.
    pub to_clients: u64,
    /// Body bytes received from upstream (origin, parent or tunnel peer).
    pub from_upstream: u64,
    /// The reverse-mode site's slot, from [`Metrics::site_slot`] (looked up once per config
    /// generation, not per request).
    pub site: Option<usize>,
    /// For the top-URL summary; counted only when body bytes went out.
    pub url: &'a str,
}

/// Process-wide counters; see the module docs.
#[derive(Debug)]
pub struct Metrics {
    shards: Sharded<Shard>,
    /// Site names by slot; set once each, read without locks.
    site_names: Box<[OnceLock<Box<str>>]>,
    /// Off when no admin listener can read the counters (`[admin] listen = "none"`); read,
    /// never written, on the request path.
    enabled: std::sync::atomic::AtomicBool,
    generation: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Proxy-auth credentials that did not check out.
    auth_failed: AtomicU64,
    /// Proxy-auth attempts refused unchecked because their address failed too often.
    auth_limited: AtomicU64,
    started: tokio::time::Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The sums at one scrape.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// `[mode][method][status class]`.
    pub requests: [[[u64; 6]; 4]; 2],
    pub results: [u64; ResultKind::ALL.len()],
    pub to_clients: u64,
    pub from_upstream: u64,
    /// (site, to clients, from upstream).
    pub sites: Vec<(String, u64, u64)>,
}

impl Totals {
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().flatten().flatten().sum()
    }

    pub fn by_mode(&self, mode: ModeClass) -> u64 {
        self.requests[mode as usize].iter().flatten().sum()
    }

    pub fn by_method(&self, method: MethodClass) -> u64 {
        self.requests
            .iter()
            .map(|m| m[method as usize].iter().sum::<u64>())
            .sum()
    }

    pub fn by_status_class(&self, class: usize) -> u64 {
        self.requests
            .iter()
            .flatten()
            .map(|s| s.get(class).copied().unwrap_or(0))
            .sum()
    }

    pub fn result(&self, kind: ResultKind) -> u64 {
        self.results.get(kind.index()).copied().unwrap_or(0)
    }

    /// Hits: results whose body came from the cache (see [`ResultKind::is_hit`]).
    pub fn hits(&self) -> u64 {
        ResultKind::ALL
            .iter()
            .filter(|k| k.is_hit())
            .map(|&k| self.result(k))
            .sum()
    }

    /// Lookups: hits, misses and modified refreshes (see [`ResultKind::is_lookup`]).
    pub fn lookups(&self) -> u64 {
        ResultKind::ALL
            .iter()
            .filter(|k| k.is_lookup())
            .map(|&k| self.result(k))
            .sum()
    }

    /// hits / lookups, 0 before the first lookup.
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.lookups();
        if lookups == 0 {
            0.0
        } else {
            self.hits() as f64 / lookups as f64
        }
    }

    /// Bytes the cache saved: served to clients minus fetched upstream.
    pub fn saved(&self) -> u64 {
        self.to_clients.saturating_sub(self.from_upstream)
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            shards: Sharded::default(),
            site_names: (0..MAX_SITES).map(|_| OnceLock::new()).collect(),
            enabled: std::sync::atomic::AtomicBool::new(true),
            generation: AtomicU64::new(1),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            auth_failed: AtomicU64::new(0),
            auth_limited: AtomicU64::new(0),
            started: tokio::time::Instant::now(),
        }
    }

    /// Counts one finished transaction (the request path; see the module docs).
    pub fn record(&self, r: &Record<'_>) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let shard = self.shards.local();
        let cell = request_cell(r.mode, r.method, status_class(r.status));
        if let Some(c) = shard.requests.get(cell) {
            c.add(1);
        }
        if let Some(result) = r.result {
            if let Some(c) = shard.results.get(result.kind().index()) {
                c.add(1);
            }
        }
        if r.to_clients > 0 {
            shard.to_clients.add(r.to_clients);
        }
        if r.from_upstream > 0 {
            shard.from_upstream.add(r.from_upstream);
        }
        if let Some(site) = r.site {
            if let Some([to, from]) = shard.sites.get(site) {
                to.add(r.to_clients);
                from.add(r.from_upstream);
            }
        }
        if r.to_clients > 0 && r.result.is_some() {
            // Never waits: a scrape holding this shard's summary skips one sample.
            if let Ok(mut top) = shard.top.try_lock() {
                top.add(r.url, r.to_clients);
            }
        }
    }

    /// Turns counting on or off (off when nothing can read it; see `app`).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// The counter slot of the site named `site`, claiming a free one the first time a name is
    /// seen (the slots outlive reloads, so a site keeps its counters); sites after the
    /// 64th share the last slot.
    pub fn site_slot(&self, site: &str) -> usize {
        for (i, slot) in self.site_names.iter().enumerate() {
            match slot.get() {
                Some(name) if &**name == site => return i,
                Some(_) => {}
                None => {
                    let _ = slot.set(site.into());
                    // Another thread may have claimed this slot for another name meanwhile.
                    if slot.get().is_some_and(|name| &**name == site) {
                        return i;
                    }
                }
            }
        }
        MAX_SITES - 1
    }

    /// Sums every shard.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        let mut sites = [[0u64; 2]; MAX_SITES];
        for shard in self.shards.all() {
            for (cell, c) in shard.requests.iter().enumerate() {
                let (mode, rest) = (cell / 24, cell % 24);
                let (method, status) = (rest / 6, rest % 6);
                if let Some(v) = t
                    .requests
                    .get_mut(mode)
                    .and_then(|m| m.get_mut(method))
                    .and_then(|s| s.get_mut(status))
                {
                    *v += c.get();
                }
            }
            for (sum, c) in t.results.iter_mut().zip(&shard.results) {
                *sum += c.get();
            }
            t.to_clients += shard.to_clients.get();
            t.from_upstream += shard.from_upstream.get();
            for (sum, [to, from]) in sites.iter_mut().zip(&shard.sites) {
                sum[0] += to.get();
                sum[1] += from.get();
            }
        }
        t.sites = self
            .site_names
            .iter()
            .zip(sites)
            .filter_map(|(name, [to, from])| Some((name.get()?.to_string(), to, from)))
            .collect();
        t
    }

    /// The `n` URLs that served the most bytes (queries stripped).
    pub fn top_urls(&self, n: usize) -> Vec<TopUrl> {
        let mut merged = HashMap::new();
        for shard in self.shards.all() {
            if let Ok(top) = shard.top.lock() {
                top.merge_into(&mut merged);
            }
        }
        top::largest(merged, n)
    }

    /// Seconds since this `Metrics` was created (the process start, as reloads keep it).
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// A config was loaded (at start or by a reload) as `generation`; a reload counts as
    /// successful when `generation > 1`.
    pub fn config_loaded(&self, generation: u64) {
        let previous = self.generation.swap(generation, Ordering::Relaxed);
        if generation > 1 && generation != previous {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A reload was refused (the old config keeps serving).
    pub fn reload_failed(&self) {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed proxy-auth attempt: wrong credentials, or (`limited`) refused unchecked
    /// after too many failures. Rare, so a shared atomic rather than a shard.
    pub fn auth_failure(&self, limited: bool) {
        let counter = if limited {
            &self.auth_limited
        } else {
            &self.auth_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (wrong credentials, refused unchecked) proxy-auth attempts so far.
    pub fn auth_failures(&self) -> (u64, u64) {
        (
            self.auth_failed.load(Ordering::Relaxed),
            self.auth_limited.load(Ordering::Relaxed),
        )
    }

    /// (generation, successful reloads, failed reloads).
    pub fn config_state(&self) -> (u64, u64, u64) {
        (
            self.generation.load(Ordering::Relaxed),
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::store::Tier;

    fn record(m: &Metrics, result: Option<CacheResult>, to: u64, from: u64, site: Option<&str>) {
        m.record(&Record {
            mode: if site.is_some() {
                ModeClass::Reverse
            } else {
                ModeClass::Forward
            },
            method: MethodClass::Safe,
            status: 200,
            result,
            to_clients: to,
            from_upstream: from,
            site: site.map(|name| m.site_slot(name)),
            url: "http://a/x?q=1",
        });
    }

    #[test]
    fn totals_ratio_and_saved() {
        let m = Metrics::new();
        record(&m, Some(CacheResult::Miss), 100, 100, None);
        record(
            &m,
            Some(CacheResult::Hit {
                tier: Tier::Memory,
                conditional: false,
            }),
            100,
            0,
            Some("www"),
        );
        record(
            &m,
            Some(CacheResult::Bypass {
                reason: crate::cache::phase::BypassReason::Method,
            }),
            5,
            5,
            Some("www"),
        );
        record(&m, None, 0, 0, None);
        let t = m.totals();
        assert_eq!(t.requests_total(), 4);
        assert_eq!(t.by_mode(ModeClass::Reverse), 2);
        assert_eq!(t.by_status_class(1), 4);
        assert_eq!(t.hits(), 1);
        assert_eq!(t.lookups(), 2);
        assert!((t.hit_ratio() - 0.5).abs() < 1e-9);
        assert_eq!(t.saved(), 100);
        assert_eq!(t.sites, vec![("www".to_owned(), 105, 5)]);
        let top = m.top_urls(5);
        assert_eq!(top[0].url, "http://a/x");
        assert_eq!(top[0].bytes, 205);
    }

    #[test]
    fn reloads_are_counted_from_generations() {
        let m = Metrics::new();
        assert_eq!(m.config_state(), (1, 0, 0));
        m.config_loaded(2);
        m.reload_failed();
        assert_eq!(m.config_state(), (2, 1, 1));
    }
}
