//! Collapsed forwarding (Squid `collapsed_forwarding`, nginx `proxy_cache_lock`): concurrent
//! misses on one key make a single upstream request.
//!
//! The first request for a key becomes the *leader* and fetches; later ones become *waiters*
//! and wait (bounded) for the leader's outcome. Once the leader knows its response will be
//! stored, it publishes the fill's [`Tap`] and waiters stream the body as it arrives
//! (read-while-writer, see `cache::tap`); a waiter that cannot use a stream (it asked for a
//! range or sent conditionals) waits for the commit and looks the cache up again. When the
//! response was not storable, failed, or the leader vanished (its [`Leader`] guard dropped
//! without an outcome), waiters go upstream themselves at once.
//!
//! A response that turns out not storable also leaves a *hit-for-miss* marker (Varnish's
//! term) on the key for [`HIT_FOR_MISS_TTL`]: while it lasts, requests for the key do not
//! queue behind a fetch that will likely be uncacheable again; each fetches on its own (as a
//! miss, so a response that has become storable is stored, and that clears the marker).
//! Another response not storable renews the marker only in its last [`RENEW_WITHIN`], so a
//! key that is never storable costs one table lookup per request. The
//! table is touched only on misses, never on the hit path; its lock is held for a map
//! operation, never across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock;

use super::tap::Tap;

/// How long a key stays hit-for-miss after a response for it was not storable (Varnish's
/// built-in VCL marks uncacheable objects for 120 s).
pub const HIT_FOR_MISS_TTL: Duration = Duration::from_secs(120);

/// A marker with more than this left is not renewed by another response not storable: a key
/// that is never storable keeps its marker while costing one lookup per request, not two.
pub const RENEW_WITHIN: Duration = Duration::from_secs(60);

/// Most hit-for-miss markers kept; past this, expired ones are swept and new ones dropped.
const MAX_MARKERS: usize = 10_000;

/// What became of a leader's fetch.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Still fetching; the response is not known yet.
    Pending,
    /// The response is being stored: its body can be read from the tap as it arrives.
    Streaming(Arc<Tap>),
    /// The response is in the cache: look it up.
    Stored,
    /// Nothing usable was stored: fetch yourself.
    NotStored,
}

impl Outcome {
    fn is_open(&self) -> bool {
        matches!(self, Self::Pending | Self::Streaming(_))
    }
}

/// The lock table.
#[derive(Debug, Clone, Default)]
pub struct Collapser {
    table: Arc<Mutex<Table>>,
}

#[derive(Debug, Default)]
struct Table {
    inflight: HashMap<String, InFlight>,
    /// Keys whose last response was not storable, until when (hit-for-miss).
    hit_for_miss: HashMap<String, Instant>,
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
    /// Joined under a hit-for-miss marker with more than [`RENEW_WITHIN`] left: a response
    /// not storable leaves it as it is.
    marked: bool,
    /// The waiters' channel and count; `None` for a fetch made under a hit-for-miss marker,
    /// which is in no table and so has nobody to tell (and costs no channel).
    waiters: Option<Waiters>,
    table: Collapser,
}

/// A registered leader's side of its waiters.
#[derive(Debug)]
struct Waiters {
    tx: watch::Sender<Outcome>,
    count: Arc<AtomicUsize>,
}

/// A request waiting on a leader; counted as waiting until dropped.
#[derive(Debug)]
pub struct Waiter {
    rx: watch::Receiver<Outcome>,
    waiting: Arc<AtomicUsize>,
}

/// What a waiter goes on with.
#[derive(Debug)]
pub enum Joined {
    /// Stream the body from the fill; the waiter stays counted while it does.
    Stream(Attached),
    /// The response is in the cache: look it up.
    Stored,
    /// Fetch yourself.
    NotStored,
}

/// A waiter reading a fill in progress.
#[derive(Debug)]
pub struct Attached {
    pub tap: Arc<Tap>,
    /// Keeps the fill going for this reader if the leader's client leaves.
    _waiter: Waiter,
}

/// How many requests wait on a leader, readable after the leader moved elsewhere (none ever
/// for a fetch under a hit-for-miss marker).
#[derive(Debug, Clone)]
pub struct WaitingCount(Option<Arc<AtomicUsize>>);

impl WaitingCount {
    /// Whether any request waits on the fetch now.
    pub fn any(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|count| count.load(Ordering::Acquire) > 0)
    }
}

/// Either role.
#[derive(Debug)]
pub enum Role {
    Leader(Leader),
    Waiter(Waiter),
}

impl Collapser {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A poisoned lock means a panic elsewhere while holding it; the maps are intact.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Becomes the leader for `key`, or a waiter if a fetch is already in flight. Under a
    /// hit-for-miss marker, the request leads a fetch nobody can wait on.
    pub fn join(&self, key: &str) -> Role {
        let mut table = self.lock();
        if let Some(until) = table.hit_for_miss.get(key) {
            let now = clock::instant();
            if *until > now {
                return Role::Leader(self.leader(key, None, *until - now > RENEW_WITHIN));
            }
            table.hit_for_miss.remove(key);
        }
        if let Some(inflight) = table.inflight.get(key) {
            if inflight.rx.borrow().is_open() {
                inflight.waiting.fetch_add(1, Ordering::AcqRel);
                return Role::Waiter(Waiter {
                    rx: inflight.rx.clone(),
                    waiting: Arc::clone(&inflight.waiting),
                });
            }
        }
        let (tx, rx) = watch::channel(Outcome::Pending);
        let waiting = Arc::new(AtomicUsize::new(0));
        table.inflight.insert(
            key.to_owned(),
            InFlight {
                rx,
                waiting: Arc::clone(&waiting),
            },
        );
        Role::Leader(self.leader(key, Some(Waiters { tx, count: waiting }), false))
    }

    /// Becomes the leader only if nobody else is fetching `key` (background refreshes).
    pub fn try_lead(&self, key: &str) -> Option<Leader> {
        match self.join(key) {
            Role::Leader(leader) => Some(leader),
            Role::Waiter(_) => None,
        }
    }

    fn leader(&self, key: &str, waiters: Option<Waiters>, marked: bool) -> Leader {
        Leader {
            key: key.to_owned(),
            marked,
            waiters,
            table: self.clone(),
        }
    }

    /// Keys with a fetch in flight (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.lock().inflight.len()
    }

    /// Whether `key` is hit-for-miss now.
    pub fn is_hit_for_miss(&self, key: &str) -> bool {
        self.lock()
            .hit_for_miss
            .get(key)
            .is_some_and(|until| *until > clock::instant())
    }
}

impl Table {
    fn mark_hit_for_miss(&mut self, key: &str) {
        let now = clock::instant();
        if self.hit_for_miss.len() >= MAX_MARKERS {
            self.hit_for_miss.retain(|_, until| *until > now);
        }
        // A marker being renewed (the usual case: each fetch under it passes again) is
        // updated in place, without a new key.
        if let Some(until) = self.hit_for_miss.get_mut(key) {
            *until = now + HIT_FOR_MISS_TTL;
        } else if self.hit_for_miss.len() < MAX_MARKERS {
            self.hit_for_miss
                .insert(key.to_owned(), now + HIT_FOR_MISS_TTL);
        }
    }
}

impl Leader {
    /// The number of requests waiting on this fetch, as it changes.
    pub fn waiting(&self) -> WaitingCount {
        WaitingCount(self.waiters.as_ref().map(|w| Arc::clone(&w.count)))
    }

    /// The response is being stored: waiters may read its body from `tap` as it arrives.
    pub fn stream(&self, tap: Arc<Tap>) {
        self.tell(Outcome::Streaming(tap));
    }

    /// Tells the waiters `outcome`, if anyone can wait on this fetch.
    fn tell(&self, outcome: Outcome) {
        if let Some(waiters) = &self.waiters {
            let _ = waiters.tx.send(outcome);
        }
    }

    /// Publishes the outcome and leaves the table; a stored response clears hit-for-miss.
    pub fn finish(self, outcome: Outcome) {
        if matches!(outcome, Outcome::Stored) {
            self.table.lock().hit_for_miss.remove(&self.key);
        }
        self.tell(outcome);
        // Drop runs next and removes the entry.
    }

    /// The response is not storable: release the waiters at once to fetch on their own, and
    /// mark the key hit-for-miss so that the next requests do not queue (or renew its marker,
    /// unless it has more than [`RENEW_WITHIN`] left).
    pub fn pass(self) {
        if !self.marked {
            self.table.lock().mark_hit_for_miss(&self.key);
        }
        self.tell(Outcome::NotStored);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let Some(waiters) = &self.waiters else {
            return;
        };
        if waiters.tx.borrow().is_open() {
            let _ = waiters.tx.send(Outcome::NotStored);
        }
        let mut table = self.table.lock();
        // Only remove our own entry (a later leader may have replaced it).
        if table
            .inflight
            .get(&self.key)
            .is_some_and(|inflight| inflight.rx.same_channel(&waiters.tx.subscribe()))
        {
            table.inflight.remove(&self.key);
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Waiter {
    /// Waits up to `timeout` for the leader's outcome (`NotStored` on timeout). A waiter that
    /// can `stream` attaches to the fill as soon as it starts (or at once, if it joins while
    /// the fill still holds the body's start); others wait for its end.
    pub async fn wait(mut self, timeout: Duration, stream: bool) -> Joined {
        let ready = |o: &Outcome| match o {
            Outcome::Pending => false,
            // An aborted fill's leader is about to say NotStored: wait for that.
            Outcome::Streaming(tap) => stream && tap.holds_start() && !tap.is_aborted(),
            Outcome::Stored | Outcome::NotStored => true,
        };
        let outcome = match tokio::time::timeout(timeout, self.rx.wait_for(ready)).await {
            Ok(Ok(outcome)) => outcome.clone(),
            _ => Outcome::NotStored,
        };
        match outcome {
            Outcome::Streaming(tap) => Joined::Stream(Attached { tap, _waiter: self }),
            Outcome::Stored => Joined::Stored,
            Outcome::Pending | Outcome::NotStored => Joined::NotStored,
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
        let wait = tokio::spawn(waiter.wait(Duration::from_secs(5), false));
        leader.finish(Outcome::Stored);
        assert!(matches!(wait.await.unwrap(), Joined::Stored));
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
        assert!(matches!(
            waiter.wait(Duration::from_secs(5), false).await,
            Joined::NotStored
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded() {
        let table = Collapser::default();
        let _leader = table.join("k");
        let Role::Waiter(waiter) = table.join("k") else {
            panic!()
        };
        assert!(matches!(
            waiter.wait(Duration::from_secs(3), false).await,
            Joined::NotStored
        ));
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

    fn tap() -> Arc<Tap> {
        let head = crate::cache::meta::StoredHead {
            status: http::StatusCode::OK,
            headers: crate::cache::meta::StoredFields::from_map(&http::HeaderMap::new()),
            request_time: std::time::UNIX_EPOCH,
            response_time: std::time::UNIX_EPOCH,
            url: "http://example/".into(),
            body_len: 0,
            derived: Default::default(),
        };
        Arc::new(Tap::new("k".into(), Arc::new(head)))
    }

    #[tokio::test]
    async fn streaming_waiters_attach_to_the_fill_and_stay_counted() {
        let table = Collapser::default();
        let Role::Leader(leader) = table.join("k") else {
            panic!()
        };
        let Role::Waiter(streams) = table.join("k") else {
            panic!()
        };
        let Role::Waiter(ranged) = table.join("k") else {
            panic!()
        };
        let waiting = leader.waiting();
        let ranged = tokio::spawn(ranged.wait(Duration::from_secs(5), false));
        leader.stream(tap());
        let Joined::Stream(attached) = streams.wait(Duration::from_secs(5), true).await else {
            panic!("a streaming waiter attaches when the fill starts")
        };
        assert!(
            matches!(table.join("k"), Role::Waiter(_)),
            "a late request joins the fill"
        );
        assert!(!ranged.is_finished());
        leader.finish(Outcome::Stored);
        assert!(matches!(ranged.await.unwrap(), Joined::Stored));
        assert!(waiting.any(), "the attached reader still counts");
        drop(attached);
        assert!(!waiting.any());
    }

    #[tokio::test]
    async fn not_storable_releases_waiters_and_marks_hit_for_miss() {
        let table = Collapser::default();
        let Role::Leader(leader) = table.join("k") else {
            panic!()
        };
        let Role::Waiter(waiter) = table.join("k") else {
            panic!()
        };
        let wait = tokio::spawn(waiter.wait(Duration::from_secs(5), true));
        leader.pass();
        assert!(matches!(wait.await.unwrap(), Joined::NotStored));
        assert!(table.is_hit_for_miss("k"));
        // Requests under the marker each fetch; none waits.
        let Role::Leader(first) = table.join("k") else {
            panic!("hit-for-miss leads")
        };
        let Role::Leader(second) = table.join("k") else {
            panic!("and does not queue")
        };
        assert_eq!(table.in_flight(), 0);
        drop(second);
        first.finish(Outcome::Stored);
        assert!(!table.is_hit_for_miss("k"), "a stored response clears it");
        let _leader = table.join("k");
        assert!(matches!(table.join("k"), Role::Waiter(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn hit_for_miss_expires() {
        let table = Collapser::default();
        let Role::Leader(leader) = table.join("k") else {
            panic!()
        };
        leader.pass();
        assert!(table.is_hit_for_miss("k"));
        tokio::time::advance(HIT_FOR_MISS_TTL + Duration::from_secs(1)).await;
        assert!(!table.is_hit_for_miss("k"));
        let _leader = table.join("k");
        assert!(matches!(table.join("k"), Role::Waiter(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_marker_is_renewed_only_in_its_last_minute() {
        let table = Collapser::default();
        let pass = |table: &Collapser| {
            let Role::Leader(leader) = table.join("k") else {
                panic!("no one waits under a marker")
            };
            leader.pass();
        };
        pass(&table);
        // Half-way: another response not storable leaves the marker's end where it was.
        tokio::time::advance(RENEW_WITHIN - Duration::from_secs(10)).await;
        pass(&table);
        tokio::time::advance(HIT_FOR_MISS_TTL - RENEW_WITHIN + Duration::from_secs(11)).await;
        assert!(
            !table.is_hit_for_miss("k"),
            "not renewed with over a minute left"
        );
        // In its last minute it is renewed for the whole time again.
        pass(&table);
        tokio::time::advance(HIT_FOR_MISS_TTL - Duration::from_secs(30)).await;
        pass(&table);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(table.is_hit_for_miss("k"), "renewed 30 s before its end");
    }
}
