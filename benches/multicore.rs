//! How does throughput grow per added worker thread, on hits and misses, and which shared state
//! would contend first as workers grow?
//!
//! Three measurements, each from 1, 2, 4 and 8 threads (`CUTTLE_BENCH_THREADS="1 2 4 8"`), each
//! figure the median of `CUTTLE_BENCH_REPS` (3) runs of `CUTTLE_BENCH_SECS` (2) seconds:
//!
//! 1. **hit core**: the in-process part of a memory hit, without sockets or hyper: the cache
//!    lookup (moka, the stored head's `Arc`, the body's `Bytes`), the freshness evaluation, the
//!    response build (`serve_stored`), the `/metrics` counting and an access-log record pushed
//!    into the real log channel (its writer task writes a file). Each thread runs its own
//!    current-thread runtime in a loop; `hot` has every thread hit one object, `spread` gives each
//!    thread its own 8 objects (so the only lines they share are the cache's and the log's).
//! 2. **whole proxy**: the real proxy (`app::start`, disk tier and access log on) on a runtime
//!    of N workers (1: current-thread, as `main` builds it), a forward-proxy load generator of
//!    16 keep-alive connections on one thread of its own, and an origin on another: 1 KiB memory
//!    hits, and 1 KiB `no-store` misses.
//! 3. **line transfer**: two threads passing a counter back and forth through one cache line:
//!    what one write to a line the other core wrote last costs here. With the
//!    per-request count of shared-line writes (listed in README, "Workers, and what they
//!    share"), it gives the contention model printed at the end.
//!
//! Each row reports wall throughput and its ratio to one thread, and operations per CPU-second
//! of the threads doing the work (from `/proc/thread-self/stat`, 10 ms ticks) with its ratio to
//! one thread. On a machine with fewer cores than threads the wall figure cannot grow past the
//! core count; the per-CPU-second figure is the one that shows contention: it stays at 1.00x
//! while workers share nothing they write, and falls as shared lines bounce or locks are
//! waited on. Run: `cargo bench --bench multicore`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cuttle::cache::lookup::{Cache, Lookup};
use cuttle::cache::meta::{StoredFields, StoredHead};
use cuttle::cache::policy::RequestDirectives;
use cuttle::cache::result::CacheResult;
use cuttle::cache::serve::serve_stored;
use cuttle::cache::store::Tier;
use cuttle::log::access::{AccessLog, AccessRecord, LineFormat, Target};
use cuttle::metrics::{MethodClass, Metrics, ModeClass, Record};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Keep-alive connections of the whole-proxy load generator.
const CONNECTIONS: usize = 16;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn thread_counts() -> Vec<usize> {
    std::env::var("CUTTLE_BENCH_THREADS")
        .unwrap_or_else(|_| "1 2 4 8".into())
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .collect()
}

/// CPU time (user + system) of the calling thread so far, in clock ticks (10 ms).
fn thread_ticks() -> u64 {
    ticks_of("/proc/thread-self/stat")
}

fn ticks_of(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// This thread's id, for reading its CPU time from another thread.
fn thread_id() -> String {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

const TICKS_PER_SEC: f64 = 100.0;

/// One run's figures: operations, wall seconds, CPU seconds of the working threads.
#[derive(Clone, Copy, Debug)]
struct Run {
    ops: u64,
    wall: f64,
    cpu: f64,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.wall
    }
    fn per_cpu_sec(&self) -> f64 {
        self.ops as f64 / self.cpu.max(1.0 / TICKS_PER_SEC)
    }
}

/// The run with the median wall throughput and the median per-CPU figure (taken separately).
fn medians(runs: &[Run]) -> (f64, f64) {
    let mut wall: Vec<f64> = runs.iter().map(Run::per_sec).collect();
    let mut cpu: Vec<f64> = runs.iter().map(Run::per_cpu_sec).collect();
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (wall[wall.len() / 2], cpu[cpu.len() / 2])
}

/// Prints one table: per thread count, wall ops/s, per thread, ratio; ops per CPU-s, ratio.
fn report(title: &str, unit: &str, rows: &[(usize, f64, f64)]) {
    println!("\n{title}");
    println!(
        "| threads | {unit}/s (wall) | per thread | vs 1 thread | {unit} per CPU-second | vs 1 thread |"
    );
    println!("|---|---|---|---|---|---|");
    let (base_wall, base_cpu) = rows
        .iter()
        .find(|r| r.0 == 1)
        .map_or((rows[0].1, rows[0].2), |r| (r.1, r.2));
    for &(n, wall, cpu) in rows {
        println!(
            "| {n} | {wall:.0} | {:.0} | {:.2}x | {cpu:.0} | {:.2}x |",
            wall / n as f64,
            wall / base_wall,
            cpu / base_cpu
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The hit core.

/// A stored 1 KiB response for `url`, fresh for a day.
fn stored_head(url: &str) -> StoredHead {
    let now = wall_now();
    let mut fields = HeaderMap::new();
    fields.insert("server", "nginx/1.22.1".parse().unwrap());
    fields.insert("date", httpdate::fmt_http_date(now).parse().unwrap());
    fields.insert("content-type", "text/plain".parse().unwrap());
    fields.insert("content-length", "1024".parse().unwrap());
    fields.insert("etag", "\"66a1f0c0-400\"".parse().unwrap());
    fields.insert("cache-control", "max-age=86400".parse().unwrap());
    StoredHead {
        status: http::StatusCode::OK,
        headers: StoredFields::from_map(&fields),
        request_time: now,
        response_time: now,
        url: url.into(),
        body_len: 1024,
        derived: Default::default(),
    }
}

/// The wall clock, as the proxy reads it.
fn wall_now() -> SystemTime {
    use cuttle::clock::Clock as _;
    cuttle::clock::SystemClock.now()
}

fn key(i: usize) -> String {
    format!("http://origin.example/object/{i}")
}

/// The shared state of the hit core: the cache (memory and disk tiers), the counters and the
/// access log, as `app` builds them.
struct HitCore {
    cache: Cache,
    metrics: Metrics,
    log: AccessLog,
}

/// Opens the cache in `dir`, stores `objects` 1 KiB objects and starts the access log's writer
/// on `rt` (which must keep running for the log to drain).
fn hit_core(rt: &tokio::runtime::Runtime, dir: &Path, objects: usize) -> HitCore {
    let text = format!(
        "visible_hostname = \"bench\"\n[cache.memory]\nmax_size = \"64 MiB\"\n\
         [cache.disk]\npath = \"{}\"\nmax_size = \"1 GiB\"\n",
        dir.join("cache").display()
    );
    let config = cuttle::config::load_str("bench.toml", &text).unwrap();
    rt.block_on(async {
        let cache = Cache::open(&config.cache).await.unwrap();
        let body = Bytes::from(vec![b'x'; 1024]);
        for i in 0..objects {
            let k = key(i);
            let mut writer = cache.store.writer(&k, stored_head(&k), Some(1024)).unwrap();
            writer.write(&body).await.unwrap();
            writer.commit().await.unwrap();
        }
        let (log, _writer) = cuttle::log::access::start(
            &Target::File(dir.join("access.log")),
            Duration::from_millis(500),
            LineFormat::default(),
        )
        .await
        .unwrap();
        let metrics = Metrics::new();
        metrics.set_enabled(true);
        HitCore {
            cache,
            metrics,
            log,
        }
    })
}

/// One memory hit through the core: lookup, evaluation, response, counting, log record.
async fn one_hit(core: &HitCore, primary: &str, request: &HeaderMap, client: &Arc<str>) {
    let directives = RequestDirectives::from_headers(request);
    let Lookup::Found { hit, variant } = core.cache.lookup(primary, request).await else {
        panic!("{primary} is not stored");
    };
    let key = variant.as_deref().unwrap_or(primary);
    assert!(matches!(hit.tier, Tier::Memory), "not a memory hit");
    let now = wall_now();
    let evaluation = core.cache.evaluate(&hit.head, &directives, key, now);
    let served = serve_stored(&Method::GET, request, &hit.head, evaluation.age, true, now);
    let status = served.status.as_u16();
    let result = CacheResult::Hit {
        tier: Tier::Memory,
        conditional: false,
    };
    black_box(&served);
    drop(served);
    drop(hit);
    core.metrics.record(&Record {
        mode: ModeClass::Forward,
        method: MethodClass::Safe,
        status,
        result: Some(result),
        to_clients: 1024,
        from_upstream: 0,
        site: None,
        url: primary,
    });
    core.log.log(AccessRecord {
        time: now,
        elapsed: Duration::from_micros(20),
        client: Arc::clone(client),
        code: "TCP_MEM_HIT",
        status,
        bytes: 1300,
        body_bytes: 1024,
        method: Method::GET,
        url: primary.to_owned(),
        origin_form: false,
        version: http::Version::HTTP_11,
        user: None,
        hierarchy: "HIER_NONE",
        peer: None,
        upstream_addr: None,
        upstream_wait: None,
        content_type: None,
        cache_status: None,
        referer: None,
        user_agent: None,
    });
}

/// `threads` threads hitting the core for `secs`; `hot`: all on object 0, else 8 objects each.
fn run_hit_core(core: &Arc<HitCore>, threads: usize, hot: bool, secs: f64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (core, stop, start) = (Arc::clone(core), Arc::clone(&stop), Arc::clone(&start));
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let keys: Vec<String> = if hot {
                    vec![key(0)]
                } else {
                    (0..8).map(|i| key(t * 8 + i)).collect()
                };
                let mut request = HeaderMap::new();
                request.insert("host", "origin.example".parse().unwrap());
                request.insert("user-agent", "bench/1".parse().unwrap());
                request.insert("accept", "*/*".parse().unwrap());
                let client: Arc<str> = Arc::from("127.0.0.1");
                rt.block_on(async {
                    // Warm (each head's memo, each thread's templates) before the clock starts.
                    for k in &keys {
                        one_hit(&core, k, &request, &client).await;
                    }
                    start.wait();
                    let cpu0 = thread_ticks();
                    let mut ops = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            let k = &keys[(ops as usize) % keys.len()];
                            one_hit(&core, k, &request, &client).await;
                            ops += 1;
                        }
                    }
                    (ops, thread_ticks() - cpu0)
                })
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        ops: 0,
        wall: 0.0,
        cpu: 0.0,
    };
    for h in handles {
        let (ops, ticks) = h.join().unwrap();
        run.ops += ops;
        run.cpu += ticks as f64 / TICKS_PER_SEC;
    }
    run.wall = began.elapsed().as_secs_f64();
    run
}

// ---------------------------------------------------------------------------------------------
// 2. The whole proxy.

/// An origin on its own thread: `/1k` cacheable for a day, `/nostore` not storable.
fn origin() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let body = Bytes::from(vec![b'x'; 1024]);
            while let Ok((stream, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let cc = if req.uri().path() == "/1k" {
                            "max-age=86400"
                        } else {
                            "no-store"
                        };
                        let response = Response::builder()
                            .header("cache-control", cc)
                            .header("content-type", "text/plain")
                            .body(Full::new(body.clone()))
                            .unwrap();
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// A running proxy on a runtime of `workers` threads, with the ids of every thread that runtime
/// runs (workers and blocking pool) for reading their CPU time.
struct ProxyUnderTest {
    addr: SocketAddr,
    threads: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ProxyUnderTest {
    fn start(workers: usize, dir: &Path) -> Self {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let text = format!(
            "visible_hostname = \"bench\"\n[[http_port]]\nlisten = \"127.0.0.1:0\"\n\
             [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n[[http_access]]\nallow = [\"localhost\"]\n\
             [cache.memory]\nmax_size = \"64 MiB\"\n\
             [cache.disk]\npath = \"{}\"\nmax_size = \"1 GiB\"\n\
             [log]\naccess_log = \"{}\"\nlevel = \"warn\"\n",
            dir.join("cache").display(),
            dir.join("access.log").display()
        );
        let config = cuttle::config::load_str("bench.toml", &text).unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let seen = Arc::clone(&threads);
        let handle = std::thread::spawn(move || {
            seen.lock().unwrap().push(thread_id());
            let mut builder = if workers == 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(workers);
                b
            };
            let on_start = Arc::clone(&seen);
            let rt = builder
                .enable_all()
                .on_thread_start(move || on_start.lock().unwrap().push(thread_id()))
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = cuttle::app::start(config).await.unwrap();
                addr_tx.send(server.addrs()[0].0).unwrap();
                let _ = stopped.await;
                server.shutdown().await;
            });
        });
        let addr = addr_rx.recv().unwrap();
        Self {
            addr,
            threads,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// CPU ticks of the proxy's threads so far.
    fn ticks(&self) -> u64 {
        self.threads
            .lock()
            .unwrap()
            .iter()
            .map(|tid| ticks_of(&format!("/proc/self/task/{tid}/stat")))
            .sum()
    }
}

impl Drop for ProxyUnderTest {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A read that fails the bench instead of hanging it when the proxy stops answering.
async fn read_bounded(stream: &mut TcpStream, buf: &mut [u8]) -> usize {
    tokio::time::timeout(Duration::from_secs(10), stream.read(buf))
        .await
        .expect("the proxy answered within 10 s")
        .unwrap()
}

/// One keep-alive connection sending `GET url` until `stop`; responses counted in `done`.
async fn client_loop(
    proxy: SocketAddr,
    request: Arc<[u8]>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        stream.write_all(&request).await.unwrap();
        // Read the head, then the body by its Content-Length.
        let mut have = 0;
        let (head_end, body_len) = loop {
            let n = read_bounded(&mut stream, &mut buf[have..]).await;
            assert!(n > 0, "proxy closed the connection");
            have += n;
            if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end]).unwrap();
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .expect("a Content-Length");
                break (end + 4, len);
            }
        };
        let mut body = have - head_end;
        while body < body_len {
            let n = read_bounded(&mut stream, &mut buf).await;
            assert!(n > 0, "proxy closed the connection mid-body");
            body += n;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Load on `path` through a proxy of `workers` threads for `secs`; the ops are responses and
/// the CPU is the proxy's threads' alone.
fn run_proxy(origin: SocketAddr, workers: usize, path: &str, secs: f64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyUnderTest::start(workers, dir.path());
    let request: Arc<[u8]> = format!(
        "GET http://{origin}{path} HTTP/1.1\r\nhost: {origin}\r\nuser-agent: bench/1\r\naccept: */*\r\n\r\n"
    )
    .into_bytes()
    .into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm: the object is stored (hits), connections are pooled (misses).
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let warm = Arc::new(AtomicU64::new(0));
        {
            let s = Arc::new(AtomicBool::new(false));
            let tasks: Vec<_> = (0..CONNECTIONS)
                .map(|_| {
                    tokio::spawn(client_loop(
                        proxy.addr,
                        Arc::clone(&request),
                        Arc::clone(&s),
                        Arc::clone(&warm),
                    ))
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.store(true, Ordering::Relaxed);
            for t in tasks {
                t.await.unwrap();
            }
        }
        let cpu0 = proxy.ticks();
        let began = Instant::now();
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                tokio::spawn(client_loop(
                    proxy.addr,
                    Arc::clone(&request),
                    Arc::clone(&stop),
                    Arc::clone(&done),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let wall = began.elapsed().as_secs_f64();
        Run {
            ops: done.load(Ordering::Relaxed),
            wall,
            cpu: (proxy.ticks() - cpu0) as f64 / TICKS_PER_SEC,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// 3. What one cross-core line transfer costs.

/// Nanoseconds for one transfer of a cache line between the two threads' cores: they pass a
/// counter back and forth (each waits for the other's write, then writes), in batches of 1,000
/// round trips; the fastest batch is one where both threads ran throughout (on a loaded machine
/// most batches include a wait for the scheduler), and one round trip is two transfers.
fn transfer_ns(secs: f64) -> f64 {
    const TRIPS: u64 = 1000;
    let line = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let partner = {
        let (line, stop) = (Arc::clone(&line), Arc::clone(&stop));
        std::thread::spawn(move || {
            // Answers every odd value with the next even one, until told to stop.
            let mut spins = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let v = line.load(Ordering::Acquire);
                if v % 2 == 1 {
                    line.store(v + 1, Ordering::Release);
                    spins = 0;
                } else {
                    spins += 1;
                    if spins > 1 << 16 {
                        std::thread::yield_now();
                        spins = 0;
                    }
                }
            }
        })
    };
    let began = Instant::now();
    let mut best = f64::MAX;
    while began.elapsed().as_secs_f64() < secs {
        let t0 = Instant::now();
        for _ in 0..TRIPS {
            let v = line.fetch_add(1, Ordering::AcqRel) + 1;
            let mut spins = 0u32;
            while line.load(Ordering::Acquire) == v {
                spins += 1;
                if spins > 1 << 16 {
                    std::thread::yield_now();
                    spins = 0;
                }
            }
        }
        best = best.min(t0.elapsed().as_secs_f64() * 1e9 / (2 * TRIPS) as f64);
    }
    stop.store(true, Ordering::Relaxed);
    partner.join().unwrap();
    best
}

fn main() {
    let secs = env_u64("CUTTLE_BENCH_SECS", 2) as f64;
    let reps = env_u64("CUTTLE_BENCH_REPS", 3).max(1) as usize;
    let counts = thread_counts();
    println!(
        "multicore: {} CPUs online here, {secs} s per run, median of {reps}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 3 first: its figure feeds the model.
    let bounce = transfer_ns(secs);
    println!("\nline transfer between two cores: {bounce:.0} ns (fastest batch of ping-pong)");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let max_threads = counts.iter().copied().max().unwrap_or(1);
    let core = Arc::new(hit_core(&rt, dir.path(), 8 * max_threads));
    let mut hot_one = 0.0;
    for hot in [true, false] {
        let rows: Vec<(usize, f64, f64)> = counts
            .iter()
            .map(|&n| {
                let runs: Vec<Run> = (0..reps)
                    .map(|_| run_hit_core(&core, n, hot, secs))
                    .collect();
                let (wall, cpu) = medians(&runs);
                (n, wall, cpu)
            })
            .collect();
        if hot {
            hot_one = rows.iter().find(|r| r.0 == 1).map_or(0.0, |r| r.2);
        }
        report(
            &format!(
                "hit core, {} (lookup + evaluate + serve_stored + metrics + access-log record)",
                if hot {
                    "hot: every thread on one object"
                } else {
                    "spread: 8 objects per thread"
                }
            ),
            "hits",
            &rows,
        );
    }
    drop(core);

    let origin = origin();
    for (label, path) in [
        ("1 KiB memory hits", "/1k"),
        ("1 KiB misses (no-store)", "/nostore"),
    ] {
        let rows: Vec<(usize, f64, f64)> = counts
            .iter()
            .map(|&n| {
                let runs: Vec<Run> = (0..reps)
                    .map(|_| run_proxy(origin, n, path, secs))
                    .collect();
                let (wall, cpu) = medians(&runs);
                (n, wall, cpu)
            })
            .collect();
        report(
            &format!(
                "whole proxy, {label}: {CONNECTIONS} keep-alive connections from one load thread; \
                 CPU is the proxy's threads'"
            ),
            "requests",
            &rows,
        );
    }

    // The model: per hit, the writes to lines that every worker writes (counted from the code;
    // see README "Workers, and what they share"). At N workers a fraction (N-1)/N of them find
    // the line last written by another core and wait one transfer; a line saturates when its
    // transfers fill all of its time: N x (hits per second per worker) x writes x transfer = 1.
    if hot_one > 0.0 {
        let service_ns = 1e9 / hot_one;
        println!(
            "\nmodel: one worker spends {service_ns:.0} ns of CPU per hit-core hit; one transfer \
             {bounce:.0} ns"
        );
        println!("| shared-line writes per hit | 2 workers | 4 | 8 | 64 | line saturated at |");
        println!("|---|---|---|---|---|---|");
        // (what, shared-line writes per hit, writes per hit to the busiest single line: the
        // log channel's permit count, taken by the sender and given back by the writer; on a hot
        // key, the stored head's reference count).
        for (what, writes, busiest) in [
            (
                "spread keys: moka read log 2, access-log channel 5",
                7.0,
                2.0,
            ),
            (
                "hot key: the above + head Arc 4, body Bytes 4, moka entry 3",
                18.0,
                4.0,
            ),
        ] {
            let cost = |n: f64| (service_ns + writes * bounce * (n - 1.0) / n) / service_ns;
            let saturated = service_ns / (busiest * bounce.max(1.0));
            println!(
                "| {what} | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {saturated:.0} workers |",
                cost(2.0),
                cost(4.0),
                cost(8.0),
                cost(64.0)
            );
        }
    }
    rt.shutdown_timeout(Duration::from_secs(1));
}
