//! `least_conn`: the server with the fewest active connections per unit of weight.
//!
//! As in nginx (`ngx_http_upstream_get_least_conn_peer`), loads are compared as
//! `active_a * weight_b < active_b * weight_a`, so no division or rounding is involved, and
//! when several servers tie for the lowest load the smooth weighted round robin runs among
//! just those, so equal loads still split by weight. The failover order is what nginx's retry
//! would pick next: the remaining servers by load, ties by round-robin preview.

use std::cmp::Ordering;

use super::round_robin;

/// Per-request inputs, indexed like the specs.
pub struct Input<'a> {
    /// Weights with 0 already read as 1.
    pub weights: &'a [u64],
    /// Active connections per server.
    pub active: &'a [u32],
    /// Usable servers of the tier being ordered, ascending.
    pub live: &'a [usize],
}

impl Input<'_> {
    fn cmp_load(&self, a: usize, b: usize) -> Ordering {
        cmp_load(self.weights, self.active, a, b)
    }
}

/// Compares `active / weight` of servers `a` and `b` by cross-multiplication (in u128, so
/// no product can overflow).
pub fn cmp_load(weights: &[u64], active: &[u32], a: usize, b: usize) -> Ordering {
    let load = |i: usize| {
        let conns = u128::from(active.get(i).copied().unwrap_or(0));
        (conns, u128::from(weights.get(i).copied().unwrap_or(1)))
    };
    let (a_conns, a_weight) = load(a);
    let (b_conns, b_weight) = load(b);
    (a_conns * b_weight).cmp(&(b_conns * a_weight))
}

/// Appends `input.live` in least-connections order; `commit` lets the tie-break advance
/// the round-robin state.
pub fn order(current: &mut [i64], input: &Input<'_>, commit: bool, out: &mut Vec<usize>) {
    let Some(&lightest) = input.live.iter().min_by(|&&a, &&b| input.cmp_load(a, b)) else {
        return;
    };
    let first = if commit {
        let tied: Vec<usize> = input
            .live
            .iter()
            .copied()
            .filter(|&i| input.cmp_load(i, lightest) == Ordering::Equal)
            .collect();
        round_robin::pick(current, input.weights, &tied)
    } else {
        None
    };
    let mut rest: Vec<usize> = input
        .live
        .iter()
        .copied()
        .filter(|&i| Some(i) != first)
        .collect();
    rest.sort_by(|&a, &b| {
        input.cmp_load(a, b).then_with(|| {
            let pa = round_robin::preview(current, input.weights, a);
            let pb = round_robin::preview(current, input.weights, b);
            pb.cmp(&pa).then(a.cmp(&b))
        })
    });
    out.extend(first);
    out.extend(rest);
}

#[cfg(test)]
mod tests;
