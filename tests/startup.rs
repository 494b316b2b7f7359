//! Start at once: cuttle binds and serves while its disk index loads in the background, and
//! what it stores or purges meanwhile outlives the load. The load is held by a
//! `cache::store::LoadGate` (a test hook), so no test sleeps to catch it mid-way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cuttle::cache::store::LoadGate;
use support::*;

/// Pages `/a`, `/b`, `/c`, `/d`, `/new`: `{path} v{N}` where N counts the origin's answers,
/// cacheable for an hour; a POST answers 200 (and so invalidates the URL).
async fn versioned_origin() -> (Origin, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let mut builder = Origin::builder();
    for path in ["/a", "/b", "/c", "/d", "/new"] {
        let served = Arc::clone(&served);
        builder = builder.route(path, move |req| {
            let n = served.fetch_add(1, Ordering::SeqCst) + 1;
            let body = format!("{} v{n}", req.uri.path());
            reply_with(200, &body, &[("cache-control", "max-age=3600")])
        });
    }
    (builder.spawn().await, served)
}

fn client(proxy: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.text().await.unwrap()
}

/// The `cache.tiers.disk.index` object of `/status`.
async fn index_status(admin: SocketAddr) -> serde_json::Value {
    admin_status(admin).await["cache"]["tiers"]["disk"]["index"].clone()
}

#[tokio::test]
async fn serves_while_the_disk_index_loads_and_keeps_what_it_stored_or_purged_meanwhile() {
    let (origin, served) = versioned_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "[cache.memory]\nmax_object_size = \"1 B\"\n");

    // First run: /a, /b, /c, /d stored on disk (v1..v4).
    let first = TestProxy::start_text(&text, None).await;
    let c = client(first.addr);
    for path in ["/a", "/b", "/c", "/d"] {
        get(&c, &origin.url(path)).await;
    }
    first.shutdown().await;
    assert_eq!(served.load(Ordering::SeqCst), 4);

    // Second run, with the index load held before its first entry.
    let gate = LoadGate::closed();
    let mut config = cuttle::config::load_str(
        "test.toml",
        &format!("{text}\n[log]\naccess_log = \"none\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    config.cache.disk.as_mut().unwrap().load_gate = Some(gate.clone());
    let server = cuttle::app::start(config).await.unwrap();
    let (addr, admin) = (server.addr().unwrap(), server.admin_addr().unwrap());
    let c = client(addr);
    let status = index_status(admin).await;
    assert_eq!(status["ready"], false, "{status}");
    assert_eq!(status["loaded"], 0, "{status}");
    assert!(admin_metrics(admin)
        .await
        .contains("cuttle_cache_disk_index_ready 0"));

    // A URL never seen is fetched; a stored one not loaded yet is a miss, stored again.
    assert_eq!(get(&c, &origin.url("/new")).await, "/new v5");
    assert_eq!(get(&c, &origin.url("/a")).await, "/a v6");
    // A POST invalidates /b; a PURGE of /c waits for the load, then applies.
    let r = c.post(origin.url("/b")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let purge = tokio::spawn({
        let c = c.clone();
        let url = origin.url("/c");
        async move {
            c.request(reqwest::Method::from_bytes(b"PURGE").unwrap(), url)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    assert_eq!(served.load(Ordering::SeqCst), 7);

    gate.open();
    wait_disk_index(&server).await;
    assert_eq!(purge.await.unwrap(), 200, "the PURGE found /c once loaded");
    let status = index_status(admin).await;
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["loaded"], 2, "/c and /d: {status}");
    assert!(status["took_ms"].as_f64().is_some(), "{status}");
    assert!(admin_metrics(admin)
        .await
        .contains("cuttle_cache_disk_index_ready 1"));

    // /a is the copy stored while loading, /d a disk hit; /b and /c were purged.
    assert_eq!(get(&c, &origin.url("/a")).await, "/a v6");
    assert_eq!(get(&c, &origin.url("/d")).await, "/d v4");
    assert_eq!(served.load(Ordering::SeqCst), 7);
    assert_eq!(get(&c, &origin.url("/b")).await, "/b v8");
    assert_eq!(get(&c, &origin.url("/c")).await, "/c v9");
    server.shutdown().await;
}
