//! `ip_hash`: a client keeps reaching the same server, keyed by its network.
//!
//! This is nginx's `ngx_http_upstream_get_ip_hash_peer`: starting from 89, the hash folds in
//! the first three octets of an IPv4 address (so a whole /24 sticks together) or all sixteen
//! of an IPv6 one as `hash = (hash * 113 + byte) % 6271`, then `hash % total_weight` picks a
//! server on the cumulative weights of *every* server in the tier, usable or not. If that
//! server is unusable the hash is folded again and retried; nginx documents why: "If one of
//! the servers needs to be temporarily removed, it should be marked with the down parameter
//! in order to preserve the current hashing of client IP addresses." So losing a server only
//! moves its own clients.
//!
//! Differences: the retry sequence continues past the choice to give a per-client failover
//! order, and where nginx falls back to round robin after 20 tries, the unplaced servers
//! follow in ring order from the last slot hit (still deterministic). IPv4-mapped IPv6
//! addresses hash as IPv4. When a tier's weights add up to more than 6271 (where nginx can
//! never reach the last servers), the hash is spread with `fmix64` before the modulo.

use std::net::IpAddr;

use super::mix::fmix64;

/// nginx's initial hash value.
const SEED: u64 = 89;
/// nginx's multiplier per address byte.
const MULTIPLIER: u64 = 113;
/// nginx's modulus (a prime).
const MODULUS: u64 = 6271;
/// nginx gives up rehashing for the first choice after this many tries.
const NGINX_TRIES: usize = 20;

/// Appends the `want` usable servers of `members` in this client's order.
pub fn order(
    client: IpAddr,
    members: &[usize],
    weights: &[u64],
    usable: &[bool],
    want: usize,
    out: &mut Vec<usize>,
) {
    let v4;
    let v6;
    let bytes: &[u8] = match client.to_canonical() {
        IpAddr::V4(a) => {
            v4 = a.octets();
            v4.get(..3).unwrap_or(&[])
        }
        IpAddr::V6(a) => {
            v6 = a.octets();
            &v6
        }
    };
    let mut cumulative = Vec::with_capacity(members.len());
    let mut total: u64 = 0;
    for &i in members {
        total = total.saturating_add(weights.get(i).copied().unwrap_or(1));
        cumulative.push(total);
    }
    if total == 0 || want == 0 {
        return;
    }
    let start = out.len();
    let mut placed = vec![false; usable.len()];
    let mut place = |i: usize, out: &mut Vec<usize>| {
        let fresh = usable.get(i).copied().unwrap_or(false);
        if let Some(p) = placed.get_mut(i).filter(|p| fresh && !**p) {
            *p = true;
            out.push(i);
        }
    };

    let mut hash = SEED;
    let mut last_slot = 0usize;
    let budget = NGINX_TRIES.saturating_add(members.len().saturating_mul(4));
    for _ in 0..budget {
        if out.len().saturating_sub(start) >= want {
            return;
        }
        hash = bytes
            .iter()
            .fold(hash, |h, &b| (h * MULTIPLIER + u64::from(b)) % MODULUS);
        let spread = if total > MODULUS { fmix64(hash) } else { hash };
        let w = spread % total;
        last_slot = cumulative.partition_point(|&c| c <= w);
        if let Some(&i) = members.get(last_slot) {
            place(i, out);
        }
    }
    for step in 1..=members.len() {
        if out.len().saturating_sub(start) >= want {
            return;
        }
        let slot = last_slot.saturating_add(step) % members.len();
        if let Some(&i) = members.get(slot) {
            place(i, out);
        }
    }
}

#[cfg(test)]
mod tests;
