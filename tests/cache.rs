//! The cache end to end, against real origins over loopback: hits with Age and Cache-Status,
//! revalidation, Vary, invalidation, stale-while-revalidate, stale-if-error, collapsed
//! forwarding, disk persistence, integrity, and the disk size bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cuttle::clock::ManualClock;
use support::*;

/// A proxy on a new manual clock; returns it and the clock.
async fn proxy_with_clock(
    dir: &std::path::Path,
    extra: &str,
) -> (cuttle::app::Server, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_now());
    (proxy_on(dir, extra, clock.clone()).await, clock)
}

/// A proxy on `clock`.
async fn proxy_on(
    dir: &std::path::Path,
    extra: &str,
    clock: Arc<ManualClock>,
) -> cuttle::app::Server {
    let text = format!("{}\n[log]\naccess_log = \"none\"\n", config(dir, extra));
    let config = cuttle::config::load_str("test.toml", &text).unwrap();
    cuttle::app::start_with_clock(config, clock).await.unwrap()
}

/// `Date` from the test's clock (hyper would stamp the real time, which the proxy's manual
/// clock does not follow).
fn dated(mut r: http::Response<OriginBody>, clock: &ManualClock) -> http::Response<OriginBody> {
    use cuttle::clock::Clock;
    r.headers_mut().insert(
        "date",
        httpdate::fmt_http_date(clock.now()).parse().unwrap(),
    );
    r
}

fn client_for(server: &cuttle::app::Server) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", server.addr().unwrap())).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap()
}

fn cacheable(
    body: &'static str,
    cache_control: &'static str,
) -> impl Fn(&Recorded) -> http::Response<OriginBody> {
    move |_| {
        let mut r = reply(200, body);
        r.headers_mut()
            .insert("cache-control", cache_control.parse().unwrap());
        r
    }
}

/// A cacheable route answering `{prefix}{the request's field}` with `Vary: field`.
fn echo_varying(
    field: &'static str,
    prefix: &'static str,
) -> impl Fn(&Recorded) -> http::Response<OriginBody> {
    move |req| {
        let value = req
            .headers
            .get(field)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut r = reply(200, &format!("{prefix}{value}"));
        r.headers_mut()
            .insert("cache-control", "max-age=100".parse().unwrap());
        r.headers_mut().insert("vary", field.parse().unwrap());
        r
    }
}

fn cache_status(r: &reqwest::Response) -> String {
    r.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn second_request_is_a_hit_with_age_and_cache_status() {
    let origin = Origin::builder()
        .route("/c", cacheable("cached body", "max-age=100"))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = proxy_with_clock(dir.path(), "").await;
    let client = client_for(&server);
    let first = client.get(origin.url("/c")).send().await.unwrap();
    let status = cache_status(&first);
    assert!(
        status.contains("fwd=uri-miss") && status.contains("stored"),
        "{status}"
    );
    assert_eq!(first.text().await.unwrap(), "cached body");
    clock.advance(Duration::from_secs(7));
    let second = client.get(origin.url("/c")).send().await.unwrap();
    let status = cache_status(&second);
    assert!(status.starts_with("cuttle;hit"), "{status}");
    assert!(status.contains("ttl=93"), "{status}");
    assert_eq!(second.headers()["age"], "7");
    assert_eq!(second.text().await.unwrap(), "cached body");
    assert_eq!(origin.hits(), 1, "the origin saw only the first request");
}

#[tokio::test]
async fn stale_entry_is_revalidated_with_304_and_freshened() {
    let origin = Origin::builder()
        .route("/v", |req| {
            if req
                .headers
                .get("if-none-match")
                .is_some_and(|v| v == "\"v1\"")
            {
                let mut r = reply(304, "");
                r.headers_mut()
                    .insert("cache-control", "max-age=60".parse().unwrap());
                r.headers_mut()
                    .insert("x-refreshed", "yes".parse().unwrap());
                return r;
            }
            let mut r = reply(200, "version one");
            r.headers_mut()
                .insert("cache-control", "max-age=10".parse().unwrap());
            r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = proxy_with_clock(dir.path(), "").await;
    let client = client_for(&server);
    client
        .get(origin.url("/v"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    clock.advance(Duration::from_secs(30));
    let revalidated = client.get(origin.url("/v")).send().await.unwrap();
    let status = cache_status(&revalidated);
    assert!(
        status.contains("fwd=stale") && status.contains("fwd-status=304"),
        "{status}"
    );
    assert_eq!(revalidated.headers()["x-refreshed"], "yes");
    assert_eq!(revalidated.text().await.unwrap(), "version one");
    assert_eq!(origin.requests()[1].headers["if-none-match"], "\"v1\"");
    // Freshened for 60 s: the next request is a hit with the updated header.
    clock.advance(Duration::from_secs(5));
    let hit = client.get(origin.url("/v")).send().await.unwrap();
    assert!(cache_status(&hit).contains("hit"), "{}", cache_status(&hit));
    assert_eq!(hit.headers()["x-refreshed"], "yes");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn vary_variants_coexist() {
    let origin = Origin::builder()
        .route("/lang", echo_varying("accept-language", "hello in "))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(dir.path(), "").await;
    let client = client_for(&server);
    for lang in ["en", "fr", "en", "fr", "de"] {
        let r = client
            .get(origin.url("/lang"))
            .header("accept-language", lang)
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), format!("hello in {lang}"));
    }
    assert_eq!(
        origin.hits(),
        3,
        "en and fr were served from their own variants"
    );
    let other = client
        .get(origin.url("/lang"))
        .header("accept-language", "es")
        .send()
        .await
        .unwrap();
    assert!(
        cache_status(&other).contains("fwd=vary-miss"),
        "{}",
        cache_status(&other)
    );
}

#[tokio::test]
async fn post_invalidates_the_stored_response() {
    let version = Arc::new(AtomicUsize::new(1));
    let v = Arc::clone(&version);
    let origin = Origin::builder()
        .route("/doc", move |req| {
            if req.method == http::Method::POST {
                v.fetch_add(1, Ordering::SeqCst);
                return reply(204, "");
            }
            let mut r = reply(200, &format!("v{}", v.load(Ordering::SeqCst)));
            r.headers_mut()
                .insert("cache-control", "max-age=100".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(dir.path(), "").await;
    let client = client_for(&server);
    assert_eq!(
        client
            .get(origin.url("/doc"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "v1"
    );
    assert_eq!(
        client
            .get(origin.url("/doc"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "v1"
    );
    let post = client
        .post(origin.url("/doc"))
        .body("change")
        .send()
        .await
        .unwrap();
    assert!(cache_status(&post).contains("fwd=method"));
    assert_eq!(
        client
            .get(origin.url("/doc"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "v2"
    );
    // GET (miss), GET (hit, not seen), POST, GET (miss again after the invalidation).
    assert_eq!(origin.hits(), 3);
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once_in_background() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let clock = Arc::new(ManualClock::starting_now());
    let origin_clock = clock.clone();
    let origin = Origin::builder()
        .route("/swr", move |_| {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let mut r = reply(200, &format!("generation {n}"));
            r.headers_mut().insert(
                "cache-control",
                "max-age=10, stale-while-revalidate=60".parse().unwrap(),
            );
            dated(r, &origin_clock)
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = proxy_on(dir.path(), "", clock.clone()).await;
    let client = client_for(&server);
    client
        .get(origin.url("/swr"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    clock.advance(Duration::from_secs(20));
    let stale = client.get(origin.url("/swr")).send().await.unwrap();
    let status = cache_status(&stale);
    assert!(
        status.contains("hit") && status.contains("stale-while-revalidate"),
        "{status}"
    );
    assert_eq!(stale.text().await.unwrap(), "generation 1");
    // While the refresh runs, more requests get the stale copy (and start no second refresh);
    // once it finished, they get the new one.
    for _ in 0..2 {
        let next = client.get(origin.url("/swr")).send().await.unwrap();
        let status = cache_status(&next);
        match next.text().await.unwrap().as_str() {
            "generation 1" => assert!(status.contains("stale-while-revalidate"), "{status}"),
            "generation 2" => assert!(status.contains("hit"), "{status}"),
            other => panic!("unexpected body {other}"),
        }
    }
    // Exactly one background refresh reaches the origin (bounded wait).
    let deadline = tokio::time::Instant::now() + WAIT;
    while origin.hits() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(origin.hits(), 2);
    let mut refreshed = String::new();
    for _ in 0..200 {
        refreshed = client
            .get(origin.url("/swr"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if refreshed == "generation 2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(refreshed, "generation 2");
    assert_eq!(origin.hits(), 2);
}

/// Requests `url` (stale under stale-while-revalidate) until `refreshes()` reaches `target`,
/// which proves an earlier background refresh ended (one runs per key at a time), then once
/// more; every answer must be the stale `expected`: the refresh did not replace it.
async fn assert_refresh_kept_the_stored_response(
    client: &reqwest::Client,
    url: &str,
    expected: &str,
    refreshes: impl Fn() -> usize,
    target: usize,
) {
    for _ in 0..500 {
        let done = refreshes() >= target;
        let r = client.get(url).send().await.unwrap();
        let status = cache_status(&r);
        let body = r.text().await.unwrap();
        assert_eq!(
            body, expected,
            "a background refresh replaced the stored response ({status})"
        );
        assert!(status.contains("stale-while-revalidate"), "{status}");
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no second background refresh started (bounded wait)");
}

/// An origin route answering `first` (cacheable, stale-while-revalidate) once, then `later`.
fn swr_then(
    clock: &Arc<ManualClock>,
    later: impl Fn() -> http::Response<OriginBody> + Send + Sync + 'static,
) -> impl Fn(&Recorded) -> http::Response<OriginBody> {
    let count = Arc::new(AtomicUsize::new(0));
    let clock = clock.clone();
    move |_| {
        let r = if count.fetch_add(1, Ordering::SeqCst) == 0 {
            let mut r = reply(200, "generation 1");
            r.headers_mut().insert(
                "cache-control",
                "max-age=10, stale-while-revalidate=600".parse().unwrap(),
            );
            r
        } else {
            later()
        };
        dated(r, &clock)
    }
}

/// Issue 12: the background refresh used to store a 5xx over the stale entry, where a
/// foreground revalidation serves stale and stores nothing.
#[tokio::test]
async fn background_refresh_never_stores_a_server_error_over_the_stale_entry() {
    let clock = Arc::new(ManualClock::starting_now());
    let origin = Origin::builder()
        .route(
            "/flaky",
            swr_then(&clock, || {
                let mut r = reply(503, "down for maintenance");
                r.headers_mut()
                    .insert("cache-control", "max-age=100".parse().unwrap());
                r
            }),
        )
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = proxy_on(dir.path(), "", clock.clone()).await;
    let client = client_for(&server);
    let url = origin.url("/flaky");
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "generation 1"
    );
    clock.advance(Duration::from_secs(20));
    assert_refresh_kept_the_stored_response(&client, &url, "generation 1", || origin.hits(), 3)
        .await;
}

/// Issue 12: the background refresh used to skip the reusability filter the foreground
/// applies, replacing a good stale entry with one that can never be served again.
#[tokio::test]
async fn background_refresh_applies_the_reusability_filter() {
    let clock = Arc::new(ManualClock::starting_now());
    let origin = Origin::builder()
        .route(
            "/once",
            swr_then(&clock, || {
                // Storable but never reusable: no freshness, no validator, no stale permission.
                let mut r = reply(200, "unreusable");
                r.headers_mut()
                    .insert("cache-control", "max-age=0".parse().unwrap());
                r
            }),
        )
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = proxy_on(dir.path(), "", clock.clone()).await;
    let client = client_for(&server);
    let url = origin.url("/once");
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "generation 1"
    );
    clock.advance(Duration::from_secs(20));
    assert_refresh_kept_the_stored_response(&client, &url, "generation 1", || origin.hits(), 3)
        .await;
}

/// Issue 12: the background refresh used to store what a `proxy_only` peer served (Squid
/// `proxy-only`: relay, never store), which the foreground path refuses.
#[tokio::test]
async fn background_refresh_does_not_store_what_a_proxy_only_peer_served() {
    let clock = Arc::new(ManualClock::starting_now());
    let origin = Origin::builder()
        .route(
            "/peer",
            swr_then(&clock, || reply(500, "origin asked twice")),
        )
        .spawn()
        .await;
    // A sibling that has nothing at first (504 to only-if-cached), then a fresh copy.
    let asked = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&asked);
    let sibling_clock = clock.clone();
    let sibling = Origin::builder()
        .route("/peer", move |_| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return reply(504, "not cached here");
            }
            let mut r = reply(200, "from the sibling");
            r.headers_mut()
                .insert("cache-control", "max-age=100".parse().unwrap());
            dated(r, &sibling_clock)
        })
        .spawn()
        .await;
    let peer = format!(
        "[[peer]]\nhost = \"127.0.0.1\"\nport = {}\ntype = \"sibling\"\nproxy_only = true\n",
        sibling.addr.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = proxy_on(dir.path(), &peer, clock.clone()).await;
    let client = client_for(&server);
    let url = origin.url("/peer");
    let first = client.get(&url).send().await.unwrap();
    assert!(
        cache_status(&first).contains("stored"),
        "{}",
        cache_status(&first)
    );
    assert_eq!(first.text().await.unwrap(), "generation 1");
    assert_eq!((origin.hits(), sibling.hits()), (1, 1));
    clock.advance(Duration::from_secs(20));
    assert_refresh_kept_the_stored_response(&client, &url, "generation 1", || sibling.hits(), 3)
        .await;
    assert_eq!(origin.hits(), 1, "the sibling answered every refresh");
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = proxy_with_clock(dir.path(), "[timeouts]\nconnect = \"1s\"\n").await;
    let client = client_for(&server);
    // An origin that goes away after the first response.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let origin_task = {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=5, stale-if-error=600\r\nContent-Length: 8\r\nConnection: close\r\n\r\nstale ok").await.unwrap();
        })
    };
    let url = format!("http://127.0.0.1:{port}/sie");
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "stale ok"
    );
    origin_task.await.unwrap();
    clock.advance(Duration::from_secs(60));
    let stale = client.get(&url).send().await.unwrap();
    assert_eq!(stale.status(), 200);
    assert!(
        cache_status(&stale).contains("stale-if-error"),
        "{}",
        cache_status(&stale)
    );
    assert_eq!(stale.text().await.unwrap(), "stale ok");
    // Beyond the stale-if-error window: the failure shows.
    clock.advance(Duration::from_secs(3600));
    let failed = client.get(&url).send().await.unwrap();
    assert_eq!(failed.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collapsed_forwarding_turns_100_concurrent_misses_into_one_origin_request() {
    let origin = Origin::builder()
        .route("/hot", |_| {
            // Slow enough that all clients arrive while the first fetch is in flight.
            std::thread::sleep(Duration::from_millis(300));
            let mut r = reply(200, "hot object");
            r.headers_mut()
                .insert("cache-control", "max-age=100".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(dir.path(), "[limits]\nmax_connections = 200\n").await;
    let client = client_for(&server);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let client = client.clone();
        let url = origin.url("/hot");
        tasks.push(tokio::spawn(async move {
            client.get(url).send().await.unwrap().text().await.unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), "hot object");
    }
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn disk_entries_survive_a_restart_with_the_right_age() {
    let origin = Origin::builder()
        .route("/persist", cacheable("kept on disk", "max-age=1000"))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    // Memory objects of 1 byte at most: everything lives on disk.
    let extra = "[cache.memory]\nmax_size = \"1 MiB\"\nmax_object_size = \"1 B\"\n";
    let clock = Arc::new(ManualClock::starting_now());
    let text = format!(
        "{}\n[log]\naccess_log = \"none\"\n",
        config(dir.path(), extra)
    );
    let server = cuttle::app::start_with_clock(
        cuttle::config::load_str("t.toml", &text).unwrap(),
        clock.clone(),
    )
    .await
    .unwrap();
    let client = client_for(&server);
    client
        .get(origin.url("/persist"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    server.shutdown().await;
    clock.advance(Duration::from_secs(42));
    let server = cuttle::app::start_with_clock(
        cuttle::config::load_str("t.toml", &text).unwrap(),
        clock.clone(),
    )
    .await
    .unwrap();
    // The disk index loads in the background (until then the entry would be a miss).
    support::wait_disk_index(&server).await;
    let client = client_for(&server);
    let hit = client.get(origin.url("/persist")).send().await.unwrap();
    let status = cache_status(&hit);
    assert!(
        status.contains("hit") && status.contains("detail=disk"),
        "{status}"
    );
    assert_eq!(hit.headers()["age"], "42");
    assert_eq!(hit.text().await.unwrap(), "kept on disk");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn truncated_upstream_body_is_not_stored() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=100\r\nContent-Length: 100\r\n\r\nonly part"
            .to_vec(),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(dir.path(), "").await;
    let client = client_for(&server);
    let first = client.get(origin.url("/t")).send().await.unwrap();
    assert!(first.bytes().await.is_err());
    let second = client.get(origin.url("/t")).send().await.unwrap();
    assert!(
        !cache_status(&second).contains("hit"),
        "{}",
        cache_status(&second)
    );
    let _ = second.bytes().await;
    assert_eq!(
        origin.hits.load(Ordering::SeqCst),
        2,
        "the truncated body was never served from cache"
    );
}

#[tokio::test]
async fn corrupt_disk_entry_is_a_miss() {
    let origin = Origin::builder()
        .route("/corrupt", cacheable("pristine content", "max-age=1000"))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "[cache.memory]\nmax_size = \"1 MiB\"\nmax_object_size = \"1 B\"\n";
    let (server, _clock) = proxy_with_clock(dir.path(), extra).await;
    let client = client_for(&server);
    client
        .get(origin.url("/corrupt"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // Flip bytes in every content file under the cache directory.
    let mut corrupted = 0;
    for entry in walk(&dir.path().join("cache")) {
        if entry.to_string_lossy().contains("content") {
            let mut data = std::fs::read(&entry).unwrap();
            for b in &mut data {
                *b ^= 0xff;
            }
            std::fs::write(&entry, data).unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0, "found no content files to corrupt");
    let again = client.get(origin.url("/corrupt")).send().await.unwrap();
    assert!(
        !cache_status(&again).contains("hit"),
        "{}",
        cache_status(&again)
    );
    assert_eq!(again.text().await.unwrap(), "pristine content");
    assert_eq!(origin.hits(), 2);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn dir_size(dir: &std::path::Path) -> u64 {
    walk(dir)
        .iter()
        .filter(|p| p.to_string_lossy().contains("content"))
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn disk_tier_stays_within_max_size_after_filling_it_three_times_over() {
    let origin = Origin::builder()
        .route("/obj", move |req| {
            // Distinct bytes per object: the disk tier stores content by hash.
            let mut body = pattern(64 * 1024);
            let tag = req.uri.query().unwrap_or("").as_bytes();
            body[..tag.len()].copy_from_slice(tag);
            let mut r = reply_bytes(200, Bytes::from(body));
            r.headers_mut()
                .insert("cache-control", "max-age=1000".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    // The harness config already has a [cache.disk] table: add the bound to it.
    let text = config(
        dir.path(),
        "[cache.memory]\nmax_size = \"1 MiB\"\nmax_object_size = \"1 B\"\n",
    )
    .replace(
        "[cache.disk]\n",
        "[cache.disk]\nmax_size = \"1 MiB\"\nmax_object_size = \"256 KiB\"\n",
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let client = http_client(&proxy);
    // 48 distinct 64 KiB objects = 3 MiB through a 1 MiB disk tier.
    for i in 0..48 {
        let body = client
            .get(origin.url(&format!("/obj?{i}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), 64 * 1024);
    }
    let used = dir_size(&dir.path().join("cache"));
    assert!(
        used <= 1024 * 1024,
        "disk cache holds {used} bytes of content"
    );
    assert!(used >= 512 * 1024, "disk cache evicted too much: {used}");
    // The most recent object is still a hit.
    let last = client.get(origin.url("/obj?47")).send().await.unwrap();
    assert!(
        cache_status(&last).contains("hit"),
        "{}",
        cache_status(&last)
    );
}

#[tokio::test]
async fn conditional_requests_go_to_the_origin_on_a_miss_and_are_answered_from_storage_after() {
    let origin = Origin::builder()
        .route("/etag", |req| {
            if req
                .headers
                .get("if-none-match")
                .is_some_and(|v| v == "\"abc\"")
            {
                return reply(304, "");
            }
            let mut r = reply(200, "full representation");
            r.headers_mut()
                .insert("cache-control", "max-age=100".parse().unwrap());
            r.headers_mut().insert("etag", "\"abc\"".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(dir.path(), "").await;
    let client = client_for(&server);
    // RFC 9111 §4.3.2: nothing stored, so the validator is the origin's to evaluate.
    let forwarded = client
        .get(origin.url("/etag"))
        .header("if-none-match", "\"abc\"")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 304);
    assert_eq!(origin.requests()[0].headers["if-none-match"], "\"abc\"");
    let full = client.get(origin.url("/etag")).send().await.unwrap();
    assert_eq!(full.text().await.unwrap(), "full representation");
    // Now stored: the cache evaluates the validator itself (weak comparison).
    let answered = client
        .get(origin.url("/etag"))
        .header("if-none-match", "W/\"abc\"")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 304);
    assert!(
        cache_status(&answered).contains("hit"),
        "{}",
        cache_status(&answered)
    );
    assert_eq!(answered.headers()["etag"], "\"abc\"");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn range_on_a_stored_response_is_206_without_the_origin() {
    let origin = Origin::builder()
        .route("/r", |_| {
            let mut r = reply(200, &format!("0123456789{}abcdef", "-".repeat(984)));
            r.headers_mut()
                .insert("cache-control", "max-age=100".parse().unwrap());
            r.headers_mut()
                .insert("content-type", "text/plain".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(dir.path(), "").await;
    let client = client_for(&server);
    // A ranged miss fetches the whole (small) object, stores it, answers 206.
    let first = client
        .get(origin.url("/r"))
        .header("range", "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 206);
    assert_eq!(first.headers()["content-range"], "bytes 2-5/1000");
    assert_eq!(first.text().await.unwrap(), "2345");
    assert!(!origin.requests()[0].headers.contains_key("range"));
    let multi = client
        .get(origin.url("/r"))
        .header("range", "bytes=0-1, 998-999")
        .send()
        .await
        .unwrap();
    assert_eq!(multi.status(), 206);
    let ctype = multi.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        ctype.starts_with("multipart/byteranges; boundary="),
        "{ctype}"
    );
    let body = multi.text().await.unwrap();
    assert!(
        body.contains("Content-Range: bytes 0-1/1000\r\n\r\n01\r\n"),
        "{body}"
    );
    assert!(
        body.contains("Content-Range: bytes 998-999/1000\r\n\r\nef\r\n"),
        "{body}"
    );
    let unsatisfiable = client
        .get(origin.url("/r"))
        .header("range", "bytes=5000-")
        .send()
        .await
        .unwrap();
    assert_eq!(unsatisfiable.status(), 416);
    assert_eq!(unsatisfiable.headers()["content-range"], "bytes */1000");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn purge_removes_the_entry_and_only_if_cached_then_gets_504() {
    let origin = Origin::builder()
        .route("/p", cacheable("purge me", "max-age=100"))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(dir.path(), "").await;
    let client = client_for(&server);
    client
        .get(origin.url("/p"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let cached = client
        .get(origin.url("/p"))
        .header("cache-control", "only-if-cached")
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 200);
    let purge = reqwest::Method::from_bytes(b"PURGE").unwrap();
    let purged = client
        .request(purge.clone(), origin.url("/p"))
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    let again = client
        .request(purge, origin.url("/p"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let gone = client
        .get(origin.url("/p"))
        .header("cache-control", "only-if-cached")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 504);
    assert!(cache_status(&gone).contains("only-if-cached"));
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn range_from_a_large_disk_entry_streams_only_the_requested_bytes() {
    let data = Bytes::from(pattern(600 * 1024));
    let served = data.clone();
    let origin = Origin::builder()
        .route("/big", move |_| {
            let mut r = reply_bytes(200, served.clone());
            r.headers_mut()
                .insert("cache-control", "max-age=100".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "[cache.memory]\nmax_size = \"1 MiB\"\nmax_object_size = \"1 B\"\n";
    let (server, _clock) = proxy_with_clock(dir.path(), extra).await;
    let client = client_for(&server);
    let full = client
        .get(origin.url("/big"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(full, data);
    let ranged = client
        .get(origin.url("/big"))
        .header("range", "bytes=300000-300099")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert!(
        cache_status(&ranged).contains("detail=disk"),
        "{}",
        cache_status(&ranged)
    );
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 300000-300099/{}", data.len())
    );
    assert_eq!(ranged.bytes().await.unwrap(), data.slice(300_000..300_100));
    assert_eq!(origin.hits(), 1);
}

const STALL: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nCache-Control: max-age=60\r\nETag: \"x\"\r\n\r\nhello";

#[tokio::test]
async fn a_stalled_origin_cannot_hold_a_ranged_miss_or_later_requests() {
    let origin = RawOrigin::spawn(RawBehaviour::ReplyThenHang(STALL.to_vec())).await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(
        dir.path(),
        "[timeouts]\nread = \"500ms\"\n[cache]\ncollapsed_forwarding_timeout = \"10s\"\n",
    )
    .await;
    let client = client_for(&server);
    let started = tokio::time::Instant::now();
    let ranged = client
        .get(origin.url("/r"))
        .header("range", "bytes=0-3")
        .send()
        .await;
    if let Ok(response) = ranged {
        let _ = response.bytes().await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ranged miss hung {:?}",
        started.elapsed()
    );
    // A later request for the same URL is not stuck behind an abandoned fill.
    let started = tokio::time::Instant::now();
    if let Ok(response) = client.get(origin.url("/r")).send().await {
        let _ = response.bytes().await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_invalidation_during_a_fill_keeps_the_old_body_out_of_the_cache() {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    let gets = Arc::new(AtomicUsize::new(0));
    let g = Arc::clone(&gets);
    let origin = Origin::builder()
        .route("/r", move |rec| {
            if rec.method == http::Method::POST {
                return reply(200, "posted");
            }
            let version = if g.fetch_add(1, Ordering::SeqCst) == 0 {
                "v1"
            } else {
                "v2"
            };
            let frames = futures_util::stream::unfold(0u8, move |i| async move {
                match i {
                    0 => Some((
                        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(version))),
                        1,
                    )),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(600)).await;
                        Some((Ok(Frame::data(Bytes::from_static(b"-body"))), 2))
                    }
                    _ => None,
                }
            });
            let mut r = http::Response::new(BodyExt::boxed(StreamBody::new(frames)));
            r.headers_mut()
                .insert("cache-control", "max-age=100".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(dir.path(), "").await;
    let client = client_for(&server);
    let (slow_client, url) = (client.clone(), origin.url("/r"));
    let slow = tokio::spawn(async move {
        slow_client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let post = client
        .post(origin.url("/r"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    assert_eq!(slow.await.unwrap(), "v1-body");
    let after = client
        .get(origin.url("/r"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(after, "v2-body", "the body from before the POST was stored");
}

#[tokio::test]
async fn vary_on_a_field_the_proxy_writes_is_never_shared_between_clients() {
    let origin = Origin::builder()
        .route("/me", echo_varying("x-forwarded-for", "hello "))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(dir.path(), "").await;
    let proxy_url = format!("http://{}", server.addr().unwrap());
    let other = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(&proxy_url).unwrap())
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let first = client_for(&server)
        .get(origin.url("/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.text().await.unwrap(), "hello 127.0.0.1");
    let second = other.get(origin.url("/me")).send().await.unwrap();
    assert_eq!(second.text().await.unwrap(), "hello 127.0.0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_hold_up_collapsed_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let big = Bytes::from(pattern(64 << 20));
    let origin = Origin::builder()
        .route("/big", move |_| {
            let mut r = reply_bytes(200, big.clone());
            r.headers_mut()
                .insert("cache-control", "max-age=100".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(
        dir.path(),
        "[timeouts]\nclient_write = \"1s\"\n[cache]\ncollapsed_forwarding_timeout = \"20s\"\n",
    )
    .await;
    // The first client asks, reads a little, then stops reading.
    let mut stalled = tokio::net::TcpStream::connect(server.addr().unwrap())
        .await
        .unwrap();
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/big"));
    stalled.write_all(request.as_bytes()).await.unwrap();
    let mut some = [0u8; 4096];
    let _ = stalled.read(&mut some).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A second client for the same URL is collapsed behind it, but not for long.
    let started = tokio::time::Instant::now();
    let body = client_for(&server)
        .get(origin.url("/big"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), 64 << 20);
    // Held up, it would wait out the 20 s collapse timeout before fetching on its own; 64 MiB
    // through a debug build takes 7-10 s on a busy 2-core machine (10 s was too tight there).
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "waited {:?} behind a client that stopped reading",
        started.elapsed()
    );
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fill_runs_at_the_origins_pace_whatever_the_first_client_does() {
    // Issue 11: a stalled first client must not hold the fill nor the requests collapsed
    // behind it. Default timeouts: nothing cuts the stalled client off.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LEN: usize = 48 << 20;
    let big = Bytes::from(pattern(LEN));
    let origin = Origin::builder()
        .route("/big", move |_| {
            let mut r = reply_bytes(200, big.clone());
            r.headers_mut()
                .insert("cache-control", "max-age=100".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = proxy_with_clock(
        dir.path(),
        "[cache]\ncollapsed_forwarding_timeout = \"30s\"\n",
    )
    .await;
    let mut stalled = tokio::net::TcpStream::connect(server.addr().unwrap())
        .await
        .unwrap();
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/big"));
    stalled.write_all(request.as_bytes()).await.unwrap();
    let mut received = vec![0u8; 4096];
    let n = stalled.read(&mut received).await.unwrap();
    received.truncate(n);
    // A second client for the same URL: collapsed behind the first, and served from the copy
    // the fill stored at the origin's pace, while the first client still reads nothing.
    let started = tokio::time::Instant::now();
    let second = client_for(&server)
        .get(origin.url("/big"))
        .send()
        .await
        .unwrap();
    let cache_status = second.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = second.bytes().await.unwrap();
    assert_eq!(body.len(), LEN);
    assert_eq!(fnv_all(&body), fnv_all(&pattern(LEN)));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "waited {:?} behind a client that stopped reading",
        started.elapsed()
    );
    assert_eq!(origin.hits(), 1, "one origin fetch: {cache_status}");
    assert!(cache_status.contains("collapsed"), "{cache_status}");
    // The first client picks up again and gets every byte, in order: what it fell behind on
    // comes from the stored copy.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let head_end = loop {
        if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut more = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stalled.read(&mut more))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the header ended");
        received.extend_from_slice(&more[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {LEN}")),
        "{head}"
    );
    let mut rest = received[head_end..].to_vec();
    let mut buf = vec![0u8; 1 << 16];
    while rest.len() < LEN {
        let n = tokio::time::timeout_at(deadline, stalled.read(&mut buf))
            .await
            .expect("the first client's body stalled")
            .unwrap();
        assert!(n > 0, "closed after {} of {LEN} bytes", rest.len());
        rest.extend_from_slice(&buf[..n]);
    }
    assert_eq!(rest.len(), LEN);
    assert_eq!(
        fnv_all(&rest),
        fnv_all(&pattern(LEN)),
        "the first client's bytes differ"
    );
    assert_eq!(origin.hits(), 1);
}

/// A stored response with an empty body (a 200 of length 0, a redirect) is committed before the
/// client has it: the next request, sent at once on the same connection (pipelined, so the
/// proxy reads it straight after writing the first response), is a hit and not collapsed onto
/// a fill still in progress. Without the wait, the head of a length-0 response (its whole
/// message) went out before the commit, and the second request joined the unfinished fill.
#[tokio::test]
async fn an_empty_stored_response_is_committed_before_the_client_has_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = empty_body_origin().await;
    let proxy = TestProxy::start("").await;
    for (round, path) in ["/empty", "/moved", "/empty?2", "/moved?2"]
        .iter()
        .enumerate()
    {
        let mut conn = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            origin.url(path),
            origin.addr
        );
        conn.write_all(format!("{request}{request}").as_bytes())
            .await
            .unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + WAIT;
        while received.windows(4).filter(|w| w == b"\r\n\r\n").count() < 2 {
            let n = tokio::time::timeout_at(deadline, conn.read(&mut buf))
                .await
                .expect("two responses in time")
                .unwrap();
            assert!(n > 0, "closed after {}", String::from_utf8_lossy(&received));
            received.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&received).to_ascii_lowercase();
        let second = text.split("\r\n\r\n").nth(1).unwrap();
        assert!(
            second.contains("cache-status: cuttle;hit"),
            "{path}: {second}"
        );
        assert!(!second.contains("collapsed"), "{path}: {second}");
        assert_eq!(origin.hits(), round + 1, "{path}: {text}");
    }
}
