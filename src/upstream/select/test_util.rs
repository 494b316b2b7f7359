//! Builders shared by the selection tests: groups, views, requests and tallies.

use std::net::{IpAddr, Ipv4Addr};

use super::mix::SplitMix64;
use super::{Algorithm, Request, Selector, ServerSpec, ServerView};

/// Primaries named `10.0.0.<i+1>:8080` with the given weights.
pub fn group(weights: &[u32]) -> Vec<ServerSpec> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| ServerSpec::new(format!("10.0.0.{}:8080", i + 1), w))
        .collect()
}

/// A selector over [`group`].
pub fn selector(algorithm: Algorithm, weights: &[u32]) -> Selector {
    Selector::new(algorithm, group(weights))
}

/// `n` healthy, idle servers.
pub fn idle(n: usize) -> Vec<ServerView> {
    vec![ServerView::idle(); n]
}

/// Healthy servers with these active counts.
pub fn loaded(active: &[u32]) -> Vec<ServerView> {
    active
        .iter()
        .map(|&active| ServerView {
            healthy: true,
            active,
        })
        .collect()
}

/// A request from 192.0.2.1 for key `/` with the given randomness.
pub fn req(random: u64) -> Request<'static> {
    Request {
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        hash_key: "/",
        random,
    }
}

/// A request for `key` from 192.0.2.1.
pub fn keyed(key: &str) -> Request<'_> {
    Request {
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        hash_key: key,
        random: 0,
    }
}

/// A request from `ip`.
pub fn from_ip(ip: IpAddr) -> Request<'static> {
    Request {
        client_ip: ip,
        hash_key: "/",
        random: 0,
    }
}

/// The first candidate.
pub fn choose(sel: &mut Selector, req: &Request<'_>, view: &[ServerView]) -> Option<usize> {
    sel.candidates(req, view).first().copied()
}

/// How often each server is chosen over `rounds` requests (fresh randomness, distinct
/// client addresses and keys each time).
pub fn tally(sel: &mut Selector, view: &[ServerView], rounds: usize) -> Vec<usize> {
    let mut counts = vec![0; sel.servers().len()];
    let mut rng = SplitMix64::new(0x5eed);
    for n in 0..rounds {
        let bits = rng.next_u64();
        let ip = IpAddr::V4(Ipv4Addr::from(u32::try_from(bits >> 32).unwrap()));
        let key = format!("/object/{n}");
        let r = Request {
            client_ip: ip,
            hash_key: &key,
            random: bits,
        };
        if let Some(i) = choose(sel, &r, view) {
            counts[i] += 1;
        }
    }
    counts
}

/// Asserts each count is within `tolerance` (a fraction) of its weight's share.
pub fn assert_by_weight(counts: &[usize], weights: &[u32], tolerance: f64) {
    let total_count: usize = counts.iter().sum();
    let total_weight: u32 = weights.iter().sum();
    for (i, (&c, &w)) in counts.iter().zip(weights).enumerate() {
        let expected = total_count as f64 * f64::from(w) / f64::from(total_weight);
        let off = (c as f64 - expected).abs() / expected;
        assert!(
            off <= tolerance,
            "server {i}: {c} picks, expected {expected:.0} (off by {:.1}%) in {counts:?}",
            off * 100.0
        );
    }
}
