//! How fast does cuttle serve memory hits and disk hits through the whole proxy, relative to
//! the origin served directly in the same run, and how much memory does streaming a 1 GiB
//! object (miss, then disk hit) take?
//!
//! Run: `cargo bench --bench cache_load` (env `CUTTLE_BENCH_SECS`, default 3 s per run; 3 runs
//! per row, the median is reported; `CUTTLE_BENCH_HUGE_MIB` sizes the streaming object,
//! default 1024). The origin, the proxy and the load generator share this process and the
//! machine's cores, so compare the ratios, not the absolute numbers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const CONNECTIONS: usize = 32;

type OriginBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A static origin: /1k and /100k cacheable for an hour, /huge streams N MiB.
async fn origin(huge_mib: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let small = Bytes::from(vec![b'x'; 1024]);
    let medium = Bytes::from(vec![b'y'; 100 * 1024]);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (small, medium) = (small.clone(), medium.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (small, medium) = (small.clone(), medium.clone());
                    async move {
                        let body: OriginBody = match req.uri().path() {
                            "/1k" => Full::new(small).map_err(|e| match e {}).boxed(),
                            "/100k" => Full::new(medium).map_err(|e| match e {}).boxed(),
                            _ => {
                                let chunk = Bytes::from(vec![b'z'; 1 << 20]);
                                let frames = (0..huge_mib)
                                    .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
                                BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
                            }
                        };
                        let mut r = Response::new(body);
                        r.headers_mut()
                            .insert("cache-control", "public, max-age=3600".parse().unwrap());
                        if req.uri().path() == "/huge" {
                            r.headers_mut().insert(
                                "content-length",
                                (huge_mib << 20).to_string().parse().unwrap(),
                            );
                        }
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

/// `CONNECTIONS` keep-alive clients fetching `url` from `to` for `secs`; returns (req/s, MiB/s).
async fn load(to: SocketAddr, url: &str, secs: f64) -> (f64, f64) {
    let requests = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (requests, bytes, url) = (requests.clone(), bytes.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(to).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            while Instant::now() < deadline {
                let req = Request::get(&url)
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let res = sender.send_request(req).await.unwrap();
                assert!(res.status().is_success());
                let body = res.into_body().collect().await.unwrap().to_bytes();
                requests.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = requests.load(Ordering::Relaxed) as f64 / secs;
    let b = bytes.load(Ordering::Relaxed) as f64 / secs / (1024.0 * 1024.0);
    (r, b)
}

fn median(mut v: Vec<(f64, f64)>) -> (f64, f64) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v[v.len() / 2]
}

async fn start_proxy(dir: &std::path::Path, memory_objects: bool) -> cuttle::app::Server {
    let memory = if memory_objects { "8 MiB" } else { "1 B" };
    let text = format!(
        "visible_hostname = \"bench\"\n[[http_port]]\nlisten = \"127.0.0.1:0\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n[[http_access]]\nallow = [\"localhost\"]\n\
         [cache.memory]\nmax_size = \"512 MiB\"\nmax_object_size = \"{memory}\"\n\
         [cache.disk]\npath = \"{}\"\nmax_size = \"4 GiB\"\nmax_object_size = \"2 GiB\"\n\
         [log]\naccess_log = \"none\"\nlevel = \"warn\"\n",
        dir.display()
    );
    cuttle::app::start(cuttle::config::load_str("bench.toml", &text).unwrap())
        .await
        .unwrap()
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
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

/// Streams the huge object through the real binary twice (miss, then disk hit) and reports
/// the binary's RSS growth.
async fn huge_object_rss(origin: SocketAddr, huge_mib: u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!(
        "visible_hostname = \"bench\"\n[acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n[[http_access]]\nallow = [\"localhost\"]\n\
         [cache.memory]\nmax_size = \"64 MiB\"\nmax_object_size = \"1 MiB\"\n\
         [cache.disk]\npath = \"{}\"\nmax_size = \"4 GiB\"\nmax_object_size = \"2 GiB\"\n[log]\naccess_log = \"none\"\nlevel = \"warn\"\n",
        dir.path().join("cache").display())).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let addr: SocketAddr = std::io::BufRead::lines(stderr)
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("cuttle: listening on ")
                .map(|r| r.split(' ').next().unwrap_or("").to_owned())
        })
        .unwrap()
        .parse()
        .unwrap();
    let url = format!("http://{origin}/huge");
    let (idle, _) = rss_kib(child.id());
    for pass in ["miss (stored to disk)", "disk hit"] {
        let started = Instant::now();
        let (_, mib) = load_one(addr, &url).await;
        let (_, peak) = rss_kib(child.id());
        println!(
            "{huge_mib} MiB object, {pass}: {:.0} MiB/s, proxy peak RSS {} MiB above idle ({} MiB idle)",
            mib / started.elapsed().as_secs_f64(),
            peak.saturating_sub(idle) / 1024,
            idle / 1024
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One streaming fetch; returns (status, MiB received).
async fn load_one(to: SocketAddr, url: &str) -> (u16, f64) {
    let stream = TcpStream::connect(to).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(url)
        .header("host", "bench")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let mut body = res.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            n += data.len() as u64;
        }
    }
    (status, n as f64 / (1024.0 * 1024.0))
}

fn main() {
    let secs: f64 = std::env::var("CUTTLE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let huge_mib: u64 = std::env::var("CUTTLE_BENCH_HUGE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` builds this; it is not a test.
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let origin = origin(huge_mib).await;
        let mem_dir = tempfile::tempdir().unwrap();
        let disk_dir = tempfile::tempdir().unwrap();
        let memory = start_proxy(mem_dir.path(), true).await;
        let disk = start_proxy(disk_dir.path(), false).await;
        println!(
            "{:<22} {:>10} {:>10} {:>10}",
            "row (median of 3)", "req/s", "MiB/s", "vs origin"
        );
        for object in ["/1k", "/100k"] {
            let url = format!("http://{origin}{object}");
            let mut rows = Vec::new();
            let mut direct_runs = Vec::new();
            for _ in 0..3 {
                direct_runs.push(load(origin, object, secs).await);
            }
            let direct = median(direct_runs);
            rows.push((format!("origin direct {object}"), direct));
            for (name, proxy) in [("memory hit", &memory), ("disk hit", &disk)] {
                let to = proxy.addr().unwrap();
                load_one(to, &url).await; // warm: miss, stored
                let mut runs = Vec::new();
                for _ in 0..3 {
                    runs.push(load(to, &url, secs).await);
                }
                rows.push((format!("{name} {object}"), median(runs)));
            }
            for (name, (rps, mibs)) in rows {
                println!(
                    "{name:<22} {rps:>10.0} {mibs:>10.1} {:>9.2}x",
                    rps / direct.0
                );
            }
        }
        huge_object_rss(origin, huge_mib).await;
    });
}
