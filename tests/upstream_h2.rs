//! HTTP/2 to upstream servers and TLS to parents, over loopback with rcgen certificates:
//! concurrent requests multiplexed over one connection to a group's server (reverse mode) and
//! to a `tls = true` parent (forward mode), the fallback to HTTP/1.1 when the server does not
//! offer h2 (a cuttle parent among them), an idle connection let go, a parent whose certificate
//! is for another name or from another CA (502 with a page that says so), CONNECT through a TLS
//! parent, and the config errors for the new keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::certs::{server_config, Ca};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Barrier;

/// Requests sent at once in the multiplexing tests.
const TOGETHER: usize = 8;

/// A request as the TLS server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: http::Method,
    body_len: usize,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
}

/// A TLS server (an origin, or a stand-in parent proxy) that speaks what ALPN chose among
/// `alpn`, counts the TCP connections it accepts and records requests. Each response waits
/// until `TOGETHER` requests are in progress at once (bounded by `WAIT`): requests that were
/// not really concurrent get a 504 instead of a 200.
struct TlsServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Connections the client has closed (or that failed).
    closed: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TlsServer {
    async fn spawn(cert: &(String, String), alpn: &[&[u8]], together: usize) -> Self {
        let mut config = server_config(&cert.0, &cert.1);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let barrier = Arc::new(Barrier::new(together));
        let (count, record, ended) = (
            Arc::clone(&connections),
            Arc::clone(&seen),
            Arc::clone(&closed),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (acceptor, record, barrier) =
                    (acceptor.clone(), Arc::clone(&record), Arc::clone(&barrier));
                let ended = Arc::clone(&ended);
                tokio::spawn(async move {
                    let _closed = Closed(ended);
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (record, barrier) = (Arc::clone(&record), Arc::clone(&barrier));
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().len());
                            record.lock().unwrap().push(Seen {
                                method: parts.method,
                                body_len: body.unwrap_or(usize::MAX),
                                version: parts.version,
                                uri: parts.uri.clone(),
                                headers: parts.headers,
                            });
                            let met = tokio::time::timeout(WAIT, barrier.wait()).await.is_ok();
                            let mut response =
                                Response::new(Full::new(Bytes::from(format!("{}", parts.uri))));
                            if !met {
                                *response.status_mut() = http::StatusCode::GATEWAY_TIMEOUT;
                            }
                            response
                                .headers_mut()
                                .insert("cache-control", "no-store".parse().unwrap());
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let io = TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    }
                });
            }
        });
        Self {
            addr,
            connections,
            closed,
            seen,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Counts a connection as closed when its task ends.
struct Closed(Arc<AtomicUsize>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A reverse-mode config on a plain port: site `www.example.test` on group `app` = `group`.
fn reverse_config(dir: &Path, group: &str) -> String {
    format!(
        "visible_hostname = \"edge-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\n{group}\n\
         [cache.disk]\npath = \"{}\"\n[log]\naccess_log = \"none\"\n",
        dir.join("cache").display()
    )
}

/// A group of one TLS server at `addr`, trusting `ca`, with `protocols`.
fn tls_group(ca: &Path, addr: SocketAddr, protocols: &str) -> String {
    format!(
        "tls = true\ntls_ca_file = \"{}\"\nprotocols = {protocols}\n\
         servers = [{{ address = \"{addr}\" }}]\n",
        ca.display()
    )
}

/// `paths` requested at once from the reverse proxy as `www.example.test`: (status, body).
async fn get_together(proxy: &TestProxy, paths: &[String]) -> Vec<(u16, String)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap();
    let requests = paths.iter().map(|path| {
        client
            .get(format!("{}{path}", proxy.url()))
            .header("host", "www.example.test")
            .header("te", "trailers")
    });
    all_at_once(requests).await
}

/// Sends `requests` at once: (status, body) of each, in order.
async fn all_at_once(
    requests: impl Iterator<Item = reqwest::RequestBuilder>,
) -> Vec<(u16, String)> {
    let tasks: Vec<_> = requests
        .map(|request| {
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

fn paths(prefix: &str) -> Vec<String> {
    (0..TOGETHER).map(|i| format!("/{prefix}{i}")).collect()
}

// === reverse mode: a TLS group ===

#[tokio::test]
async fn a_groups_concurrent_requests_share_one_http2_connection() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("origin ca");
    let (ca, _, _) = authority.files(dir.path(), &[]);
    let origin = TlsServer::spawn(
        &authority.leaf(&["127.0.0.1"]),
        &[b"h2", b"http/1.1"],
        TOGETHER,
    )
    .await;
    let group = tls_group(&ca, origin.addr, "[\"h2\", \"http/1.1\"]");
    let proxy = TestProxy::start_text(&reverse_config(dir.path(), &group), None).await;

    // A cold start: all of them at once, before any connection exists.
    for (status, _) in get_together(&proxy, &paths("a")).await {
        assert_eq!(status, 200, "all {TOGETHER} were in progress at once");
    }
    // And again on the same connection, one of them a POST with a body.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let upload = client
        .post(format!("{}/upload", proxy.url()))
        .header("host", "www.example.test")
        .body(vec![7u8; 200 * 1024]);
    let gets = paths("b").into_iter().skip(1).map(|path| {
        client
            .get(format!("{}{path}", proxy.url()))
            .header("host", "www.example.test")
    });
    let replies = all_at_once(std::iter::once(upload).chain(gets)).await;
    assert!(
        replies.iter().all(|(status, _)| *status == 200),
        "{replies:?}"
    );
    assert_eq!(origin.connections(), 1, "one TCP connection for all");

    let seen = origin.seen();
    assert_eq!(seen.len(), 2 * TOGETHER);
    let posts: Vec<_> = seen
        .iter()
        .filter(|s| s.method == http::Method::POST)
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].body_len,
        200 * 1024,
        "the body arrived whole over HTTP/2"
    );
    for request in &seen {
        assert_eq!(request.version, Version::HTTP_2);
        // RFC 9113 §8.3.1: the Host the client asked for is the :authority, not sent twice.
        assert_eq!(request.uri.authority().unwrap(), "www.example.test");
        assert_eq!(request.uri.scheme_str(), Some("https"));
        assert!(
            request.headers.get("host").is_none(),
            "{:?}",
            request.headers
        );
        // RFC 9113 §8.2.2: no connection-specific fields; TE only as "trailers".
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            assert!(request.headers.get(name).is_none(), "{name}");
        }
        assert!(request.headers.get("te").is_none_or(|te| te == "trailers"));
        assert!(request.headers.contains_key("via"));
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_server_that_offers_only_http1_gets_http1_on_the_negotiated_connection() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("origin ca");
    let (ca, _, _) = authority.files(dir.path(), &[]);
    let origin = TlsServer::spawn(&authority.leaf(&["127.0.0.1"]), &[b"http/1.1"], 1).await;
    let group = tls_group(&ca, origin.addr, "[\"h2\", \"http/1.1\"]");
    let proxy = TestProxy::start_text(&reverse_config(dir.path(), &group), None).await;
    for i in 0..3 {
        let replies = get_together(&proxy, &[format!("/one-by-one{i}")]).await;
        assert_eq!(replies[0].0, 200);
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.version == Version::HTTP_11));
    assert_eq!(seen[0].headers["host"], "www.example.test");
    // The connection ALPN was negotiated on serves HTTP/1.1 and is kept alive: no second
    // handshake.
    assert_eq!(origin.connections(), 1);
    proxy.shutdown().await;

    // `protocols = ["h2"]` allows nothing else: the handshake fails (502, nothing sent).
    let group = tls_group(&ca, origin.addr, "[\"h2\"]");
    let proxy = TestProxy::start_text(&reverse_config(dir.path(), &group), None).await;
    let replies = get_together(&proxy, &["/h2-only".to_owned()]).await;
    assert_eq!(replies[0].0, 502, "{replies:?}");
    assert_eq!(origin.seen().len(), 3);
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_default_stays_http1_even_when_the_server_offers_h2() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("origin ca");
    let (ca, _, _) = authority.files(dir.path(), &[]);
    let origin = TlsServer::spawn(&authority.leaf(&["127.0.0.1"]), &[b"h2", b"http/1.1"], 1).await;
    let group = format!(
        "tls = true\ntls_ca_file = \"{}\"\nservers = [{{ address = \"{}\" }}]\n",
        ca.display(),
        origin.addr
    );
    let proxy = TestProxy::start_text(&reverse_config(dir.path(), &group), None).await;
    let replies = get_together(&proxy, &["/default".to_owned()]).await;
    assert_eq!(replies[0].0, 200);
    assert_eq!(origin.seen()[0].version, Version::HTTP_11);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_let_go_and_the_next_request_opens_another() {
    use cuttle::upstream::tls::{ClientTls, Protocols, Roots, Settings};
    use cuttle::upstream::{Progress, RequestBody, Upstream};
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("origin ca");
    let (ca, _, _) = authority.files(dir.path(), &[]);
    let origin = TlsServer::spawn(&authority.leaf(&["127.0.0.1"]), &[b"h2"], 1).await;
    let tls = ClientTls::new(&Settings {
        roots: Roots::File(ca),
        server_name: None,
        verify: true,
        protocols: Protocols {
            h2: true,
            http1: false,
        },
    })
    .unwrap();
    let idle = std::time::Duration::from_millis(300);
    let upstream = Upstream::with_tls(
        &cuttle::upstream::Config {
            connect_timeout: WAIT,
            read_timeout: WAIT,
            max_response_header_size: 64 * 1024,
            pool_idle_timeout: idle,
        },
        Arc::new(tls),
    );
    let get = |path: &str| {
        let progress = Progress::new();
        let mut request = Request::new(RequestBody::empty(Arc::clone(&progress)));
        *request.uri_mut() = format!("https://{}{path}", origin.addr).parse().unwrap();
        request
            .headers_mut()
            .insert("host", "origin.test".parse().unwrap());
        upstream.send(request, progress)
    };
    for path in ["/a", "/b"] {
        let response = get(path).await.unwrap();
        assert_eq!(response.version(), Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body,
            format!("https://origin.test{path}"),
            "Host became :authority"
        );
    }
    assert_eq!(
        (origin.connections(), origin.closed.load(Ordering::SeqCst)),
        (1, 0)
    );
    // Unused for `pool_idle_timeout`: cuttle closes it (bounded wait, real time).
    let started = tokio::time::Instant::now();
    while origin.closed.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < WAIT,
            "the idle connection was not closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= idle / 2, "{:?}", started.elapsed());
    let response = get("/c").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(origin.connections(), 2);
    assert_eq!(origin.seen()[2].uri.authority().unwrap(), "origin.test");
}

// === forward mode: a TLS parent ===

/// A forward-proxy config whose only parent is `parent` over TLS with `options`, never direct.
fn child_config(dir: &Path, parent: SocketAddr, options: &str, extra: &str) -> String {
    config(
        dir,
        &format!(
            "[[peer]]\nhost = \"{}\"\nport = {}\ntype = \"parent\"\ntls = true\n{options}\n\
             [[never_direct]]\nallow = [\"all\"]\n{extra}",
            parent.ip(),
            parent.port()
        ),
    )
}

#[tokio::test]
async fn a_tls_parent_gets_concurrent_requests_for_many_origins_over_one_http2_connection() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("parent ca");
    let (ca, _, _) = authority.files(dir.path(), &[]);
    // A stand-in parent that answers itself.
    let parent = TlsServer::spawn(
        &authority.leaf(&["127.0.0.1"]),
        &[b"h2", b"http/1.1"],
        TOGETHER,
    )
    .await;
    let options = format!(
        "tls_ca_file = \"{}\"\nprotocols = [\"h2\", \"http/1.1\"]\n",
        ca.display()
    );
    let proxy =
        TestProxy::start_text(&child_config(dir.path(), parent.addr, &options, ""), None).await;
    let client = http_client(&proxy);
    // Each request for another origin (a port nothing listens on: only the parent is asked).
    let urls: Vec<String> = (0..TOGETHER)
        .map(|i| format!("http://127.0.0.1:{}/object", 1 + i))
        .collect();
    let replies = all_at_once(urls.iter().map(|url| client.get(url))).await;
    for ((status, body), url) in replies.iter().zip(&urls) {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body, url, "the parent got the absolute URI");
    }
    assert_eq!(parent.connections(), 1, "one connection for every origin");
    for request in parent.seen() {
        assert_eq!(request.version, Version::HTTP_2);
        assert_eq!(request.uri.scheme_str(), Some("http"));
        assert!(request.headers.get("host").is_none());
        assert!(request.headers.contains_key("via"));
    }
    proxy.shutdown().await;
}

/// A cuttle forward proxy named `parent-test` with a TLS port serving a certificate for `names`
/// from `authority`. Its forward port offers only `http/1.1` in ALPN (CONNECT is HTTP/1.1).
async fn tls_parent_cuttle(dir: &Path, authority: &Ca, names: &[&str], extra: &str) -> TestProxy {
    let (cert, key) = authority.leaf(names);
    std::fs::write(dir.join("parent-cert.pem"), cert).unwrap();
    std::fs::write(dir.join("parent-key.pem"), key).unwrap();
    let text = config(&dir.join("parent"), extra)
        .replacen("cuttle-test", "parent-test", 1)
        .replacen(
            "listen = \"127.0.0.1:0\"\n",
            &format!(
                "listen = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
                dir.join("parent-cert.pem").display(),
                dir.join("parent-key.pem").display()
            ),
            1,
        );
    TestProxy::start_text(&text, None).await
}

#[tokio::test]
async fn a_cuttle_parent_over_tls_falls_back_to_http1_and_carries_connect() {
    let origin = Origin::builder()
        .route("/", |_| {
            let mut r = reply(200, "from the origin");
            r.headers_mut()
                .insert("cache-control", "no-store".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let echo = echo_server().await;
    let ports = format!("[forward]\nconnect_ports = [{}]\n", echo.port());
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("parent ca");
    let (ca, _, _) = authority.files(dir.path(), &[]);
    let parent = tls_parent_cuttle(dir.path(), &authority, &["parent.test"], &ports).await;
    // HTTP/1.1 in TLS by default, and by ALPN when h2 is offered but the parent declines it.
    for protocols in ["", "protocols = [\"h2\", \"http/1.1\"]\n"] {
        let options = format!(
            "tls_ca_file = \"{}\"\ntls_server_name = \"parent.test\"\n{protocols}",
            ca.display()
        );
        let child_dir = tempfile::tempdir().unwrap();
        let child = TestProxy::start_text(
            &child_config(child_dir.path(), parent.addr, &options, &ports),
            None,
        )
        .await;
        let before = origin.hits();
        let r = http_client(&child)
            .get(origin.url("/"))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!((status.as_u16(), body.as_str()), (200, "from the origin"));
        assert_eq!(origin.hits(), before + 1);
        let via = origin.requests()[before].headers["via"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            via.contains("1.1 cuttle-test") && via.contains("1.1 parent-test"),
            "{via}"
        );

        // CONNECT goes to the parent over TLS as well (HTTP/1.1 inside TLS).
        let mut stream = tokio::net::TcpStream::connect(child.addr).await.unwrap();
        stream
            .write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stream.write_all(b"inside tls").await.unwrap();
        let mut back = vec![0u8; 10];
        tokio::time::timeout(WAIT, stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"inside tls");
        child.shutdown().await;
    }
    parent.shutdown().await;
}

#[tokio::test]
async fn a_parent_certificate_for_another_name_or_from_another_ca_is_a_502_that_says_so() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "never through this parent"))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let authority = Ca::new("parent ca");
    let (ca, _, _) = authority.files(dir.path(), &[]);
    let parent = tls_parent_cuttle(dir.path(), &authority, &["parent.test"], "").await;
    let stranger = dir.path().join("stranger.pem");
    std::fs::write(&stranger, Ca::new("another ca").pem).unwrap();
    let cases = [
        // Trusted CA, but the certificate names parent.test, not the address asked for.
        (
            format!("tls_ca_file = \"{}\"\n", ca.display()),
            "certificate not valid for name",
        ),
        // The right name, from a CA the child does not trust.
        (
            format!(
                "tls_ca_file = \"{}\"\ntls_server_name = \"parent.test\"\n",
                stranger.display()
            ),
            "UnknownIssuer",
        ),
    ];
    for (options, why) in cases {
        let child_dir = tempfile::tempdir().unwrap();
        let child = TestProxy::start_text(
            &child_config(child_dir.path(), parent.addr, &options, ""),
            None,
        )
        .await;
        let r = http_client(&child)
            .get(origin.url("/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502);
        let status = r.headers()["proxy-status"].to_str().unwrap().to_owned();
        assert!(status.contains("error=tls_certificate_error"), "{status}");
        let page = r.text().await.unwrap();
        let handshake = format!("TLS handshake with {} failed", parent.addr);
        assert!(page.contains(&handshake), "{page}");
        assert!(page.contains(why), "{page}");
        child.shutdown().await;
    }
    assert_eq!(origin.hits(), 0);
    parent.shutdown().await;
}

// === config ===

fn config_error(text: &str) -> String {
    cuttle::config::load_str("h2.toml", text)
        .unwrap_err()
        .to_string()
}

#[test]
fn the_new_keys_are_checked_with_file_line_key_and_an_example() {
    let group = |extra: &str| {
        format!("[upstream.app]\nservers = [{{ address = \"127.0.0.1:1\" }}]\n{extra}\n")
    };
    let e = config_error(&group(
        "tls = true\ntls_verify = false\nprotocols = [\"h3\"]",
    ));
    assert!(
        e.starts_with("h2.toml:5: upstream.app.protocols: `h3` is not h2 or http/1.1")
            && e.contains("protocols = [\"h2\", \"http/1.1\"]"),
        "{e}"
    );
    let e = config_error(&group("protocols = [\"h2\"]"));
    assert!(
        e.starts_with("h2.toml:3: upstream.app.protocols: has no effect without `tls = true`"),
        "{e}"
    );
    let e = config_error(&group("tls = true\ntls_verify = false\nprotocols = []"));
    assert!(
        e.starts_with("h2.toml:5: upstream.app.protocols: is empty"),
        "{e}"
    );

    let peer = |extra: &str| {
        format!("[[peer]]\nhost = \"127.0.0.1\"\nport = 3128\ntype = \"parent\"\n{extra}\n")
    };
    let e = config_error(&peer("tls_ca_file = \"/nonexistent/ca.pem\""));
    assert!(
        e.starts_with("h2.toml:5: peer[0].tls_ca_file: has no effect without `tls = true`"),
        "{e}"
    );
    let e = config_error(&peer("tls = true\ntls_ca_file = \"/nonexistent/ca.pem\""));
    assert!(
        e.starts_with("h2.toml:6: peer[0].tls_ca_file: cannot read"),
        "{e}"
    );
    let e = config_error(&peer(
        "tls = true\ntls_verify = false\nprotocols = [\"http/1.1\", \"http/1.1\"]",
    ));
    assert!(
        e.starts_with("h2.toml:7: peer[0].protocols: `http/1.1` is listed twice"),
        "{e}"
    );
    let e = config_error(&peer(
        "tls = true\ntls_verify = false\ntls_server_name = \"a b\"",
    ));
    assert!(e.starts_with("h2.toml:7: peer[0].tls_server_name: "), "{e}");
}

#[test]
fn the_commented_tls_examples_in_conf_load_once_uncommented() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = Ca::new("example ca").files(dir.path(), &[]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, example_ca) in [
        ("conf/child.toml", "/etc/cuttle/proxy-ca.pem"),
        ("conf/reverse.toml", "/etc/cuttle/internal-ca.pem"),
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let mut uncommented = 0;
        let lines: Vec<String> = text
            .lines()
            .map(|line| match line.strip_prefix("#   ") {
                Some(rest) if rest.starts_with("tls") || rest.starts_with("protocols") => {
                    uncommented += 1;
                    rest.replace(example_ca, ca.to_str().unwrap())
                }
                _ => line.to_owned(),
            })
            .collect();
        assert!(uncommented >= 4, "{file}: the example is still there");
        // Relative paths in the examples (fixtures/) are relative to the repository root.
        let text = lines
            .join("\n")
            .replace("\"fixtures/", &format!("\"{}/fixtures/", root.display()));
        let config = cuttle::config::load_str(file, &text).unwrap_or_else(|e| panic!("{e}"));
        let summary = cuttle::config::summary(file, &config, &[]).join("\n");
        assert!(summary.contains("(h2, http/1.1)"), "{file}: {summary}");
    }
}
