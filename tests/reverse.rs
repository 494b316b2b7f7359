//! Reverse mode (accelerator) with real upstream servers on loopback: Host routing, weighted
//! distribution, consistent hashing, failover and recovery, retry rules, cache offload, and
//! the guarantee that an unknown Host reaches nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// A reverse-mode config with one group `app` of `servers` (TOML inline tables) and `extra`.
fn reverse_config(
    dir: &std::path::Path,
    algorithm: &str,
    servers: &[String],
    extra: &str,
) -> String {
    format!(
        "visible_hostname = \"edge-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"www.example.test\", \"*.cdn.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\nalgorithm = \"{algorithm}\"\nservers = [{}]\n\
         [cache.disk]\npath = \"{}\"\n[log]\naccess_log = \"none\"\n{extra}",
        servers.join(", "),
        dir.join("cache").display()
    )
}

fn server(addr: SocketAddr, options: &str) -> String {
    format!("{{ address = \"{addr}\"{options} }}")
}

/// An origin answering `name` with `cache_control` (and `/health` for active checks).
async fn named(name: &'static str, cache_control: &'static str) -> Origin {
    Origin::builder()
        .route("/health", |_| reply(200, "ok"))
        .route("/", move |_| {
            let mut r = reply(200, name);
            r.headers_mut()
                .insert("cache-control", cache_control.parse().unwrap());
            r
        })
        .spawn()
        .await
}

/// A client for a reverse port: requests go straight to it with the given Host.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

async fn get(proxy: &TestProxy, host: &str, path: &str) -> (u16, String) {
    let r = client()
        .get(format!("{}{path}", proxy.url()))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn weighted_round_robin_distributes_within_5_percent() {
    let origins = [
        named("a", "no-store").await,
        named("b", "no-store").await,
        named("c", "no-store").await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<String> = origins
        .iter()
        .zip([1, 2, 3])
        .map(|(o, w)| server(o.addr, &format!(", weight = {w}")))
        .collect();
    let proxy = TestProxy::start_text(
        &reverse_config(dir.path(), "round_robin", &servers, ""),
        None,
    )
    .await;
    let client = client();
    for _ in 0..3000 {
        let r = client
            .get(format!("{}/", proxy.url()))
            .header("host", "www.example.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let hits: Vec<usize> = origins.iter().map(Origin::hits).collect();
    for (got, want) in hits.iter().zip([500.0, 1000.0, 1500.0]) {
        let off = (*got as f64 - want).abs() / want;
        assert!(off <= 0.05, "hits {hits:?}, expected 500/1000/1500");
    }
}

#[tokio::test]
async fn hash_sends_each_url_to_one_server() {
    let origins = [
        named("a", "no-store").await,
        named("b", "no-store").await,
        named("c", "no-store").await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<String> = origins.iter().map(|o| server(o.addr, "")).collect();
    let proxy =
        TestProxy::start_text(&reverse_config(dir.path(), "hash", &servers, ""), None).await;
    let mut owners = std::collections::HashMap::new();
    for round in 0..3 {
        for i in 0..30 {
            let (status, who) = get(&proxy, "www.example.test", &format!("/?item={i}")).await;
            assert_eq!(status, 200);
            let first = owners.entry(i).or_insert_with(|| who.clone());
            assert_eq!(*first, who, "url {i} moved in round {round}");
        }
    }
    let distinct: std::collections::HashSet<_> = owners.values().collect();
    assert!(distinct.len() >= 2, "30 URLs all on one server: {owners:?}");
}

#[tokio::test]
async fn unknown_host_is_421_and_reaches_no_upstream() {
    let inside = named("inside", "no-store").await;
    let outside = named("outside", "no-store").await;
    let dir = tempfile::tempdir().unwrap();
    // The page names the cause only with `error_details = "full"` (reverse ports default to
    // minimal).
    let text = format!(
        "error_details = \"full\"\n{}",
        reverse_config(dir.path(), "round_robin", &[server(inside.addr, "")], "")
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let (status, page) = get(&proxy, "evil.test", "/").await;
    assert_eq!(status, 421);
    assert!(page.contains("no site is configured"), "{page}");
    // An absolute-form request naming another server is routed by site, never to that server.
    let request = format!(
        "GET http://{}/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        outside.addr, outside.addr
    );
    let out = raw(proxy.addr, request.as_bytes(), WAIT).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 421"));
    // A suffix pattern needs a label before the suffix.
    let (status, _) = get(&proxy, "cdn.example.test", "/").await;
    assert_eq!(status, 421);
    let (status, body) = get(&proxy, "img.cdn.example.test", "/").await;
    assert_eq!((status, body.as_str()), (200, "inside"));
    assert_eq!(outside.hits(), 0);
    assert_eq!(inside.hits(), 1);
}

#[tokio::test]
async fn host_is_preserved_and_forwarding_fields_are_added() {
    let origin = named("ok", "no-store").await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start_text(
        &reverse_config(dir.path(), "round_robin", &[server(origin.addr, "")], ""),
        None,
    )
    .await;
    get(&proxy, "www.example.test", "/?q=1").await;
    let seen = &origin.requests()[0];
    assert_eq!(seen.uri.to_string(), "/?q=1");
    assert_eq!(seen.headers["host"], "www.example.test");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(
        seen.headers["forwarded"],
        "for=127.0.0.1;proto=http;host=www.example.test"
    );
    assert!(seen.headers["via"].to_str().unwrap().contains("edge-test"));
}

#[tokio::test]
async fn cache_offloads_the_origin_also_under_concurrency() {
    let origins = [
        named("a", "max-age=600").await,
        named("b", "max-age=600").await,
        named("c", "max-age=600").await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<String> = origins.iter().map(|o| server(o.addr, "")).collect();
    let proxy = TestProxy::start_text(
        &reverse_config(dir.path(), "round_robin", &servers, ""),
        None,
    )
    .await;
    let url = proxy.url();
    let client = client();
    let mut tasks = Vec::new();
    for batch in 0..10 {
        for i in 0..100 {
            let client = client.clone();
            let url = format!("{url}/?object={}", (batch * 100 + i) % 10);
            tasks.push(tokio::spawn(async move {
                let r = client
                    .get(url)
                    .header("host", "www.example.test")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }));
        }
        // Batches overlap: up to 100 requests in flight on 10 URLs.
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total: usize = origins.iter().map(Origin::hits).sum();
    assert!(
        total <= 10,
        "1000 requests for 10 URLs reached the upstreams {total} times"
    );
}

/// An upstream that can be stopped (connections refused) and started again on the same port.
struct Switchable {
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Switchable {
    async fn start(addr: SocketAddr, hits: Arc<AtomicUsize>) -> Self {
        let listener = support::bind_again(addr).await;
        let addr = listener.local_addr().unwrap();
        let counter = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let counter = Arc::clone(&counter);
                            async move {
                                if req.uri().path() != "/health" {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                }
                                let mut r = reply(200, "switchable");
                                r.headers_mut()
                                    .insert("cache-control", "no-store".parse().unwrap());
                                Ok::<_, std::convert::Infallible>(r)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        drop(hits);
        Self {
            addr,
            task: Some(task),
        }
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_skipped_without_client_errors_and_comes_back_after_health_checks() {
    let steady = named("steady", "no-store").await;
    let hits = Arc::new(AtomicUsize::new(0));
    let mut flaky = Switchable::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&hits)).await;
    let dir = tempfile::tempdir().unwrap();
    let servers = vec![
        server(steady.addr, ", max_fails = 1, fail_timeout = \"1s\""),
        server(flaky.addr, ", max_fails = 1, fail_timeout = \"1s\""),
    ];
    let extra = "[upstream.app.health_check]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nrise = 1\nfall = 1\n";
    let proxy = TestProxy::start_text(
        &reverse_config(dir.path(), "round_robin", &servers, extra),
        None,
    )
    .await;
    for _ in 0..20 {
        assert_eq!(get(&proxy, "www.example.test", "/").await.0, 200);
    }
    assert!(
        hits.load(Ordering::SeqCst) >= 5,
        "both servers share the load"
    );
    flaky.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = hits.load(Ordering::SeqCst);
    for _ in 0..50 {
        let (status, body) = get(&proxy, "www.example.test", "/").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "steady"),
            "idempotent requests fail over invisibly"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), before);
    // Bring it back on the same port: the active check marks it up again.
    let flaky = Switchable::start(flaky.addr, Arc::clone(&hits)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while hits.load(Ordering::SeqCst) == before && tokio::time::Instant::now() < deadline {
        assert_eq!(get(&proxy, "www.example.test", "/").await.0, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hits.load(Ordering::SeqCst) > before, "the server came back");
    drop(flaky);
}

#[tokio::test]
async fn get_is_retried_on_another_server_but_a_sent_post_is_not() {
    // The first choice accepts the request and closes without answering.
    let broken = RawOrigin::spawn(RawBehaviour::Reply(Vec::new())).await;
    let healthy = Origin::builder()
        .route("/", |req| reply(200, &format!("healthy {}", req.method)))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let servers = vec![
        server(broken.addr, ", weight = 100, max_fails = 0"),
        server(healthy.addr, ", max_fails = 0"),
    ];
    let extra = "";
    let text = reverse_config(dir.path(), "round_robin", &servers, extra).replace(
        "[upstream.app]\n",
        "[upstream.app]\nnext_upstream = [\"error\", \"timeout\"]\n",
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let (status, body) = get(&proxy, "www.example.test", "/").await;
    assert_eq!((status, body.as_str()), (200, "healthy GET"));
    assert_eq!(
        broken.hits.load(Ordering::SeqCst),
        1,
        "the GET went to the broken server first"
    );
    let post = client()
        .post(format!("{}/", proxy.url()))
        .header("host", "www.example.test")
        .body("pay once")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 502);
    assert_eq!(broken.hits.load(Ordering::SeqCst), 2);
    assert!(
        healthy
            .requests()
            .iter()
            .all(|r| r.method != http::Method::POST),
        "a POST that was sent is never replayed"
    );
}

#[tokio::test]
async fn origin_one_liner_runs_an_accelerator() {
    let origin = named("accelerated", "max-age=60").await;
    let proxy = CuttleProcess::start(&["--origin", &origin.url("")]);
    let addr = proxy.addr;
    for _ in 0..3 {
        let r = client()
            .get(format!("http://{addr}/"))
            .header("host", "any.name")
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "accelerated");
    }
    assert_eq!(origin.hits(), 1, "cached by the accelerator");
    drop(proxy);
}

#[tokio::test]
async fn cdn_cache_control_governs_this_cache_on_an_accelerator() {
    let origin = Origin::builder()
        .route("/", |_| {
            let mut r = reply(200, "for the cdn only");
            r.headers_mut()
                .insert("cache-control", "no-store".parse().unwrap());
            r.headers_mut()
                .insert("cdn-cache-control", "max-age=60".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start_text(
        &reverse_config(dir.path(), "round_robin", &[server(origin.addr, "")], ""),
        None,
    )
    .await;
    for _ in 0..3 {
        let r = client()
            .get(format!("{}/", proxy.url()))
            .header("host", "www.example.test")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["cache-control"],
            "no-store",
            "Cache-Control goes on unchanged"
        );
        assert_eq!(r.text().await.unwrap(), "for the cdn only");
    }
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn all_servers_down_is_503_with_the_error_page() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "error_details = \"full\"\n{}",
        reverse_config(
            dir.path(),
            "round_robin",
            &[server(dead, ", max_fails = 1, fail_timeout = \"30s\"")],
            "",
        )
    );
    let proxy = TestProxy::start_text(&text, None).await;
    // First: the connection is refused. Then: the server is out, no candidate is left.
    let (first, _) = get(&proxy, "www.example.test", "/").await;
    assert_eq!(first, 503);
    let (second, page) = get(&proxy, "www.example.test", "/").await;
    assert_eq!(second, 503);
    assert!(
        page.contains("no server of upstream group `app` is available"),
        "{page}"
    );
}

#[tokio::test]
async fn host_can_be_rewritten_to_the_upstream_address() {
    let origin = named("ok", "no-store").await;
    let dir = tempfile::tempdir().unwrap();
    let text = reverse_config(dir.path(), "round_robin", &[server(origin.addr, "")], "").replace(
        "upstream = \"app\"\n[upstream.app]",
        "upstream = \"app\"\nhost_header = \"upstream\"\n[upstream.app]",
    );
    let proxy = TestProxy::start_text(&text, None).await;
    get(&proxy, "www.example.test", "/").await;
    assert_eq!(
        origin.requests()[0].headers["host"],
        origin.addr.to_string()
    );
}

#[tokio::test]
async fn a_listed_5xx_moves_an_idempotent_request_to_the_next_server() {
    let failing = Origin::builder()
        .route("/", |_| reply(503, "busy"))
        .spawn()
        .await;
    let working = named("working", "no-store").await;
    let dir = tempfile::tempdir().unwrap();
    let servers = vec![
        server(failing.addr, ", weight = 100, max_fails = 0"),
        server(working.addr, ", max_fails = 0"),
    ];
    let text = reverse_config(dir.path(), "round_robin", &servers, "").replace(
        "[upstream.app]\n",
        "[upstream.app]\nnext_upstream = [\"error\", \"timeout\", \"http_503\"]\n",
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let (status, body) = get(&proxy, "www.example.test", "/").await;
    assert_eq!((status, body.as_str()), (200, "working"));
    assert_eq!(failing.hits(), 1);
    // Without http_503 listed, the 503 goes to the client.
    let text = reverse_config(dir.path(), "round_robin", &servers, "");
    let proxy = TestProxy::start_text(&text.replace("cache\"", "cache2\""), None).await;
    let (status, _) = get(&proxy, "www.example.test", "/").await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn the_access_log_names_a_group_server_with_the_squid_code_of_its_balancing() {
    let a = named("a", "no-store").await;
    let b = named("b", "no-store").await;
    let mut seen = Vec::new();
    for (algorithm, servers, expected) in [
        (
            "round_robin",
            vec![server(a.addr, ""), server(b.addr, "")],
            "ROUNDROBIN_PARENT",
        ),
        (
            "ip_hash",
            vec![server(a.addr, ""), server(b.addr, "")],
            "SOURCEHASH_PARENT",
        ),
        ("round_robin", vec![server(a.addr, "")], "FIRSTUP_PARENT"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let text = reverse_config(dir.path(), algorithm, &servers, "").replace(
            "access_log = \"none\"",
            &format!("access_log = \"{}\"", log.display()),
        );
        let proxy = TestProxy::start_text(&text, None).await;
        let (status, _) = get(&proxy, "www.example.test", "/").await;
        assert_eq!(status, 200);
        proxy.shutdown().await;
        let line = std::fs::read_to_string(&log).unwrap();
        let hierarchy = line.split_whitespace().nth(8).unwrap().to_owned();
        assert!(
            hierarchy.starts_with(&format!("{expected}/127.0.0.1:")),
            "{algorithm}: {line}"
        );
        seen.push(hierarchy);
    }
    assert_eq!(seen.len(), 3);
}
