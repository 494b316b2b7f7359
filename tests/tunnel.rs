//! CONNECT tunnels and access control: allowed ports tunnel bytes both ways (including real
//! HTTPS with curl), other ports and denied sources get 403.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

/// Sends CONNECT for `target` and returns the stream and the response head.
async fn connect_via(proxy: SocketAddr, target: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    (stream, head)
}

#[tokio::test]
async fn connect_to_an_allowed_port_tunnels_bytes_both_ways() {
    let echo = echo_server().await;
    let proxy = TestProxy::start(&format!(
        "[forward]\nconnect_ports = [443, {}]\n",
        echo.port()
    ))
    .await;
    let (mut stream, head) = connect_via(proxy.addr, &echo.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    for message in [
        &b"ping"[..],
        &[0u8, 1, 2, 255, 13, 10][..],
        &pattern(100_000)[..],
    ] {
        stream.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        tokio::time::timeout(WAIT, stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, message);
    }
}

#[tokio::test]
async fn connect_to_port_25_is_403() {
    let proxy = TestProxy::start("").await;
    let (_, head) = connect_via(proxy.addr, "127.0.0.1:25").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(head.to_ascii_lowercase().contains("proxy-status"), "{head}");
}

#[tokio::test]
async fn default_port_list_allows_only_443() {
    // The default config's connect_ports is [443]: any other port is refused before connecting.
    let echo = echo_server().await;
    let proxy = TestProxy::start("").await;
    let (_, head) = connect_via(proxy.addr, &echo.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}

#[tokio::test]
async fn denied_source_gets_403_for_get_and_connect() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "no"))
        .spawn()
        .await;
    let echo = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_with_access(
        dir.path(),
        "[[http_access]]\ndeny = [\"localhost\"]\n[[http_access]]\nallow = [\"all\"]\n",
        &format!("[forward]\nconnect_ports = [{}]\n", echo.port()),
    );
    let proxy = TestProxy::start_text(&text, Some(dir)).await;
    let response = http_client(&proxy)
        .get(origin.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let page = response.text().await.unwrap();
    assert!(page.contains("access denied"), "{page}");
    assert!(
        page.contains("deny localhost"),
        "page names the rule: {page}"
    );
    let (_, head) = connect_via(proxy.addr, &echo.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn dstdomain_and_method_acls_apply() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "ok"))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_with_access(
        dir.path(),
        "[acl.blocked]\ndstdomain = [\".blocked.test\"]\n\
         [acl.writes]\nmethod = [\"POST\", \"PUT\"]\n\
         [[http_access]]\ndeny = [\"blocked\"]\n\
         [[http_access]]\ndeny = [\"writes\"]\n\
         [[http_access]]\nallow = [\"localhost\"]\n",
        "",
    );
    let proxy = TestProxy::start_text(&text, Some(dir)).await;
    let client = http_client(&proxy);
    let blocked = client.get("http://www.blocked.test/").send().await.unwrap();
    assert_eq!(blocked.status(), 403);
    let post = client.post(origin.url("/")).body("x").send().await.unwrap();
    assert_eq!(post.status(), 403);
    let get = client.get(origin.url("/")).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(origin.hits(), 1);
}

/// An HTTPS server with a fresh self-signed certificate; returns its address and the PEM.
async fn tls_origin() -> (SocketAddr, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pem = certified.cert.pem();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let body = "secure hello";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, pem)
}

#[tokio::test]
async fn curl_https_through_the_proxy_with_connect() {
    let (addr, pem) = tls_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let proxy = TestProxy::start(&format!(
        "[forward]\nconnect_ports = [443, {}]\n",
        addr.port()
    ))
    .await;
    let out = curl(&[
        "-x",
        &proxy.url(),
        "--cacert",
        ca.to_str().unwrap(),
        &format!("https://{addr}/"),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"secure hello");
}

#[tokio::test]
async fn connect_to_a_refused_port_is_503_before_any_tunnel() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = TestProxy::start(&format!("[forward]\nconnect_ports = [{port}]\n")).await;
    let (_, head) = connect_via(proxy.addr, &format!("127.0.0.1:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
}

#[tokio::test]
async fn open_tunnels_count_against_max_connections() {
    let echo = echo_server().await;
    let origin = Origin::builder()
        .route("/x", |_| reply(200, "ok"))
        .spawn()
        .await;
    let proxy = TestProxy::start(&format!(
        "[forward]\nconnect_ports = [{}]\n[limits]\nmax_connections = 1\n",
        echo.port()
    ))
    .await;
    let (mut tunnel, head) = connect_via(proxy.addr, &echo.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The tunnel holds the only slot: another client waits.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/x")
    );
    let waiting = raw(
        proxy.addr,
        request.as_bytes(),
        std::time::Duration::from_millis(500),
    )
    .await;
    assert!(
        waiting.is_empty(),
        "served while a tunnel holds the only slot"
    );
    // Closing the tunnel frees it.
    tunnel.shutdown().await.unwrap();
    drop(tunnel);
    let served = raw(proxy.addr, request.as_bytes(), WAIT).await;
    assert!(String::from_utf8_lossy(&served).starts_with("HTTP/1.1 200"));
}
