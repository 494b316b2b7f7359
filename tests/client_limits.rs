//! Limits and timeouts on the client side: 431, 414, 400, slow and idle clients, the connection
//! cap. None of them may kill the process or leak the connection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;
use tokio::time::Instant;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The proxy still serves a normal request.
async fn still_serving(proxy: &TestProxy, origin: &Origin) {
    let response = http_client(proxy)
        .get(origin.url("/ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn ok_origin() -> Origin {
    Origin::builder()
        .route("/ok", |_| reply(200, "ok"))
        .spawn()
        .await
}

#[tokio::test]
async fn oversized_header_is_431_and_the_proxy_keeps_serving() {
    let origin = ok_origin().await;
    let proxy = TestProxy::start("[limits]\nmax_request_header_size = \"4 KiB\"\n").await;
    // Just over our limit (our own check).
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        origin.url("/ok"),
        "a".repeat(5000)
    );
    let out = raw(proxy.addr, request.as_bytes(), WAIT).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // Far over it (hyper's parser limit): still 431, connection closed.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        origin.url("/ok"),
        "a".repeat(100_000)
    );
    let out = raw(proxy.addr, request.as_bytes(), WAIT).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(origin.hits(), 0);
    still_serving(&proxy, &origin).await;
}

#[tokio::test]
async fn long_uri_is_414() {
    let origin = ok_origin().await;
    let proxy = TestProxy::start("[limits]\nmax_uri_length = 1024\n").await;
    let request = format!(
        "GET {}?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/ok"),
        "q".repeat(2000)
    );
    let out = raw(proxy.addr, request.as_bytes(), WAIT).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 414"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    still_serving(&proxy, &origin).await;
}

#[tokio::test]
async fn malformed_request_line_is_400_and_the_connection_is_closed() {
    let origin = ok_origin().await;
    let proxy = TestProxy::start("").await;
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET http://x/ HTTP/9.9\r\n\r\n",
        b"G E T / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    ] {
        let started = Instant::now();
        let out = raw(proxy.addr, garbage, WAIT).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400"), "{garbage:?} -> {text}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "connection not closed"
        );
    }
    still_serving(&proxy, &origin).await;
}

#[tokio::test]
async fn slow_header_is_cut_off_at_the_header_timeout() {
    let origin = ok_origin().await;
    let proxy =
        TestProxy::start("[timeouts]\nclient_header = \"400ms\"\nclient_idle = \"30s\"\n").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Slow")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection was not closed");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(5),
        "{took:?}"
    );
    still_serving(&proxy, &origin).await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_client_idle() {
    let origin = ok_origin().await;
    let proxy =
        TestProxy::start("[timeouts]\nclient_header = \"30s\"\nclient_idle = \"500ms\"\n").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/ok"));
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "idle connection was not closed");
    let took = idle_from.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let origin = ok_origin().await;
    let proxy = TestProxy::start("[limits]\nmax_connections = 1\n").await;
    let mut first = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/ok"));
    first.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut first).await;
    // A second client is accepted by the kernel but not served while the first holds the slot.
    let mut second = TcpStream::connect(proxy.addr).await.unwrap();
    second.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "second connection served while over the cap"
    );
    drop(first);
    let (head, _) = read_response(&mut second).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}
