//! What hit ratio do 3 cuttle nodes get as a cluster (`[cluster]`: each object owned and stored
//! by one member) against the same 3 nodes as independent caches behind round robin, for one
//! Zipf workload and the same memory per node?
//!
//! Run: `cargo bench --bench cluster_hit_ratio` (or, without a release build, `cargo test
//! --bench cluster_hit_ratio`: the ratios do not depend on speed). Env: `CUTTLE_BENCH_OBJECTS`
//! (default 2000 objects of 8 KiB), `CUTTLE_BENCH_REQUESTS` (default 8000), `CUTTLE_BENCH_ZIPF`
//! (the exponent, default 0.9), `CUTTLE_BENCH_NODE_MIB` (each node's memory cache, default 8).
//! Requests go to the nodes in turn; the hit ratio is 1 - origin fetches / requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const NODES: usize = 3;

fn env(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An origin serving 8 KiB cacheable objects at any path, counting requests.
async fn origin(fetches: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(vec![b'o'; 8 * 1024]);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (body, fetches) = (body.clone(), Arc::clone(&fetches));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    fetches.fetch_add(1, Ordering::Relaxed);
                    let mut r = Response::new(Full::new(body.clone()));
                    r.headers_mut()
                        .insert("cache-control", "max-age=3600".parse().unwrap());
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Zipf ranks by inverse CDF over a fixed xorshift sequence (the same for both setups).
fn workload(objects: usize, requests: usize, s: f64) -> Vec<usize> {
    let weights: Vec<f64> = (1..=objects).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(objects);
    let mut acc = 0.0;
    for w in weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..requests)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            cdf.partition_point(|&c| c < u).min(objects - 1)
        })
        .collect()
}

/// Node `me`'s config; `cluster` adds the `[cluster]` of all three.
fn node_config(me: usize, ports: &[u16], node_mib: u64, cluster: bool) -> String {
    let mut text = format!(
        "visible_hostname = \"bench\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:{}\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n[[http_access]]\ndeny = [\"all\"]\n\
         [cache]\nstatus_name = \"node{me}\"\n\
         [cache.memory]\nmax_size = \"{node_mib} MiB\"\n\
         [cache.disk]\npath = \"\"\n\
         [log]\naccess_log = \"none\"\n[admin]\nlisten = \"none\"\n",
        ports[me]
    );
    if cluster {
        text.push_str(&format!("[cluster]\nself = \"node{me}\"\n"));
        for (i, port) in ports.iter().enumerate() {
            text.push_str(&format!(
                "[[cluster.member]]\nname = \"node{i}\"\naddress = \"127.0.0.1:{port}\"\n"
            ));
        }
    }
    text
}

/// Runs `ranks` through 3 nodes in turn; the origin fetches it took.
async fn run(cluster: bool, ranks: &[usize], node_mib: u64) -> u64 {
    let fetches = Arc::new(AtomicU64::new(0));
    let origin = origin(Arc::clone(&fetches)).await;
    let held: Vec<std::net::TcpListener> = (0..NODES)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(held);
    let mut servers = Vec::new();
    for me in 0..NODES {
        let text = node_config(me, &ports, node_mib, cluster);
        let config = cuttle::config::load_str("bench.toml", &text).unwrap();
        servers.push(cuttle::app::start(config).await.unwrap());
    }
    // Let every member's first probe find the others up.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let clients: Vec<reqwest::Client> = ports
        .iter()
        .map(|p| {
            reqwest::Client::builder()
                .proxy(reqwest::Proxy::all(format!("http://127.0.0.1:{p}")).unwrap())
                .build()
                .unwrap()
        })
        .collect();
    for (n, rank) in ranks.iter().enumerate() {
        let url = format!("http://{origin}/object/{rank}");
        let response = clients[n % NODES].get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    for server in servers {
        server.shutdown().await;
    }
    fetches.load(Ordering::Relaxed)
}

fn main() {
    let objects = env("CUTTLE_BENCH_OBJECTS", 2000.0) as usize;
    let requests = env("CUTTLE_BENCH_REQUESTS", 8000.0) as usize;
    let s = env("CUTTLE_BENCH_ZIPF", 0.9);
    let node_mib = env("CUTTLE_BENCH_NODE_MIB", 8.0) as u64;
    let ranks = workload(objects, requests, s);
    let distinct = {
        let mut seen = ranks.clone();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let independent = runtime.block_on(run(false, &ranks, node_mib));
    let cluster = runtime.block_on(run(true, &ranks, node_mib));
    let ratio = |fetches: u64| 1.0 - fetches as f64 / requests as f64;
    println!(
        "Zipf s={s}, {objects} objects of 8 KiB ({distinct} requested), {requests} requests over \
         {NODES} nodes in turn, {node_mib} MiB memory cache per node"
    );
    println!(
        "  best possible (one fetch per object): hit ratio {:.3}",
        ratio(distinct as u64)
    );
    println!(
        "  3 independent nodes, round robin:    hit ratio {:.3} ({independent} origin fetches)",
        ratio(independent)
    );
    println!(
        "  3-member cluster:                    hit ratio {:.3} ({cluster} origin fetches)",
        ratio(cluster)
    );
}
