use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::super::test_util::{assert_by_weight, choose, from_ip, idle, selector, tally};
use super::super::{Algorithm, ServerView};

/// nginx's loop, written out plainly, for the first choice when every server is usable.
fn nginx_first(octets: [u8; 3], weights: &[u64]) -> usize {
    let total: u64 = weights.iter().sum();
    let mut hash = 89u64;
    for b in octets {
        hash = (hash * 113 + u64::from(b)) % 6271;
    }
    let mut w = hash % total;
    let mut p = 0;
    while w >= weights[p] {
        w -= weights[p];
        p += 1;
    }
    p
}

#[test]
fn first_choice_matches_nginx_formula() {
    let weights = [1u64, 3, 2, 1];
    let mut sel = selector(Algorithm::IpHash, &[1, 3, 2, 1]);
    for n in 0u32..2000 {
        let [a, b, c, d] = n.wrapping_mul(2_654_435_761).to_be_bytes();
        let ip = IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let got = choose(&mut sel, &from_ip(ip), &idle(4));
        assert_eq!(got, Some(nginx_first([a, b, c], &weights)), "{ip}");
    }
    // Worked by hand: 10.0.0.x → 3796 → 2520 → 2565, and 2565 % 7 = 3 lands in server 1's
    // slots (1..=3 of 0..7).
    assert_eq!(nginx_first([10, 0, 0], &weights), 1);
}

#[test]
fn same_slash_24_sticks_to_one_server_and_failover_list() {
    let mut sel = selector(Algorithm::IpHash, &[1, 1, 1, 1, 1]);
    let expected = sel.candidates(&from_ip(IpAddr::from([198, 51, 100, 1])), &idle(5));
    assert_eq!(expected.len(), 5);
    for last in 0..=255u8 {
        let r = from_ip(IpAddr::from([198, 51, 100, last]));
        assert_eq!(sel.candidates(&r, &idle(5)), expected);
    }
}

#[test]
fn distribution_follows_weights() {
    let mut sel = selector(Algorithm::IpHash, &[1, 2, 3]);
    let counts = tally(&mut sel, &idle(3), 30_000);
    assert_by_weight(&counts, &[1, 2, 3], 0.10);
}

#[test]
fn losing_a_server_moves_only_its_clients() {
    let mut sel = selector(Algorithm::IpHash, &[1, 1, 1, 1]);
    let mut view = idle(4);
    let clients: Vec<IpAddr> = (0..3000u32)
        .map(|n| IpAddr::V4(Ipv4Addr::from(n.wrapping_mul(0x9e37_79b9))))
        .collect();
    let before: Vec<_> = clients
        .iter()
        .map(|&ip| choose(&mut sel, &from_ip(ip), &view))
        .collect();
    view[2] = ServerView {
        healthy: false,
        active: 0,
    };
    for (ip, was) in clients.iter().zip(&before) {
        let list = sel.candidates(&from_ip(*ip), &view);
        if *was == Some(2) {
            assert_ne!(list.first(), Some(&2));
        } else {
            assert_eq!(list.first().copied(), *was, "{ip} moved");
        }
        assert_eq!(list.len(), 3);
    }
}

#[test]
fn failover_is_stable_and_varies_by_client() {
    let mut sel = selector(Algorithm::IpHash, &[1, 1, 1, 1]);
    let a = IpAddr::from([203, 0, 113, 9]);
    let first = sel.candidates(&from_ip(a), &idle(4));
    for _ in 0..10 {
        assert_eq!(sel.candidates(&from_ip(a), &idle(4)), first);
    }
    let distinct: std::collections::HashSet<Vec<usize>> = (0..200u8)
        .map(|n| sel.candidates(&from_ip(IpAddr::from([10, n, 1, 1])), &idle(4)))
        .collect();
    assert!(distinct.len() > 4, "failover orders differ between clients");
}

#[test]
fn ipv6_uses_the_whole_address_and_mapped_ipv4_hashes_as_ipv4() {
    let mut sel = selector(Algorithm::IpHash, &[1, 1, 1, 1, 1, 1, 1]);
    let base = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0);
    let picks: std::collections::HashSet<_> = (0..64u16)
        .map(|n| {
            let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n);
            choose(&mut sel, &from_ip(IpAddr::V6(ip)), &idle(7))
        })
        .collect();
    assert!(picks.len() > 1, "the low bits of {base} matter");

    let v4 = Ipv4Addr::new(192, 0, 2, 33);
    let mapped = IpAddr::V6(v4.to_ipv6_mapped());
    assert_eq!(
        sel.candidates(&from_ip(mapped), &idle(7)),
        sel.candidates(&from_ip(IpAddr::V4(v4)), &idle(7))
    );
}

#[test]
fn heavy_tiers_reach_every_server() {
    // 3 × 4000 > 6271: nginx's raw hash could never reach the third server.
    let mut sel = selector(Algorithm::IpHash, &[4000, 4000, 4000]);
    let counts = tally(&mut sel, &idle(3), 3000);
    assert!(counts.iter().all(|&c| c > 600), "{counts:?}");
}
