use std::io::Write;
use std::sync::{Arc, Mutex};

use super::*;

/// Collects what tracing writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(run: impl FnOnce()) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, run);
    let text = captured.0.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

#[tokio::test(start_paused = true)]
async fn nginx_max_fails_within_the_window_take_a_hop_down_for_fail_timeout() {
    let hop = Liveness::new(
        Role::Server,
        "g/a:1",
        Policy::nginx(2, Duration::from_secs(10)),
    );
    hop.failed("refused");
    assert!(hop.is_up(), "one failure is below max_fails");
    hop.failed("refused");
    assert!(!hop.is_up() && hop.is_down());
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(hop.is_up(), "back after fail_timeout");
    assert!(hop.is_down(), "still reported down until it answers");
    hop.answered();
    assert!(!hop.is_down());
}

#[tokio::test(start_paused = true)]
async fn failures_spread_beyond_the_window_do_not_add_up_and_zero_max_fails_never_counts() {
    let hop = Liveness::new(
        Role::Server,
        "g/a:1",
        Policy::nginx(2, Duration::from_secs(10)),
    );
    hop.failed("refused");
    tokio::time::advance(Duration::from_secs(11)).await;
    hop.failed("refused");
    assert!(hop.is_up());
    let never = Liveness::new(
        Role::Server,
        "g/b:1",
        Policy::nginx(0, Duration::from_secs(10)),
    );
    for _ in 0..10 {
        never.failed("refused");
    }
    assert!(never.is_up());
}

#[tokio::test(start_paused = true)]
async fn a_squid_peer_is_dead_for_dead_peer_timeout_after_one_failure_and_revived_by_an_answer() {
    let hop = Liveness::new(
        Role::Parent,
        "upper",
        Policy::squid(Duration::from_secs(60)),
    );
    hop.failed("connection refused");
    assert!(!hop.is_up());
    hop.answered();
    assert!(hop.is_up(), "an answer revives it at once");
}

#[test]
fn a_failed_probe_keeps_a_hop_down_until_a_probe_succeeds() {
    let hop = Liveness::new(Role::Member, "b", Policy::squid(Duration::ZERO));
    hop.probed(Err("cluster probe: refused".into()));
    assert!(!hop.is_up());
    hop.answered();
    assert!(
        !hop.is_up() && hop.is_down(),
        "an answer does not overrule the probe"
    );
    hop.probed(Ok(()));
    assert!(hop.is_up() && !hop.is_down());
}

#[test]
fn every_role_logs_each_transition_once_in_one_format_and_counts_it() {
    let hops = [
        Liveness::new(
            Role::Server,
            "g/a:1",
            Policy::nginx(1, Duration::from_secs(60)),
        ),
        Liveness::new(
            Role::Parent,
            "upper",
            Policy::squid(Duration::from_secs(60)),
        ),
        Liveness::new(Role::Member, "b", Policy::squid(Duration::from_secs(60))),
    ];
    let text = logged(|| {
        for hop in &hops {
            hop.failed("connection refused");
            hop.failed("connection refused");
            hop.answered();
            hop.answered();
            hop.probed(Err("probe answered 503".into()));
            hop.probed(Err("probe answered 503".into()));
            hop.probed(Ok(()));
        }
    });
    for (hop, title) in hops.iter().zip(["Server", "Parent", "Member"]) {
        let dead = format!("Detected DEAD {title}: {}", hop.name());
        let revived = format!("Detected REVIVED {title}: {}", hop.name());
        assert_eq!(text.matches(&dead).count(), 2, "{text}");
        assert_eq!(text.matches(&revived).count(), 2, "{text}");
        assert_eq!(hop.downs(), 2);
    }
    assert!(text.contains("probe answered 503"), "{text}");
    assert!(
        text.contains("role=\"member\"") || text.contains("role=member"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_carries_the_state_over_and_the_probe_only_when_asked() {
    let old = Liveness::new(
        Role::Server,
        "g/a:1",
        Policy::nginx(1, Duration::from_secs(10)),
    );
    old.failed("refused");
    old.probed(Err("check failed".into()));
    let mut kept = Liveness::new(
        Role::Server,
        "g/a:1",
        Policy::nginx(1, Duration::from_secs(10)),
    );
    kept.carry_from(&old, false);
    assert!(!kept.is_up() && !kept.probe_failing());
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(kept.is_up(), "the ban ends when it would have");
    let mut all = Liveness::new(
        Role::Server,
        "g/a:1",
        Policy::nginx(1, Duration::from_secs(10)),
    );
    all.carry_from(&old, true);
    assert!(!all.is_up() && all.probe_failing());
}
