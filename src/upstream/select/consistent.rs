//! `hash`: consistent hashing of a request key, so each URL keeps hitting the cache of the
//! same upstream, and adding or losing one of N servers moves only about 1/N of the keys.
//!
//! This follows nginx's `hash $key consistent` (ketama): every server owns 160 points per
//! unit of weight on a 64-bit ring, at `stable_hash("name-N")`; a key belongs to the first
//! point clockwise from `stable_hash(key)`, and the failover order is the following distinct
//! servers clockwise. Points of unusable servers are stepped over rather than removed, and
//! positions depend only on server names, so marking a server down, or building the group
//! without it, moves exactly the keys that server held. Names should be unique: two servers
//! with one name share points, and the lower index always wins them.
//!
//! Unlike nginx (CRC32 over the name with a chained per-point hash) the positions come from
//! [`stable_hash`], so rings are not interchangeable with nginx's. To bound memory, a tier
//! whose points would exceed [`MAX_POINTS`] gets proportionally fewer points per server.

use std::fmt;

use super::mix::stable_hash;
use super::ServerSpec;

/// Ring points per unit of weight (ketama's and nginx's 160).
pub const POINTS_PER_WEIGHT: u64 = 160;
/// Most points one ring holds (16 MiB); larger weights are scaled down together.
pub const MAX_POINTS: u64 = 1 << 20;

/// The sorted points of one tier.
#[derive(Default)]
pub struct Ring {
    /// `(position, server index)`, ascending; ties (only for shared names) by index.
    points: Vec<(u64, usize)>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("points", &self.points.len())
            .finish()
    }
}

impl Ring {
    /// Places the points of `members` (indices into `specs` and `weights`).
    pub fn new(specs: &[ServerSpec], weights: &[u64], members: &[usize]) -> Self {
        let weight = |i: usize| weights.get(i).copied().unwrap_or(1);
        let wanted = members
            .iter()
            .map(|&i| weight(i).saturating_mul(POINTS_PER_WEIGHT))
            .fold(0u64, u64::saturating_add);
        let divisor = wanted.div_ceil(MAX_POINTS).max(1);
        let mut points = Vec::new();
        for &i in members {
            let Some(spec) = specs.get(i) else {
                continue;
            };
            let count = weight(i)
                .saturating_mul(POINTS_PER_WEIGHT)
                .div_ceil(divisor);
            for n in 0..count {
                let label = format!("{}-{n}", spec.name);
                points.push((stable_hash(label.as_bytes()), i));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// Appends up to `want` distinct usable servers, clockwise from `key`'s position.
    pub fn order(&self, key: &str, usable: &[bool], want: usize, out: &mut Vec<usize>) {
        let at = stable_hash(key.as_bytes());
        let start = self.points.partition_point(|&(pos, _)| pos < at);
        let Some((before, after)) = self.points.split_at_checked(start) else {
            return;
        };
        let mut seen = vec![false; usable.len()];
        let mut found = 0usize;
        for &(_, i) in after.iter().chain(before) {
            if found >= want {
                return;
            }
            let fresh = usable.get(i).copied().unwrap_or(false);
            if let Some(s) = seen.get_mut(i).filter(|s| fresh && !**s) {
                *s = true;
                out.push(i);
                found = found.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests;
