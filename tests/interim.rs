//! Interim (1xx) responses from an origin reach clients (RFC 9110 §15.2: "A proxy MUST forward
//! 1xx responses"): `103 Early Hints` and `102 Processing` go to HTTP/1.1 clients, in order,
//! before the final response; HTTP/1.0 clients get none ("a server MUST NOT send a 1xx
//! response to an HTTP/1.0 client").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;

const HINTED: &[u8] =
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n\
HTTP/1.1 102 Processing\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/html\r\n\r\nhello";

#[tokio::test]
async fn early_hints_and_processing_reach_an_http_1_1_client_before_the_response() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(HINTED.to_vec())).await;
    let proxy = TestProxy::start("").await;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        origin.url("/page"),
        origin.addr
    );
    let reply = raw(proxy.addr, request.as_bytes(), WAIT).await;
    let text = String::from_utf8_lossy(&reply);
    let hints = text.find("HTTP/1.1 103 Early Hints\r\n").expect(&text);
    let link = text
        .to_ascii_lowercase()
        .find("link: </style.css>; rel=preload; as=style\r\n")
        .expect(&text);
    let processing = text.find("HTTP/1.1 102 Processing\r\n").expect(&text);
    let last = text.find("HTTP/1.1 200 OK\r\n").expect(&text);
    assert_eq!(hints, 0, "{text}");
    assert!(
        hints < link && link < processing && processing < last,
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn curl_sees_the_103() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(HINTED.to_vec())).await;
    let proxy = TestProxy::start("").await;
    let out = curl(&["-x", &proxy.url(), "-v", &origin.url("/page")]).await;
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(trace.contains("< HTTP/1.1 103 Early Hints"), "{trace}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello");
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_http_1_0_client_gets_no_interim_response() {
    let origin = RawOrigin::spawn(RawBehaviour::Reply(HINTED.to_vec())).await;
    let proxy = TestProxy::start("").await;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\n\r\n",
        origin.url("/page"),
        origin.addr
    );
    let reply = raw(proxy.addr, request.as_bytes(), Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(!text.contains(" 103 ") && !text.contains(" 102 "), "{text}");
    proxy.shutdown().await;
}
