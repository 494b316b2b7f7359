//! Ranges, partial content and slice mode end to end (issue 14): a real origin on loopback
//! that serves byte ranges of a deterministic body and records every Range it is asked for,
//! the real proxy, and real clients.
//!
//! RFC 9110 §14 (ranges), RFC 9111 §3.3-3.4 (storing and combining partial content),
//! RFC 9211 (Cache-Status).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cuttle::clock::{Clock, ManualClock};
use sha2::{Digest, Sha256};
use support::*;

const MIB: u64 = 1 << 20;

/// What the ranged origin serves; tests change it to model a new representation.
#[derive(Clone)]
struct Representation {
    body: Bytes,
    etag: String,
    cache_control: String,
}

/// An origin serving `/obj` from `rep`: 206 for a single `bytes=` range, 200 without one,
/// 304 for a matching If-None-Match; `Date` from `clock` when given.
async fn ranged_origin(rep: Arc<Mutex<Representation>>, clock: Option<Arc<ManualClock>>) -> Origin {
    Origin::builder()
        .route("/obj", move |req| {
            let rep = rep.lock().unwrap().clone();
            let fields = |mut r: http::Response<OriginBody>| {
                let h = r.headers_mut();
                h.insert("etag", rep.etag.parse().unwrap());
                h.insert("cache-control", rep.cache_control.parse().unwrap());
                h.insert("accept-ranges", "bytes".parse().unwrap());
                if let Some(clock) = &clock {
                    h.insert(
                        "date",
                        httpdate::fmt_http_date(clock.now()).parse().unwrap(),
                    );
                }
                r
            };
            if req
                .headers
                .get("if-none-match")
                .is_some_and(|v| v.to_str().unwrap() == rep.etag)
            {
                return fields(reply_bytes(304, Bytes::new()));
            }
            let len = rep.body.len() as u64;
            let Some(range) = req.headers.get("range") else {
                return fields(reply_bytes(200, rep.body.clone()));
            };
            let spec = range.to_str().unwrap().strip_prefix("bytes=").unwrap();
            let (first, last) = spec.split_once('-').unwrap();
            let first: u64 = first.parse().unwrap();
            let last: u64 = if last.is_empty() {
                len - 1
            } else {
                last.parse::<u64>().unwrap().min(len - 1)
            };
            if first >= len {
                let mut r = fields(reply_bytes(416, Bytes::new()));
                r.headers_mut()
                    .insert("content-range", format!("bytes */{len}").parse().unwrap());
                return r;
            }
            let part = rep.body.slice(first as usize..=last as usize);
            let mut r = fields(reply_bytes(206, part));
            r.headers_mut().insert(
                "content-range",
                format!("bytes {first}-{last}/{len}").parse().unwrap(),
            );
            r
        })
        .spawn()
        .await
}

/// The Range fields the origin was sent, in order (None for a request without one).
fn ranges_seen(origin: &Origin) -> Vec<Option<String>> {
    origin
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .get("range")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect()
}

fn cache_status(r: &reqwest::Response) -> String {
    r.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// Slice rules for the origin's host (`127.0.0.1`) in blocks of `size`.
fn slice_config(size: &str) -> String {
    format!(
        "[cache.memory]\nmax_size = \"256 MiB\"\nmax_object_size = \"{size}\"\n\
         [[cache.slice]]\nsite = \"127.0.0.1\"\nsize = \"{size}\"\n"
    )
}

/// The acceptance test of issue 14 item 3: a cold range touches one block upstream, the same
/// range is then a hit, and a full GET is stitched from blocks, byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_on_a_cold_sliced_object_fetches_only_its_block_and_a_full_get_is_stitched() {
    let body = Bytes::from(pattern(64 << 20));
    let rep = Arc::new(Mutex::new(Representation {
        body: body.clone(),
        etag: "\"v1\"".to_owned(),
        cache_control: "max-age=3600".to_owned(),
    }));
    let origin = ranged_origin(rep, None).await;
    let proxy = TestProxy::start(&slice_config("1 MiB")).await;
    let client = http_client(&proxy);

    let first = client
        .get(origin.url("/obj"))
        .header("range", "bytes=1000000-1000999")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 206);
    assert_eq!(
        first.headers()["content-range"],
        "bytes 1000000-1000999/67108864"
    );
    assert!(
        cache_status(&first).contains("fwd=uri-miss"),
        "{}",
        cache_status(&first)
    );
    assert!(
        cache_status(&first).contains("stored"),
        "{}",
        cache_status(&first)
    );
    assert_eq!(
        first.bytes().await.unwrap(),
        body.slice(1_000_000..1_001_000)
    );
    // Only the block holding the range went upstream, as a block-sized range request.
    assert_eq!(
        ranges_seen(&origin),
        vec![Some("bytes=0-1048575".to_owned())]
    );

    let again = client
        .get(origin.url("/obj"))
        .header("range", "bytes=1000000-1000999")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 206);
    let status = cache_status(&again);
    assert!(status.contains("hit"), "{status}");
    assert_eq!(
        again.bytes().await.unwrap(),
        body.slice(1_000_000..1_001_000)
    );
    assert_eq!(origin.hits(), 1, "the same range again is a hit");

    let full = client.get(origin.url("/obj")).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-length"], "67108864");
    assert!(
        cache_status(&full).contains("fwd=partial"),
        "{}",
        cache_status(&full)
    );
    let got = full.bytes().await.unwrap();
    assert_eq!(got.len(), body.len());
    assert_eq!(sha256(&got), sha256(&body), "stitched body differs");
    // Every upstream request asked for exactly one block, each block once.
    let seen = ranges_seen(&origin);
    assert_eq!(seen.len(), 64, "{seen:?}");
    let mut blocks: Vec<u64> = seen
        .iter()
        .map(|r| {
            let spec = r.as_deref().expect("every request is ranged");
            let (a, b) = spec
                .strip_prefix("bytes=")
                .unwrap()
                .split_once('-')
                .unwrap();
            let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
            assert_eq!(a % MIB, 0, "{spec}");
            assert_eq!(b - a + 1, MIB, "{spec}");
            a / MIB
        })
        .collect();
    blocks.sort_unstable();
    assert_eq!(blocks, (0..64).collect::<Vec<_>>());

    // Stitched again, all from the cache.
    let hit = client.get(origin.url("/obj")).send().await.unwrap();
    let status = cache_status(&hit);
    assert!(
        status.contains("hit") && !status.contains("fwd"),
        "{status}"
    );
    assert_eq!(sha256(&hit.bytes().await.unwrap()), sha256(&body));
    assert_eq!(origin.hits(), 64);
    proxy.shutdown().await;
}

/// Revalidation of a sliced object happens once for the whole object (RFC 9111 §4.3), and a
/// new representation is never combined with blocks of the old one (RFC 9111 §3.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliced_object_is_revalidated_once_and_never_mixes_representations() {
    let clock = Arc::new(ManualClock::starting_now());
    let old = Bytes::from(pattern(4 << 20));
    let rep = Arc::new(Mutex::new(Representation {
        body: old.clone(),
        etag: "\"v1\"".to_owned(),
        cache_control: "max-age=60".to_owned(),
    }));
    let origin = ranged_origin(Arc::clone(&rep), Some(Arc::clone(&clock))).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &slice_config("1 MiB"));
    let proxy = TestProxy::start_with_clock(&text, Some(dir), clock.clone()).await;
    let client = http_client(&proxy);

    let cold = client.get(origin.url("/obj")).send().await.unwrap();
    assert_eq!(cold.status(), 200);
    assert_eq!(sha256(&cold.bytes().await.unwrap()), sha256(&old));
    assert_eq!(origin.hits(), 4);

    // Stale: one conditional request revalidates all four blocks.
    clock.advance(Duration::from_secs(120));
    let revalidated = client.get(origin.url("/obj")).send().await.unwrap();
    let status = cache_status(&revalidated);
    assert!(
        status.contains("fwd=stale") && status.contains("fwd-status=304"),
        "{status}"
    );
    assert_eq!(sha256(&revalidated.bytes().await.unwrap()), sha256(&old));
    let requests = origin.requests();
    assert_eq!(
        requests.len(),
        5,
        "one request revalidates the whole object"
    );
    assert_eq!(requests[4].headers["if-none-match"], "\"v1\"");
    assert!(requests[4].headers.contains_key("range"));

    let fresh = client
        .get(origin.url("/obj"))
        .header("range", "bytes=3000000-3000009")
        .send()
        .await
        .unwrap();
    assert!(
        cache_status(&fresh).contains("hit"),
        "{}",
        cache_status(&fresh)
    );
    assert_eq!(
        fresh.bytes().await.unwrap(),
        old.slice(3_000_000..3_000_010)
    );
    assert_eq!(origin.hits(), 5);

    // A new representation: its blocks replace the old ones, none of which is reused.
    let new = Bytes::from(pattern(4 << 20 | 77).split_off(77));
    {
        let mut rep = rep.lock().unwrap();
        rep.body = new.clone();
        rep.etag = "\"v2\"".to_owned();
    }
    clock.advance(Duration::from_secs(120));
    let changed = client.get(origin.url("/obj")).send().await.unwrap();
    assert!(
        cache_status(&changed).contains("fwd-status=206"),
        "{}",
        cache_status(&changed)
    );
    assert_eq!(sha256(&changed.bytes().await.unwrap()), sha256(&new));
    assert_eq!(
        origin.hits(),
        9,
        "the conditional request, then the three other blocks"
    );
    let hit = client.get(origin.url("/obj")).send().await.unwrap();
    assert_eq!(sha256(&hit.bytes().await.unwrap()), sha256(&new));
    assert_eq!(origin.hits(), 9);
    proxy.shutdown().await;
}

/// RFC 9111 §3.3-3.4 without slice mode: a 206 for a range beyond `range_offset_limit` is
/// stored as a part; a range within the stored parts (even spanning two) is served from them
/// without the origin; a part of a new representation (another strong ETag) is never combined
/// with the old one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_content_is_stored_served_from_parts_and_combined_only_under_one_validator() {
    let old = Bytes::from(pattern(4 << 20));
    let rep = Arc::new(Mutex::new(Representation {
        body: old.clone(),
        etag: "\"v1\"".to_owned(),
        cache_control: "max-age=3600".to_owned(),
    }));
    let origin = ranged_origin(Arc::clone(&rep), None).await;
    let proxy = TestProxy::start("").await;
    let client = http_client(&proxy);
    let get = |range: &'static str| client.get(origin.url("/obj")).header("range", range).send();

    let first = get("bytes=2000000-2099999").await.unwrap();
    assert_eq!(first.status(), 206);
    assert_eq!(
        first.headers()["content-range"],
        "bytes 2000000-2099999/4194304"
    );
    assert!(
        cache_status(&first).contains("stored"),
        "{}",
        cache_status(&first)
    );
    assert_eq!(
        first.bytes().await.unwrap(),
        old.slice(2_000_000..2_100_000)
    );
    assert_eq!(
        ranges_seen(&origin),
        vec![Some("bytes=2000000-2099999".to_owned())]
    );

    // Wholly within the stored part (§3.3): served from it.
    let within = get("bytes=2050000-2059999").await.unwrap();
    assert_eq!(within.status(), 206);
    assert_eq!(
        within.headers()["content-range"],
        "bytes 2050000-2059999/4194304"
    );
    assert!(
        cache_status(&within).contains("hit"),
        "{}",
        cache_status(&within)
    );
    assert_eq!(
        within.bytes().await.unwrap(),
        old.slice(2_050_000..2_060_000)
    );
    assert_eq!(origin.hits(), 1);

    // A second part of the same representation, then a range across both (§3.4).
    let second = get("bytes=2100000-2199999").await.unwrap();
    assert_eq!(
        second.bytes().await.unwrap(),
        old.slice(2_100_000..2_200_000)
    );
    assert_eq!(origin.hits(), 2);
    let across = get("bytes=2090000-2109999").await.unwrap();
    assert!(
        cache_status(&across).contains("hit"),
        "{}",
        cache_status(&across)
    );
    assert_eq!(
        across.bytes().await.unwrap(),
        old.slice(2_090_000..2_110_000)
    );
    assert_eq!(origin.hits(), 2);

    // The origin now has another representation. A part of it replaces the old parts: a
    // range across the old and the new part is not spliced from both, it goes upstream.
    let new = Bytes::from(pattern((4 << 20) + 5).split_off(5));
    {
        let mut rep = rep.lock().unwrap();
        rep.body = new.clone();
        rep.etag = "\"v2\"".to_owned();
    }
    let third = get("bytes=2200000-2299999").await.unwrap();
    assert_eq!(
        third.bytes().await.unwrap(),
        new.slice(2_200_000..2_300_000)
    );
    assert_eq!(origin.hits(), 3);
    let mixed = get("bytes=2190000-2209999").await.unwrap();
    assert!(
        !cache_status(&mixed).contains("hit"),
        "{}",
        cache_status(&mixed)
    );
    assert_eq!(
        mixed.bytes().await.unwrap(),
        new.slice(2_190_000..2_210_000)
    );
    assert_eq!(origin.hits(), 4);
    let old_part = get("bytes=2050000-2059999").await.unwrap();
    assert_eq!(
        old_part.bytes().await.unwrap(),
        new.slice(2_050_000..2_060_000),
        "the old representation's part was dropped"
    );
    proxy.shutdown().await;
}

/// Issue 14 item 1: a range below `range_offset_limit` of an object larger than it fetches the
/// whole object to fill the cache, but the client gets a 206 of its range as soon as those
/// bytes arrive: here while the origin still holds back the rest of the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_miss_is_answered_with_its_range_before_the_whole_object_arrives() {
    let body = Bytes::from(pattern(4 << 20));
    let gate = Arc::new(tokio::sync::Notify::new());
    let origin = {
        let (body, gate) = (body.clone(), Arc::clone(&gate));
        Origin::builder()
            .route("/obj", move |_| {
                let (body, gate) = (body.clone(), Arc::clone(&gate));
                let len = body.len();
                let frames = futures_util::stream::unfold(0u8, move |state| {
                    let (body, gate) = (body.clone(), Arc::clone(&gate));
                    async move {
                        let frame = match state {
                            0 => body.slice(..MIB as usize),
                            1 => {
                                gate.notified().await;
                                body.slice(MIB as usize..)
                            }
                            _ => return None,
                        };
                        Some((Ok(hyper::body::Frame::data(frame)), state + 1))
                    }
                });
                let mut r = http::Response::new(http_body_util::BodyExt::boxed(
                    http_body_util::StreamBody::new(frames),
                ));
                let h = r.headers_mut();
                h.insert("content-length", len.into());
                h.insert("etag", "\"v1\"".parse().unwrap());
                h.insert("cache-control", "max-age=3600".parse().unwrap());
                r
            })
            .spawn()
            .await
    };
    let proxy = TestProxy::start("").await;
    let client = http_client(&proxy);

    let ranged = tokio::time::timeout(Duration::from_secs(10), async {
        let r = client
            .get(origin.url("/obj"))
            .header("range", "bytes=1000-1999")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 1000-1999/4194304");
        assert_eq!(r.headers()["content-length"], "1000");
        r.bytes().await.unwrap()
    })
    .await
    .expect("the range arrives while the origin holds back the rest");
    assert_eq!(ranged, body.slice(1000..2000));
    // The whole object was asked for, to fill the cache.
    assert_eq!(ranges_seen(&origin), vec![None]);

    gate.notify_one();
    // The fill completes on its own; then any range is a hit.
    let mut hit = None;
    for _ in 0..100 {
        let r = client
            .get(origin.url("/obj"))
            .header("range", "bytes=3000000-3000099")
            .header("cache-control", "only-if-cached")
            .send()
            .await
            .unwrap();
        if r.status() == 206 {
            hit = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hit = hit.expect("the whole object was stored");
    assert!(cache_status(&hit).contains("hit"), "{}", cache_status(&hit));
    assert_eq!(hit.bytes().await.unwrap(), body.slice(3_000_000..3_000_100));
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// A bad `[[cache.slice]]` rule is reported as `file:line: key: reason` with an example.
#[test]
fn bad_slice_rules_are_named_by_file_line_and_key() {
    let error_for = |rule: &str| {
        let text = format!("[cache.disk]\npath = \"\"\n\n[[cache.slice]]\n{rule}");
        cuttle::config::load_str("broken.toml", &text)
            .unwrap_err()
            .to_string()
    };
    let e = error_for("site = \"dl.example.com\"\nsize = \"1 KiB\"\n");
    assert_eq!(
        e,
        "broken.toml:6: cache.slice[0].size: must be between 64 KiB and 64 MiB (expected e.g. size = \"1 MiB\")"
    );
    let e = error_for("site = \"dl.example.com\"\nsize = \"8 MiB\"\n");
    assert!(
        e.starts_with("broken.toml:6: cache.slice[0].size: is larger than the max_object_size"),
        "{e}"
    );
    let e = error_for("url_regex = \"(\"\nsize = \"1 MiB\"\n");
    assert!(
        e.starts_with("broken.toml:5: cache.slice[0].url_regex: invalid regex"),
        "{e}"
    );
    let e = error_for("site = \"a b\"\nsize = \"1 MiB\"\n");
    assert!(
        e.starts_with("broken.toml:5: cache.slice[0].site: `a b` is not a host name"),
        "{e}"
    );
    let e = error_for("size = \"1 MiB\"\n");
    assert!(
        e.contains("cache.slice[0]: the rule matches nothing"),
        "{e}"
    );
    let ok =
        "[cache.disk]\npath = \"\"\n[[cache.slice]]\nurl_regex = \"\\\\.iso$\"\nsize = \"1 MiB\"\n";
    cuttle::config::load_str("ok.toml", ok).unwrap();
}

/// Each block is collapsed on its own: concurrent cold clients of a sliced object make one
/// upstream request per block, and every client gets the whole body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_clients_of_a_sliced_object_fetch_each_block_once() {
    let body = Bytes::from(pattern(4 << 20));
    let rep = Arc::new(Mutex::new(Representation {
        body: body.clone(),
        etag: "\"v1\"".to_owned(),
        cache_control: "max-age=3600".to_owned(),
    }));
    let origin = ranged_origin(rep, None).await;
    let proxy = TestProxy::start(&slice_config("1 MiB")).await;
    let client = http_client(&proxy);
    let expected = sha256(&body);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), origin.url("/obj"));
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            sha256(&r.bytes().await.unwrap())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), expected);
    }
    let mut seen: Vec<String> = ranges_seen(&origin).into_iter().flatten().collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "bytes=0-1048575",
            "bytes=1048576-2097151",
            "bytes=2097152-3145727",
            "bytes=3145728-4194303"
        ],
        "one request per block"
    );
    proxy.shutdown().await;
}
