use super::test_util::{choose, group, idle, loaded, req, selector};
use super::*;

#[test]
fn algorithm_names_round_trip() {
    for a in Algorithm::ALL {
        assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
        assert_eq!(a.to_string(), a.as_str());
    }
    assert_eq!(
        "random".parse::<Algorithm>(),
        Err(UnknownAlgorithm("random".into()))
    );
    assert!("RoundRobin".parse::<Algorithm>().is_err());
}

#[test]
fn empty_group_yields_nothing() {
    for a in Algorithm::ALL {
        let mut sel = Selector::new(a, Vec::new());
        assert!(sel.candidates(&req(1), &[]).is_empty(), "{a}");
    }
}

#[test]
fn all_down_or_all_unhealthy_yields_nothing() {
    for a in Algorithm::ALL {
        let mut specs = group(&[1, 2, 3]);
        for s in &mut specs {
            s.down = true;
        }
        let mut sel = Selector::new(a, specs);
        assert!(sel.candidates(&req(1), &idle(3)).is_empty(), "{a} down");

        let mut sel = selector(a, &[1, 2, 3]);
        let sick = vec![
            ServerView {
                healthy: false,
                active: 0
            };
            3
        ];
        assert!(sel.candidates(&req(1), &sick).is_empty(), "{a} unhealthy");
    }
}

#[test]
fn down_server_is_never_offered() {
    for a in Algorithm::ALL {
        let mut specs = group(&[1, 5, 1]);
        specs[1].down = true;
        let mut sel = Selector::new(a, specs);
        for n in 0..500 {
            let key = format!("/k{n}");
            let r = Request {
                client_ip: std::net::IpAddr::from([10, 1, (n % 256) as u8, 7]),
                hash_key: &key,
                random: n,
            };
            assert!(!sel.candidates(&r, &idle(3)).contains(&1), "{a}");
        }
    }
}

#[test]
fn server_at_max_conns_is_skipped() {
    for a in Algorithm::ALL {
        let mut specs = group(&[1, 1]);
        specs[0].max_conns = Some(2);
        let mut sel = Selector::new(a, specs.clone());
        for n in 0..50 {
            assert_eq!(sel.candidates(&req(n), &loaded(&[2, 9])), vec![1], "{a}");
        }
        let below = sel.candidates(&req(0), &loaded(&[1, 9]));
        assert!(below.contains(&0), "{a}: below the limit is usable");

        specs[0].max_conns = Some(0);
        let mut unlimited = Selector::new(a, specs);
        assert!(unlimited
            .candidates(&req(0), &loaded(&[500, 0]))
            .contains(&0));
    }
}

#[test]
fn backups_only_follow_usable_primaries() {
    for a in Algorithm::ALL {
        let mut specs = group(&[1, 1, 1, 1]);
        specs[2].backup = true;
        specs[3].backup = true;
        let mut sel = Selector::new(a, specs);
        for n in 0..100 {
            let list = sel.candidates(&req(n), &idle(4));
            assert_eq!(list.len(), 4, "{a}");
            assert!(
                list[..2].iter().all(|&i| i < 2),
                "{a}: primaries first {list:?}"
            );
            assert!(
                list[2..].iter().all(|&i| i >= 2),
                "{a}: backups last {list:?}"
            );
        }
        let primaries_sick = [
            ServerView {
                healthy: false,
                active: 0,
            },
            ServerView {
                healthy: false,
                active: 0,
            },
            ServerView::idle(),
            ServerView::idle(),
        ];
        let mut seen = [false; 4];
        for n in 0..100 {
            let list = sel.candidates(&req(n), &primaries_sick);
            assert_eq!(list.len(), 2, "{a}");
            seen[list[0]] = true;
        }
        assert!(
            !seen[0] && !seen[1] && (seen[2] || seen[3]),
            "{a}: {seen:?}"
        );
    }
}

#[test]
fn round_robin_backups_share_load_when_primaries_fail() {
    let mut specs = group(&[1, 1, 1]);
    specs[1].backup = true;
    specs[2].backup = true;
    let mut sel = Selector::new(Algorithm::RoundRobin, specs);
    let mut view = idle(3);
    view[0].healthy = false;
    let picks: Vec<_> = (0..4).map(|n| choose(&mut sel, &req(n), &view)).collect();
    assert_eq!(picks, [Some(1), Some(2), Some(1), Some(2)]);
}

#[test]
fn every_usable_server_listed_once_choice_first() {
    for a in Algorithm::ALL {
        let mut specs = group(&[3, 1, 2, 1, 4, 1]);
        specs[5].backup = true;
        specs[3].down = true;
        let mut sel = Selector::new(a, specs);
        let mut view = loaded(&[4, 0, 2, 0, 7, 1]);
        view[2].healthy = false;
        for n in 0u64..300 {
            let key = format!("/k{n}");
            let r = Request {
                client_ip: std::net::IpAddr::from([172, 16, (n % 200) as u8, 1]),
                hash_key: &key,
                random: n.wrapping_mul(0x9e37_79b9),
            };
            let mut list = sel.candidates(&r, &view);
            assert_eq!(list.last(), Some(&5), "{a}: backup last");
            list.sort_unstable();
            assert_eq!(list, [0, 1, 4, 5], "{a}");
        }
    }
}

#[test]
fn weight_zero_counts_as_one() {
    let mut sel = selector(Algorithm::RoundRobin, &[0, 1]);
    let picks: Vec<_> = (0..4)
        .map(|n| choose(&mut sel, &req(n), &idle(2)))
        .collect();
    assert_eq!(picks, [Some(0), Some(1), Some(0), Some(1)]);
    for a in Algorithm::ALL {
        let mut sel = selector(a, &[0, 0]);
        assert_eq!(sel.candidates(&req(3), &idle(2)).len(), 2, "{a}");
    }
}

#[test]
fn server_missing_from_view_is_unusable() {
    for a in Algorithm::ALL {
        let mut sel = selector(a, &[1, 1, 1]);
        assert_eq!(sel.candidates(&req(0), &idle(1)), vec![0], "{a}");
    }
}

#[test]
fn accessors_return_configuration() {
    let sel = Selector::new(Algorithm::Hash, group(&[2, 3]));
    assert_eq!(sel.algorithm(), Algorithm::Hash);
    assert_eq!(sel.servers(), group(&[2, 3]).as_slice());
}
