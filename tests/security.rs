//! Regression tests for the holes of the security review (issue 11): each test is an attack
//! that worked before its fix. Everything stays on 127.0.0.0/8; forms of non-loopback addresses
//! are checked in unit tests of the ACL decision (`access`), never by connecting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A proxy that allows loopback clients but denies loopback destinations (Squid's
/// `http_access deny to_localhost` before `allow localhost`), with CONNECT open to `port`.
async fn deny_to_localhost_proxy(port: u16) -> TestProxy {
    let dir = tempfile::tempdir().unwrap();
    let text = config_with_access(
        dir.path(),
        "to_localhost = { dst = [\"127.0.0.0/8\", \"0.0.0.0/32\", \"::1\", \"169.254.0.0/16\", \"fe80::/10\"] }\n\
         [[http_access]]\ndeny = [\"to_localhost\"]\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[http_access]]\ndeny = [\"all\"]\n",
        &format!("[forward]\nconnect_ports = [443, {port}]\n"),
    );
    TestProxy::start_text(&text, Some(dir)).await
}

/// Spellings of 127.0.0.1 (or of this host) that resolvers accept.
const LOOPBACK_FORMS: &[&str] = &[
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.000.000.001",
    "0",
    "localhost",
    "LOCALHOST",
    "localhost.",
];

#[tokio::test]
async fn deny_to_localhost_holds_for_every_spelling_of_loopback() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "secret"))
        .spawn()
        .await;
    let port = origin.addr.port();
    let proxy = deny_to_localhost_proxy(port).await;
    for form in LOOPBACK_FORMS {
        let request = format!(
            "GET http://{form}:{port}/ HTTP/1.1\r\nHost: {form}:{port}\r\nConnection: close\r\n\r\n"
        );
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 403"), "GET via {form}: {head}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "{form}");
    }
    assert_eq!(origin.hits(), 0, "the loopback origin was reached");
    assert_eq!(
        origin.connections(),
        0,
        "the loopback origin was connected to"
    );
}

#[tokio::test]
async fn deny_to_localhost_holds_for_connect_to_every_spelling_of_loopback() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "secret"))
        .spawn()
        .await;
    let port = origin.addr.port();
    let proxy = deny_to_localhost_proxy(port).await;
    for form in LOOPBACK_FORMS {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!("CONNECT {form}:{port} HTTP/1.1\r\nHost: {form}:{port}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 403"), "CONNECT {form}: {head}");
    }
    assert_eq!(
        origin.connections(),
        0,
        "the loopback origin was connected to"
    );
}

#[tokio::test]
async fn with_a_dst_rule_allowed_requests_go_to_the_checked_address_with_the_clients_host() {
    // `deny dst 192.0.2.0/24` makes cuttle resolve every destination; 127.1 is allowed and must
    // still reach its origin, connected by address, with the Host the client named.
    let origin = Origin::builder()
        .route("/", |_| reply(200, "ok"))
        .spawn()
        .await;
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let text = config_with_access(
        dir.path(),
        "doc_net = { dst = [\"192.0.2.0/24\"] }\n\
         [[http_access]]\ndeny = [\"doc_net\"]\n\
         [[http_access]]\nallow = [\"localhost\"]\n",
        "",
    );
    let proxy = TestProxy::start_text(&text, Some(dir)).await;
    for form in ["127.1", "localhost"] {
        let request = format!(
            "GET http://{form}:{port}/ HTTP/1.1\r\nHost: {form}:{port}\r\nConnection: close\r\n\r\n"
        );
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{form}: {head}");
        assert_eq!(body, b"ok");
        let seen = origin.requests().pop().unwrap();
        assert_eq!(seen.headers["host"], format!("{form}:{port}").as_str());
    }
}
