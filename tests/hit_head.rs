//! The exact head a cache hit sends: every field line, in order, as bytes on the wire.
//!
//! A hit's head is rebuilt from the stored compact form and decorated with the fields a cache
//! adds (RFC 9111 §5.1 `Age`, RFC 9211 `Cache-Status`, RFC 9110 §7.6.3 `Via`) while keeping the
//! origin's `Date` (RFC 9110 §6.6.1: the origin's, not the cache's). These tests pin the whole
//! head, so a faster way of building it cannot change what clients receive: field order,
//! repeated fields, obs-text bytes, fields received from an upstream cache that ours are merged
//! into, and the heads of a 304, a HEAD and a range hit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;

use support::{reply_with, Origin, TestProxy, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` on a fresh connection and returns the response head's lines (without
/// their CRLF or the blank line), as bytes, and the body (by `Content-Length`; none for HEAD).
async fn exchange(addr: SocketAddr, request: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("head in time")
            .unwrap();
        assert!(n > 0, "closed before the head ended");
        buf.extend_from_slice(&chunk[..n]);
    };
    let lines: Vec<Vec<u8>> = buf[..head_end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .filter(|l| !l.is_empty())
        .collect();
    let len: usize = if request.starts_with("HEAD ") {
        0
    } else {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(b"content-length: "))
            .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap())
    };
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("body in time")
            .unwrap();
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (lines, body)
}

/// What varies between runs, checked and then replaced by a placeholder: `age: N` (within
/// `ages`), `date: D` (equal to `date`), our Via entry `VIA` (its port is the proxy's), and
/// `ttl=T` in Cache-Status (the 3600 s lifetime less the age sent).
struct Expect<'a> {
    ages: std::ops::RangeInclusive<u64>,
    date: &'a [u8],
    proxy: SocketAddr,
}

fn normalised(lines: &[Vec<u8>], expect: &Expect<'_>) -> Vec<String> {
    let ours = format!(
        "1.1 cuttle-test:{} (cuttle/{})",
        expect.proxy.port(),
        env!("CARGO_PKG_VERSION")
    );
    let mut age = None;
    lines
        .iter()
        .map(|line| {
            if let Some(value) = line.strip_prefix(b"age: ") {
                let value: u64 = std::str::from_utf8(value).unwrap().parse().unwrap();
                assert!(
                    expect.ages.contains(&value),
                    "age {value} outside {:?}",
                    expect.ages
                );
                age = Some(value);
                return "age: N".to_owned();
            }
            if let Some(value) = line.strip_prefix(b"date: ") {
                assert_eq!(value, expect.date, "the origin's Date is kept");
                return "date: D".to_owned();
            }
            // obs-text and controls stay visible as escapes.
            let mut text: String = line
                .iter()
                .map(|&b| match b {
                    b' '..=b'~' => char::from(b).to_string(),
                    other => format!("\\x{other:02x}"),
                })
                .collect();
            if text.starts_with("via: ") {
                text = text.replace(&ours, "VIA");
            }
            if text.starts_with("cache-status: ") {
                let age = age.expect("Age comes before Cache-Status");
                text = text.replace(&format!("ttl={}", 3600 - age), "ttl=T");
            }
            text
        })
        .collect()
}

fn get(path: &str, origin: &Origin, extra: &str) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n{extra}\r\n",
        origin.url(path),
        origin.addr
    )
}

/// The Date the origin sent, as the miss relayed it.
fn date_of(lines: &[Vec<u8>]) -> Vec<u8> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(b"date: "))
        .expect("a Date field")
        .to_vec()
}

#[tokio::test]
async fn a_hit_sends_the_stored_fields_in_order_then_age_via_and_cache_status() {
    let origin = Origin::builder()
        .route("/plain", |_| {
            let mut response = reply_with(
                200,
                "0123456789",
                &[
                    ("cache-control", "max-age=3600"),
                    ("content-type", "text/plain"),
                    ("etag", "\"v1\""),
                    ("x-many", "one"),
                    ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
                    ("x-many", "two"),
                ],
            );
            response.headers_mut().append(
                "x-obs",
                http::HeaderValue::from_bytes(b"caf\xe9 \tend").unwrap(),
            );
            response
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let (miss, body) = exchange(proxy.addr, &get("/plain", &origin, "")).await;
    assert_eq!(body, b"0123456789");
    let date = date_of(&miss);
    let expect = Expect {
        ages: 0..=5,
        date: &date,
        proxy: proxy.addr,
    };
    let (hit, body) = exchange(proxy.addr, &get("/plain", &origin, "")).await;
    assert_eq!(body, b"0123456789");
    assert_eq!(origin.hits(), 1, "the second request is a hit");
    assert_eq!(
        normalised(&hit, &expect),
        [
            "HTTP/1.1 200 OK",
            "cache-control: max-age=3600",
            "content-type: text/plain",
            "etag: \"v1\"",
            "x-many: one",
            "x-many: two",
            "last-modified: Sun, 06 Nov 1994 08:49:37 GMT",
            "x-obs: caf\\xe9 \\x09end",
            "content-length: 10",
            "date: D",
            "age: N",
            "via: VIA",
            "cache-status: cuttle;hit;ttl=T;detail=memory",
        ]
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_hit_merges_ours_into_the_age_via_and_cache_status_an_upstream_cache_sent() {
    let origin = Origin::builder()
        .route("/via", |_| {
            reply_with(
                200,
                "abc",
                &[
                    ("via", "1.1 edge-a"),
                    ("cache-control", "max-age=3600"),
                    ("age", "100"),
                    ("cache-status", "edge-a; hit"),
                    ("via", "1.0 edge-b"),
                    ("x-after", "1"),
                ],
            )
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let (miss, _) = exchange(proxy.addr, &get("/via", &origin, "")).await;
    let date = date_of(&miss);
    let expect = Expect {
        ages: 0..=5,
        date: &date,
        proxy: proxy.addr,
    };
    let (hit, body) = exchange(proxy.addr, &get("/via", &origin, "")).await;
    assert_eq!(body, b"abc");
    assert_eq!(origin.hits(), 1);
    assert_eq!(
        normalised(
            &hit,
            &Expect {
                ages: 100..=105,
                ..expect
            }
        ),
        [
            "HTTP/1.1 200 OK",
            "via: 1.1 edge-a, 1.0 edge-b, VIA",
            "cache-control: max-age=3600",
            "age: N",
            "cache-status: edge-a; hit, cuttle;hit;ttl=T;detail=memory",
            "x-after: 1",
            "content-length: 3",
            "date: D",
        ]
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_304_head_and_range_hits_carry_the_same_added_fields() {
    let origin = Origin::builder()
        .route("/r", |_| {
            reply_with(
                200,
                "0123456789",
                &[
                    ("cache-control", "max-age=3600"),
                    ("etag", "\"v1\""),
                    ("content-type", "text/plain"),
                ],
            )
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let (miss, _) = exchange(proxy.addr, &get("/r", &origin, "")).await;
    let date = date_of(&miss);
    let expect = Expect {
        ages: 0..=5,
        date: &date,
        proxy: proxy.addr,
    };

    let (not_modified, body) =
        exchange(proxy.addr, &get("/r", &origin, "If-None-Match: \"v1\"\r\n")).await;
    assert!(body.is_empty());
    assert_eq!(
        normalised(&not_modified, &expect),
        [
            "HTTP/1.1 304 Not Modified",
            "cache-control: max-age=3600",
            "date: D",
            "etag: \"v1\"",
            "age: N",
            "via: VIA",
            "cache-status: cuttle;hit;ttl=T;detail=memory",
        ]
    );

    let head = format!(
        "HEAD {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        origin.url("/r"),
        origin.addr
    );
    let (lines, body) = exchange(proxy.addr, &head).await;
    assert!(body.is_empty());
    assert_eq!(
        normalised(&lines, &expect),
        [
            "HTTP/1.1 200 OK",
            "cache-control: max-age=3600",
            "etag: \"v1\"",
            "content-type: text/plain",
            "content-length: 10",
            "date: D",
            "age: N",
            "via: VIA",
            "cache-status: cuttle;hit;ttl=T;detail=memory",
        ]
    );

    let (range, body) = exchange(proxy.addr, &get("/r", &origin, "Range: bytes=2-4\r\n")).await;
    assert_eq!(body, b"234");
    assert_eq!(
        normalised(&range, &expect),
        [
            "HTTP/1.1 206 Partial Content",
            "cache-control: max-age=3600",
            "etag: \"v1\"",
            "content-type: text/plain",
            "content-length: 3",
            "date: D",
            "age: N",
            "content-range: bytes 2-4/10",
            "via: VIA",
            "cache-status: cuttle;hit;ttl=T;detail=memory",
        ]
    );
    assert_eq!(origin.hits(), 1, "all of them were hits");
    proxy.shutdown().await;
}

/// The head of a plain hit (GET or HEAD of a stored 200, no precondition, no range) for the
/// client versions and connection wishes that change it: HTTP/1.0 (its status line; our
/// `Connection: keep-alive` only when it asked for one, RFC 9112 §9.3) and an HTTP/1.1 client
/// closing (RFC 9112 §9.6 `close`, after everything else the map held).
#[tokio::test]
async fn a_plain_hit_for_http10_and_closing_clients() {
    let origin = Origin::builder()
        .route("/v", |_| {
            reply_with(
                200,
                "hello",
                &[
                    ("cache-control", "max-age=3600"),
                    ("content-type", "text/plain"),
                    ("etag", "\"e\""),
                ],
            )
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let (miss, _) = exchange(proxy.addr, &get("/v", &origin, "")).await;
    let date = date_of(&miss);
    let expect = Expect {
        ages: 0..=5,
        date: &date,
        proxy: proxy.addr,
    };
    let fields = [
        "cache-control: max-age=3600",
        "content-type: text/plain",
        "etag: \"e\"",
        "content-length: 5",
        "date: D",
        "age: N",
        "via: VIA",
        "cache-status: cuttle;hit;ttl=T;detail=memory",
    ];
    let http10 = |extra: &str| {
        format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\n{extra}\r\n",
            origin.url("/v"),
            origin.addr
        )
    };
    let cases = [
        (http10(""), "HTTP/1.0 200 OK", None),
        (
            http10("Connection: keep-alive\r\n"),
            "HTTP/1.0 200 OK",
            Some("connection: keep-alive"),
        ),
        (
            get("/v", &origin, "Connection: close\r\n"),
            "HTTP/1.1 200 OK",
            Some("connection: close"),
        ),
    ];
    for (request, status_line, connection) in cases {
        let (hit, body) = exchange(proxy.addr, &request).await;
        assert_eq!(body, b"hello", "{request}");
        let mut want = vec![status_line.to_owned()];
        want.extend(fields.iter().map(|f| (*f).to_owned()));
        want.extend(connection.map(str::to_owned));
        assert_eq!(normalised(&hit, &expect), want, "{request}");
    }
    assert_eq!(origin.hits(), 1, "all of them were hits");
    proxy.shutdown().await;
}

/// What the origin sent for its own connection is not stored (RFC 9110 §7.6.1: hop-by-hop and
/// `Connection`-listed fields), and the tag fields are left out of hits by default
/// (`cache.strip_tag_fields`): a hit's head has none of them.
#[tokio::test]
async fn a_hit_sends_no_connection_listed_hop_by_hop_or_tag_field() {
    let origin = Origin::builder()
        .route("/hop", |_| {
            reply_with(
                200,
                "abc",
                &[
                    ("cache-control", "max-age=3600"),
                    ("connection", "x-hop"),
                    ("x-hop", "for this connection only"),
                    ("keep-alive", "timeout=5"),
                    ("x-kept", "1"),
                ],
            )
        })
        .route("/tag", |_| {
            reply_with(
                200,
                "abc",
                &[
                    ("cache-control", "max-age=3600"),
                    ("surrogate-key", "k1 k2"),
                    ("x-kept", "1"),
                ],
            )
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let (miss, _) = exchange(proxy.addr, &get("/hop", &origin, "")).await;
    let date = date_of(&miss);
    let expect = Expect {
        ages: 0..=5,
        date: &date,
        proxy: proxy.addr,
    };
    for request in [
        get("/hop", &origin, ""),
        format!(
            "HEAD {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            origin.url("/hop"),
            origin.addr
        ),
    ] {
        let (hit, _) = exchange(proxy.addr, &request).await;
        assert_eq!(
            normalised(&hit, &expect),
            [
                "HTTP/1.1 200 OK",
                "cache-control: max-age=3600",
                // Where removing the others (a `HeaderMap` fills a gap with its last field)
                // left it when the response was stored.
                "content-length: 3",
                "date: D",
                "x-kept: 1",
                "age: N",
                "via: VIA",
                "cache-status: cuttle;hit;ttl=T;detail=memory",
            ],
            "{request}"
        );
    }
    let (miss, _) = exchange(proxy.addr, &get("/tag", &origin, "")).await;
    let date = date_of(&miss);
    let expect = Expect {
        ages: 0..=5,
        date: &date,
        proxy: proxy.addr,
    };
    let (hit, _) = exchange(proxy.addr, &get("/tag", &origin, "")).await;
    assert_eq!(
        normalised(&hit, &expect),
        [
            "HTTP/1.1 200 OK",
            "cache-control: max-age=3600",
            "x-kept: 1",
            "content-length: 3",
            "date: D",
            "age: N",
            "via: VIA",
            "cache-status: cuttle;hit;ttl=T;detail=memory",
        ]
    );
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// With `Via` off and Squid's `X-Cache` on, a hit sends no `Via` and `X-Cache` last; an empty
/// stored body's hit sends its `Content-Length: 0` after the other fields (where a length
/// the body itself gives goes, RFC 9110 §8.6), and a HEAD of it the stored line in place.
#[tokio::test]
async fn a_hit_with_x_cache_without_via_and_an_empty_body() {
    let origin = Origin::builder()
        .route("/empty", |_| {
            reply_with(
                200,
                "",
                &[("cache-control", "max-age=3600"), ("etag", "\"0\"")],
            )
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("[forward]\nvia = false\n[cache]\nx_cache = true\n").await;
    let (miss, _) = exchange(proxy.addr, &get("/empty", &origin, "")).await;
    let date = date_of(&miss);
    let expect = Expect {
        ages: 0..=5,
        date: &date,
        proxy: proxy.addr,
    };
    // An empty body's fill may still be committing when the miss's response has ended: the
    // next request may be collapsed onto it, so ask until one is a hit (at most 5 s).
    let mut hit = Vec::new();
    for _ in 0..100 {
        let (lines, body) = exchange(proxy.addr, &get("/empty", &origin, "")).await;
        assert!(body.is_empty());
        hit = lines;
        if hit
            .iter()
            .any(|l| l.starts_with(b"cache-status: cuttle;hit"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        normalised(&hit, &expect),
        [
            "HTTP/1.1 200 OK",
            "cache-control: max-age=3600",
            "etag: \"0\"",
            "date: D",
            "age: N",
            "cache-status: cuttle;hit;ttl=T;detail=memory",
            "x-cache: HIT from cuttle-test",
            "content-length: 0",
        ]
    );
    let head = format!(
        "HEAD {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        origin.url("/empty"),
        origin.addr
    );
    let (hit, _) = exchange(proxy.addr, &head).await;
    assert_eq!(
        normalised(&hit, &expect),
        [
            "HTTP/1.1 200 OK",
            "cache-control: max-age=3600",
            "etag: \"0\"",
            "content-length: 0",
            "date: D",
            "age: N",
            "cache-status: cuttle;hit;ttl=T;detail=memory",
            "x-cache: HIT from cuttle-test",
        ]
    );
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}
