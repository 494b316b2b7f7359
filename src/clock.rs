//! Wall-clock time behind a trait, and the time of the current poll.
//!
//! HTTP dates (`Date`, `Age`, access-log timestamps) need the wall clock, but tests need to move
//! it at will. Everything that reads the wall clock goes through [`Clock`]; this is the only module
//! allowed to call `SystemTime::now()` (enforced by `clippy.toml`). Monotonic timeouts use
//! `tokio::time`, which tests pause and advance instead.
//!
//! A request's layers each want "now" (the cache's request time, the collapse table, the
//! upstream pool's idle check, the next hop's response timer, the request body's progress
//! timer...): 15 clock reads per miss, each a `clock_gettime` of ~20 ns. Within one poll of a
//! connection's task no time worth telling apart passes between them, so [`during_poll`] lets
//! the first read of a poll stand for the rest, as HAProxy reads its clock once per loop:
//! [`instant`] and [`SystemClock`] answer from it. [`instant_fresh`] reads anew, for the
//! elapsed times the access log reports to the microsecond.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Within [`during_poll`], the wall time of the poll's first read.
    fn now(&self) -> SystemTime {
        let seen = POLL_TIME.get();
        if let Some(wall) = seen.wall {
            return wall;
        }
        let wall = read_wall();
        if seen.active {
            POLL_TIME.set(PollTime {
                wall: Some(wall),
                ..seen
            });
        }
        wall
    }
}

#[allow(clippy::disallowed_methods)] // the one sanctioned call site
fn read_wall() -> SystemTime {
    SystemTime::now()
}

/// The times read so far in the current [`during_poll`]; `active` is false outside one.
#[derive(Clone, Copy)]
struct PollTime {
    active: bool,
    mono: Option<Instant>,
    wall: Option<SystemTime>,
}

impl PollTime {
    const OUTSIDE: Self = Self {
        active: false,
        mono: None,
        wall: None,
    };
    const STARTED: Self = Self {
        active: true,
        mono: None,
        wall: None,
    };
}

thread_local! {
    static POLL_TIME: Cell<PollTime> = const { Cell::new(PollTime::OUTSIDE) };
}

/// Runs `poll` (one poll of a task's future) with its clock reads shared: the first
/// [`instant`] and the first [`SystemClock`] read within it read the clock, later ones repeat
/// them. Nested calls start their own and restore the outer one, also when `poll` panics (the
/// runtime goes on to other tasks on this thread, which must not see a stale time).
pub fn during_poll<T>(poll: impl FnOnce() -> T) -> T {
    struct Restore(PollTime);
    impl Drop for Restore {
        fn drop(&mut self) {
            POLL_TIME.set(self.0);
        }
    }
    let _outer = Restore(POLL_TIME.replace(PollTime::STARTED));
    poll()
}

/// The monotonic time (`tokio::time`, so paused in tests): within [`during_poll`], the
/// poll's first read.
pub fn instant() -> Instant {
    let seen = POLL_TIME.get();
    match seen.mono {
        Some(now) => now,
        None if seen.active => instant_fresh(),
        None => Instant::now(),
    }
}

/// The monotonic time read now; later [`instant`] calls of the same poll return it.
pub fn instant_fresh() -> Instant {
    let now = Instant::now();
    let seen = POLL_TIME.get();
    if seen.active {
        POLL_TIME.set(PollTime {
            mono: Some(now),
            ..seen
        });
    }
    now
}

/// The time since `earlier`, by [`instant`]; zero if `earlier` is later.
pub fn since(earlier: Instant) -> Duration {
    instant().saturating_duration_since(earlier)
}

/// [`since`] in whole milliseconds (saturating), the form kept in an atomic.
pub fn millis_since(earlier: Instant) -> u64 {
    millis(since(earlier))
}

/// `d` in whole milliseconds, saturating at `u64::MAX`.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A clock that only moves when told to; for tests of ages and freshness.
#[derive(Debug)]
pub struct ManualClock {
    /// Milliseconds since the Unix epoch; atomic so `advance` works through a shared handle.
    millis: AtomicU64,
}

impl ManualClock {
    /// A clock frozen at `start`.
    pub fn new(start: SystemTime) -> Self {
        let millis = start
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            millis: AtomicU64::new(millis),
        }
    }

    /// A clock frozen at the current wall time (HTTP dates stay realistic).
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }
}

/// The real clock as a shared handle.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), start + Duration::from_secs(5));
    }

    /// Sleeps long enough for any two real reads around it to differ.
    fn pause() {
        std::thread::sleep(Duration::from_millis(2));
    }

    #[tokio::test]
    async fn a_poll_reads_each_clock_once_and_a_fresh_read_moves_it() {
        during_poll(|| {
            let (first, wall) = (instant(), SystemClock.now());
            pause();
            assert_eq!(instant(), first, "one monotonic read per poll");
            assert_eq!(SystemClock.now(), wall, "one wall-clock read per poll");
            assert_eq!(since(first), Duration::ZERO, "elapsed within a poll is nil");
            let fresh = instant_fresh();
            assert!(fresh > first);
            assert_eq!(instant(), fresh, "the rest of the poll sees the fresh read");
        });
        let (mono, wall) = (instant(), SystemClock.now());
        pause();
        assert!(instant() > mono, "outside a poll every read is real");
        assert!(SystemClock.now() > wall);
    }

    #[tokio::test]
    async fn a_nested_poll_reads_its_own_and_restores_the_outer_one() {
        during_poll(|| {
            let outer = instant();
            pause();
            let inner = during_poll(instant);
            assert!(inner > outer);
            assert_eq!(instant(), outer);
        });
        let first = during_poll(instant);
        pause();
        assert!(during_poll(instant) > first, "each poll reads again");
    }

    #[tokio::test]
    async fn a_poll_that_panics_leaves_no_time_behind() {
        let panicked = std::panic::catch_unwind(|| {
            during_poll(|| {
                instant();
                panic!("a task's poll panics");
            })
        });
        assert!(panicked.is_err());
        let before = instant();
        pause();
        assert!(instant() > before, "reads after the panic are real again");
    }

    #[tokio::test(start_paused = true)]
    async fn paused_time_is_what_a_poll_reads() {
        let before = during_poll(instant);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(during_poll(instant), before + Duration::from_secs(3));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(millis_since(before), 4500);
        assert_eq!(since(instant() + Duration::from_secs(1)), Duration::ZERO);
    }
}
