//! Forward mode end to end: real clients (curl, reqwest, raw HTTP/1.0 and 1.1) through the
//! real proxy to a real origin, all on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn curl_gets_the_origin_body_byte_for_byte_in_origin_form() {
    let body = Bytes::from(pattern(300_000));
    let served = body.clone();
    let origin = Origin::builder()
        .route("/blob", move |_| {
            let mut r = reply_bytes(200, served.clone());
            r.headers_mut()
                .insert("content-type", "application/octet-stream".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let out = curl(&["-x", &proxy.url(), &origin.url("/blob?x=1")]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), body.len());
    assert!(out.stdout == body, "body differs");

    let seen = &origin.requests()[0];
    // Origin-form on the wire, Host from the absolute URI.
    assert_eq!(seen.uri.to_string(), "/blob?x=1");
    assert_eq!(
        seen.headers["host"].to_str().unwrap(),
        origin.addr.to_string()
    );
    let via = seen.headers["via"].to_str().unwrap();
    // The received-by is the unique name: visible_hostname with our port by default.
    assert!(
        via.starts_with(&format!("1.1 cuttle-test:{} (cuttle/", proxy.addr.port())),
        "{via}"
    );
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert!(!seen.headers.contains_key("proxy-connection"));
}

#[tokio::test]
async fn response_carries_via_and_loses_hop_by_hop_fields_both_ways() {
    let origin = Origin::builder()
        .route("/h", |_| {
            let mut r = reply(200, "ok");
            let h = r.headers_mut();
            h.insert("connection", "x-upstream-secret".parse().unwrap());
            h.insert("x-upstream-secret", "1".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("x-end-to-end", "kept".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let response = http_client(&proxy)
        .get(origin.url("/h"))
        .header("connection", "x-client-secret")
        .header("x-client-secret", "1")
        .header("te", "trailers")
        .header("upgrade", "h2c")
        .header("proxy-authorization", "Basic dTpw")
        .header("x-kept", "1")
        .send()
        .await
        .unwrap();
    let h = response.headers();
    assert!(!h.contains_key("x-upstream-secret"));
    assert!(!h.contains_key("keep-alive"));
    assert_eq!(h["x-end-to-end"], "kept");
    assert!(h["via"].to_str().unwrap().contains("cuttle-test"));

    let seen = &origin.requests()[0].headers;
    for gone in ["x-client-secret", "te", "upgrade", "proxy-authorization"] {
        assert!(!seen.contains_key(gone), "{gone} was forwarded");
    }
    assert_eq!(seen["x-kept"], "1");
}

#[tokio::test]
async fn http10_client_is_served() {
    let origin = Origin::builder()
        .route("/old", |_| reply(200, "for an old client"))
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let request = format!(
        "GET {} HTTP/1.0\r\nUser-Agent: test/1.0\r\n\r\n",
        origin.url("/old")
    );
    let out = raw(proxy.addr, request.as_bytes(), WAIT).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(text.ends_with("for an old client"), "{text}");
    // The request Via records the client's protocol version.
    let via = origin.requests()[0].headers["via"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(via.starts_with("1.0 cuttle-test"), "{via}");
    // curl's HTTP/1.0 mode too.
    let out = curl(&["-0", "-x", &proxy.url(), &origin.url("/old")]).await;
    assert_eq!(out.stdout, b"for an old client");
}

#[tokio::test]
async fn keep_alive_reuses_client_and_upstream_connections() {
    let origin = Origin::builder()
        .route("/k", |_| reply(200, "kept alive"))
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..3 {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            origin.url("/k"),
            origin.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"kept alive");
    }
    assert_eq!(origin.hits(), 3);
    assert_eq!(
        origin.connections(),
        1,
        "upstream connection reused from the pool"
    );
}

/// `timeouts.server_idle`: an upstream connection idle that long is not reused (and is closed).
#[tokio::test]
async fn idle_upstream_connections_are_not_reused_after_server_idle() {
    let origin = Origin::builder()
        .route("/k", |_| reply(200, "kept alive"))
        .spawn()
        .await;
    let proxy = TestProxy::start("[timeouts]\nserver_idle = \"300ms\"\n").await;
    let client = http_client(&proxy);
    let get = || async {
        let response = client.get(origin.url("/k")).send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "kept alive");
    };
    get().await;
    get().await;
    assert_eq!(origin.connections(), 1, "reused within server_idle");
    tokio::time::sleep(Duration::from_millis(700)).await;
    get().await;
    assert_eq!(origin.hits(), 3);
    assert_eq!(
        origin.connections(),
        2,
        "an idle connection outlived server_idle"
    );
}

#[tokio::test]
async fn request_bodies_stream_up_chunked_and_with_length() {
    let origin = Origin::builder()
        .route("/up", |req| {
            reply(200, &format!("{} {}", req.body_len, req.body_hash))
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let client = http_client(&proxy);
    let data = pattern(2_000_000);
    // With Content-Length.
    let text = client
        .post(origin.url("/up"))
        .body(data.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, format!("{} {}", data.len(), fnv_all(&data)));
    // Chunked (a stream of unknown length).
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(65_536)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let text = client
        .put(origin.url("/up"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, format!("{} {}", data.len(), fnv_all(&data)));
    let seen = origin.requests();
    assert!(seen[0].headers.contains_key("content-length"));
    assert!(seen[1].headers.contains_key("transfer-encoding"));
}

#[tokio::test]
async fn chunked_response_streams_through() {
    let origin = Origin::builder()
        .route("/s", |_| reply_stream(5_000_000, 16_384))
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let body = http_client(&proxy)
        .get(origin.url("/s"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), 5_000_000);
    assert_eq!(&body[..16_384], &pattern(16_384)[..]);
}

#[tokio::test]
async fn request_already_carrying_our_via_is_a_loop() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "should not be reached"))
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let response = http_client(&proxy)
        .get(origin.url("/"))
        .header(
            "via",
            format!(
                "1.1 other, 1.1 cuttle-test:{} (cuttle/0.1.0)",
                proxy.addr.port()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let status = response.headers()["proxy-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(status.contains("proxy_loop_detected"), "{status}");
    let page = response.text().await.unwrap();
    assert!(page.contains("forwarding loop"), "{page}");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn max_forwards_zero_is_answered_by_the_proxy_and_others_decrement() {
    let origin = Origin::builder()
        .route("/mf", |_| reply(200, "origin"))
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let client = http_client(&proxy);
    let trace = client
        .request(reqwest::Method::TRACE, origin.url("/mf"))
        .header("max-forwards", "0")
        .header("x-probe", "here")
        .send()
        .await
        .unwrap();
    assert_eq!(trace.status(), 200);
    assert_eq!(trace.headers()["content-type"], "message/http");
    let echo = trace.text().await.unwrap();
    assert!(echo.starts_with("TRACE "), "{echo}");
    assert!(echo.contains("x-probe: here"), "{echo}");
    let options = client
        .request(reqwest::Method::OPTIONS, origin.url("/mf"))
        .header("max-forwards", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 200);
    assert!(options.headers().contains_key("allow"));
    assert_eq!(origin.hits(), 0, "Max-Forwards: 0 must not be forwarded");

    client
        .request(reqwest::Method::OPTIONS, origin.url("/mf"))
        .header("max-forwards", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(origin.requests()[0].headers["max-forwards"], "2");
}

#[tokio::test]
async fn forwarded_for_can_be_deleted() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, ""))
        .spawn()
        .await;
    let proxy = TestProxy::start("[forward]\nforwarded_for = \"delete\"\n").await;
    http_client(&proxy)
        .get(origin.url("/"))
        .header("x-forwarded-for", "192.0.2.9")
        .send()
        .await
        .unwrap();
    assert!(!origin.requests()[0].headers.contains_key("x-forwarded-for"));
}

#[tokio::test]
async fn origin_form_request_to_a_forward_port_is_400() {
    let proxy = TestProxy::start("").await;
    let out = raw(
        proxy.addr,
        b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("Invalid URL"), "{text}");
}

#[tokio::test]
async fn access_log_has_squid_native_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let origin = Origin::builder()
        .route("/logged", |_| {
            let mut r = reply(200, "twelve bytes");
            r.headers_mut()
                .insert("content-type", "text/plain".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let text = config(
        dir.path(),
        &format!("[log]\naccess_log = \"{}\"\n", log.display()),
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let client = http_client(&proxy);
    client
        .get(origin.url("/logged"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    client
        .get(origin.url("/"))
        .header("via", format!("1.1 cuttle-test:{}", proxy.addr.port()))
        .send()
        .await
        .unwrap();
    proxy.shutdown().await;
    let lines = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = lines
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let hit = &lines[0];
    assert_eq!(hit.len(), 10, "{hit:?}");
    assert!(hit[0].contains('.') && hit[0].split('.').nth(1).unwrap().len() == 3);
    assert!(hit[1].parse::<u64>().is_ok());
    assert_eq!(hit[2], "127.0.0.1");
    assert_eq!(hit[3], "TCP_MISS/200");
    assert!(hit[4].parse::<u64>().unwrap() > 12);
    assert_eq!(hit[5], "GET");
    assert_eq!(hit[6], origin.url("/logged"));
    assert_eq!(hit[7], "-");
    assert_eq!(hit[8], "HIER_DIRECT/127.0.0.1");
    assert_eq!(hit[9], "text/plain");
    assert_eq!(lines[1][3], "TCP_DENIED/403");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let origin = Origin::builder()
        .route("/slow", |_| reply_stream(1_000_000, 1000))
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let addr = proxy.addr;
    let client = http_client(&proxy);
    let response = client.get(origin.url("/slow")).send().await.unwrap();
    let shutdown = tokio::spawn(proxy.shutdown());
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 1_000_000, "in-flight response completed");
    tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap();
    // No longer accepting.
    let refused =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "still accepting after shutdown"
    );
}
