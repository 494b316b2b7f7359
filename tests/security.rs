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

/// GETs `url` through `proxy` as a fresh client; returns the status, all `set-cookie` values
/// and the body.
async fn get_cookies(proxy: &TestProxy, url: &str) -> (u16, Vec<String>, String) {
    let response = http_client(proxy).get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (status, cookies, response.text().await.unwrap())
}

#[tokio::test]
async fn a_stored_set_cookie_is_never_served_to_another_client() {
    let origin = Origin::builder()
        .route("/welcome", |_| {
            reply_with(
                200,
                "hello",
                &[
                    ("cache-control", "public, max-age=60"),
                    ("set-cookie", "session=alice; HttpOnly"),
                ],
            )
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let url = origin.url("/welcome");
    // The client whose request went to the origin gets its cookie.
    let (status, cookies, _) = get_cookies(&proxy, &url).await;
    assert_eq!(
        (status, cookies),
        (200, vec!["session=alice; HttpOnly".to_owned()])
    );
    // Another client is served from the cache, without it.
    let (status, cookies, body) = get_cookies(&proxy, &url).await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert!(cookies.is_empty(), "another client got {cookies:?}");
    assert_eq!(origin.hits(), 1, "the second request was a hit");
}

#[tokio::test]
async fn a_set_cookie_on_a_304_is_not_merged_into_the_stored_response() {
    let origin = Origin::builder()
        .route("/page", |req| {
            if req.headers.contains_key("if-none-match") {
                let mut r = reply(304, "");
                r.headers_mut()
                    .insert("cache-control", "public, max-age=60".parse().unwrap());
                r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                r.headers_mut()
                    .insert("set-cookie", "session=bob".parse().unwrap());
                return r;
            }
            reply_with(
                200,
                "page",
                &[("cache-control", "public, max-age=0"), ("etag", "\"v1\"")],
            )
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let url = origin.url("/page");
    let (status, cookies, _) = get_cookies(&proxy, &url).await;
    assert_eq!((status, cookies.len()), (200, 0));
    // Stale: revalidated; the 304 sets a cookie for this client only.
    let (status, cookies, body) = get_cookies(&proxy, &url).await;
    assert_eq!((status, body.as_str()), (200, "page"));
    assert_eq!(cookies, vec!["session=bob".to_owned()]);
    // Now fresh for 60 s: a hit for the next client, without bob's cookie.
    let (status, cookies, body) = get_cookies(&proxy, &url).await;
    assert_eq!((status, body.as_str()), (200, "page"));
    assert!(cookies.is_empty(), "another client got {cookies:?}");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn store_set_cookie_true_keeps_the_cookie_in_hits() {
    let origin = Origin::builder()
        .route("/shared", |_| {
            reply_with(
                200,
                "x",
                &[
                    ("cache-control", "public, max-age=60"),
                    ("set-cookie", "lang=en"),
                ],
            )
        })
        .spawn()
        .await;
    let proxy = TestProxy::start("[cache]\nstore_set_cookie = true\n").await;
    let url = origin.url("/shared");
    get_cookies(&proxy, &url).await;
    let (_, cookies, _) = get_cookies(&proxy, &url).await;
    assert_eq!(cookies, vec!["lang=en".to_owned()]);
    assert_eq!(origin.hits(), 1);
}

/// Sends `request` as raw bytes to `proxy` and reads one response.
async fn exchange(proxy: &TestProxy, request: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_response(&mut stream).await
}

/// An origin whose `/q` answers `public, max-age=60` with the request body echoed.
async fn echoing_origin() -> Origin {
    Origin::builder()
        .route("/q", |req| {
            let mut r = reply(
                200,
                &format!("answer to [{}]", String::from_utf8_lossy(&req.body)),
            );
            r.headers_mut()
                .insert("cache-control", "public, max-age=60".parse().unwrap());
            r
        })
        .spawn()
        .await
}

#[tokio::test]
async fn a_get_with_a_body_is_neither_stored_nor_served_from_the_cache() {
    let origin = echoing_origin().await;
    let proxy = TestProxy::start("").await;
    let port = origin.addr.port();
    let with_body = format!(
        "GET http://127.0.0.1:{port}/q HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil"
    );
    let plain = format!(
        "GET http://127.0.0.1:{port}/q HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let (head, body) = exchange(&proxy, with_body.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"answer to [evil]");
    // A plain GET is not answered with what the body asked for.
    let (_, body) = exchange(&proxy, plain.as_bytes()).await;
    assert_eq!(body, b"answer to []");
    assert_eq!(origin.hits(), 2);
    // And a GET with a body is not answered from what plain GETs stored.
    let (_, body) = exchange(&proxy, plain.as_bytes()).await;
    assert_eq!(body, b"answer to []");
    assert_eq!(origin.hits(), 2, "the plain GET is a hit");
    let (_, body) = exchange(&proxy, with_body.as_bytes()).await;
    assert_eq!(body, b"answer to [evil]");
    assert_eq!(origin.hits(), 3);
}

#[tokio::test]
async fn a_host_with_userinfo_is_rejected_in_reverse_mode() {
    let origin = echoing_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"site.example\"]\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"{}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n",
        origin.addr,
        dir.path().join("cache").display()
    );
    let proxy = TestProxy::start_text(&text, Some(dir)).await;
    for request in [
        &b"GET /q HTTP/1.1\r\nHost: evil.example@site.example\r\nConnection: close\r\n\r\n"[..],
        &b"GET http://evil.example@site.example/q HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n"[..],
    ] {
        let (head, _) = exchange(&proxy, request).await;
        assert!(
            head.starts_with("HTTP/1.1 400"),
            "{}: {head}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(origin.hits(), 0);
    // The real site still works.
    let (head, _) = exchange(
        &proxy,
        b"GET /q HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn raw_utf8_in_a_path_does_not_share_a_key_with_a_percent_encoded_path() {
    let cacheable = |body: &'static str| {
        move |_: &Recorded| reply_with(200, body, &[("cache-control", "public, max-age=60")])
    };
    let origin = Origin::builder()
        .route("/%41\u{e9}", cacheable("e-acute"))
        .route("/A\u{e9}", cacheable("e-acute"))
        .route("/A\u{c3}\u{a9}", cacheable("A-tilde copyright"))
        .spawn()
        .await;
    let proxy = TestProxy::start("").await;
    let port = origin.addr.port();
    // `/%41` + raw "é" (C3 A9) was keyed byte by byte as Latin-1: "/AÃ©", the same key as the
    // raw UTF-8 of "Ã©" (C3 83 C2 A9), a different resource.
    let first: Vec<u8> = [
        format!("GET http://127.0.0.1:{port}/%41").as_bytes(),
        b"\xc3\xa9",
        format!(" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes(),
    ]
    .concat();
    let second: Vec<u8> = [
        format!("GET http://127.0.0.1:{port}/A").as_bytes(),
        b"\xc3\x83\xc2\xa9",
        format!(" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes(),
    ]
    .concat();
    let (head, body) = exchange(&proxy, &first).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"e-acute");
    let (head, body) = exchange(&proxy, &second).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        body, b"A-tilde copyright",
        "answered from the other path's entry"
    );
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn dot_segments_cannot_escape_a_sites_path_prefix() {
    let origin = Origin::builder()
        .route("/admin", |_| reply(200, "admin secrets"))
        .route("/public/b", |_| reply(200, "public b"))
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"site.example\"]\npath_prefix = \"/public/\"\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"{}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n",
        origin.addr,
        dir.path().join("cache").display()
    );
    let proxy = TestProxy::start_text(&text, Some(dir)).await;
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/public/./../admin",
        "/public/x/../../admin",
        "/public/..%2Fadmin",
        "/public/..%2fadmin",
        "/public/..%5Cadmin",
        "/public/..;/admin",
        "/public/%2e%2e;x=1/admin",
    ] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n");
        let (head, body) = exchange(&proxy, request.as_bytes()).await;
        assert!(
            head.starts_with("HTTP/1.1 400") || head.starts_with("HTTP/1.1 421"),
            "{path}: {head}"
        );
        assert!(
            !String::from_utf8_lossy(&body).contains("secrets"),
            "{path}"
        );
    }
    assert!(
        origin.requests().is_empty(),
        "the origin saw {:?}",
        origin
            .requests()
            .iter()
            .map(|r| r.uri.to_string())
            .collect::<Vec<_>>()
    );
    // Dot segments that stay inside the prefix are resolved, and the origin gets the result.
    let (head, body) = exchange(
        &proxy,
        b"GET /public/a/%2E/../b HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"public b");
    assert_eq!(origin.requests()[0].uri.to_string(), "/public/b");
}

#[tokio::test]
async fn missing_duplicate_or_invalid_host_is_400() {
    let origin = echoing_origin().await;
    let proxy = TestProxy::start("").await;
    let port = origin.addr.port();
    let target = format!("http://127.0.0.1:{port}/q");
    for (what, request) in [
        (
            "missing in HTTP/1.1",
            format!("GET {target} HTTP/1.1\r\nConnection: close\r\n\r\n"),
        ),
        (
            "duplicate",
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: other.example\r\nConnection: close\r\n\r\n"),
        ),
        (
            "invalid",
            format!("GET {target} HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n"),
        ),
        (
            "userinfo",
            format!("GET {target} HTTP/1.1\r\nHost: u@127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
        ),
    ] {
        let (head, _) = exchange(&proxy, request.as_bytes()).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{what}: {head}");
    }
    assert_eq!(origin.hits(), 0);
    // HTTP/1.0 may omit Host.
    let (head, _) = exchange(&proxy, format!("GET {target} HTTP/1.0\r\n\r\n").as_bytes()).await;
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
}

#[tokio::test]
async fn a_request_transfer_coding_other_than_chunked_is_501() {
    let origin = echoing_origin().await;
    let proxy = TestProxy::start("").await;
    let port = origin.addr.port();
    let request = format!(
        "POST http://127.0.0.1:{port}/q HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
    );
    let (head, _) = exchange(&proxy, request.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 501"), "{head}");
    assert_eq!(origin.hits(), 0);
}

/// An origin that answers every request with `response` (raw bytes) and closes.
async fn raw_origin(response: &'static [u8]) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = stream.write_all(response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_response_transfer_coding_other_than_chunked_is_502_and_not_cached() {
    let addr = raw_origin(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    )
    .await;
    let proxy = TestProxy::start("").await;
    let request =
        format!("GET http://{addr}/te HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    for _ in 0..2 {
        let (head, _) = exchange(&proxy, request.as_bytes()).await;
        assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    }
}

#[tokio::test]
async fn status_codes_outside_100_to_599_and_unsolicited_101_are_502() {
    for response in [
        &b"HTTP/1.1 600 Weird\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok"[..],
        &b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok"[..],
        &b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"[..],
    ] {
        let addr = raw_origin(response).await;
        let proxy = TestProxy::start("").await;
        let request =
            format!("GET http://{addr}/s HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let (head, _) = exchange(&proxy, request.as_bytes()).await;
        assert!(
            head.starts_with("HTTP/1.1 502"),
            "{}: {head}",
            String::from_utf8_lossy(response)
        );
    }
}

#[tokio::test]
async fn cache_status_says_stored_only_for_responses_that_are_stored() {
    // Without a Content-Length the size is unknown when the header goes out: an object that
    // turns out too large for every tier is not stored, so `stored` must not be claimed.
    let origin = Origin::builder()
        .route("/big", |_| {
            let mut r = reply_stream(64 * 1024, 4096);
            r.headers_mut()
                .insert("cache-control", "max-age=60".parse().unwrap());
            r
        })
        .route("/small", |_| {
            reply_with(200, "small", &[("cache-control", "max-age=60")])
        })
        .spawn()
        .await;
    // `extra` lands in the [cache.disk] table first: both tiers take at most 16 KiB objects.
    let proxy = TestProxy::start(
        "max_object_size = \"16 KiB\"\n[cache.memory]\nmax_object_size = \"16 KiB\"\n",
    )
    .await;
    let client = http_client(&proxy);
    for round in 0..2 {
        let response = client.get(origin.url("/big")).send().await.unwrap();
        let status = response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(response.bytes().await.unwrap().len(), 64 * 1024);
        assert!(!status.contains("stored"), "round {round}: {status}");
        assert!(!status.contains("hit"), "round {round}: {status}");
    }
    assert_eq!(origin.hits(), 2, "too large: never stored");
    // A response that is stored still says so.
    let response = client.get(origin.url("/small")).send().await.unwrap();
    let status = response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(status.contains("stored"), "{status}");
}

#[tokio::test]
async fn reverse_mode_answers_trace_and_options_with_max_forwards_0() {
    let origin = echoing_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"site.example\"]\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"{}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n",
        origin.addr,
        dir.path().join("cache").display()
    );
    let proxy = TestProxy::start_text(&text, Some(dir)).await;
    // RFC 9110 §7.6.2: with Max-Forwards: 0 the recipient "MUST NOT forward the request".
    for method in ["TRACE", "OPTIONS"] {
        let request = format!(
            "{method} /q HTTP/1.1\r\nHost: site.example\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n"
        );
        let (head, _) = exchange(&proxy, request.as_bytes()).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{method}: {head}");
    }
    assert_eq!(origin.hits(), 0, "Max-Forwards: 0 was forwarded");
    // Max-Forwards: 1 goes on, decremented.
    let (head, _) = exchange(
        &proxy,
        b"OPTIONS /q HTTP/1.1\r\nHost: site.example\r\nMax-Forwards: 1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!head.is_empty());
    assert_eq!(origin.requests()[0].headers["max-forwards"], "0");
}
