use super::super::test_util::{assert_by_weight, choose, group, idle, keyed, selector, tally};
use super::super::{Algorithm, Selector, ServerView};
use super::*;

fn owners(sel: &mut Selector, view: &[ServerView], keys: usize) -> Vec<Option<usize>> {
    (0..keys)
        .map(|n| choose(sel, &keyed(&format!("/object/{n}")), view))
        .collect()
}

#[test]
fn same_key_same_server_across_instances() {
    let mut a = selector(Algorithm::Hash, &[1, 1, 1]);
    let mut b = selector(Algorithm::Hash, &[1, 1, 1]);
    for n in 0..1000 {
        let key = format!("/img/{n}.png");
        let first = a.candidates(&keyed(&key), &idle(3));
        assert_eq!(first, a.candidates(&keyed(&key), &idle(3)));
        assert_eq!(first, b.candidates(&keyed(&key), &idle(3)));
    }
}

#[test]
fn placement_is_pinned() {
    // Guards the hash: if this changes, every deployed cache would reshuffle.
    let mut sel = selector(Algorithm::Hash, &[1, 1, 1, 1, 1]);
    let got: Vec<_> = ["/", "/index.html", "/a/b?c=d"]
        .iter()
        .map(|k| sel.candidates(&keyed(k), &idle(5)))
        .collect();
    assert_eq!(got, PINNED);
}

const PINNED: [[usize; 5]; 3] = [[4, 0, 1, 3, 2], [0, 4, 3, 2, 1], [4, 0, 3, 1, 2]];

#[test]
fn distribution_follows_weights() {
    let mut sel = selector(Algorithm::Hash, &[1, 2, 3, 2]);
    let counts = tally(&mut sel, &idle(4), 30_000);
    assert_by_weight(&counts, &[1, 2, 3, 2], 0.10);
}

#[test]
fn removing_one_of_five_moves_only_its_keys() {
    let mut sel = selector(Algorithm::Hash, &[1; 5]);
    let before = owners(&mut sel, &idle(5), 10_000);
    let mut view = idle(5);
    view[3].healthy = false;
    let after = owners(&mut sel, &view, 10_000);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            assert_eq!(*b, Some(3), "a key moved off a server that stayed");
            moved += 1;
        }
    }
    let share = f64::from(moved) / 10_000.0;
    assert!((0.15..=0.25).contains(&share), "{share}");

    // Building the group without that server gives the same placement (indices shift).
    let mut specs = group(&[1; 5]);
    specs.remove(3);
    let mut smaller = Selector::new(Algorithm::Hash, specs);
    let rebuilt = owners(&mut smaller, &idle(4), 10_000);
    let unshift = |o: &Option<usize>| o.map(|i| if i >= 3 { i + 1 } else { i });
    assert!(after.iter().zip(&rebuilt).all(|(a, r)| *a == unshift(r)));
}

#[test]
fn failover_is_next_distinct_servers_clockwise() {
    let specs = group(&[1, 2, 1, 1]);
    let weights = [1u64, 2, 1, 1];
    let ring = Ring::new(&specs, &weights, &[0, 1, 2, 3]);
    assert_eq!(ring.points.len(), 160 * 5);
    for key in ["/", "/x", "/y/z", "/object/42"] {
        let at = stable_hash(key.as_bytes());
        let mut walk: Vec<usize> = Vec::new();
        let from = ring.points.iter().position(|&(p, _)| p >= at).unwrap_or(0);
        for k in 0..ring.points.len() {
            let (_, i) = ring.points[(from + k) % ring.points.len()];
            if !walk.contains(&i) {
                walk.push(i);
            }
        }
        let mut out = Vec::new();
        ring.order(key, &[true; 4], 4, &mut out);
        assert_eq!(out, walk, "{key}");
        let mut skip_first = Vec::new();
        let mut usable = [true; 4];
        usable[walk[0]] = false;
        ring.order(key, &usable, 3, &mut skip_first);
        assert_eq!(skip_first, walk[1..], "{key}");
    }
}

#[test]
fn huge_weights_are_scaled_to_the_point_cap() {
    let specs = group(&[1_000_000, 3_000_000]);
    let ring = Ring::new(&specs, &[1_000_000, 3_000_000], &[0, 1]);
    assert!(ring.points.len() as u64 <= MAX_POINTS + 2);
    let share0 = ring.points.iter().filter(|&&(_, i)| i == 0).count();
    assert_eq!(share0 * 3, ring.points.len() - share0);
}
