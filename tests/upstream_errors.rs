//! Upstream failures become Squid-style error pages with the right status: 502 for invalid
//! replies, 503 for refused/unresolvable, 504 for timeouts; after the header went out, the
//! client connection is aborted instead of presenting a short body as complete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;
use tokio::time::Instant;

use support::*;

/// Fetches `url` through `proxy` and returns (status, Proxy-Status, page).
async fn fetch(proxy: &TestProxy, url: &str) -> (u16, String, String) {
    let response = http_client(proxy).get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let proxy_status = response
        .headers()
        .get("proxy-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, proxy_status, response.text().await.unwrap())
}

#[tokio::test]
async fn garbage_status_line_is_502_naming_cause_and_url() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(b"THIS IS NOT HTTP\r\n\r\n".to_vec())).await;
    let proxy = TestProxy::start("").await;
    let url = origin.url("/garbage");
    let (status, proxy_status, page) = fetch(&proxy, &url).await;
    assert_eq!(status, 502);
    assert!(
        proxy_status.contains("error=http_protocol_error"),
        "{proxy_status}"
    );
    assert!(page.contains(&url), "page names the URL: {page}");
    assert!(page.contains("invalid"), "page names the cause: {page}");
    assert!(page.contains("ERR_INVALID_RESP"), "{page}");
}

#[tokio::test]
async fn malformed_header_line_is_502() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nBad Header Without Colon\r\n\r\nok".to_vec(),
    ))
    .await;
    let proxy = TestProxy::start("").await;
    let (status, _, _) = fetch(&proxy, &origin.url("/")).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn connection_closed_before_a_full_header_is_502() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(
        b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(),
    ))
    .await;
    let proxy = TestProxy::start("").await;
    let (status, _, page) = fetch(&proxy, &origin.url("/")).await;
    assert_eq!(status, 502);
    assert!(page.contains("closed the connection"), "{page}");
    // Closing without sending anything at all is the same failure.
    let silent_close = RawOrigin::spawn(RawBehaviour::Reply(Vec::new())).await;
    let (status, _, _) = fetch(&proxy, &silent_close.url("/")).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn bad_chunked_framing_before_any_body_is_502() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nnot a chunk\r\n".to_vec(),
    ))
    .await;
    let proxy = TestProxy::start("").await;
    let (status, _, _) = fetch(&proxy, &origin.url("/")).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn silent_origin_is_504_within_the_read_timeout() {
    let origin = RawOrigin::spawn(RawBehaviour::Silent).await;
    let proxy = TestProxy::start("[timeouts]\nread = \"300ms\"\n").await;
    let started = Instant::now();
    let (status, proxy_status, page) = fetch(&proxy, &origin.url("/slow")).await;
    let took = started.elapsed();
    assert_eq!(status, 504);
    assert!(
        proxy_status.contains("connection_read_timeout"),
        "{proxy_status}"
    );
    assert!(page.contains("ERR_READ_TIMEOUT"), "{page}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn header_then_silence_is_504() {
    let origin = RawOrigin::spawn(RawBehaviour::ReplyThenHang(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".to_vec(),
    ))
    .await;
    let proxy = TestProxy::start("[timeouts]\nread = \"300ms\"\n").await;
    let (status, _, _) = fetch(&proxy, &origin.url("/")).await;
    assert_eq!(status, 504);
}

#[tokio::test]
async fn refused_connection_is_503() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = TestProxy::start("").await;
    let (status, proxy_status, page) = fetch(&proxy, &format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(status, 503);
    assert!(
        proxy_status.contains("connection_refused"),
        "{proxy_status}"
    );
    assert!(page.contains("refused"), "{page}");
}

#[tokio::test]
async fn truncated_body_after_the_header_aborts_the_client_connection() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b".to_vec(),
    ))
    .await;
    let proxy = TestProxy::start("").await;
    let response = http_client(&proxy)
        .get(origin.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "a short body must not look complete"
    );
    // curl agrees: exit code 18 is "transfer closed with outstanding read data remaining".
    let out = curl(&["-x", &proxy.url(), &origin.url("/")]).await;
    assert_eq!(
        out.status.code(),
        Some(18),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Chunked variant: a body cut mid-stream after the first chunk.
    let chunked = RawOrigin::spawn(RawBehaviour::Reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
    ))
    .await;
    let response = http_client(&proxy)
        .get(chunked.url("/"))
        .send()
        .await
        .unwrap();
    assert!(
        response.bytes().await.is_err(),
        "missing last-chunk must not look complete"
    );
}

#[tokio::test]
async fn oversized_upstream_header_is_502() {
    let mut reply = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    reply.extend(std::iter::repeat_n(b'a', 40_000));
    reply.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    let origin = RawOrigin::spawn(RawBehaviour::Reply(reply)).await;
    let proxy = TestProxy::start("[limits]\nmax_response_header_size = \"16 KiB\"\n").await;
    let (status, _, _) = fetch(&proxy, &origin.url("/")).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn content_length_is_not_forwarded_with_transfer_encoding() {
    // RFC 9112 §6.3: Transfer-Encoding wins; forwarding the stale Content-Length would present
    // a truncated body as complete.
    let origin = RawOrigin::spawn(RawBehaviour::Reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n"
            .to_vec(),
    ))
    .await;
    let proxy = TestProxy::start("").await;
    let response = http_client(&proxy)
        .get(origin.url("/te"))
        .send()
        .await
        .unwrap();
    assert_ne!(
        response
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap()),
        Some("5")
    );
    assert_eq!(&response.bytes().await.unwrap()[..], b"0123456789");
}
