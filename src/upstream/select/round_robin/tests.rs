use super::super::test_util::{choose, idle, req, selector, tally};
use super::super::{Algorithm, ServerView};
use super::*;

#[test]
fn weights_one_two_three_split_exactly() {
    let mut sel = selector(Algorithm::RoundRobin, &[1, 2, 3]);
    assert_eq!(tally(&mut sel, &idle(3), 3000), [500, 1000, 1500]);
}

#[test]
fn sequence_is_smooth_like_nginx() {
    // The example in nginx's "Upstream: smooth weighted round-robin balancing" change:
    // weights { 5, 1, 1 } give { a, a, b, a, c, a, a }, not { c, b, a, a, a, a, a }.
    let mut sel = selector(Algorithm::RoundRobin, &[5, 1, 1]);
    let seq: Vec<usize> = (0..7)
        .filter_map(|n| choose(&mut sel, &req(n), &idle(3)))
        .collect();
    assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn unhealthy_server_is_skipped_and_the_rest_keep_their_ratio() {
    let mut sel = selector(Algorithm::RoundRobin, &[1, 2, 3]);
    let mut view = idle(3);
    view[1] = ServerView {
        healthy: false,
        active: 0,
    };
    assert_eq!(tally(&mut sel, &view, 2000), [500, 0, 1500]);
    // Back to health: the full 1:2:3 ratio returns.
    assert_eq!(tally(&mut sel, &idle(3), 6000), [1000, 2000, 3000]);
}

#[test]
fn failover_follows_descending_current_weight() {
    let mut current = vec![0i64; 3];
    let weights = [1u64, 2, 3];
    let mut out = Vec::new();
    order(&mut current, &weights, &[0, 1, 2], true, &mut out);
    // After adding weights: 1, 2, 3; server 2 wins and drops to -3.
    assert_eq!(out, [2, 1, 0]);
    assert_eq!(current, [1, 2, -3]);
}

#[test]
fn preview_order_leaves_state_untouched() {
    let mut current = vec![4i64, -2, 0];
    let weights = [1u64, 5, 1];
    let mut out = Vec::new();
    order(&mut current, &weights, &[0, 1, 2], false, &mut out);
    assert_eq!(out, [0, 1, 2]);
    assert_eq!(current, [4, -2, 0]);
}

#[test]
fn pick_over_nothing_is_none() {
    let mut current = vec![0i64; 2];
    assert_eq!(pick(&mut current, &[1, 1], &[]), None);
    assert_eq!(current, [0, 0]);
}
