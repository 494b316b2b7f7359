//! Does cuttle accept connections at once with a large disk cache, how long does its disk
//! index then take to load, and does the on-disk index stay bounded when entries are
//! freshened again and again?
//!
//! 1. Start-up: writes N entries (default 500,000) into a cacache directory with cacache's
//!    own index API (16 shared bodies, so the fixture is mostly index: one bucket per key),
//!    then starts cuttle on it in this process and prints the time from `app::start` to a
//!    connection accepted, to a miss answered (through a loopback origin, while the index
//!    loads), and to the index loaded, with the entry count `/status` reports.
//! 2. Freshens: stores 1,000 entries through the store API, prints the on-disk index size,
//!    freshens them F times in all (default 100,000: RFC 9111 §4.3.4 head updates, each with a
//!    new `Date`), and prints the size again.
//!
//! Run: `cargo bench --bench disk_index` (env `CUTTLE_BENCH_ENTRIES`,
//! `CUTTLE_BENCH_FRESHENS`). Fixtures live in temp dirs removed at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use cuttle::cache::meta::{StoredFields, StoredHead};
use cuttle::cache::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A stored head for `url` with a body of `len` bytes, dated `secs` after a fixed start.
fn head(url: &str, len: u64, secs: u64) -> StoredHead {
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
    let mut fields = http::HeaderMap::new();
    fields.insert("content-type", "text/plain".parse().unwrap());
    fields.insert("cache-control", "max-age=3600".parse().unwrap());
    fields.insert("date", httpdate::fmt_http_date(at).parse().unwrap());
    StoredHead {
        status: http::StatusCode::OK,
        headers: StoredFields::from_map(&fields),
        request_time: at,
        response_time: at,
        url: url.into(),
        body_len: len,
        derived: Default::default(),
    }
}

/// Writes `n` entries into the cacache directory `dir`, on two threads.
fn fixture(dir: &Path, n: u64) {
    let bodies: Vec<(cacache::Integrity, usize)> = (0..16u8)
        .map(|i| {
            let body = vec![b'a' + i; 100];
            (cacache::write_hash_sync(dir, &body).unwrap(), body.len())
        })
        .collect();
    use cuttle::clock::Clock as _;
    let now = cuttle::clock::SystemClock
        .now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::thread::scope(|s| {
        for part in 0..2u64 {
            let bodies = &bodies;
            s.spawn(move || {
                for i in (part..n).step_by(2) {
                    let url = format!("http://bench.example/{i}");
                    let (sri, len) = &bodies[(i % 16) as usize];
                    let opts = cacache::WriteOpts::new()
                        .integrity(sri.clone())
                        .size(*len)
                        .time(now - u128::from(n - i))
                        .metadata(head(&url, *len as u64, i).to_json());
                    cacache::index::insert(dir, &url, opts).unwrap();
                }
            });
        }
    });
}

/// An origin answering every request with a small cacheable body.
async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: max-age=60\r\nconnection: close\r\n\r\nok";
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// One HTTP/1.1 request on a new connection to `to`; the whole response as text.
async fn request(to: SocketAddr, line: &str) -> String {
    let mut stream = TcpStream::connect(to).await.unwrap();
    let text = format!("{line} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n");
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The admin listener's `/status`, parsed.
async fn status(admin: SocketAddr) -> serde_json::Value {
    let reply = request(admin, "GET /status").await;
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap()
}

async fn startup(entries: u64) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let built = Instant::now();
    fixture(&cache, entries);
    let index = cuttle::cache::store::index_bytes(&cache);
    println!(
        "fixture: {entries} entries, index {:.1} MiB, written in {:.1} s",
        index as f64 / (1 << 20) as f64,
        built.elapsed().as_secs_f64()
    );
    let origin = origin().await;
    let text = format!(
        "visible_hostname = \"bench\"\n[[http_port]]\nlisten = \"127.0.0.1:0\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [cache.disk]\npath = \"{}\"\nmax_size = \"64 GiB\"\n\
         [log]\naccess_log = \"none\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        cache.display()
    );
    let config = cuttle::config::load_str("bench.toml", &text).unwrap();
    let launch = Instant::now();
    let server = cuttle::app::start(config).await.unwrap();
    let addr = server.addr().unwrap();
    TcpStream::connect(addr).await.unwrap();
    let listening = launch.elapsed();
    let reply = request(addr, &format!("GET http://{origin}/miss")).await;
    let missed = launch.elapsed();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let admin = server.admin_addr().unwrap();
    let during = status(admin).await["cache"]["tiers"]["disk"]["index"]["ready"] == false;
    server.disk_index_loaded().await;
    let ready = launch.elapsed();
    let doc = status(admin).await;
    let ix = &doc["cache"]["tiers"]["disk"]["index"];
    println!(
        "start-up: accepting after {:.1} ms; a miss answered after {:.1} ms (index still loading: {during}); \
         index ready after {:.2} s with {} entries (objects {})",
        listening.as_secs_f64() * 1000.0,
        missed.as_secs_f64() * 1000.0,
        ready.as_secs_f64(),
        ix["loaded"],
        doc["cache"]["tiers"]["disk"]["objects"],
    );
    server.shutdown().await;
}

async fn freshens(total: u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = cuttle::cache::Config {
        memory: cuttle::cache::MemoryConfig {
            max_size: 1 << 20,
            max_object_size: 1,
        },
        disk: Some(cuttle::cache::DiskConfig {
            path: dir.path().to_path_buf(),
            max_size: 1 << 30,
            max_object_size: 1 << 20,
            load_gate: None,
        }),
        behaviour: cuttle::cache::Behaviour::default(),
    };
    let store = Store::open(&config).await.unwrap();
    store.disk_loaded().await;
    const KEYS: u64 = 1000;
    for i in 0..KEYS {
        let url = format!("http://bench.example/{i}");
        let mut w = store.writer(&url, head(&url, 0, 0), Some(100)).unwrap();
        w.write(&Bytes::from(vec![b'x'; 100])).await.unwrap();
        w.commit().await.unwrap();
    }
    let stored = store.disk_index_bytes().unwrap();
    let started = Instant::now();
    for n in 0..total {
        let i = n % KEYS;
        let url = format!("http://bench.example/{i}");
        assert!(store.update_head(&url, head(&url, 0, n + 1)).await);
    }
    let took = started.elapsed();
    let freshened = store.disk_index_bytes().unwrap();
    println!(
        "index size: {stored} bytes after {KEYS} stores, {freshened} bytes after {total} freshens \
         ({:.2}x; {:.1} µs per freshen)",
        freshened as f64 / stored as f64,
        took.as_secs_f64() * 1e6 / total as f64
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let entries = env("CUTTLE_BENCH_ENTRIES", 500_000);
    let freshen = env("CUTTLE_BENCH_FRESHENS", 100_000);
    freshens(freshen).await;
    startup(entries).await;
}
