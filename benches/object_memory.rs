//! Where do the bytes of a cached object go, beyond its body?
//!
//! `MEMORY_ONLY=1 benches/load.sh` measures the whole proxy's RSS growth per stored 1 KiB
//! object; this bench breaks that figure down in process, faster to iterate with. Each part
//! runs in a fresh child process (this binary again) with one thread, stores N objects
//! (default 100,000; env `CUTTLE_BENCH_OBJECTS`) and reports its RSS growth divided by N, so
//! the figures include the allocator's own overhead per block, as RSS does:
//!
//! - `store`: the memory-only store, filled as a miss fills it (writer, 1 KiB body, commit),
//!   with the response head nginx sends for a static file (8 fields) and a 32-byte URL;
//! - `store+hit`: the same, then every object looked up once and its head rebuilt as a hit
//!   does (what sharing the body and the head's buffer costs once they are shared), and the
//!   field lines a plain hit keeps made (`WireFields`, kept here in a vector, whose own slot
//!   is not counted);
//! - `index`: the invalidation index alone (each key registered, no tags);
//! - `head`: the stored heads alone, each in its `Arc` (with its URL and field buffer);
//! - `body`: the bodies alone, each frozen from an exact-size buffer as a fill does.
//!
//! Run: `cargo bench --bench object_memory`. Figures are bytes per object beyond the 1024
//! body bytes (the `index` and `head` rows have no body).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use cuttle::cache::invalidate::index::Entries;
use cuttle::cache::meta::{StoredFields, StoredHead, WireFields};
use cuttle::cache::store::Store;
use http::{HeaderMap, HeaderValue, StatusCode};

const BODY: usize = 1024;
const PART: &str = "CUTTLE_OBJECT_MEMORY_PART";

/// Resident bytes of this process.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The URL of object `n`, as long as load.sh's (`http://127.0.0.1:PORT/obj/N`).
fn url(n: usize) -> String {
    format!("http://127.0.0.1:40000/obj/{n:05}")
}

/// The head nginx sends for a static 1 KiB file with `add_header Cache-Control`.
fn head(n: usize) -> StoredHead {
    let mut fields = HeaderMap::new();
    let mut add = |name: &'static str, value: String| {
        fields.append(name, HeaderValue::from_str(&value).unwrap());
    };
    add("server", "nginx/1.22.1".into());
    add("date", "Wed, 02 Dec 2026 07:30:00 GMT".into());
    add("content-type", "application/octet-stream".into());
    add("content-length", BODY.to_string());
    add("last-modified", "Wed, 02 Dec 2026 07:00:00 GMT".into());
    add("etag", format!("\"692e9a10-{n:03x}\""));
    add("accept-ranges", "bytes".into());
    add("cache-control", "public, max-age=3600".into());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
    StoredHead {
        status: StatusCode::OK,
        headers: StoredFields::from_map(&fields),
        request_time: now - Duration::from_millis(1),
        response_time: now,
        url: url(n).into(),
        body_len: 0,
        derived: Default::default(),
    }
}

/// A 1 KiB body as a fill accumulates it: an exact-size buffer, frozen.
fn body(chunk: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(chunk.len());
    buf.extend_from_slice(chunk);
    buf.freeze()
}

/// Runs `part` on `n` objects here; returns the RSS growth per object and the body bytes
/// each object holds.
fn run_part(part: &str, n: usize) -> (f64, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let chunk = Bytes::from(vec![b'x'; BODY]);
    // Built before the first reading: the keys a request brings (a head is built and stored
    // per object, so it is built inside each part).
    let keys: Vec<String> = (0..n).map(url).collect();
    let before;
    let body_bytes;
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    match part {
        "store" | "store+hit" => {
            let store = Store::memory_only(8 << 30, 1 << 20);
            before = rss();
            rt.block_on(async {
                for (i, key) in keys.iter().enumerate() {
                    let mut w = store.writer(key, head(i), Some(BODY as u64)).unwrap();
                    w.write(&chunk).await.unwrap();
                    w.commit().await.unwrap();
                }
                store.memory_usage().await;
                if part == "store+hit" {
                    let mut wires = Vec::with_capacity(keys.len());
                    for key in &keys {
                        let hit = store.lookup(key).await.unwrap();
                        std::hint::black_box(hit.head.headers.to_map());
                        // Boxed, as the head's derived facts keep it.
                        wires.push(Box::new(WireFields::of(&hit.head.headers)));
                    }
                    assert!(wires.iter().all(|w| w.is_some()));
                    keep.push(Box::new(wires));
                }
                assert_eq!(store.memory_stats().objects, n as u64);
            });
            keep.push(Box::new(store));
            body_bytes = BODY;
        }
        "index" => {
            let index = Entries::default();
            before = rss();
            for key in &keys {
                index.register(key, Vec::new(), false);
            }
            assert_eq!(index.len(), n);
            keep.push(Box::new(index));
            body_bytes = 0;
        }
        "head" => {
            before = rss();
            let mut arcs = Vec::with_capacity(n);
            arcs.extend((0..n).map(|i| Arc::new(head(i))));
            keep.push(Box::new(arcs));
            body_bytes = 0;
            // The vector's own slot is not the head's.
            let after = rss();
            return ((after - before) as f64 / n as f64 - 8.0, body_bytes);
        }
        "body" => {
            before = rss();
            let mut bodies = Vec::with_capacity(n);
            bodies.extend((0..n).map(|_| body(&chunk)));
            keep.push(Box::new(bodies));
            body_bytes = BODY;
            let after = rss();
            return (
                (after - before) as f64 / n as f64 - std::mem::size_of::<Bytes>() as f64,
                body_bytes,
            );
        }
        other => panic!("unknown part {other}"),
    }
    let after = rss();
    std::hint::black_box(&keep);
    // The vector of wire forms' own slots are not the objects'.
    let slots = if part == "store+hit" {
        std::mem::size_of::<Box<Option<WireFields>>>() as f64
    } else {
        0.0
    };
    ((after - before) as f64 / n as f64 - slots, body_bytes)
}

fn main() {
    let n: usize = std::env::var("CUTTLE_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if let Ok(part) = std::env::var(PART) {
        let (per, body) = run_part(&part, n);
        println!("{per:.1} {body}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    println!("Bytes per cached object, {n} objects of {BODY} B (RSS growth per object, each part in its own process):");
    println!("| part | bytes per object | beyond the body |");
    println!("|---|---|---|");
    for part in ["store", "store+hit", "index", "head", "body"] {
        let out = Command::new(&exe).env(PART, part).output().unwrap();
        assert!(out.status.success(), "{part}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut words = text.split_whitespace();
        let per: f64 = words.next().unwrap().parse().unwrap();
        let body: f64 = words.next().unwrap().parse().unwrap();
        println!("| {part} | {per:.0} | {:.0} |", per - body);
    }
}
