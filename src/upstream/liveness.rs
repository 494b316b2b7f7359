//! Whether one next hop may be asked now: the one liveness tracker behind group servers
//! (nginx `max_fails`/`fail_timeout`, active health checks), cache peers (Squid
//! `dead_peer_timeout`, `monitorurl` probes) and cluster members (their connection probes).
//!
//! A hop is up unless passive failures took it down (`max_fails` failures within `window` take
//! it down for `down_for`; Squid's dead peer is `max_fails = 1`) or its last probe verdict was a
//! failure (a failed probe keeps it down until a probe succeeds). Every change between up and
//! down is logged once, in one format for every kind of hop (Squid's words: `Detected DEAD
//! Parent: NAME`, `Detected REVIVED Parent: NAME`), and counted for `/metrics`
//! (`cuttle_next_hop_up`, `cuttle_next_hop_down_total`). What counts as a failure is the
//! caller's: every caller counts [`Error::nothing_sent`](crate::error::Error::nothing_sent)
//! (the hop was unreachable), a group also what nginx's `max_fails` counts.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::clock;

/// What kind of next hop a tracker watches (the `role` in logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A server of an upstream group.
    Server,
    /// A `cache_peer ... parent`.
    Parent,
    /// A `cache_peer ... sibling`.
    Sibling,
    /// Another member of the cluster.
    Member,
}

impl Role {
    /// The label value in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Parent => "parent",
            Self::Sibling => "sibling",
            Self::Member => "member",
        }
    }

    /// The word in the transition log line (Squid's `Detected DEAD Parent`).
    fn title(self) -> &'static str {
        match self {
            Self::Server => "Server",
            Self::Parent => "Parent",
            Self::Sibling => "Sibling",
            Self::Member => "Member",
        }
    }
}

/// When passive failures take a hop down: each configuration's knobs, as parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures within `window` that take the hop down; 0: passive failures never do.
    pub max_fails: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// How long the hop stays down (then it is tried again).
    pub down_for: Duration,
}

impl Policy {
    /// nginx: `max_fails` within `fail_timeout` take a server out for `fail_timeout`.
    pub fn nginx(max_fails: u32, fail_timeout: Duration) -> Self {
        Self {
            max_fails,
            window: fail_timeout,
            down_for: fail_timeout,
        }
    }

    /// Squid: one failed connection makes a peer dead for `dead_peer_timeout`.
    pub fn squid(dead_peer_timeout: Duration) -> Self {
        Self {
            max_fails: 1,
            window: dead_peer_timeout,
            down_for: dead_peer_timeout,
        }
    }
}

/// One next hop's liveness. Lock-free: the request path does relaxed loads, and stores only
/// when something changes.
#[derive(Debug)]
pub struct Liveness {
    role: Role,
    /// How logs and metrics name the hop (`group/address` for a group server).
    name: String,
    policy: Policy,
    /// Times below are milliseconds after this.
    origin: Instant,
    /// Failures in the current window, and when it started.
    fails: AtomicU32,
    window_start_ms: AtomicU64,
    /// Passively down until this (0: not).
    down_until_ms: AtomicU64,
    /// The last probe (health check, `monitorurl`, cluster probe) failed.
    probe_failed: AtomicBool,
    /// Last reported as down (so each transition is logged once).
    down: AtomicBool,
    /// Transitions to down so far.
    downs: AtomicU64,
}

impl Liveness {
    /// A tracker for a hop presumed up.
    pub fn new(role: Role, name: impl Into<String>, policy: Policy) -> Self {
        Self {
            role,
            name: name.into(),
            policy,
            origin: Instant::now(),
            fails: AtomicU32::new(0),
            window_start_ms: AtomicU64::new(0),
            down_until_ms: AtomicU64::new(0),
            probe_failed: AtomicBool::new(false),
            down: AtomicBool::new(false),
            downs: AtomicU64::new(0),
        }
    }

    /// Takes over `old`'s state (a reload kept this hop's configuration); its probe verdict
    /// only when `probe_too` (the probe did not change either).
    pub fn carry_from(&mut self, old: &Liveness, probe_too: bool) {
        let copy =
            |from: &AtomicU64, to: &mut AtomicU64| *to.get_mut() = from.load(Ordering::Relaxed);
        self.origin = old.origin;
        *self.fails.get_mut() = old.fails.load(Ordering::Relaxed);
        copy(&old.window_start_ms, &mut self.window_start_ms);
        copy(&old.down_until_ms, &mut self.down_until_ms);
        copy(&old.downs, &mut self.downs);
        *self.down.get_mut() = old.down.load(Ordering::Relaxed);
        if probe_too {
            *self.probe_failed.get_mut() = old.probe_failed.load(Ordering::Relaxed);
        }
    }

    /// The kind of hop.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The hop's name in logs and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn now_ms(&self) -> u64 {
        clock::millis_since(self.origin)
    }

    /// Whether the hop may be asked now: no failed probe, and not passively down.
    pub fn is_up(&self) -> bool {
        if self.probe_failed.load(Ordering::Relaxed) {
            return false;
        }
        // 0: never taken down, and no clock read needed to know it (this runs per request).
        let until = self.down_until_ms.load(Ordering::Relaxed);
        until == 0 || self.now_ms() >= until
    }

    /// Whether the hop was last reported down (its last transition was to down).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// How many times the hop went down.
    pub fn downs(&self) -> u64 {
        self.downs.load(Ordering::Relaxed)
    }

    /// Whether the last probe failed.
    pub fn probe_failing(&self) -> bool {
        self.probe_failed.load(Ordering::Relaxed)
    }

    /// A failed attempt (`why` for the log): counted, and the hop goes down once `max_fails`
    /// are counted within the window.
    pub fn failed(&self, why: &str) {
        let max_fails = self.policy.max_fails;
        if max_fails == 0 {
            return;
        }
        let now = self.now_ms();
        let window = clock::millis(self.policy.window);
        if now.saturating_sub(self.window_start_ms.load(Ordering::Relaxed)) > window {
            self.window_start_ms.store(now, Ordering::Relaxed);
            self.fails.store(0, Ordering::Relaxed);
        }
        let fails = self.fails.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if fails >= max_fails {
            self.down_until_ms.store(
                now.saturating_add(clock::millis(self.policy.down_for)),
                Ordering::Relaxed,
            );
            self.fails.store(0, Ordering::Relaxed);
            self.window_start_ms.store(now, Ordering::Relaxed);
            self.went_down(why, Some(self.policy.down_for));
        }
    }

    /// The hop answered: its failure count starts again, and a hop that was down is back
    /// (unless a probe still says otherwise).
    pub fn answered(&self) {
        // Relaxed loads on the request path; stores only when the state changes.
        if self.fails.load(Ordering::Relaxed) != 0 {
            self.fails.store(0, Ordering::Relaxed);
        }
        if self.down.load(Ordering::Relaxed) && !self.probe_failed.load(Ordering::Relaxed) {
            self.down_until_ms.store(0, Ordering::Relaxed);
            self.came_back();
        }
    }

    /// A probe's verdict: a failure keeps the hop down until a probe succeeds.
    pub fn probed(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.probe_failed.store(false, Ordering::Relaxed);
                self.answered();
            }
            Err(why) => {
                self.probe_failed.store(true, Ordering::Relaxed);
                self.went_down(&why, None);
            }
        }
    }

    /// Reports the hop down, once per run of failures.
    fn went_down(&self, why: &str, retry_after: Option<Duration>) {
        if !self.down.swap(true, Ordering::Relaxed) {
            self.downs.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                role = self.role.as_str(),
                next_hop = %self.name,
                reason = why,
                retry_after = ?retry_after,
                "Detected DEAD {}: {}",
                self.role.title(),
                self.name
            );
        }
    }

    /// Reports the hop up, once.
    fn came_back(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(
                role = self.role.as_str(),
                next_hop = %self.name,
                "Detected REVIVED {}: {}",
                self.role.title(),
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests;
