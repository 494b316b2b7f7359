//! `/metrics` in the Prometheus text exposition format (0.0.4), written by the official
//! Prometheus client crate (`prometheus-client`): a [`Collector`] reads the sums at each
//! scrape, so nothing on the request path goes through the crate's own metric types.
//!
//! Metric names are constants here (one place for stable strings). Counters get `_total`
//! from the encoder.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::State;
use crate::cache::result::ResultKind;
use crate::metrics::{MethodClass, ModeClass, STATUS_CLASSES};

/// Metric names (without the `_total` the encoder adds to counters).
pub mod names {
    pub const REQUESTS: &str = "cuttle_requests";
    pub const CACHE_RESULTS: &str = "cuttle_cache_results";
    pub const CACHE_HITS: &str = "cuttle_cache_hits";
    pub const CACHE_LOOKUPS: &str = "cuttle_cache_lookups";
    pub const CLIENT_BYTES: &str = "cuttle_client_sent_bytes";
    pub const UPSTREAM_BYTES: &str = "cuttle_upstream_received_bytes";
    pub const SITE_CLIENT_BYTES: &str = "cuttle_site_client_sent_bytes";
    pub const SITE_UPSTREAM_BYTES: &str = "cuttle_site_upstream_received_bytes";
    pub const TIER_OBJECTS: &str = "cuttle_cache_objects";
    pub const TIER_BYTES: &str = "cuttle_cache_bytes";
    pub const TIER_MAX_BYTES: &str = "cuttle_cache_max_bytes";
    pub const TIER_EVICTIONS: &str = "cuttle_cache_evictions";
    pub const DISK_INDEX_READY: &str = "cuttle_cache_disk_index_ready";
    pub const DISK_INDEX_LOADED: &str = "cuttle_cache_disk_index_loaded_entries";
    pub const SERVER_UP: &str = "cuttle_upstream_server_up";
    pub const SERVER_REQUESTS: &str = "cuttle_upstream_server_requests";
    pub const SERVER_FAILURES: &str = "cuttle_upstream_server_failures";
    pub const SERVER_LATENCY: &str = "cuttle_upstream_server_response_seconds";
    pub const PEER_UP: &str = "cuttle_peer_up";
    pub const PEER_REQUESTS: &str = "cuttle_peer_requests";
    pub const PEER_FAILURES: &str = "cuttle_peer_failures";
    pub const PEER_LATENCY: &str = "cuttle_peer_response_seconds";
    pub const NEXT_HOP_UP: &str = "cuttle_next_hop_up";
    pub const NEXT_HOP_DOWNS: &str = "cuttle_next_hop_down";
    pub const CLIENT_CONNECTIONS: &str = "cuttle_client_connections_open";
    pub const UPSTREAM_CONNECTIONS: &str = "cuttle_upstream_connections_open";
    pub const LOG_DROPPED: &str = "cuttle_access_log_dropped";
    pub const CONFIG_GENERATION: &str = "cuttle_config_generation";
    pub const RELOADS: &str = "cuttle_config_reloads";
    pub const AUTH_FAILURES: &str = "cuttle_proxy_auth_failures";
    pub const UPTIME: &str = "cuttle_uptime_seconds";
}

/// Renders the exposition for `state`.
pub fn render(state: &std::sync::Arc<State>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(std::sync::Arc::clone(state))));
    let mut out = String::with_capacity(8 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

#[derive(Debug)]
struct Scrape(std::sync::Arc<State>);

type Labels<'a> = Vec<(&'static str, String)>;

fn counter_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(Labels<'_>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in values {
        let family = metric.encode_family(labels)?;
        ConstCounter::new(*value).encode(family)?;
    }
    Ok(())
}

fn gauge_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(Labels<'_>, i64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        let family = metric.encode_family(labels)?;
        ConstGauge::new(*value).encode(family)?;
    }
    Ok(())
}

fn histogram_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(Labels<'_>, crate::upstream::stats::StatsSnapshot)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, snap) in values {
        let mut family = metric.encode_family(labels)?;
        let mut buckets = snap.buckets.clone();
        buckets.push((f64::MAX, snap.count));
        family.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            snap.sum_seconds,
            snap.count,
            &buckets,
            None,
        )?;
    }
    Ok(())
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use names::*;
        let state = &self.0;
        let t = state.metrics.totals();
        let mut requests = Vec::new();
        for mode in ModeClass::ALL {
            for method in MethodClass::ALL {
                for (i, class) in STATUS_CLASSES.iter().enumerate() {
                    let value = t.requests[mode as usize][method as usize][i];
                    requests.push((
                        vec![
                            ("mode", mode.as_str().to_owned()),
                            ("method_class", method.as_str().to_owned()),
                            ("status_class", (*class).to_owned()),
                        ],
                        value,
                    ));
                }
            }
        }
        counter_family(
            &mut e,
            REQUESTS,
            "Client requests finished, by port mode, method class and status class.",
            &requests,
        )?;
        let results: Vec<_> = ResultKind::ALL
            .iter()
            .map(|&k| (vec![("result", k.as_str().to_owned())], t.result(k)))
            .collect();
        counter_family(&mut e, CACHE_RESULTS, "Cache results by kind (the same outcome the access log code and Cache-Status are rendered from).", &results)?;
        counter_family(&mut e, CACHE_HITS, "Cache lookups served from the cache (memory/disk hits, stale served, collapsed, 304 revalidations).", &[(vec![], t.hits())])?;
        counter_family(
            &mut e,
            CACHE_LOOKUPS,
            "Cache lookups: hits plus misses and modified revalidations.",
            &[(vec![], t.lookups())],
        )?;
        counter_family(
            &mut e,
            CLIENT_BYTES,
            "Response body bytes sent to clients.",
            &[(vec![], t.to_clients)],
        )?;
        counter_family(
            &mut e,
            UPSTREAM_BYTES,
            "Response body bytes received from upstream (origins, parents, tunnels).",
            &[(vec![], t.from_upstream)],
        )?;
        let to: Vec<_> = t
            .sites
            .iter()
            .map(|(s, to, _)| (vec![("site", s.clone())], *to))
            .collect();
        let from: Vec<_> = t
            .sites
            .iter()
            .map(|(s, _, from)| (vec![("site", s.clone())], *from))
            .collect();
        counter_family(
            &mut e,
            SITE_CLIENT_BYTES,
            "Response body bytes sent to clients, per reverse-mode site.",
            &to,
        )?;
        counter_family(
            &mut e,
            SITE_UPSTREAM_BYTES,
            "Response body bytes received from upstream, per reverse-mode site.",
            &from,
        )?;

        let sources = state.sources();
        let mut tiers = Vec::new();
        if let Some(s) = &sources {
            tiers.push(("memory", s.cache.store.memory_stats()));
            if let Some((_, disk)) = s.cache.store.disk_stats() {
                tiers.push(("disk", disk));
            }
        }
        let per_tier = |f: fn(&crate::cache::store::TierStats) -> u64| -> Vec<(Labels<'_>, i64)> {
            tiers
                .iter()
                .map(|(name, t)| (vec![("tier", (*name).to_owned())], i64_of(f(t))))
                .collect()
        };
        gauge_family(
            &mut e,
            TIER_OBJECTS,
            "Objects stored, per tier.",
            &per_tier(|t| t.objects),
        )?;
        gauge_family(
            &mut e,
            TIER_BYTES,
            "Bytes stored, per tier.",
            &per_tier(|t| t.bytes),
        )?;
        gauge_family(
            &mut e,
            TIER_MAX_BYTES,
            "Configured size limit, per tier.",
            &per_tier(|t| t.max_bytes),
        )?;
        let evictions: Vec<_> = tiers
            .iter()
            .map(|(name, t)| (vec![("tier", (*name).to_owned())], t.evictions))
            .collect();
        counter_family(
            &mut e,
            TIER_EVICTIONS,
            "Objects evicted to make room, per tier.",
            &evictions,
        )?;
        if let Some(load) = sources.as_ref().and_then(|s| s.cache.store.disk_load()) {
            gauge_family(
                &mut e,
                DISK_INDEX_READY,
                "1 once the disk index is loaded (until then disk entries not loaded yet are misses).",
                &[(vec![], i64::from(load.ready))],
            )?;
            gauge_family(
                &mut e,
                DISK_INDEX_LOADED,
                "Entries loaded into the disk index since start.",
                &[(vec![], i64_of(load.loaded))],
            )?;
        }

        let (mut up, mut reqs, mut fails, mut lat) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut pup, mut preqs, mut pfails, mut plat) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        if let Some(s) = &sources {
            for group in &s.groups {
                for (i, server) in group.servers.iter().enumerate() {
                    let labels = vec![
                        ("group", group.config.name.clone()),
                        ("server", server.config.address.clone()),
                    ];
                    let snap = server.stats.snapshot();
                    up.push((labels.clone(), i64::from(group.is_healthy(i))));
                    reqs.push((labels.clone(), snap.requests));
                    fails.push((labels.clone(), snap.failures));
                    lat.push((labels, snap));
                }
            }
            if let Some(p) = &s.peers {
                for (i, peer) in p.config.peers.iter().enumerate() {
                    let labels = vec![("peer", peer.info.name.clone())];
                    let snap = p.stats.get(i).map(|s| s.snapshot()).unwrap_or_default();
                    pup.push((labels.clone(), i64::from(p.alive(i))));
                    preqs.push((labels.clone(), snap.requests));
                    pfails.push((labels.clone(), snap.failures));
                    plat.push((labels, snap));
                }
            }
        }
        gauge_family(
            &mut e,
            SERVER_UP,
            "1 if the upstream server may get requests (not banned, health check passing).",
            &up,
        )?;
        counter_family(
            &mut e,
            SERVER_REQUESTS,
            "Attempts sent to an upstream server.",
            &reqs,
        )?;
        counter_family(
            &mut e,
            SERVER_FAILURES,
            "Attempts to an upstream server that failed (connect, TLS, timeout, bad response).",
            &fails,
        )?;
        histogram_family(
            &mut e,
            SERVER_LATENCY,
            "Time from sending a request to an upstream server to its response head.",
            &lat,
        )?;
        gauge_family(
            &mut e,
            PEER_UP,
            "1 if the cache peer is not being skipped as dead.",
            &pup,
        )?;
        counter_family(
            &mut e,
            PEER_REQUESTS,
            "Attempts sent to a cache peer.",
            &preqs,
        )?;
        counter_family(
            &mut e,
            PEER_FAILURES,
            "Attempts to a cache peer that failed.",
            &pfails,
        )?;
        histogram_family(
            &mut e,
            PEER_LATENCY,
            "Time from sending a request to a cache peer to its response head.",
            &plat,
        )?;

        // Every next hop's liveness (group servers, peers, cluster members), one family.
        let (mut hop_up, mut hop_downs) = (Vec::new(), Vec::new());
        if let Some(s) = &sources {
            for hop in s.next_hops() {
                let labels = vec![
                    ("role", hop.role().as_str().to_owned()),
                    ("name", hop.name().to_owned()),
                ];
                hop_up.push((labels.clone(), i64::from(hop.is_up())));
                hop_downs.push((labels, hop.downs()));
            }
        }
        gauge_family(
            &mut e,
            NEXT_HOP_UP,
            "1 if the next hop (role: server, parent, sibling, member) may be asked now.",
            &hop_up,
        )?;
        counter_family(
            &mut e,
            NEXT_HOP_DOWNS,
            "Times the next hop went down (each logged once as `Detected DEAD`).",
            &hop_downs,
        )?;

        let clients = sources.as_ref().map_or(0, |s| (s.clients_open)());
        gauge_family(
            &mut e,
            CLIENT_CONNECTIONS,
            "Client connections open now.",
            &[(vec![], i64_of(clients))],
        )?;
        gauge_family(
            &mut e,
            UPSTREAM_CONNECTIONS,
            "Upstream connections open now (pooled or in use).",
            &[(vec![], i64_of(crate::upstream::connect::open_connections()))],
        )?;
        let dropped = sources.as_ref().map_or(0, |s| (s.log_dropped)());
        counter_family(
            &mut e,
            LOG_DROPPED,
            "Access-log records dropped because the writer could not keep up.",
            &[(vec![], dropped)],
        )?;
        let (generation, ok, failed) = state.metrics.config_state();
        gauge_family(
            &mut e,
            CONFIG_GENERATION,
            "Generation of the config in force (1 at start, +1 per successful reload).",
            &[(vec![], i64_of(generation))],
        )?;
        counter_family(
            &mut e,
            RELOADS,
            "Config reloads, by outcome.",
            &[
                (vec![("outcome", "ok".to_owned())], ok),
                (vec![("outcome", "failed".to_owned())], failed),
            ],
        )?;
        let (failed, limited) = state.metrics.auth_failures();
        counter_family(
            &mut e,
            AUTH_FAILURES,
            "Proxy-authentication attempts that failed, by reason (rate_limited: refused \
             unchecked after too many failures from the address).",
            &[
                (vec![("reason", "bad_credentials".to_owned())], failed),
                (vec![("reason", "rate_limited".to_owned())], limited),
            ],
        )?;
        let mut uptime = e.encode_descriptor(
            UPTIME,
            "Seconds since the process started.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(state.metrics.uptime().as_secs_f64())
            .encode(uptime.encode_family(&Vec::<(&str, String)>::new())?)?;
        Ok(())
    }
}
