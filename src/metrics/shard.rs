//! Per-thread counter shards: each worker thread adds to its own cache-line-aligned shard, so
//! counting on the request path touches no lock and no cache line another worker writes;
//! a scrape sums the shards.
//!
//! A thread is given a shard index the first time it counts (a process-wide round robin); with
//! more threads than shards, threads share a shard and its atomics stay correct, merely no
//! longer private.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per [`Sharded`]: enough for the worker threads of a large machine, plus tokio's
/// blocking threads that sometimes finish a request.
pub const SHARDS: usize = 64;

static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard index (assigned on first use).
pub fn thread_index() -> usize {
    INDEX.with(|cell| {
        let mut index = cell.get();
        if index == usize::MAX {
            index = NEXT_INDEX.fetch_add(1, Ordering::Relaxed) % SHARDS;
            cell.set(index);
        }
        index
    })
}

/// A value per shard, each on its own cache lines (128 bytes: two lines, as adjacent-line
/// prefetchers pull pairs).
#[derive(Debug)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// `SHARDS` copies of `T`, one per thread (or group of threads).
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[Padded<T>; SHARDS]>,
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        // Built on the heap shard by shard (a large `T` would not fit on the stack 64 times).
        let mut shards: Vec<Padded<T>> = Vec::with_capacity(SHARDS);
        shards.resize_with(SHARDS, || Padded(T::default()));
        let shards: Box<[Padded<T>]> = shards.into_boxed_slice();
        match shards.try_into() {
            Ok(shards) => Self { shards },
            // The vector has exactly SHARDS entries.
            Err(_) => unreachable_len(),
        }
    }
}

impl<T> Sharded<T> {
    /// The calling thread's shard.
    pub fn local(&self) -> &T {
        // In bounds: a fixed-size array indexed modulo its length.
        &self.shards[thread_index() % SHARDS].0
    }

    /// Every shard, for summing.
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|p| &p.0)
    }
}

#[cold]
fn unreachable_len() -> ! {
    // `resize_with(SHARDS)` just made the length SHARDS; this is never reached.
    std::process::abort()
}

/// A counter that only its shard's thread(s) add to.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Relaxed: counters order nothing.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_threads() {
        let sharded: std::sync::Arc<Sharded<Counter>> = Default::default();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = std::sync::Arc::clone(&sharded);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.local().add(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sharded.all().map(Counter::get).sum::<u64>(), 8000);
    }
}
