//! Does invalidation cost depend on what the cache holds?
//!
//! 1. 1,000 invalidations of URLs that were never cached (what every successful POST, PUT or
//!    DELETE does, RFC 9111 §4.4) on an empty cache, then on a cache holding N entries
//!    (default 200,000): the ratio should stay near 1 (the target is at most 1.2), since an
//!    invalidation probes its URL's slot in the per-URL index and nothing else. For contrast,
//!    one full-scan removal by prefix (what every invalidation did before the index) is timed.
//! 2. A ban by URL prefix over all N entries: the call returns at once (target < 50 ms); its
//!    background lurker's time to apply it to every entry is printed too.
//!
//! Run: `cargo bench --bench invalidation` (env `CUTTLE_BENCH_ENTRIES`, default 200000). It
//! drives the library's cache façade directly (memory tier), so it measures the cache's work,
//! not sockets. The invalidation timings are medians of 21 runs, alternating between the two
//! caches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cuttle::cache::invalidate::{Purge, Target};
use cuttle::cache::lookup::Cache;
use cuttle::cache::meta::{StoredFields, StoredHead};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

const POSTS: usize = 1000;
const RUNS: usize = 21;

fn config() -> cuttle::cache::Config {
    cuttle::cache::Config {
        memory: cuttle::cache::MemoryConfig {
            max_size: 4 << 30,
            max_object_size: 1 << 20,
        },
        disk: None,
        behaviour: cuttle::cache::Behaviour::default(),
    }
}

async fn fill(cache: &Cache, entries: usize) {
    let body = Bytes::from_static(b"a small cached body");
    for n in 0..entries {
        let url = format!("http://site.example/items/{n}");
        let mut fields = HeaderMap::new();
        fields.insert("cache-control", HeaderValue::from_static("max-age=3600"));
        fields.insert(
            "surrogate-key",
            HeaderValue::from_str(&format!("item-{n} group-{}", n % 100)).unwrap(),
        );
        let head = StoredHead {
            status: StatusCode::OK,
            headers: StoredFields::from_map(&fields),
            request_time: SystemTime::UNIX_EPOCH,
            response_time: SystemTime::UNIX_EPOCH,
            url: url.clone(),
            body_len: body.len() as u64,
            derived: Default::default(),
        };
        let mut writer = cache
            .store
            .writer(&url, head, Some(body.len() as u64))
            .unwrap();
        writer.write(&body).await.unwrap();
        writer.commit().await.unwrap();
    }
    cache.store.memory_usage().await;
}

/// Time of `POSTS` invalidations of never-cached URLs (distinct for each `run`).
async fn posts(cache: &Cache, run: usize) -> Duration {
    let urls: Vec<String> = (0..POSTS)
        .map(|n| format!("http://site.example/forms/{run}/{n}"))
        .collect();
    let start = Instant::now();
    for url in &urls {
        assert_eq!(cache.invalidate(url).await, 0);
    }
    start.elapsed()
}

/// Median times on `empty` and `full`, runs interleaved so that the machine's load falls on
/// both alike.
async fn interleaved(empty: &Cache, full: &Cache, first_run: usize) -> (Duration, Duration) {
    let (mut on_empty, mut on_full) = (Vec::new(), Vec::new());
    for run in first_run..first_run + RUNS {
        on_empty.push(posts(empty, run).await);
        on_full.push(posts(full, run).await);
    }
    on_empty.sort();
    on_full.sort();
    (on_empty[RUNS / 2], on_full[RUNS / 2])
}

fn main() {
    let entries: usize = std::env::var("CUTTLE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let empty = Cache::open(&config()).await.unwrap();
        let full = Cache::open(&config()).await.unwrap();
        let start = Instant::now();
        fill(&full, entries).await;
        println!(
            "filled {entries} entries in {:.1} s ({} objects in memory)",
            start.elapsed().as_secs_f64(),
            full.store.memory_stats().objects
        );
        // Warm both (allocations, moka's housekeeping) before measuring.
        interleaved(&empty, &full, 0).await;
        let (on_empty, on_full) = interleaved(&empty, &full, 0).await;
        let ratio = on_full.as_secs_f64() / on_empty.as_secs_f64();
        println!(
            "{POSTS} invalidations of uncached URLs: empty cache {:.2} ms, {entries} entries {:.2} ms, ratio {ratio:.2} (target <= 1.2)",
            on_empty.as_secs_f64() * 1e3,
            on_full.as_secs_f64() * 1e3,
        );
        let start = Instant::now();
        let scanned = full.store.keys_with_prefix("http://site.example/forms/").len();
        println!(
            "for contrast, one full scan of both tiers by prefix (the old per-invalidation cost): {:.2} ms ({scanned} found)",
            start.elapsed().as_secs_f64() * 1e3
        );

        let tag = Purge {
            target: Target::Tags(vec!["group-7".to_owned()]),
            soft: false,
        };
        let start = Instant::now();
        let purged = full.purge(&tag).await;
        println!(
            "purge of one tag ({} entries of {entries}): {:.2} ms",
            purged.entries,
            start.elapsed().as_secs_f64() * 1e3
        );

        let ban = Purge {
            target: Target::Prefix("http://site.example/items/".to_owned()),
            soft: false,
        };
        let start = Instant::now();
        let banned = full.purge(&ban).await;
        let returned = start.elapsed();
        assert!(banned.banned);
        println!(
            "ban by prefix over {entries} entries returned in {:.3} ms (target < 50 ms)",
            returned.as_secs_f64() * 1e3
        );
        let deadline = Instant::now() + Duration::from_secs(600);
        while full.bans_pending() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!(
            "its lurker applied it to every entry in {:.1} ms (left in memory: {})",
            start.elapsed().as_secs_f64() * 1e3,
            {
                full.store.memory_usage().await;
                full.store.memory_stats().objects
            }
        );
    });
}
