//! HTTP/1.0 clients and persistent connections (RFC 9112 §9.3, Appendix C.2.2): a raw HTTP/1.0
//! client asking for keep-alive (`Proxy-Connection` on a forward port, `Connection` on a
//! reverse port) sends two requests on one connection; without the option the connection closes
//! after the first response.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn origin() -> Origin {
    Origin::builder()
        .route("/a", |_| reply(200, "first"))
        .route("/b", |_| reply(200, "second"))
        .spawn()
        .await
}

/// Sends `request` and reads one Content-Length response.
async fn exchange(stream: &mut TcpStream, request: &str) -> (String, String) {
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_response(stream).await;
    (head, String::from_utf8(body).unwrap())
}

/// True when the proxy closed the connection (read returns EOF within a bounded wait).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_forward_port_keeps_an_http_1_0_client_that_asks_with_proxy_connection() {
    let origin = origin().await;
    let proxy = TestProxy::start("").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for (path, expected) in [("/a", "first"), ("/b", "second")] {
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nProxy-Connection: keep-alive\r\n\r\n",
            origin.url(path),
            origin.addr
        );
        let (head, body) = exchange(&mut stream, &request).await;
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("connection: keep-alive"),
            "the response confirms keep-alive: {head}"
        );
        assert_eq!(body, expected);
    }
    for seen in origin.requests() {
        assert!(
            !seen.headers.contains_key("proxy-connection"),
            "the option is hop-by-hop: {seen:?}"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_http_1_0_client_without_the_option_gets_one_response_per_connection() {
    let origin = origin().await;
    let proxy = TestProxy::start("").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\n\r\n",
        origin.url("/a"),
        origin.addr
    );
    let (head, body) = exchange(&mut stream, &request).await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert_eq!(body, "first");
    assert!(
        closed(&mut stream).await,
        "HTTP/1.0 without keep-alive closes"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_reverse_port_keeps_an_http_1_0_client_that_asks_with_connection() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "visible_hostname = \"edge-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"{}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n",
        origin.addr,
        dir.path().join("cache").display()
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for (path, expected) in [("/a", "first"), ("/b", "second")] {
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: www.example.test\r\nConnection: keep-alive\r\n\r\n"
        );
        let (head, body) = exchange(&mut stream, &request).await;
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        assert_eq!(body, expected);
    }
    proxy.shutdown().await;
}
