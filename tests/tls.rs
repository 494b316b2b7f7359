//! TLS end to end over loopback, with certificates made here by rcgen: termination on reverse
//! (and forward) ports with curl and a hyper client, HTTP/2 chosen by ALPN, separate cache
//! entries for http and https, TLS to upstream servers (trusted, untrusted, not TLS at all,
//! unverified, health-checked), a listener that survives bad handshakes, and config errors that
//! name the key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::certs::{Ca, TlsOrigin};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

// === certificates ===

fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

// === servers and clients ===

/// An origin's answer to every request: `body`.
fn answering(body: &'static str) -> support::certs::Respond {
    Arc::new(move |_path: &str| Response::new(Full::new(Bytes::from(body))))
}

/// A response as a test client saw it.
struct Got {
    version: Version,
    status: u16,
    headers: HeaderMap,
    body: String,
}

/// A client connection over TLS, speaking what ALPN chose.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// Connects to `addr` as `host` over TLS, trusting `ca_pem`, offering `alpn`; returns the sender
/// and the connection's task.
async fn connect_tls(
    addr: SocketAddr,
    host: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> (Sender, tokio::task::JoinHandle<()>) {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem, alpn)));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    if h2 {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        (Sender::H2(sender), task)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        (Sender::H1(sender), task)
    }
}

/// GET `path` on `sender` for `host` at `addr`, with extra `fields`.
async fn send(
    sender: &mut Sender,
    addr: SocketAddr,
    host: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> Got {
    let authority = format!("{host}:{}", addr.port());
    let mut request = match sender {
        // HTTP/2 carries the authority in the URI (`:authority`), not in Host.
        Sender::H2(_) => Request::get(format!("https://{authority}{path}")),
        Sender::H1(_) => Request::get(path).header("host", authority),
    };
    for (name, value) in fields {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let response = match sender {
        Sender::H2(s) => s.send_request(request).await.unwrap(),
        Sender::H1(s) => s.send_request(request).await.unwrap(),
    };
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    Got {
        version: parts.version,
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// GET `https://{host}{path}` from `addr` on a new connection, trusting `ca_pem`, offering
/// `alpn`.
async fn https_get(addr: SocketAddr, host: &str, ca_pem: &str, alpn: &[&[u8]], path: &str) -> Got {
    let (mut sender, _conn) = connect_tls(addr, host, ca_pem, alpn).await;
    send(&mut sender, addr, host, path, &[]).await
}

/// A proxy with a reverse TLS port for `www.example.test` in front of `origin` (its files in
/// `dir`), and an HTTP/2 connection to it (chosen by ALPN) with the connection's task.
async fn h2_to_reverse_tls(
    dir: &Path,
    origin: SocketAddr,
) -> (TestProxy, Sender, tokio::task::JoinHandle<()>) {
    let authority = Ca::new("test ca");
    let (_, cert, key) = authority.files(dir, &["www.example.test"]);
    let text = reverse_config(dir, &tls_port(&cert, &key), &servers(origin));
    let proxy = TestProxy::start_text(&text, None).await;
    let (sender, conn) =
        connect_tls(proxy.addr, "www.example.test", &authority.pem, &[b"h2"]).await;
    assert!(matches!(sender, Sender::H2(_)));
    (proxy, sender, conn)
}

/// An origin whose `/` is cacheable for a minute.
async fn cacheable_origin() -> Origin {
    Origin::builder()
        .route("/", |_| {
            let mut r = reply(200, "hello over tls");
            r.headers_mut()
                .insert("cache-control", "max-age=60".parse().unwrap());
            r
        })
        .spawn()
        .await
}

/// A reverse-mode config: `ports` (TOML `[[http_port]]` tables), site `www.example.test` on
/// group `app` = `group` (TOML key/values, including `servers`).
fn reverse_config(dir: &Path, ports: &str, group: &str) -> String {
    format!(
        "visible_hostname = \"edge-test\"\n{ports}\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\n{group}\n\
         [cache.disk]\npath = \"{}\"\n[log]\naccess_log = \"none\"\n",
        dir.join("cache").display()
    )
}

/// A reverse TLS port on 127.0.0.1:0 serving `cert`/`key`.
fn tls_port(cert: &Path, key: &Path) -> String {
    format!(
        "[[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}\n",
        cert.display(),
        key.display()
    )
}

const PLAIN_REVERSE_PORT: &str = "[[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n";

fn servers(addr: SocketAddr) -> String {
    format!("servers = [{{ address = \"{addr}\" }}]\n")
}

fn curl_args<'a>(ca: &'a str, resolve: &'a str, url: &'a str) -> Vec<&'a str> {
    vec!["--cacert", ca, "--resolve", resolve, url]
}

// === termination ===

#[tokio::test]
async fn curl_gets_the_origin_through_a_tls_port_and_the_origin_sees_https() {
    let origin = cacheable_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = Ca::new("test ca").files(dir.path(), &["www.example.test"]);
    let text = reverse_config(dir.path(), &tls_port(&cert, &key), &servers(origin.addr));
    let proxy = TestProxy::start_text(&text, None).await;
    let port = proxy.addr.port();
    let resolve = format!("www.example.test:{port}:127.0.0.1");
    let url = format!("https://www.example.test:{port}/");
    let mut args = curl_args(ca.to_str().unwrap(), &resolve, &url);
    args.extend(["--http1.1", "-w", "\n%{http_version}"]);
    let out = curl(&args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello over tls\n1.1");
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
    let forwarded = seen[0].headers["forwarded"].to_str().unwrap();
    assert!(forwarded.contains("proto=https"), "{forwarded}");
    assert_eq!(
        seen[0].headers["host"],
        format!("www.example.test:{port}").as_str()
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn http2_is_chosen_by_alpn_and_the_second_request_is_a_cache_hit() {
    let origin = cacheable_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("test ca");
    let (ca, cert, key) = authority.files(dir.path(), &["www.example.test"]);
    let text = reverse_config(dir.path(), &tls_port(&cert, &key), &servers(origin.addr));
    let proxy = TestProxy::start_text(&text, None).await;
    let port = proxy.addr.port();
    let resolve = format!("www.example.test:{port}:127.0.0.1");
    let url = format!("https://www.example.test:{port}/");
    let mut args = curl_args(ca.to_str().unwrap(), &resolve, &url);
    args.extend(["--http2", "-o", "/dev/null", "-w", "%{http_version}"]);
    let out = curl(&args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2");

    // The same over hyper's own HTTP/2 client: a hit, from the cache.
    let got = https_get(
        proxy.addr,
        "www.example.test",
        &authority.pem,
        &[b"h2", b"http/1.1"],
        "/",
    )
    .await;
    assert_eq!(got.version, Version::HTTP_2);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "hello over tls");
    let status = got.headers["cache-status"].to_str().unwrap();
    assert!(status.contains("hit"), "{status}");
    assert_eq!(origin.hits(), 1);

    // A client that offers only HTTP/1.1 gets HTTP/1.1 on the same port.
    let got = https_get(
        proxy.addr,
        "www.example.test",
        &authority.pem,
        &[b"http/1.1"],
        "/",
    )
    .await;
    assert_eq!(got.version, Version::HTTP_11);
    assert_eq!(got.body, "hello over tls");
    proxy.shutdown().await;
}

#[tokio::test]
async fn http2_cookie_fields_reach_an_http1_origin_joined() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "cookies"))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, mut sender, _conn) = h2_to_reverse_tls(dir.path(), origin.addr).await;
    let got = send(
        &mut sender,
        proxy.addr,
        "www.example.test",
        "/",
        &[("cookie", "a=1"), ("cookie", "b=2")],
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = origin.requests();
    let cookies: Vec<_> = seen[0].headers.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["a=1; b=2"]);
    proxy.shutdown().await;
}

/// The HTTP/2 side of `cache.rs`'s pipelined check: a stored response with an empty body (a
/// 200 of length 0, a 302) ends its stream only once its entry is committed, so the next
/// request on the connection, sent when the first response has ended, is a plain hit and
/// not collapsed onto a fill still in progress.
#[tokio::test]
async fn http2_an_empty_stored_response_ends_after_its_entry_is_committed() {
    let origin = empty_body_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, mut sender, _conn) = h2_to_reverse_tls(dir.path(), origin.addr).await;
    let host = "www.example.test";
    for (round, path) in ["/empty", "/moved", "/empty?2", "/moved?2"]
        .iter()
        .enumerate()
    {
        // `send` returns once the body has ended (END_STREAM seen).
        let first = send(&mut sender, proxy.addr, host, path, &[]).await;
        let expected = if path.starts_with("/empty") { 200 } else { 302 };
        assert_eq!(first.status, expected, "{path}");
        let second = send(&mut sender, proxy.addr, host, path, &[]).await;
        let status = second.headers["cache-status"].to_str().unwrap();
        assert!(status.contains("hit"), "{path}: {status}");
        assert!(!status.contains("collapsed"), "{path}: {status}");
        assert_eq!(origin.hits(), round + 1, "{path}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_http2_and_http1_tls_connections_promptly() {
    let origin = cacheable_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("test ca");
    let (_, cert, key) = authority.files(dir.path(), &["www.example.test"]);
    let text = reverse_config(dir.path(), &tls_port(&cert, &key), &servers(origin.addr));
    let proxy = TestProxy::start_text(&text, None).await;
    let host = "www.example.test";
    let (mut h2, h2_conn) = connect_tls(proxy.addr, host, &authority.pem, &[b"h2"]).await;
    let (mut h1, h1_conn) = connect_tls(proxy.addr, host, &authority.pem, &[b"http/1.1"]).await;
    assert_eq!(send(&mut h2, proxy.addr, host, "/", &[]).await.status, 200);
    assert_eq!(send(&mut h1, proxy.addr, host, "/", &[]).await.status, 200);
    // Both connections stay open (keep-alive); shutdown must not wait `timeouts.shutdown` (30s)
    // for them: h2 gets GOAWAY, idle HTTP/1.1 is closed.
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), proxy.shutdown())
        .await
        .expect("shutdown finishes");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    tokio::time::timeout(WAIT, h2_conn).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, h1_conn).await.unwrap().unwrap();
    drop((h2, h1));
}

#[tokio::test]
async fn http_and_https_variants_are_cached_apart() {
    let origin = cacheable_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("test ca");
    let (_, cert, key) = authority.files(dir.path(), &["www.example.test"]);
    let ports = format!("{PLAIN_REVERSE_PORT}{}", tls_port(&cert, &key));
    let text = reverse_config(dir.path(), &ports, &servers(origin.addr));
    let config = cuttle::config::load_str("test.toml", &text).unwrap();
    let server = cuttle::app::start(config).await.unwrap();
    let (plain, tls) = (server.addrs()[0].0, server.addrs()[1].0);

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..2 {
        let r = client
            .get(format!("http://{plain}/"))
            .header("host", "www.example.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(origin.hits(), 1, "the second plain request is a hit");
    let got = https_get(tls, "www.example.test", &authority.pem, &[b"h2"], "/").await;
    assert_eq!(got.status, 200);
    assert_eq!(origin.hits(), 2, "https has its own cache entry");
    let seen = origin.requests();
    assert_eq!(seen[0].headers["x-forwarded-proto"], "http");
    assert_eq!(seen[1].headers["x-forwarded-proto"], "https");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_handshakes_close_only_their_connection() {
    let origin = cacheable_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("test ca");
    let (_, cert, key) = authority.files(dir.path(), &["www.example.test"]);
    let text = reverse_config(dir.path(), &tls_port(&cert, &key), &servers(origin.addr))
        + "[timeouts]\nclient_header = \"1s\"\n";
    let proxy = TestProxy::start_text(&text, None).await;

    // Plain HTTP to the TLS port: the handshake fails and the connection is closed.
    let started = tokio::time::Instant::now();
    let reply = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed promptly"
    );
    assert!(
        !String::from_utf8_lossy(&reply).contains("HTTP/1.1"),
        "no HTTP answer on a TLS port"
    );
    // A client that never starts a handshake is closed after client_header.
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "idle handshake closed"
    );
    // Meanwhile and after, TLS clients are served.
    let got = https_get(
        proxy.addr,
        "www.example.test",
        &authority.pem,
        &[b"h2"],
        "/",
    )
    .await;
    assert_eq!(got.status, 200);
    // A client that does not trust our certificate fails its own handshake; we carry on.
    let stranger = Ca::new("other ca");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&stranger.pem, &[])));
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("www.example.test").unwrap();
    assert!(connector.connect(name, tcp).await.is_err());
    let got = https_get(
        proxy.addr,
        "www.example.test",
        &authority.pem,
        &[b"http/1.1"],
        "/",
    )
    .await;
    assert_eq!(got.status, 200);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_forward_port_with_tls_is_an_https_proxy() {
    let origin = cacheable_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = Ca::new("test ca").files(dir.path(), &["127.0.0.1"]);
    let text = format!(
        "visible_hostname = \"cuttle-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [cache.disk]\npath = \"{}\"\n",
        cert.display(),
        key.display(),
        dir.path().join("cache").display()
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let out = curl(&[
        "--proxy",
        &format!("https://127.0.0.1:{}", proxy.addr.port()),
        "--proxy-cacert",
        ca.to_str().unwrap(),
        &origin.url("/"),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello over tls");
    proxy.shutdown().await;
}

// === upstream TLS ===

/// A plain reverse proxy in front of group `app` = `group`; returns it.
async fn front(dir: &Path, group: &str) -> TestProxy {
    TestProxy::start_text(&reverse_config(dir, PLAIN_REVERSE_PORT, group), None).await
}

async fn get_www(proxy: &TestProxy) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
        .get(format!("{}/", proxy.url()))
        .header("host", "www.example.test")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn upstream_tls_trusting_the_test_ca_is_200() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("origin ca");
    let (ca, _, _) = authority.files(dir.path(), &[]);
    // One server addressed by IP (checked against its IP SAN), one by a name given in
    // tls_server_name.
    let (cert, key) = authority.leaf(&["127.0.0.1"]);
    let by_ip = TlsOrigin::spawn(&cert, &key, answering("secure by ip")).await;
    let proxy = front(
        dir.path(),
        &format!(
            "tls = true\ntls_ca_file = \"{}\"\n{}",
            ca.display(),
            servers(by_ip.addr)
        ),
    )
    .await;
    let r = get_www(&proxy).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "secure by ip");
    assert_eq!(by_ip.hits(), 1);
    proxy.shutdown().await;

    let (cert, key) = authority.leaf(&["origin.internal.test"]);
    let by_name = TlsOrigin::spawn(&cert, &key, answering("secure by name")).await;
    let proxy = front(
        dir.path(),
        &format!(
            "tls = true\ntls_ca_file = \"{}\"\ntls_server_name = \"origin.internal.test\"\n{}",
            ca.display(),
            servers(by_name.addr)
        ),
    )
    .await;
    let r = get_www(&proxy).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "secure by name");
    proxy.shutdown().await;
}

#[tokio::test]
async fn upstream_certificate_from_another_ca_is_502_tls_certificate_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = Ca::new("real ca").leaf(&["127.0.0.1"]);
    let origin = TlsOrigin::spawn(&cert, &key, answering("never seen")).await;
    let (other_ca, _, _) = Ca::new("other ca").files(dir.path(), &[]);
    let group = format!(
        "tls = true\ntls_ca_file = \"{}\"\n{}",
        other_ca.display(),
        servers(origin.addr)
    );
    let proxy = front(dir.path(), &group).await;
    let r = get_www(&proxy).await;
    assert_eq!(r.status(), 502);
    let status = r.headers()["proxy-status"].to_str().unwrap().to_owned();
    assert!(status.contains("error=tls_certificate_error"), "{status}");
    // A reverse port's page is minimal (error_details): Proxy-Status names the failure, the
    // page only the status.
    let page = r.text().await.unwrap();
    assert!(page.contains("502"), "{page}");
    assert!(!page.contains("ERR_SECURE_CONNECT_FAIL"), "{page}");
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;

    // tls_verify = false accepts it (testing only).
    let unverified = format!("tls = true\ntls_verify = false\n{}", servers(origin.addr));
    let proxy = front(dir.path(), &unverified).await;
    let r = get_www(&proxy).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "never seen");
    proxy.shutdown().await;
}

#[tokio::test]
async fn upstream_that_does_not_speak_tls_is_502_tls_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = Ca::new("origin ca").files(dir.path(), &[]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let group = format!(
        "tls = true\ntls_ca_file = \"{}\"\n{}",
        ca.display(),
        servers(addr)
    );
    let proxy = front(dir.path(), &group).await;
    let r = get_www(&proxy).await;
    assert_eq!(r.status(), 502);
    let status = r.headers()["proxy-status"].to_str().unwrap();
    assert!(status.contains("error=tls_protocol_error"), "{status}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn health_checks_of_a_tls_group_use_tls() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("origin ca");
    let (ca, _, _) = authority.files(dir.path(), &[]);
    let (cert, key) = authority.leaf(&["127.0.0.1"]);
    let origin = TlsOrigin::spawn(&cert, &key, answering("healthy")).await;
    let group = format!(
        "tls = true\ntls_ca_file = \"{}\"\n{}\
         [upstream.app.health_check]\npath = \"/health\"\ninterval = \"50ms\"\nfall = 1\n",
        ca.display(),
        servers(origin.addr)
    );
    let proxy = front(dir.path(), &group).await;
    // Several check rounds: a check over plain HTTP would fail and take the only server out.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(origin.hits() >= 3, "checks reached it");
    let r = get_www(&proxy).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "healthy");
    proxy.shutdown().await;
}

// === config errors ===

fn config_error(text: &str) -> String {
    cuttle::config::load_str("tls.toml", text)
        .unwrap_err()
        .to_string()
}

#[test]
fn broken_tls_files_are_config_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, _) = Ca::new("test ca").files(dir.path(), &["localhost"]);
    let missing = dir.path().join("missing.pem");
    let port = |cert: &Path, key: &Path| {
        format!(
            "[[http_port]]\nlisten = \"127.0.0.1:0\"\n\
             tls = {{ cert = \"{}\", key = \"{}\" }}\n",
            cert.display(),
            key.display()
        )
    };
    let e = config_error(&port(&missing, &missing));
    assert!(
        e.starts_with("tls.toml:3: http_port[0].tls.cert: cannot read"),
        "{e}"
    );
    let e = config_error(&port(&cert, &ca));
    assert!(
        e.starts_with("tls.toml:3: http_port[0].tls.key: ") && e.contains("no PEM private key"),
        "{e}"
    );

    let group = |extra: &str| {
        format!("[upstream.app]\nservers = [{{ address = \"127.0.0.1:1\" }}]\n{extra}\n")
    };
    let e = config_error(&group(&format!(
        "tls = true\ntls_ca_file = \"{}\"",
        missing.display()
    )));
    assert!(
        e.starts_with("tls.toml:4: upstream.app.tls_ca_file: cannot read"),
        "{e}"
    );
    let e = config_error(&group(&format!("tls_ca_file = \"{}\"", ca.display())));
    assert!(
        e.starts_with("tls.toml:3: upstream.app.tls_ca_file: has no effect without `tls = true`"),
        "{e}"
    );
    let e = config_error(&group(
        "tls = true\ntls_verify = false\ntls_server_name = \"a b\"",
    ));
    assert!(
        e.starts_with("tls.toml:5: upstream.app.tls_server_name: "),
        "{e}"
    );
}
