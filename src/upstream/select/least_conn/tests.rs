use super::super::test_util::{choose, idle, loaded, req, selector, tally};
use super::super::Algorithm;
use super::*;

#[test]
fn prefers_fewest_active_per_weight() {
    let mut sel = selector(Algorithm::LeastConn, &[1, 3, 1]);
    // Loads: 1/1, 2/3, 3/1 → server 1 is least loaded despite more connections than 0.
    assert_eq!(sel.candidates(&req(0), &loaded(&[1, 2, 3])), [1, 0, 2]);
    // Equal ratio by cross-multiplication: 1/1 == 3/3; round robin breaks the tie by weight.
    let first = choose(&mut sel, &req(0), &loaded(&[1, 3, 9]));
    assert_eq!(first, Some(1));
}

#[test]
fn equal_loads_split_by_weight() {
    let mut sel = selector(Algorithm::LeastConn, &[1, 2, 3]);
    assert_eq!(tally(&mut sel, &idle(3), 3000), [500, 1000, 1500]);
    let mut sel = selector(Algorithm::LeastConn, &[1, 2, 3]);
    assert_eq!(tally(&mut sel, &loaded(&[2, 4, 6]), 600), [100, 200, 300]);
}

#[test]
fn failover_is_by_load_then_round_robin() {
    let mut current = vec![0i64; 4];
    let weights = [1u64, 1, 2, 1];
    let active = [5u32, 0, 2, 3];
    let input = Input {
        weights: &weights,
        active: &active,
        live: &[0, 1, 2, 3],
    };
    let mut out = Vec::new();
    order(&mut current, &input, true, &mut out);
    // Loads 5, 0, 1, 3.
    assert_eq!(out, [1, 2, 3, 0]);
    // Only the single tied server took part in the round-robin pick: +1 then -1.
    assert_eq!(current, [0, 0, 0, 0]);
}

#[test]
fn cmp_load_cross_multiplies_without_overflow() {
    let weights = [u64::from(u32::MAX), 1];
    let active = [u32::MAX, 1];
    assert_eq!(cmp_load(&weights, &active, 0, 1), Ordering::Equal);
    assert_eq!(cmp_load(&weights, &[u32::MAX, 2], 0, 1), Ordering::Less);
}
