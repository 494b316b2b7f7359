//! The admin listener end to end: `/status` and `/metrics` counter deltas over a scripted
//! sequence (miss, memory hit, disk hit, revalidation, purge), its access rules, `listen =
//! "none"`, the cache inspector, and `cuttle stats`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cuttle::clock::{Clock, ManualClock};
use serde_json::Value;
use support::*;

async fn status(admin: SocketAddr) -> Value {
    admin_status(admin).await
}

async fn metrics(admin: SocketAddr) -> String {
    admin_metrics(admin).await
}

/// The value of the sample `name` (with its labels as written) in an exposition.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits (bounded) until `/status` counts `total` requests: a transaction is counted when its
/// last body byte has gone out, a moment after the client read it.
async fn status_after(admin: SocketAddr, total: u64) -> Value {
    for _ in 0..100 {
        let s = status(admin).await;
        if s["requests"]["total"].as_u64().unwrap() >= total {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/status never reached {total} requests");
}

fn delta(after: &Value, before: &Value, path: &[&str]) -> i64 {
    let get = |v: &Value| {
        path.iter()
            .fold(v, |v, k| &v[*k])
            .as_u64()
            .unwrap_or_else(|| panic!("{path:?} missing"))
    };
    get(after) as i64 - get(before) as i64
}

fn dated(mut r: http::Response<OriginBody>, clock: &ManualClock) -> http::Response<OriginBody> {
    r.headers_mut().insert(
        "date",
        httpdate::fmt_http_date(clock.now()).parse().unwrap(),
    );
    r
}

const SMALL: usize = 100;
const BIG: usize = 4096;

#[tokio::test]
async fn scripted_sequence_moves_exact_counters() {
    let clock = Arc::new(ManualClock::starting_now());
    let c1 = clock.clone();
    let c2 = clock.clone();
    let origin = Origin::builder()
        .route("/small", move |req| {
            if req
                .headers
                .get("if-none-match")
                .is_some_and(|v| v == "\"v1\"")
            {
                let mut r = dated(reply(304, ""), &c1);
                r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                r.headers_mut()
                    .insert("cache-control", "max-age=10".parse().unwrap());
                return r;
            }
            let mut r = dated(reply_bytes(200, pattern(SMALL).into()), &c1);
            r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
            r.headers_mut()
                .insert("cache-control", "max-age=10".parse().unwrap());
            r
        })
        .route("/big", move |_| {
            let mut r = dated(reply_bytes(200, pattern(BIG).into()), &c2);
            r.headers_mut()
                .insert("cache-control", "max-age=100000".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    // Bodies over 1 KiB stay on disk only, so the second /big is a disk hit.
    let text = config(dir.path(), "[cache.memory]\nmax_object_size = \"1 KiB\"\n");
    let proxy = TestProxy::start_with_clock(&text, Some(dir), clock.clone()).await;
    let admin = proxy.admin.expect("admin listener runs");
    let client = http_client(&proxy);
    let before = status(admin).await;
    let metrics_before = metrics(admin).await;
    let total0 = before["requests"]["total"].as_u64().unwrap();

    let get = |path: &str| {
        let client = client.clone();
        let url = origin.url(path);
        async move {
            let r = client.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let cs = r.headers()["cache-status"].to_str().unwrap().to_owned();
            (r.bytes().await.unwrap().len(), cs)
        }
    };
    // 1. miss, 2. memory hit.
    assert_eq!(get("/small").await.0, SMALL);
    assert!(get("/small").await.1.contains("hit;ttl="));
    // 3. miss (stored on disk only), then wait until the inspector shows it on disk.
    assert_eq!(get("/big").await.0, BIG);
    let inspect_url = format!(
        "http://{admin}/cache?url={}",
        origin.url("/big").replace(':', "%3A").replace('/', "%2F")
    );
    let mut inspected = Value::Null;
    for _ in 0..100 {
        inspected = admin_client()
            .get(&inspect_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap();
        if inspected["variants"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let variant = &inspected["variants"][0];
    assert_eq!(variant["tier"], "disk", "{inspected:#}");
    assert_eq!(variant["verdict"], "serve", "{inspected:#}");
    assert_eq!(variant["freshness_lifetime_seconds"], 100000);
    assert_eq!(variant["status"], 200);
    // 4. disk hit.
    let (len, cs) = get("/big").await;
    assert_eq!(len, BIG);
    assert!(cs.contains("detail=disk"), "{cs}");
    // 5. revalidation: 20 s later /small is stale; the origin answers 304.
    clock.advance(Duration::from_secs(20));
    let stale: Value = admin_client()
        .get(format!("http://{admin}/cache?url={}", origin.url("/small")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(stale["variants"][0]["verdict"], "revalidate", "{stale:#}");
    assert_eq!(stale["variants"][0]["tier"], "memory", "{stale:#}");
    let (len, cs) = get("/small").await;
    assert_eq!(len, SMALL);
    assert!(cs.contains("fwd-status=304"), "{cs}");
    // 6. purge.
    let purged = client
        .request(
            http::Method::from_bytes(b"PURGE").unwrap(),
            origin.url("/small"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);

    let after = status_after(admin, total0 + 6).await;
    let d = |path: &[&str]| delta(&after, &before, path);
    assert_eq!(d(&["requests", "total"]), 6);
    assert_eq!(d(&["requests", "by_mode", "forward"]), 6);
    assert_eq!(d(&["requests", "by_mode", "reverse"]), 0);
    assert_eq!(d(&["requests", "by_method_class", "safe"]), 5);
    assert_eq!(d(&["requests", "by_method_class", "other"]), 1);
    assert_eq!(d(&["requests", "by_status_class", "2xx"]), 6);
    let results = [
        ("miss", 2),
        ("memory_hit", 1),
        ("disk_hit", 1),
        ("refresh_unmodified", 1),
        ("refresh_modified", 0),
        ("stale_served", 0),
        ("collapsed", 0),
        ("bypass", 0),
        ("purge", 1),
    ];
    for (kind, expected) in results {
        assert_eq!(d(&["cache", "results", kind]), expected, "{kind}");
    }
    assert_eq!(d(&["cache", "hits"]), 3);
    assert_eq!(d(&["cache", "lookups"]), 5);
    let to_clients = (3 * SMALL + 2 * BIG) as i64;
    let from_upstream = (SMALL + BIG) as i64;
    assert_eq!(d(&["bytes", "to_clients"]), to_clients);
    assert_eq!(d(&["bytes", "from_upstream"]), from_upstream);
    assert_eq!(d(&["bytes", "saved"]), to_clients - from_upstream);
    assert_eq!(after["cache"]["tiers"]["disk"]["objects"].as_u64(), Some(1));
    assert!(after["top_urls"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with("/big"));
    assert_eq!(after["config"]["generation"], 1);

    // The same deltas in /metrics.
    let m = metrics(admin).await;
    let md = |name: &str| sample(&m, name) - sample(&metrics_before, name);
    for (kind, expected) in results {
        let name = format!("cuttle_cache_results_total{{result=\"{kind}\"}}");
        assert_eq!(md(&name), expected as f64, "{name}");
    }
    assert_eq!(md("cuttle_cache_hits_total"), 3.0);
    assert_eq!(md("cuttle_cache_lookups_total"), 5.0);
    assert_eq!(md("cuttle_client_sent_bytes_total"), to_clients as f64);
    assert_eq!(
        md("cuttle_upstream_received_bytes_total"),
        from_upstream as f64
    );
    assert_eq!(
        md("cuttle_requests_total{mode=\"forward\",method_class=\"safe\",status_class=\"2xx\"}"),
        5.0
    );
    assert_eq!(sample(&m, "cuttle_config_generation"), 1.0);
    assert_eq!(sample(&m, "cuttle_cache_objects{tier=\"disk\"}"), 1.0);
    assert!(m.contains("# TYPE cuttle_cache_results_total counter"));
    proxy.shutdown().await;
}

#[tokio::test]
async fn admin_access_rules_deny_by_peer_address() {
    let proxy = TestProxy::start(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[admin.access]]\ndeny = [\"localhost\"]\n\
         [[admin.access]]\nallow = [\"all\"]\n",
    )
    .await;
    let admin = proxy.admin.unwrap();
    let denied = admin_client()
        .get(format!("http://{admin}/status"))
        .send()
        .await;
    assert!(denied.is_err(), "a denied peer gets no answer: {denied:?}");
    // The proxy itself still serves.
    let origin = Origin::builder()
        .route("/", |_| reply(200, "ok"))
        .spawn()
        .await;
    let r = http_client(&proxy)
        .get(origin.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    proxy.shutdown().await;
}

#[tokio::test]
async fn default_rules_allow_loopback_and_unknown_paths_are_404() {
    let proxy = TestProxy::start("").await;
    let admin = proxy.admin.unwrap();
    // `/` is the dashboard (tests/dashboard.rs); any other unknown path is a 404.
    let root = admin_client()
        .get(format!("http://{admin}/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 404);
    let post = admin_client()
        .post(format!("http://{admin}/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    let s = status(admin).await;
    for key in [
        "version",
        "uptime_seconds",
        "now",
        "config",
        "requests",
        "cache",
        "bytes",
        "connections",
        "upstreams",
        "peers",
        "access_log",
        "top_urls",
        "history",
    ] {
        assert!(!s[key].is_null(), "{key} missing from {s:#}");
    }
    // The sampler takes its first sample at start, so charts have a point at once.
    let mut history = Vec::new();
    for _ in 0..100 {
        history = status(admin).await["history"].as_array().cloned().unwrap();
        if !history.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(history[0]["t"].as_f64().unwrap() > 1.7e9, "{history:?}");
    assert_eq!(history[0]["requests"], 0);
    assert_eq!(
        s["cache"]["tiers"]["memory"]["max_bytes"],
        256 * 1024 * 1024
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn listen_none_binds_nothing() {
    let proxy = TestProxy::start("[admin]\nlisten = \"none\"\n").await;
    assert_eq!(proxy.admin, None);
    proxy.shutdown().await;
}

#[test]
fn bad_admin_config_is_located() {
    let err = cuttle::config::load_str("t.toml", "[admin]\nlisten = \"localhost\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("t.toml:2: admin.listen:"), "{text}");
    assert!(text.contains("\"127.0.0.1:3180\""), "{text}");
    let err = cuttle::config::load_str(
        "t.toml",
        "[acl]\nops = { src = [\"10.0.0.0/8\"] }\n[admin]\n[[admin.access]]\nallow = [\"opz\"]\n",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("admin.access[0].allow[0]"), "{text}");
    assert!(text.contains("unknown ACL `opz`"), "{text}");
}

#[tokio::test]
async fn cuttle_stats_prints_the_figures() {
    let origin = Origin::builder()
        .route("/a", |_| {
            reply_with(200, "hello", &[("cache-control", "max-age=60")])
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let admin = proxy.admin.unwrap();
    let client = http_client(&proxy);
    for _ in 0..3 {
        let r = client.get(origin.url("/a")).send().await.unwrap();
        r.bytes().await.unwrap();
    }
    status_after(admin, 3).await;
    let addr = admin.to_string();
    let out = tokio::task::spawn_blocking(move || run_cuttle(&["stats", "--admin", &addr]))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Requests:     3 total (3 forward, 0 reverse)"),
        "{text}"
    );
    assert!(
        text.contains("hit ratio 66.7% (2 hits / 3 lookups)"),
        "{text}"
    );
    assert!(text.contains("memory_hit 2"), "{text}");
    assert!(
        text.contains("Bandwidth:    15 B to clients, 5 B from upstream, 10 B saved"),
        "{text}"
    );
    proxy.shutdown().await;
    let addr = admin.to_string();
    let out = tokio::task::spawn_blocking(move || run_cuttle(&["stats", "--admin", &addr]))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

#[test]
fn the_reverse_example_opens_the_admin_listener_to_monitoring_only() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/reverse.toml");
    let cfg = cuttle::config::load_file(&path).unwrap();
    assert_eq!(cfg.admin.listen, Some("0.0.0.0:3180".parse().unwrap()));
    let allowed = |src: &str| {
        let method = http::Method::GET;
        cfg.admin.access.check(&cuttle::access::AccessRequest {
            src: src.parse().unwrap(),
            host: "",
            port: 0,
            method: &method,
            dst: None,
            facts: Default::default(),
        }) == cuttle::access::Verdict::Allow
    };
    assert!(allowed("127.0.0.1"));
    assert!(allowed("10.0.50.7"));
    assert!(!allowed("10.0.51.7"));
    assert!(!allowed("8.8.8.8"));
}

/// Reverse mode: requests by mode, bytes per site, and the upstream server's state and
/// latency in both renderings.
#[tokio::test]
async fn reverse_sites_and_upstream_servers_are_counted() {
    let origin = Origin::builder()
        .route("/page", |_| {
            reply_with(200, "0123456789", &[("cache-control", "max-age=60")])
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "visible_hostname = \"edge-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"{}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n",
        origin.addr,
        dir.path().join("cache").display()
    );
    let proxy = TestProxy::start_text(&text, Some(dir)).await;
    let admin = proxy.admin.unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = client
            .get(format!("http://{}/page", proxy.addr))
            .header("host", "www.example.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 10);
    }
    let s = status_after(admin, 3).await;
    assert_eq!(s["requests"]["by_mode"]["reverse"], 3);
    assert_eq!(s["requests"]["by_mode"]["forward"], 0);
    let sites = s["bytes"]["by_site"].as_array().unwrap();
    assert_eq!(sites.len(), 1, "{s:#}");
    assert_eq!(sites[0]["site"], "www.example.test");
    assert_eq!(sites[0]["to_clients"], 30);
    assert_eq!(sites[0]["from_upstream"], 10);
    let up = &s["upstreams"][0];
    assert_eq!(up["group"], "app");
    assert_eq!(up["server"], origin.addr.to_string());
    assert_eq!(up["up"], true);
    assert_eq!(up["requests"], 1);
    assert_eq!(up["failures"], 0);
    assert!(up["latency_ms_avg"].as_f64().unwrap() > 0.0);
    let m = metrics(admin).await;
    let labels = format!("{{group=\"app\",server=\"{}\"}}", origin.addr);
    assert_eq!(
        sample(&m, &format!("cuttle_upstream_server_up{labels}")),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            &format!("cuttle_upstream_server_requests_total{labels}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            &format!("cuttle_upstream_server_response_seconds_count{labels}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "cuttle_site_client_sent_bytes_total{site=\"www.example.test\"}"
        ),
        30.0
    );
    proxy.shutdown().await;
}

/// `--log-level debug` explains each cache decision: the outcome and why.
#[tokio::test]
async fn debug_log_explains_cache_decisions() {
    use std::io::BufRead;
    let origin = Origin::builder()
        .route("/obj", |_| {
            reply_with(200, "body", &[("cache-control", "max-age=60")])
        })
        .route("/private", |_| {
            reply_with(200, "mine", &[("cache-control", "private")])
        })
        .spawn()
        .await;
    let home = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(cuttle_bin())
        .args(["--listen", "127.0.0.1:0", "--log-level", "debug"])
        .args(["--origin", &format!("http://{}", origin.addr)])
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let addr: SocketAddr = loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("cuttle printed its listening line");
        if let Some(rest) = line.strip_prefix("cuttle: listening on ") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let client = admin_client();
    for path in ["/obj", "/obj", "/private"] {
        let r = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap();
    }
    let mut decisions = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while decisions.len() < 3 && tokio::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains("cache decision") {
                decisions.push(line);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(decisions.len(), 3, "{decisions:#?}");
    assert!(
        decisions[0].contains("miss") && decisions[0].contains("TCP_MISS"),
        "{}",
        decisions[0]
    );
    assert!(decisions[0].contains("uri-miss"), "{}", decisions[0]);
    assert!(
        decisions[1].contains("memory_hit") && decisions[1].contains("TCP_MEM_HIT"),
        "{}",
        decisions[1]
    );
    assert!(
        decisions[2].contains("bypass") && decisions[2].contains("private"),
        "{}",
        decisions[2]
    );
}
