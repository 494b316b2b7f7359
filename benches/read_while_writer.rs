//! Do concurrent clients of one cold large object all start at once (read-while-writer), and
//! what does streaming a huge object to many clients cost the proxy in memory?
//!
//! 1. 20 clients ask for a cold 256 MiB object at the same moment. Prints each client's
//!    first-byte time relative to the leader's (the one request the origin saw), the spread
//!    (target: at most 100 ms), the number of origin requests (target: 1) and the sha256 of
//!    every body (target: all equal to the origin's).
//! 2. A fresh proxy streams a cold 1 GiB object to 10 concurrent clients. Prints the proxy's
//!    peak RSS (VmHWM from /proc/PID/status) above its idle RSS (target: under 64 MiB).
//!
//! The proxy is the real `cuttle` binary in its own process (so its memory is its own); the
//! origin and the clients share this process. Run: `cargo bench --bench read_while_writer`
//! (release), or `cargo test --bench read_while_writer` for a debug build. Env:
//! `CUTTLE_RWW_CLIENTS` (20), `CUTTLE_RWW_MIB` (256), `CUTTLE_RWW_HUGE_CLIENTS` (10),
//! `CUTTLE_RWW_HUGE_MIB` (1024), `CUTTLE_RWW_PARTS` (`first,rss`: which measurements run),
//! `CUTTLE_RWW_HUGE_SHA=1` (also hash the 1 GiB bodies; slow in a debug build, where the
//! hashing clients, not the proxy, then set the pace).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const CHUNK: usize = 64 << 10;

type OriginBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Chunk `i` of every object: a fixed block stamped with its index, so reordered or repeated
/// chunks change the digest.
fn chunk(block: &[u8], i: u64) -> Bytes {
    let mut data = block.to_vec();
    data[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(data)
}

fn block() -> Vec<u8> {
    (0..CHUNK).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The sha256 an object of `mib` MiB has.
fn expected_sha(mib: u64) -> String {
    let block = block();
    let mut sha = Sha256::new();
    for i in 0..(mib << 20) / CHUNK as u64 {
        sha.update(chunk(&block, i));
    }
    hex(&sha.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An origin serving `/N` as N MiB with `Content-Length`, cacheable; counts requests.
async fn origin(requests: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let block = Bytes::from(block());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (block, requests) = (block.clone(), Arc::clone(&requests));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let block = block.clone();
                    requests.fetch_add(1, Ordering::SeqCst);
                    let mib: u64 = req.uri().path()[1..].parse().unwrap_or(1);
                    async move {
                        let frames = (0..(mib << 20) / CHUNK as u64)
                            .map(move |i| Ok::<_, Infallible>(Frame::data(chunk(&block, i))));
                        let body: OriginBody =
                            BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)));
                        let mut r = Response::new(body);
                        let headers = r.headers_mut();
                        headers.insert("cache-control", "public, max-age=3600".parse().unwrap());
                        headers.insert("content-length", (mib << 20).to_string().parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The `cuttle` binary on a free port with a disk cache in `dir`; killed on drop.
struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Proxy {
    fn start(dir: &std::path::Path) -> Self {
        let config = dir.join("c.toml");
        std::fs::write(
            &config,
            format!(
                "visible_hostname = \"bench\"\n[acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
                 [[http_access]]\nallow = [\"localhost\"]\n\
                 [cache]\ncollapsed_forwarding_timeout = \"120s\"\n\
                 [cache.memory]\nmax_size = \"64 MiB\"\nmax_object_size = \"1 MiB\"\n\
                 [cache.disk]\npath = \"{}\"\nmax_size = \"4 GiB\"\nmax_object_size = \"2 GiB\"\n\
                 [log]\naccess_log = \"none\"\nlevel = \"warn\"\n",
                dir.join("cache").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining stderr so the proxy never blocks on it.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.strip_prefix("cuttle: listening on ") {
                    let _ = tx.send(rest.split(' ').next().unwrap_or("").to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one client saw.
struct Fetched {
    /// From the common start to the first body byte.
    first_byte: Duration,
    total: Duration,
    len: u64,
    sha: String,
    cache_status: String,
}

/// Fetches `url` through `proxy`, hashing the body as it streams if `hash`.
async fn fetch(proxy: SocketAddr, url: String, start: Instant, hash: bool) -> Fetched {
    let stream = TcpStream::connect(proxy).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(&url)
        .header("host", "bench")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let cache_status = res
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let mut body = res.into_body();
    let mut sha = Sha256::new();
    let mut len = 0u64;
    let mut first_byte = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the body ended in an error");
        if let Some(data) = frame.data_ref() {
            if first_byte.is_none() && !data.is_empty() {
                first_byte = Some(start.elapsed());
            }
            len += data.len() as u64;
            if hash {
                sha.update(data);
            }
        }
    }
    Fetched {
        first_byte: first_byte.unwrap_or_default(),
        total: start.elapsed(),
        len,
        sha: hex(&sha.finalize()),
        cache_status,
    }
}

/// `clients` concurrent fetches of a cold `mib` MiB object, all started at once.
async fn together(
    proxy: SocketAddr,
    origin: SocketAddr,
    clients: u64,
    mib: u64,
    hash: bool,
) -> Vec<Fetched> {
    let url = format!("http://{origin}/{mib}");
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(fetch(proxy, url.clone(), start, hash)))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn first_bytes(origin_addr: SocketAddr, requests: &AtomicUsize) {
    let clients = env_or("CUTTLE_RWW_CLIENTS", 20);
    let mib = env_or("CUTTLE_RWW_MIB", 256);
    let expected = expected_sha(mib);
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path());
    let before = requests.load(Ordering::SeqCst);
    let got = together(proxy.addr, origin_addr, clients, mib, true).await;
    let origin_requests = requests.load(Ordering::SeqCst) - before;
    let leader = got
        .iter()
        .position(|f| !f.cache_status.contains("collapsed"))
        .unwrap_or(0);
    let lead = got[leader].first_byte;
    println!("## {clients} concurrent clients, cold {mib} MiB object");
    println!();
    println!(
        "| client | role | first byte vs leader (ms) | first byte (ms) | done (ms) | sha256 ok |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, f) in got.iter().enumerate() {
        let role = if i == leader { "leader" } else { "waiter" };
        println!(
            "| {i} | {role} | {:+.1} | {:.1} | {:.0} | {} |",
            ms(f.first_byte) - ms(lead),
            ms(f.first_byte),
            ms(f.total),
            f.sha == expected && f.len == mib << 20
        );
    }
    let earliest = got.iter().map(|f| f.first_byte).min().unwrap_or_default();
    let latest = got.iter().map(|f| f.first_byte).max().unwrap_or_default();
    let worst_vs_leader = got
        .iter()
        .map(|f| (ms(f.first_byte) - ms(lead)).abs())
        .fold(0.0, f64::max);
    let exact = got
        .iter()
        .filter(|f| f.sha == expected && f.len == mib << 20)
        .count();
    println!();
    println!(
        "first-byte spread {:.1} ms (max - min), worst vs leader {:.1} ms (target <= 100 ms); \
         origin requests: {origin_requests} (target 1); byte-exact bodies: {exact}/{clients}; \
         sha256 {expected}",
        ms(latest) - ms(earliest),
        worst_vs_leader
    );
}

async fn huge_rss(origin_addr: SocketAddr, requests: &AtomicUsize) {
    let clients = env_or("CUTTLE_RWW_HUGE_CLIENTS", 10);
    let mib = env_or("CUTTLE_RWW_HUGE_MIB", 1024);
    let hash = std::env::var("CUTTLE_RWW_HUGE_SHA").is_ok_and(|v| v == "1");
    let expected = if hash {
        expected_sha(mib)
    } else {
        String::new()
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path());
    // Idle: started, one small miss served.
    let _ = fetch(
        proxy.addr,
        format!("http://{origin_addr}/1"),
        Instant::now(),
        false,
    )
    .await;
    let (idle, _) = proxy.memory_kib();
    let before = requests.load(Ordering::SeqCst);
    let started = Instant::now();
    let got = together(proxy.addr, origin_addr, clients, mib, hash).await;
    let elapsed = started.elapsed();
    let (_, peak) = proxy.memory_kib();
    let origin_requests = requests.load(Ordering::SeqCst) - before;
    let exact = got
        .iter()
        .filter(|f| f.len == mib << 20 && (!hash || f.sha == expected))
        .count();
    let exact_what = if hash { "byte-exact" } else { "full-length" };
    println!();
    println!("## {clients} concurrent clients, cold {mib} MiB object");
    println!();
    println!(
        "proxy peak RSS (VmHWM) {:.1} MiB above idle ({:.1} MiB idle, {:.1} MiB peak; target < 64 MiB \
         above idle); {:.1} s for all, {:.0} MiB/s delivered; origin requests: {origin_requests}; \
         {exact_what} bodies: {exact}/{clients}",
        peak.saturating_sub(idle) as f64 / 1024.0,
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        elapsed.as_secs_f64(),
        (clients * mib) as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --bench` passes test-harness flags: both run
    // the whole measurement.
    let requests = Arc::new(AtomicUsize::new(0));
    let origin_addr = origin(Arc::clone(&requests)).await;
    let parts = std::env::var("CUTTLE_RWW_PARTS").unwrap_or_else(|_| "first,rss".to_owned());
    if parts.contains("first") {
        first_bytes(origin_addr, &requests).await;
    }
    if parts.contains("rss") {
        huge_rss(origin_addr, &requests).await;
    }
}
