//! Does invalidation cost depend on what the cache holds?
//!
//! 1. 1,000 invalidations of URLs that were never cached (what every successful POST, PUT or
//!    DELETE does, RFC 9111 §4.4) on an empty cache, then on a cache holding N entries
//!    (default 200,000): the ratio should stay near 1 (the target is at most 1.2), since an
//!    invalidation probes its URL's slot in the per-URL index and nothing else. For contrast,
//!    one full-scan removal by prefix (what every invalidation did before the index) is timed.
//! 2. A ban by URL prefix over all N entries: the call returns at once (target < 50 ms); its
//!    background lurker's time to apply it to every entry is printed too.
//! 3. The issue's own wording: 1,000 POSTs to uncached URLs sent through a running proxy whose
//!    cache (memory and disk tiers, each proxy its own temp dir) is empty, then through one
//!    holding N entries (filled by N GETs through it), each
//!    answered 200 by the origin so that the proxy invalidates the URL (RFC 9111 §4.4). Ratio
//!    of the medians of 21 alternating runs.
//!
//! Run: `cargo bench --bench invalidation` (env `CUTTLE_BENCH_ENTRIES`, default 200000). Parts
//! 1 and 2 drive the library's cache façade directly (memory tier), so they measure the
//! cache's work, not sockets; part 3 measures whole requests. The timings are medians of 21
//! runs, alternating between the two caches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cuttle::cache::invalidate::{Purge, Target};
use cuttle::cache::lookup::Cache;
use cuttle::cache::meta::{StoredFields, StoredHead};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
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
            url: url.as_str().into(),
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
    println!(
        "  (fastest runs, the least disturbed by other load: empty {:.2} ms, full {:.2} ms, ratio {:.2})",
        on_empty[0].as_secs_f64() * 1e3,
        on_full[0].as_secs_f64() * 1e3,
        on_full[0].as_secs_f64() / on_empty[0].as_secs_f64()
    );
    (on_empty[RUNS / 2], on_full[RUNS / 2])
}

/// An origin answering every GET with a small body cacheable for an hour, and every POST
/// with a 200 (so the proxy invalidates the URL, RFC 9111 §4.4).
async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let is_get = req.method() == Method::GET;
                    // Drain a request body, if any, before answering.
                    let _ = req.into_body().collect().await;
                    let mut r = Response::new(Full::new(Bytes::from_static(b"a small body")));
                    if is_get {
                        r.headers_mut()
                            .insert("cache-control", HeaderValue::from_static("max-age=3600"));
                    }
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A proxy with both tiers, its disk tier in `dir` (each proxy its own, never the default
/// `~/.cache/cuttle`, which would be shared and not empty).
async fn start_proxy(dir: &std::path::Path) -> cuttle::app::Server {
    let text = format!(
        "visible_hostname = \"bench\"\n[[http_port]]\nlisten = \"127.0.0.1:0\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n[[http_access]]\nallow = [\"localhost\"]\n\
         [cache.memory]\nmax_size = \"2 GiB\"\nmax_object_size = \"1 MiB\"\n\
         [cache.disk]\npath = \"{}\"\nmax_size = \"8 GiB\"\n\
         [admin]\nlisten = \"none\"\n[log]\naccess_log = \"none\"\nlevel = \"warn\"\n",
        dir.display()
    );
    let server = cuttle::app::start(cuttle::config::load_str("bench.toml", &text).unwrap())
        .await
        .unwrap();
    server.disk_index_loaded().await;
    server
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn client(proxy: SocketAddr) -> Sender {
    let stream = TcpStream::connect(proxy).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn send(sender: &mut Sender, method: Method, url: &str) -> StatusCode {
    let body = if method == Method::POST {
        Bytes::from_static(b"field=value")
    } else {
        Bytes::new()
    };
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .body(Full::new(body))
        .unwrap();
    sender.ready().await.unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status();
    res.into_body().collect().await.unwrap();
    status
}

/// Fills the proxy's cache with `entries` GETs over 8 connections.
async fn fill_through(proxy: SocketAddr, origin: SocketAddr, entries: usize) {
    const CONNECTIONS: usize = 8;
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut sender = client(proxy).await;
            for n in (c..entries).step_by(CONNECTIONS) {
                let url = format!("http://{origin}/items/{n}");
                assert_eq!(send(&mut sender, Method::GET, &url).await, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Time of `POSTS` POSTs to never-cached URLs (distinct for each `run`) on one connection.
async fn posts_through(proxy: SocketAddr, origin: SocketAddr, run: usize) -> Duration {
    let mut sender = client(proxy).await;
    let urls: Vec<String> = (0..POSTS)
        .map(|n| format!("http://{origin}/forms/{run}/{n}"))
        .collect();
    let start = Instant::now();
    for url in &urls {
        assert_eq!(send(&mut sender, Method::POST, url).await, StatusCode::OK);
    }
    start.elapsed()
}

/// Part 3: POSTs through an empty proxy and a full one.
async fn through_the_proxy(entries: usize) {
    let origin = origin().await;
    let (empty_dir, full_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let empty = start_proxy(empty_dir.path()).await;
    let full = start_proxy(full_dir.path()).await;
    let (empty_addr, full_addr) = (empty.addr().unwrap(), full.addr().unwrap());
    let start = Instant::now();
    fill_through(full_addr, origin, entries).await;
    // Every fill was a miss, every repeat a hit: the cache holds them all.
    let mut sender = client(full_addr).await;
    let probe = format!("http://{origin}/items/0");
    let req = Request::get(&probe)
        .header("host", origin.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned());
    res.into_body().collect().await.unwrap();
    println!(
        "through the proxy: filled {entries} entries by GET in {:.1} s (a repeat: {})",
        start.elapsed().as_secs_f64(),
        status.unwrap_or_default()
    );
    let (mut on_empty, mut on_full) = (Vec::new(), Vec::new());
    // One warm-up run each, then RUNS alternating.
    posts_through(empty_addr, origin, 0).await;
    posts_through(full_addr, origin, 0).await;
    for run in 1..=RUNS {
        on_empty.push(posts_through(empty_addr, origin, run).await);
        on_full.push(posts_through(full_addr, origin, run).await);
    }
    on_empty.sort();
    on_full.sort();
    let (e, f) = (on_empty[RUNS / 2], on_full[RUNS / 2]);
    println!(
        "through the proxy: {POSTS} POSTs to uncached URLs: empty cache {:.1} ms, {entries} entries {:.1} ms, ratio {:.2} (target <= 1.2)",
        e.as_secs_f64() * 1e3,
        f.as_secs_f64() * 1e3,
        f.as_secs_f64() / e.as_secs_f64()
    );
    empty.shutdown().await;
    full.shutdown().await;
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
    if std::env::var_os("CUTTLE_BENCH_SKIP_PROXY").is_none() {
        rt.block_on(through_the_proxy(entries));
    }
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
