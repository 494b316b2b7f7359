//! nginx's smooth weighted round robin, for `round_robin` and `least_conn`'s tie-break.
//!
//! nginx (`ngx_http_upstream_get_peer` in `ngx_http_upstream_round_robin.c`) keeps a
//! `current_weight` per peer. On each pick every usable peer's current weight grows by its
//! weight, the largest wins, and the winner gives back the sum of the weights. Weights 5:1:1
//! then yield `a a b a c a a` rather than `a a a a a b c`, and unusable peers are skipped
//! without touching their state, so the others keep their proportions. nginx also lowers an
//! `effective_weight` after failures; here failures only reach us as health, so the
//! configured weight is always used.

use std::cmp::Reverse;

/// A server's weight as a signed step (weights fit in `u32`, so this never saturates).
fn step(weights: &[u64], i: usize) -> i64 {
    i64::try_from(weights.get(i).copied().unwrap_or(1)).unwrap_or(i64::MAX)
}

/// One smooth pick among `live`, advancing `current`; `None` when `live` is empty.
/// Ties go to the lowest index, as nginx's strict `>` comparison in peer order does.
pub fn pick(current: &mut [i64], weights: &[u64], live: &[usize]) -> Option<usize> {
    let mut total: i64 = 0;
    let mut best: Option<(usize, i64)> = None;
    for &i in live {
        let w = step(weights, i);
        let Some(c) = current.get_mut(i) else {
            continue;
        };
        *c = c.saturating_add(w);
        total = total.saturating_add(w);
        if best.is_none_or(|(_, bc)| *c > bc) {
            best = Some((i, *c));
        }
    }
    let (winner, _) = best?;
    if let Some(c) = current.get_mut(winner) {
        *c = c.saturating_sub(total);
    }
    Some(winner)
}

/// Where `i` would stand in the next smooth pick: higher goes first.
pub fn preview(current: &[i64], weights: &[u64], i: usize) -> i64 {
    current
        .get(i)
        .copied()
        .unwrap_or(0)
        .saturating_add(step(weights, i))
}

/// Appends `live` in round-robin order. With `commit` the first is a real pick and the rest
/// follow by descending current weight (the order the next picks would favour); without it
/// nothing changes and all of `live` is ordered by [`preview`].
pub fn order(
    current: &mut [i64],
    weights: &[u64],
    live: &[usize],
    commit: bool,
    out: &mut Vec<usize>,
) {
    let first = if commit {
        pick(current, weights, live)
    } else {
        None
    };
    let mut rest: Vec<usize> = live.iter().copied().filter(|&i| Some(i) != first).collect();
    if first.is_some() {
        // The pick already added every live weight, so `current` is the preview.
        rest.sort_by_key(|&i| (Reverse(current.get(i).copied().unwrap_or(0)), i));
    } else {
        rest.sort_by_key(|&i| (Reverse(preview(current, weights, i)), i));
    }
    out.extend(first);
    out.extend(rest);
}

#[cfg(test)]
mod tests;
