//! Per-server request counters and a response-time histogram, for `/metrics` and `/status`.
//!
//! Updated once per upstream attempt (never on a cache hit), read on scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds (Prometheus' default buckets).
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One server's (or peer's) counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    requests: AtomicU64,
    failures: AtomicU64,
    /// Non-cumulative counts per bucket, plus one past the last bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of observed times, in microseconds.
    sum_micros: AtomicU64,
}

/// A copy of [`ServerStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub failures: u64,
    /// Cumulative `(upper bound, count)` pairs, as Prometheus wants them.
    pub buckets: Vec<(f64, u64)>,
    /// Responses timed (the histogram's count).
    pub count: u64,
    pub sum_seconds: f64,
}

impl StatsSnapshot {
    /// Mean response time in milliseconds (0 before the first response).
    pub fn latency_ms_avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_seconds * 1000.0 / self.count as f64
        }
    }
}

impl ServerStats {
    /// An attempt that got a response head after `elapsed`.
    pub fn responded(&self, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(BUCKETS.len());
        if let Some(b) = self.buckets.get(slot) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// An attempt that failed (connect, TLS, timeout, bad response).
    pub fn failed(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len());
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.buckets.last().map_or(0, |b| b.load(Ordering::Relaxed));
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            buckets,
            count,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let s = ServerStats::default();
        s.responded(Duration::from_millis(3));
        s.responded(Duration::from_millis(30));
        s.responded(Duration::from_secs(20));
        s.failed();
        let snap = s.snapshot();
        assert_eq!(snap.requests, 4);
        assert_eq!(snap.failures, 1);
        assert_eq!(snap.count, 3);
        assert_eq!(snap.buckets[0], (0.005, 1));
        assert_eq!(snap.buckets[3], (0.05, 2));
        assert_eq!(snap.buckets.last().unwrap().1, 2);
    }
}
