use super::super::test_util::{assert_by_weight, idle, loaded, req, selector, tally};
use super::super::Algorithm;
use super::*;

#[test]
fn equal_loads_split_by_weight() {
    let mut sel = selector(Algorithm::RandomTwo, &[1, 2, 3, 4]);
    let counts = tally(&mut sel, &idle(4), 40_000);
    assert_by_weight(&counts, &[1, 2, 3, 4], 0.10);
}

#[test]
fn less_loaded_of_the_two_wins() {
    let mut sel = selector(Algorithm::RandomTwo, &[1, 1]);
    for n in 0..200 {
        assert_eq!(sel.candidates(&req(n), &loaded(&[7, 2])), [1, 0]);
    }
    // With three servers the busiest can only ever be drawn as the loser.
    let mut sel = selector(Algorithm::RandomTwo, &[1, 1, 1]);
    let counts = tally(&mut sel, &loaded(&[0, 50, 3]), 3000);
    assert_eq!(counts[1], 0, "{counts:?}");
    assert!(counts[0] > counts[2], "{counts:?}");
}

#[test]
fn failover_is_the_other_draw_then_by_load() {
    let weights = [1u64; 5];
    let active = [9u32, 1, 4, 0, 2];
    for seed in 0..200 {
        let mut out = Vec::new();
        order(
            &weights,
            &active,
            &[0, 1, 2, 3, 4],
            &mut SplitMix64::new(seed),
            &mut out,
        );
        let (a, b) = (out[0], out[1]);
        assert!(active[a] <= active[b], "{out:?}");
        let rest: Vec<u32> = out[2..].iter().map(|&i| active[i]).collect();
        assert!(rest.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
        let mut all = out.clone();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4]);
    }
}

#[test]
fn same_randomness_same_order() {
    let mut sel = selector(Algorithm::RandomTwo, &[1, 2, 3]);
    let view = loaded(&[1, 1, 1]);
    for n in 0..100 {
        assert_eq!(
            sel.candidates(&req(n), &view),
            sel.candidates(&req(n), &view)
        );
    }
}

#[test]
fn single_usable_server_is_the_only_candidate() {
    let mut out = Vec::new();
    order(&[5], &[3], &[0], &mut SplitMix64::new(1), &mut out);
    assert_eq!(out, [0]);
}
