//! `random_two`: the "power of two choices" (nginx's `random two least_conn`).
//!
//! Two distinct usable servers are drawn at random, each with probability proportional to
//! its weight, and the one with fewer active connections per weight wins. This spreads load
//! nearly as well as `least_conn` while not herding every request onto the one server that
//! momentarily looks idlest. Randomness is the caller's `Request::random`, stretched into
//! draws by splitmix64. A tie goes to the first draw (nginx keeps the second), which makes
//! equal loads split exactly by weight. Failover: the other drawn server, then the rest by
//! load, ties by index.

use std::cmp::Ordering;

use super::least_conn::cmp_load;
use super::mix::SplitMix64;

/// Appends `live` in power-of-two-choices order.
pub fn order(
    weights: &[u64],
    active: &[u32],
    live: &[usize],
    rng: &mut SplitMix64,
    out: &mut Vec<usize>,
) {
    let Some(first) = draw(weights, live, None, rng) else {
        return;
    };
    let second = draw(weights, live, Some(first), rng);
    let (winner, other) = match second {
        Some(s) if cmp_load(weights, active, s, first) == Ordering::Less => (s, Some(first)),
        _ => (first, second),
    };
    let mut rest: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&i| i != winner && Some(i) != other)
        .collect();
    rest.sort_by(|&a, &b| cmp_load(weights, active, a, b).then(a.cmp(&b)));
    out.push(winner);
    out.extend(other);
    out.extend(rest);
}

/// One weighted draw from `live`, leaving out `exclude`; `None` when nothing is left.
fn draw(
    weights: &[u64],
    live: &[usize],
    exclude: Option<usize>,
    rng: &mut SplitMix64,
) -> Option<usize> {
    let weight = |i: usize| weights.get(i).copied().unwrap_or(1);
    let eligible = || live.iter().copied().filter(move |&i| Some(i) != exclude);
    let total = eligible().map(weight).fold(0u64, u64::saturating_add);
    let mut ticket = rng.below(total);
    for i in eligible() {
        let w = weight(i);
        if ticket < w {
            return Some(i);
        }
        ticket -= w;
    }
    None
}

#[cfg(test)]
mod tests;
