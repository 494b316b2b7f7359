//! Collapsed forwarding (Squid `collapsed_forwarding`, nginx `proxy_cache_lock`): concurrent
//! misses on one key make a single upstream request.
//!
//! The first request for a key becomes the *leader* and fetches; later ones become *waiters*
//! and wait (bounded) for the leader's outcome. When the leader stored the response, waiters
//! look the cache up again and are served from it; when it was not storable, failed, or the
//! leader vanished (its [`Leader`] guard dropped without an outcome), waiters go upstream
//! themselves. The table is touched only on misses, never on the hit path; its lock is held for
//! a map operation, never across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// What became of a leader's fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still fetching.
    Pending,
    /// The response is in the cache: look it up.
    Stored,
    /// Nothing usable was stored: fetch yourself.
    NotStored,
}

/// The lock table.
#[derive(Debug, Clone, Default)]
pub struct Collapser {
    inflight: Arc<Mutex<HashMap<String, InFlight>>>,
}

/// A fetch in flight: its outcome, and how many requests wait on it.
#[derive(Debug)]
struct InFlight {
    rx: watch::Receiver<Outcome>,
    waiting: Arc<AtomicUsize>,
}

/// Holder of a key's fetch; tells waiters the outcome (NotStored if dropped silently).
#[derive(Debug)]
pub struct Leader {
    key: String,
    tx: watch::Sender<Outcome>,
    table: Collapser,
    waiting: Arc<AtomicUsize>,
}

/// A request waiting on a leader.
#[derive(Debug)]
pub struct Waiter {
    rx: watch::Receiver<Outcome>,
    waiting: Arc<AtomicUsize>,
}

/// How many requests wait on a leader, readable after the leader moved elsewhere.
#[derive(Debug, Clone)]
pub struct WaitingCount(Arc<AtomicUsize>);

impl WaitingCount {
    /// Whether any request waits on the fetch now.
    pub fn any(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

/// Either role.
#[derive(Debug)]
pub enum Role {
    Leader(Leader),
    Waiter(Waiter),
}

impl Collapser {
    /// Becomes the leader for `key`, or a waiter if a fetch is already in flight.
    pub fn join(&self, key: &str) -> Role {
        let Ok(mut map) = self.inflight.lock() else {
            // A poisoned table only loses collapsing, never correctness.
            let waiting = Arc::default();
            return Role::Leader(self.leader(key, watch::channel(Outcome::Pending).0, waiting));
        };
        if let Some(inflight) = map.get(key) {
            if *inflight.rx.borrow() == Outcome::Pending {
                inflight.waiting.fetch_add(1, Ordering::AcqRel);
                return Role::Waiter(Waiter {
                    rx: inflight.rx.clone(),
                    waiting: Arc::clone(&inflight.waiting),
                });
            }
        }
        let (tx, rx) = watch::channel(Outcome::Pending);
        let waiting = Arc::new(AtomicUsize::new(0));
        map.insert(
            key.to_owned(),
            InFlight {
                rx,
                waiting: Arc::clone(&waiting),
            },
        );
        Role::Leader(self.leader(key, tx, waiting))
    }

    /// Becomes the leader only if nobody else is fetching `key` (background refreshes).
    pub fn try_lead(&self, key: &str) -> Option<Leader> {
        match self.join(key) {
            Role::Leader(leader) => Some(leader),
            Role::Waiter(_) => None,
        }
    }

    fn leader(&self, key: &str, tx: watch::Sender<Outcome>, waiting: Arc<AtomicUsize>) -> Leader {
        Leader {
            key: key.to_owned(),
            tx,
            table: self.clone(),
            waiting,
        }
    }

    /// Keys with a fetch in flight (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Leader {
    /// The number of requests waiting on this fetch, as it changes.
    pub fn waiting(&self) -> WaitingCount {
        WaitingCount(Arc::clone(&self.waiting))
    }

    /// Publishes the outcome and leaves the table.
    pub fn finish(self, outcome: Outcome) {
        let _ = self.tx.send(outcome);
        // Drop runs next and removes the entry.
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if *self.tx.borrow() == Outcome::Pending {
            let _ = self.tx.send(Outcome::NotStored);
        }
        if let Ok(mut map) = self.table.inflight.lock() {
            // Only remove our own entry (a later leader may have replaced it).
            if map
                .get(&self.key)
                .is_some_and(|inflight| inflight.rx.same_channel(&self.tx.subscribe()))
            {
                map.remove(&self.key);
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Waiter {
    /// Waits up to `timeout` for the leader's outcome (`NotStored` on timeout).
    pub async fn wait(mut self, timeout: Duration) -> Outcome {
        match tokio::time::timeout(timeout, self.rx.wait_for(|o| *o != Outcome::Pending)).await {
            Ok(Ok(outcome)) => *outcome,
            _ => Outcome::NotStored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_request_waits_and_sees_stored() {
        let table = Collapser::default();
        let Role::Leader(leader) = table.join("k") else {
            panic!("first is leader")
        };
        let Role::Waiter(waiter) = table.join("k") else {
            panic!("second waits")
        };
        let waiting = leader.waiting();
        assert!(waiting.any());
        let wait = tokio::spawn(waiter.wait(Duration::from_secs(5)));
        leader.finish(Outcome::Stored);
        assert_eq!(wait.await.unwrap(), Outcome::Stored);
        assert!(!waiting.any(), "the waiter is done");
        assert_eq!(table.in_flight(), 0);
        assert!(
            matches!(table.join("k"), Role::Leader(_)),
            "next request leads again"
        );
    }

    #[tokio::test]
    async fn dropped_leader_releases_waiters_as_not_stored() {
        let table = Collapser::default();
        let Role::Leader(leader) = table.join("k") else {
            panic!()
        };
        let Role::Waiter(waiter) = table.join("k") else {
            panic!()
        };
        drop(leader);
        assert_eq!(
            waiter.wait(Duration::from_secs(5)).await,
            Outcome::NotStored
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded() {
        let table = Collapser::default();
        let _leader = table.join("k");
        let Role::Waiter(waiter) = table.join("k") else {
            panic!()
        };
        assert_eq!(
            waiter.wait(Duration::from_secs(3)).await,
            Outcome::NotStored
        );
    }

    #[test]
    fn try_lead_refuses_when_busy() {
        let table = Collapser::default();
        let first = table.try_lead("k");
        assert!(first.is_some());
        assert!(table.try_lead("k").is_none());
        drop(first);
        assert!(table.try_lead("k").is_some());
    }
}
