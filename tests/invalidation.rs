//! Invalidation over loopback: purge by tag (surrogate keys) in both tiers and across a
//! restart, bans by prefix and regex, soft purge (revalidation, stale-if-error), the admin
//! `POST /purge` and PURGE interfaces, and propagation from a child to its parent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::StreamExt as _;
use support::*;

/// Tagged pages: `/t?n=N` answers `page N` tagged `tag{N % 10}` and `all`, cacheable.
async fn tagging_origin() -> Origin {
    Origin::builder()
        .route("/t", |req| {
            let n: u32 = req
                .uri
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let tags = format!("tag{} all", n % 10);
            reply_with(
                200,
                &format!("page {n}"),
                &[("cache-control", "max-age=3600"), ("surrogate-key", &tags)],
            )
        })
        .spawn()
        .await
}

/// GETs every URL (16 at a time); returns the statuses in order.
async fn get_all(client: &reqwest::Client, urls: &[String], only_if_cached: bool) -> Vec<u16> {
    futures_util::stream::iter(urls.iter().cloned())
        .map(|url| {
            let client = client.clone();
            async move {
                let mut req = client.get(&url);
                if only_if_cached {
                    req = req.header("cache-control", "only-if-cached");
                }
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                r.bytes().await.unwrap();
                status
            }
        })
        .buffered(16)
        .collect()
        .await
}

/// `POST /purge?{query}` on the admin listener at `admin`, answered as JSON.
async fn admin_purge(admin: SocketAddr, query: &str) -> serde_json::Value {
    let r = admin_client()
        .post(format!("http://{admin}/purge?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "POST /purge?{query}");
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

fn purge_method() -> reqwest::Method {
    reqwest::Method::from_bytes(b"PURGE").unwrap()
}

/// `text` with its own `visible_hostname` (two caches of one hierarchy must differ, or `Via`
/// reports a loop).
fn named(text: String, name: &str) -> String {
    text.replacen(
        "visible_hostname = \"cuttle-test\"",
        &format!("visible_hostname = \"{name}\""),
        1,
    )
}

#[tokio::test]
async fn a_tag_purge_removes_exactly_its_entries_in_both_tiers_and_across_a_restart() {
    let origin = tagging_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "");
    let urls: Vec<String> = (0..1000)
        .map(|n| origin.url(&format!("/t?n={n}")))
        .collect();
    let tagged = |tag: u32| -> Vec<bool> { (0..1000).map(|n| n % 10 == tag).collect() };

    let proxy = TestProxy::start_text(&text, None).await;
    let client = http_client(&proxy);
    assert!(get_all(&client, &urls, false)
        .await
        .iter()
        .all(|s| *s == 200));
    assert_eq!(origin.hits(), 1000);
    let answer = admin_purge(proxy.admin.unwrap(), "tag=tag3").await;
    assert_eq!(answer["purged"], 100, "{answer}");
    // Both tiers: a purged entry is neither in memory nor promoted back from disk.
    let statuses = get_all(&client, &urls, true).await;
    for (n, (status, purged)) in statuses.iter().zip(tagged(3)).enumerate() {
        assert_eq!(*status, if purged { 504 } else { 200 }, "/t?n={n}");
    }
    proxy.shutdown().await;

    // After a restart only the disk tier holds entries, and the tag index is rebuilt from it.
    let proxy = TestProxy::start_text(&text, None).await;
    let client = http_client(&proxy);
    let statuses = get_all(&client, &urls, true).await;
    for (n, (status, purged)) in statuses.iter().zip(tagged(3)).enumerate() {
        assert_eq!(
            *status,
            if purged { 504 } else { 200 },
            "after restart: /t?n={n}"
        );
    }
    let answer = admin_purge(proxy.admin.unwrap(), "tag=tag7").await;
    assert_eq!(answer["purged"], 100, "{answer}");
    let statuses = get_all(&client, &urls, true).await;
    for (n, status) in statuses.iter().enumerate() {
        let purged = n % 10 == 3 || n % 10 == 7;
        assert_eq!(*status, if purged { 504 } else { 200 }, "/t?n={n}");
    }
    assert_eq!(origin.hits(), 1000, "nothing was fetched again");
    proxy.shutdown().await;
}

#[tokio::test]
async fn tags_are_stripped_from_clients_and_purged_by_a_purge_request_header() {
    let origin = tagging_origin().await;
    let proxy = TestProxy::start("").await;
    let client = http_client(&proxy);
    let first = client.get(origin.url("/t?n=1")).send().await.unwrap();
    assert!(first.headers().get("surrogate-key").is_none());
    first.bytes().await.unwrap();
    let hit = client.get(origin.url("/t?n=1")).send().await.unwrap();
    assert!(hit.headers().get("surrogate-key").is_none());
    assert!(hit.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("hit"));
    let others = [origin.url("/t?n=2"), origin.url("/t?n=11")];
    get_all(&client, &others, false).await;
    // Both are stored before the purge (a fill commits when its body has ended at the proxy,
    // which may be just after the client has it all): the purge must leave n=2 alone.
    for _ in 0..200 {
        if get_all(&client, &others, true).await == [200, 200] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(get_all(&client, &others, true).await, [200, 200]);
    // Cloudflare's field names tags on a PURGE, comma-separated; the URL is not purged itself.
    let purged = client
        .request(purge_method(), origin.url("/t?n=2"))
        .header("cache-tag", "tag1,nosuchtag")
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    let statuses = get_all(
        &client,
        &[
            origin.url("/t?n=1"),
            origin.url("/t?n=11"),
            origin.url("/t?n=2"),
        ],
        true,
    )
    .await;
    assert_eq!(statuses, [504, 504, 200]);
    proxy.shutdown().await;

    // strip_tag_fields = false passes them on (to a cache below, say).
    let kept = TestProxy::start("[cache]\nstrip_tag_fields = false\n").await;
    let r = http_client(&kept)
        .get(origin.url("/t?n=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["surrogate-key"], "tag5 all");
    kept.shutdown().await;
}

#[tokio::test]
async fn a_prefix_ban_stops_every_older_entry_at_once_and_unbanned_ones_still_hit() {
    let origin = Origin::builder()
        .route("/a/x", |req| {
            reply_with(
                200,
                req.uri.query().unwrap_or(""),
                &[("cache-control", "max-age=3600")],
            )
        })
        .route("/b/x", |req| {
            reply_with(
                200,
                req.uri.query().unwrap_or(""),
                &[("cache-control", "max-age=3600")],
            )
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let client = http_client(&proxy);
    let a: Vec<String> = (0..200).map(|n| origin.url(&format!("/a/x?{n}"))).collect();
    let b: Vec<String> = (0..200).map(|n| origin.url(&format!("/b/x?{n}"))).collect();
    get_all(&client, &a, false).await;
    get_all(&client, &b, false).await;
    let answer = admin_purge(
        proxy.admin.unwrap(),
        &format!(
            "prefix={}",
            origin.url("/a/").replace(':', "%3A").replace('/', "%2F")
        ),
    )
    .await;
    assert_eq!(answer["ban"], true, "{answer}");
    // Whether or not the lurker has run yet, no banned entry is served.
    assert!(get_all(&client, &a, true).await.iter().all(|s| *s == 504));
    assert!(get_all(&client, &b, true).await.iter().all(|s| *s == 200));
    // Refetched after the ban: newer than it, so cached again.
    let before = origin.hits();
    get_all(&client, &a[..10], false).await;
    assert_eq!(origin.hits(), before + 10);
    assert!(get_all(&client, &a[..10], true)
        .await
        .iter()
        .all(|s| *s == 200));

    // A regex ban over what is left of /b/: only the odd ones.
    let answer = admin_purge(
        proxy.admin.unwrap(),
        "regex=%2Fb%2Fx%5C%3F%5Cd*%5B13579%5D%24",
    )
    .await;
    assert_eq!(answer["ban"], true, "{answer}");
    let statuses = get_all(&client, &b, true).await;
    for (n, status) in statuses.iter().enumerate() {
        assert_eq!(*status, if n % 2 == 1 { 504 } else { 200 }, "/b/x?{n}");
    }
    proxy.shutdown().await;
}

/// An origin with a validator whose answers can be switched to 503; counts conditional
/// requests.
struct Validating {
    origin: Origin,
    down: Arc<AtomicBool>,
    conditionals: Arc<AtomicUsize>,
}

async fn validating_origin() -> Validating {
    let down = Arc::new(AtomicBool::new(false));
    let conditionals = Arc::new(AtomicUsize::new(0));
    let (d, c) = (Arc::clone(&down), Arc::clone(&conditionals));
    let origin = Origin::builder()
        .route("/v", move |req| {
            if d.load(Ordering::SeqCst) {
                return reply(503, "down");
            }
            let fields = [
                ("cache-control", "max-age=3600, stale-if-error=86400"),
                ("etag", "\"v1\""),
            ];
            if req
                .headers
                .get("if-none-match")
                .is_some_and(|v| v == "\"v1\"")
            {
                c.fetch_add(1, Ordering::SeqCst);
                return reply_with(304, "", &fields);
            }
            reply_with(200, "the kept body", &fields)
        })
        .spawn()
        .await;
    Validating {
        origin,
        down,
        conditionals,
    }
}

#[tokio::test]
async fn a_soft_purge_revalidates_and_a_304_serves_the_kept_body() {
    let v = validating_origin().await;
    let proxy = TestProxy::start("").await;
    let client = http_client(&proxy);
    let url = v.origin.url("/v");
    assert_eq!(
        client.get(&url).send().await.unwrap().text().await.unwrap(),
        "the kept body"
    );
    let purged = client
        .request(purge_method(), &url)
        .header("cuttle-purge", "soft")
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    // Soft: still stored (only-if-cached may use a stale entry? no: it is stale, so 504 would be
    // an answer too); the next plain request revalidates.
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("cuttle-purged").is_none());
    let cs = r.headers()["cache-status"].to_str().unwrap().to_owned();
    assert_eq!(r.text().await.unwrap(), "the kept body");
    assert_eq!(v.conditionals.load(Ordering::SeqCst), 1, "{cs}");
    assert_eq!(v.origin.hits(), 2);
    // The 304 made it fresh again: a plain hit.
    let r = client.get(&url).send().await.unwrap();
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("hit"));
    assert_eq!(v.origin.hits(), 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_soft_purged_entry_is_served_stale_while_the_origin_fails() {
    let v = validating_origin().await;
    let proxy = TestProxy::start("").await;
    let client = http_client(&proxy);
    let url = v.origin.url("/v");
    client
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let answer = admin_purge(
        proxy.admin.unwrap(),
        &format!("url={}&soft=1", url.replace(':', "%3A").replace('/', "%2F")),
    )
    .await;
    assert_eq!(answer["purged"], 1, "{answer}");
    v.down.store(true, Ordering::SeqCst);
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cs = r.headers()["cache-status"].to_str().unwrap().to_owned();
    assert!(cs.contains("fwd=stale"), "{cs}");
    assert_eq!(r.text().await.unwrap(), "the kept body");
    assert_eq!(v.origin.hits(), 2, "the origin was asked");
    // A hard purge removes it: nothing to fall back on.
    admin_purge(
        proxy.admin.unwrap(),
        &format!("url={}", url.replace(':', "%3A").replace('/', "%2F")),
    )
    .await;
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    proxy.shutdown().await;
}

#[tokio::test]
async fn one_purge_at_the_child_empties_the_child_and_its_parent_once() {
    let origin = tagging_origin().await;
    let parent_dir = tempfile::tempdir().unwrap();
    let parent = TestProxy::start_text(
        &named(
            config(
                parent_dir.path(),
                // The parent passes the tags on, so that the child indexes them too.
                "[cache]\nstatus_name = \"parent\"\nstrip_tag_fields = false\n",
            ),
            "parent",
        ),
        None,
    )
    .await;
    let parent_admin = parent.admin.unwrap();
    let child_dir = tempfile::tempdir().unwrap();
    let child = TestProxy::start_text(
        &named(
            config(
                child_dir.path(),
                &format!(
                    "[cache]\nstatus_name = \"child\"\npurge_propagate = [\"{parent_admin}\"]\n\
                 [[peer]]\nhost = \"127.0.0.1\"\nport = {}\ntype = \"parent\"\n\
                 [[never_direct]]\nallow = [\"all\"]\n",
                    parent.addr.port()
                ),
            ),
            "child",
        ),
        None,
    )
    .await;
    let urls = [origin.url("/t?n=1"), origin.url("/t?n=2")];
    let via_child = http_client(&child);
    let via_parent = http_client(&parent);
    get_all(&via_child, &urls, false).await;
    assert_eq!(get_all(&via_parent, &urls, true).await, [200, 200]);
    assert_eq!(get_all(&via_child, &urls, true).await, [200, 200]);
    assert_eq!(origin.hits(), 2);

    let purged = via_child
        .request(purge_method(), &urls[0])
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    assert_eq!(get_all(&via_child, &urls, true).await, [504, 200]);
    assert_eq!(get_all(&via_parent, &urls, true).await, [504, 200]);

    // Through the admin listener, by tag; the answer reports the parent's.
    let answer = admin_purge(child.admin.unwrap(), "tag=tag2").await;
    assert_eq!(answer["purged"], 1, "{answer}");
    assert_eq!(answer["propagated"][0]["status"], 200, "{answer}");
    assert_eq!(get_all(&via_child, &urls, true).await, [504, 504]);
    assert_eq!(get_all(&via_parent, &urls, true).await, [504, 504]);
    child.shutdown().await;
    parent.shutdown().await;
}

#[tokio::test]
async fn a_purge_that_already_passed_here_is_not_applied_again() {
    let origin = tagging_origin().await;
    let proxy = TestProxy::start("[cache]\nstatus_name = \"me\"\n").await;
    let client = http_client(&proxy);
    client
        .get(origin.url("/t?n=4"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let r = admin_client()
        .post(format!("http://{}/purge?tag=tag4", proxy.admin.unwrap()))
        .header("cuttle-purge-hop", "other, me")
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["already_applied"], true, "{answer}");
    assert_eq!(get_all(&client, &[origin.url("/t?n=4")], true).await, [200]);
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_admin_purge_route_refuses_bad_requests() {
    let proxy = TestProxy::start("").await;
    let admin = proxy.admin.unwrap();
    let get = admin_client()
        .get(format!("http://{admin}/purge?tag=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    for query in [
        "",
        "tag=x&url=http%3A%2F%2Fa%2F",
        "regex=(",
        "url=%2Frelative",
        "nope=1",
    ] {
        let r = admin_client()
            .post(format!("http://{admin}/purge?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_post_invalidates_only_its_own_url_and_all_its_variants() {
    let origin = Origin::builder()
        .route("/v", |req| {
            let lang = req
                .headers
                .get("accept-language")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            reply_with(
                200,
                &lang,
                &[
                    ("cache-control", "max-age=3600"),
                    ("vary", "accept-language"),
                ],
            )
        })
        .route("/vx", |_| {
            reply_with(200, "other", &[("cache-control", "max-age=3600")])
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let client = http_client(&proxy);
    for lang in ["en", "fr"] {
        client
            .get(origin.url("/v"))
            .header("accept-language", lang)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    client
        .get(origin.url("/vx"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // A successful POST invalidates its URL (RFC 9111 §4.4): every variant, nothing else.
    let post = client.post(origin.url("/v")).send().await.unwrap();
    assert_eq!(post.status(), 200);
    for lang in ["en", "fr"] {
        let r = client
            .get(origin.url("/v"))
            .header("accept-language", lang)
            .header("cache-control", "only-if-cached")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 504, "{lang}");
    }
    assert_eq!(get_all(&client, &[origin.url("/vx")], true).await, [200]);
    proxy.shutdown().await;
}
