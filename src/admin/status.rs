//! `/status`: the figures of `/metrics` as one JSON document, plus a short history.
//!
//! `hit_ratio` is `hits / lookups`: hits are memory and disk hits, stale responses served,
//! collapsed hits and 304 revalidations (the body came from the cache); lookups are those plus
//! misses and modified revalidations. Bypasses (methods or responses the cache does not
//! handle) and purges are neither. `history` holds cumulative totals sampled every
//! [`SAMPLE_EVERY`] over the last [`HISTORY`], so a chart has data as soon as it opens.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::watch;

use super::State;
use crate::cache::result::ResultKind;
use crate::metrics::{MethodClass, ModeClass, Totals, STATUS_CLASSES};

/// How often `history` is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How far back `history` goes.
pub const HISTORY: Duration = Duration::from_secs(600);
/// URLs listed in `top_urls`.
pub const TOP_URLS: usize = 10;

/// One history sample: cumulative totals at `t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub t: f64,
    pub requests: u64,
    pub hits: u64,
    pub lookups: u64,
    pub to_clients: u64,
    pub from_upstream: u64,
}

/// A bounded ring of samples.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    const CAPACITY: usize = (HISTORY.as_secs() / SAMPLE_EVERY.as_secs()) as usize;

    pub fn push(&self, sample: Sample) {
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() >= Self::CAPACITY {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

fn unix_now(state: &State) -> f64 {
    let now = state.sources().map(|s| s.clock.now()).unwrap_or(UNIX_EPOCH);
    now.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn sample(state: &State, totals: &Totals) -> Sample {
    Sample {
        t: unix_now(state),
        requests: totals.requests_total(),
        hits: totals.hits(),
        lookups: totals.lookups(),
        to_clients: totals.to_clients,
        from_upstream: totals.from_upstream,
    }
}

/// Samples the totals into `state.history` every `every` until `stop`.
pub async fn sample_every(state: Arc<State>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let totals = state.metrics.totals();
                state.history.push(sample(&state, &totals));
            }
            _ = super::stopped(&mut stop) => return,
        }
    }
}

/// The `/status` document.
pub fn document(state: &State) -> Value {
    let totals = state.metrics.totals();
    let sources = state.sources();
    let (generation, reloads_ok, reloads_failed) = state.metrics.config_state();
    let results: serde_json::Map<String, Value> = ResultKind::ALL
        .iter()
        .map(|&k| (k.as_str().to_owned(), json!(totals.result(k))))
        .collect();
    let by_mode: serde_json::Map<String, Value> = ModeClass::ALL
        .iter()
        .map(|&m| (m.as_str().to_owned(), json!(totals.by_mode(m))))
        .collect();
    let by_method: serde_json::Map<String, Value> = MethodClass::ALL
        .iter()
        .map(|&m| (m.as_str().to_owned(), json!(totals.by_method(m))))
        .collect();
    let by_status: serde_json::Map<String, Value> = STATUS_CLASSES
        .iter()
        .enumerate()
        .map(|(i, c)| ((*c).to_owned(), json!(totals.by_status_class(i))))
        .collect();
    let (memory, disk) = match &sources {
        Some(s) => (
            Some(s.cache.store.memory_stats()),
            s.cache.store.disk_stats(),
        ),
        None => (None, None),
    };
    let tier = |t: crate::cache::store::TierStats| json!({"objects": t.objects, "bytes": t.bytes, "max_bytes": t.max_bytes, "evictions": t.evictions});
    let load = sources.as_ref().and_then(|s| s.cache.store.disk_load());
    let disk = disk.map(|(path, t)| {
        let mut v = tier(t);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("path".to_owned(), json!(path.display().to_string()));
            if let Some(load) = load {
                let took = load.took.map(|d| d.as_secs_f64() * 1000.0);
                obj.insert(
                    "index".to_owned(),
                    json!({"ready": load.ready, "loaded": load.loaded, "took_ms": took}),
                );
            }
        }
        v
    });
    let mut upstreams = Vec::new();
    let mut peers = Vec::new();
    if let Some(s) = &sources {
        for group in &s.groups {
            for (i, server) in group.servers.iter().enumerate() {
                let snap = server.stats.snapshot();
                upstreams.push(json!({
                    "group": group.config.name,
                    "server": server.config.address,
                    "up": group.is_healthy(i),
                    "failures": snap.failures,
                    "requests": snap.requests,
                    "latency_ms_avg": snap.latency_ms_avg(),
                }));
            }
        }
        if let Some(p) = &s.peers {
            for (i, peer) in p.config.peers.iter().enumerate() {
                let snap = p.stats.get(i).map(|s| s.snapshot()).unwrap_or_default();
                peers.push(json!({
                    "name": peer.info.name,
                    "kind": match peer.info.kind {
                        crate::upstream::hierarchy::PeerKind::Parent => "parent",
                        crate::upstream::hierarchy::PeerKind::Sibling => "sibling",
                    },
                    "up": p.alive(i),
                    "failures": snap.failures,
                    "requests": snap.requests,
                    "latency_ms_avg": snap.latency_ms_avg(),
                }));
            }
        }
    }
    let history: Vec<Value> = state
        .history
        .samples()
        .iter()
        .map(|s| {
            json!({"t": s.t, "requests": s.requests, "hits": s.hits, "lookups": s.lookups,
                   "to_clients": s.to_clients, "from_upstream": s.from_upstream})
        })
        .collect();
    let top: Vec<Value> = state
        .metrics
        .top_urls(TOP_URLS)
        .into_iter()
        .map(|t| json!({"url": t.url, "bytes": t.bytes, "requests": t.requests}))
        .collect();
    let by_site: Vec<Value> = totals
        .sites
        .iter()
        .map(|(site, to, from)| json!({"site": site, "to_clients": to, "from_upstream": from}))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.metrics.uptime().as_secs_f64(),
        "now": unix_now(state),
        "config": {"generation": generation, "reloads_ok": reloads_ok, "reloads_failed": reloads_failed},
        "requests": {
            "total": totals.requests_total(),
            "by_mode": by_mode,
            "by_status_class": by_status,
            "by_method_class": by_method,
        },
        "cache": {
            "results": results,
            "hits": totals.hits(),
            "lookups": totals.lookups(),
            "hit_ratio": totals.hit_ratio(),
            "tiers": {"memory": memory.map(tier), "disk": disk},
        },
        "bytes": {
            "to_clients": totals.to_clients,
            "from_upstream": totals.from_upstream,
            "saved": totals.saved(),
            "by_site": by_site,
        },
        "connections": {
            "clients_open": sources.as_ref().map_or(0, |s| (s.clients_open)()),
            "upstream_open": crate::upstream::connect::open_connections(),
        },
        "upstreams": upstreams,
        "peers": peers,
        "access_log": {"dropped": sources.as_ref().map_or(0, |s| (s.log_dropped)())},
        "top_urls": top,
        "history": history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded() {
        let h = History::default();
        for i in 0..1000 {
            h.push(Sample {
                t: f64::from(i),
                requests: 0,
                hits: 0,
                lookups: 0,
                to_clients: 0,
                from_upstream: 0,
            });
        }
        let s = h.samples();
        assert_eq!(s.len(), 120);
        assert_eq!(s.last().unwrap().t, 999.0);
    }
}
