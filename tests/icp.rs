//! ICP (RFC 2186) between cuttle nodes on loopback: what the `icp_port` server answers (hit,
//! miss, miss-nofetch, denied, error, and nothing at all to garbage), and how a child uses the
//! replies: a hit picks that peer (`SIBLING_HIT`, `PARENT_HIT`), a sibling's miss keeps the
//! request away from it. Interoperability with a real Squid is in `tests/squid_interop.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use cuttle::icp::client::{ping, Target};
use cuttle::icp::wire::{self, Opcode};
use support::*;

/// cuttle with an ICP server on a free port, `top` top-level keys and `tables`.
async fn icp_node(top: &str, tables: &str) -> (TestProxy, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "icp_port = \"127.0.0.1:0\"\n{top}{}",
        config(dir.path(), tables)
    );
    let proxy = TestProxy::start_text(&text, Some(dir)).await;
    let icp = proxy.icp.expect("icp_port is set");
    (proxy, icp)
}

/// The one reply `addr` sends to a query about `url`.
async fn ask(addr: SocketAddr, url: &str) -> Option<Opcode> {
    let outcome = ping(&[Target { index: 0, addr }], url, WAIT).await;
    outcome.replies.first().map(|&(_, opcode)| opcode)
}

fn cacheable_origin() -> OriginBuilder {
    Origin::builder()
        .route("/object", |_| {
            let mut r = reply(200, "object");
            r.headers_mut()
                .insert("cache-control", "max-age=300".parse().unwrap());
            r
        })
        .route("/other", |_| {
            let mut r = reply(200, "other");
            r.headers_mut()
                .insert("cache-control", "max-age=300".parse().unwrap());
            r
        })
        .route("/stale", |_| {
            let mut r = reply(200, "stale");
            r.headers_mut()
                .insert("cache-control", "max-age=0".parse().unwrap());
            r
        })
}

/// The fields of the access log's lines, once there are `n`.
async fn log_fields(path: &std::path::Path, n: usize) -> Vec<Vec<String>> {
    for _ in 0..200 {
        let lines: Vec<Vec<String>> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} has fewer than {n} lines", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_icp_server_answers_from_the_cache_and_the_rules() {
    let origin = cacheable_origin().spawn().await;
    let (node, icp) = icp_node("", "").await;
    for path in ["/object", "/stale"] {
        let r = http_client(&node)
            .get(origin.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    assert_eq!(ask(icp, &origin.url("/object")).await, Some(Opcode::Hit));
    assert_eq!(
        ask(icp, &origin.url("/other")).await,
        Some(Opcode::Miss),
        "not stored"
    );
    assert_eq!(
        ask(icp, &origin.url("/stale")).await,
        Some(Opcode::Miss),
        "stored but stale: a hit only for what may be served without revalidation"
    );
    assert_eq!(ask(icp, "ftp://example.com/file").await, Some(Opcode::Err));
    assert_eq!(origin.hits(), 2, "queries never fetch");

    // Garbage never gets an answer and never stops the server.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for junk in [
        &b""[..],
        b"\x01\x02\x00\x05",
        &[0xff; 64],
        &[1, 2, 0xff, 0xff, 0, 0, 0, 1],
        &[
            1, 3, 0, 30, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'x', 0, 0, 0,
            0, 0,
        ],
    ] {
        socket.send_to(junk, icp).await.unwrap();
    }
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf))
            .await
            .is_err(),
        "no reply to garbage"
    );
    let q = wire::encode(&wire::query(&origin.url("/object"), 99)).unwrap();
    socket.send_to(&q, icp).await.unwrap();
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    let (len, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = wire::decode(&buf[..len]).unwrap();
    assert_eq!((reply.opcode, reply.request_number), (Opcode::Hit, 99));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icp_access_denies_and_a_node_that_cannot_fetch_says_miss_nofetch() {
    let (_denying, icp) = icp_node(
        "",
        "[[icp_access]]\ndeny = [\"localhost\"]\n[[icp_access]]\nallow = [\"all\"]\n",
    )
    .await;
    assert_eq!(
        ask(icp, "http://example.test/x").await,
        Some(Opcode::Denied)
    );

    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (isolated, icp) = icp_node(
        "",
        &format!(
            "[[peer]]\nhost = \"127.0.0.1\"\nport = {gone}\ntype = \"parent\"\n\
             [[never_direct]]\nallow = [\"all\"]\n"
        ),
    )
    .await;
    assert_eq!(
        ask(icp, "http://example.test/x").await,
        Some(Opcode::Miss),
        "the parent is not known to be down yet"
    );
    // A request finds the parent refusing connections: now nothing could be fetched.
    let r = http_client(&isolated)
        .get("http://example.test/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        ask(icp, "http://example.test/x").await,
        Some(Opcode::MissNofetch)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_uses_icp_hits_and_keeps_icp_misses_away_from_siblings() {
    let origin = cacheable_origin().spawn().await;
    // A sibling and a parent, each with /object cached; the parent also has /other.
    let dir = tempfile::tempdir().unwrap();
    let sibling_log = dir.path().join("sibling.log");
    let (sibling, sibling_icp) = icp_node(
        "",
        &format!("[log]\naccess_log = \"{}\"\n", sibling_log.display()),
    )
    .await;
    let (parent, parent_icp) = icp_node("", "").await;
    for (node, path) in [(&sibling, "/object"), (&parent, "/other")] {
        let r = http_client(node)
            .get(origin.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    assert_eq!(origin.hits(), 2);

    let log = dir.path().join("child.log");
    let child_dir = tempfile::tempdir().unwrap();
    let child = TestProxy::start_text(
        &config(
            child_dir.path(),
            &format!(
                "[[peer]]\nhost = \"127.0.0.1\"\nport = {}\nicp_port = {}\ntype = \"sibling\"\nname = \"sib\"\n\
                 [[peer]]\nhost = \"127.0.0.1\"\nport = {}\nicp_port = {}\ntype = \"parent\"\nname = \"par\"\n\
                 [log]\naccess_log = \"{}\"\n",
                sibling.addr.port(),
                sibling_icp.port(),
                parent.addr.port(),
                parent_icp.port(),
                log.display()
            ),
        ),
        None,
    )
    .await;
    let client = http_client(&child);
    for (path, body) in [
        ("/object", "object"),
        ("/other", "other"),
        ("/stale", "stale"),
    ] {
        let r = client.get(origin.url(path)).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), body);
    }
    assert_eq!(
        origin.hits(),
        3,
        "the hits came from the peers; /stale, which nobody had, came through the parent"
    );
    let lines = log_fields(&log, 3).await;
    let hier: Vec<&str> = lines.iter().map(|l| l[8].as_str()).collect();
    assert_eq!(
        hier,
        ["SIBLING_HIT/sib", "PARENT_HIT/par", "FIRSTUP_PARENT/par"],
        "{lines:?}"
    );
    // The sibling said miss for /other and /stale over ICP and got no HTTP request for them;
    // it logged each query as Squid does (`log_icp_queries`).
    sibling.shutdown().await;
    let sibling_lines = log_fields(&sibling_log, 5).await;
    let http: Vec<&Vec<String>> = sibling_lines
        .iter()
        .filter(|l| l[3].starts_with("TCP_"))
        .collect();
    assert_eq!(http.len(), 2, "{sibling_lines:?}");
    assert!(http[1][6].ends_with("/object"), "{sibling_lines:?}");
    let icp: Vec<(String, String, String)> = sibling_lines
        .iter()
        .filter(|l| l[5] == "ICP_QUERY")
        .map(|l| (l[3].clone(), l[6].clone(), l[8].clone()))
        .collect();
    let expect =
        |code: &str, path: &str| (code.to_owned(), origin.url(path), "HIER_NONE/-".to_owned());
    assert_eq!(
        icp,
        [
            expect("UDP_HIT/000", "/object"),
            expect("UDP_MISS/000", "/other"),
            expect("UDP_MISS/000", "/stale"),
        ],
        "{sibling_lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_icp_peer_costs_the_query_timeout_and_is_logged_as_squid_logs_it() {
    let origin = cacheable_origin().spawn().await;
    // A sibling whose ICP port takes datagrams and never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (sibling, _) = icp_node("", "").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("child.log");
    let child = TestProxy::start_text(
        &format!(
            "icp_query_timeout = \"300ms\"\n{}",
            config(
                dir.path(),
                &format!(
                    "[[peer]]\nhost = \"127.0.0.1\"\nport = {}\nicp_port = {}\ntype = \"sibling\"\n\
                     [log]\naccess_log = \"{}\"\n",
                    sibling.addr.port(),
                    silent.local_addr().unwrap().port(),
                    log.display()
                )
            )
        ),
        None,
    )
    .await;
    let started = tokio::time::Instant::now();
    let r = http_client(&child)
        .get(origin.url("/object"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "object");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < WAIT, "{waited:?}");
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    let (len, _) = tokio::time::timeout(WAIT, silent.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        wire::decode(&buf[..len]).unwrap().url,
        origin.url("/object"),
        "the query names the URL as Squid would (its effective request URI)"
    );
    let lines = log_fields(&log, 1).await;
    assert_eq!(lines[0][8], "TIMEOUT_HIER_DIRECT/127.0.0.1", "{lines:?}");
}

/// A reload that changes `icp_port` moves the ICP server: removing it stops the answers,
/// setting it again binds a new socket that answers, no restart needed.
#[tokio::test]
async fn a_reload_that_changes_icp_port_rebinds_the_icp_socket() {
    let origin = cacheable_origin().spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cuttle.toml");
    let without = format!(
        "{}[admin]\nlisten = \"none\"\n[log]\naccess_log = \"none\"\n",
        config(dir.path(), "")
    );
    let with = format!("icp_port = \"127.0.0.1:0\"\n{without}");
    std::fs::write(&file, &with).unwrap();
    let source = cuttle::config::Source {
        path: Some(file.clone()),
        overrides: cuttle::config::Overrides::default(),
    };
    let server = cuttle::app::start_with(
        source.load().unwrap(),
        cuttle::clock::system(),
        Some(source),
    )
    .await
    .unwrap();
    let first = server.icp_addr().expect("icp_port is set");
    let url = origin.url("/object");
    assert_eq!(ask(first, &url).await, Some(Opcode::Miss));

    std::fs::write(&file, &without).unwrap();
    let report = server.control().reload().await.unwrap();
    assert_eq!(report.icp_moved, Some(None), "{report}");
    assert!(report.needs_restart.is_empty(), "{report}");
    let silent = ping(
        &[Target {
            index: 0,
            addr: first,
        }],
        &url,
        Duration::from_millis(300),
    )
    .await;
    assert!(silent.replies.is_empty(), "the old socket is closed");

    std::fs::write(&file, &with).unwrap();
    let report = server.control().reload().await.unwrap();
    let Some(Some(second)) = report.icp_moved else {
        panic!("ICP should listen again: {report}");
    };
    assert_eq!(ask(second, &url).await, Some(Opcode::Miss));
    // A reload that leaves icp_port alone keeps the socket.
    let report = server.control().reload().await.unwrap();
    assert_eq!(report.icp_moved, None, "{report}");
    assert_eq!(ask(second, &url).await, Some(Opcode::Miss));
    server.shutdown().await;
}
