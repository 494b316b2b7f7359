//! One upstream layer: every next hop (a group's server, a cache peer, a cluster member) goes
//! down and comes back through one liveness tracker, reported in one metrics family, and the
//! one retry-safety rule (nothing was sent) decides for requests and CONNECT alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A forward-proxy config with `extra` (peers, hierarchy) appended.
fn child_config(dir: &std::path::Path, extra: &str) -> String {
    config(dir, extra)
}

fn parent_at(host: &str, port: u16, name: &str, options: &str) -> String {
    format!(
        "[[peer]]\nhost = \"{host}\"\nport = {port}\ntype = \"parent\"\nname = \"{name}\"\n{options}\n"
    )
}

/// A loopback port nothing listens on (connections to it are refused).
fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `name{labels} value` from Prometheus text, if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// `cuttle_next_hop_up` and `cuttle_next_hop_down_total` for one hop.
fn hop(metrics: &str, role: &str, name: &str) -> (Option<f64>, Option<f64>) {
    let labels = format!("{{role=\"{role}\",name=\"{name}\"}}");
    (
        sample(metrics, &format!("cuttle_next_hop_up{labels}")),
        sample(metrics, &format!("cuttle_next_hop_down_total{labels}")),
    )
}

/// The access log's (code/status, method, hierarchy/peer) fields after `proxy` stops.
async fn log_lines(proxy: TestProxy, log: &std::path::Path) -> Vec<[String; 3]> {
    proxy.shutdown().await;
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            [f[3], f[5], f[8]].map(str::to_owned)
        })
        .collect()
}

/// Opens a tunnel to `target` through `proxy` and checks bytes go both ways.
async fn tunnel(proxy: SocketAddr, target: SocketAddr) {
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"ping");
}

#[tokio::test]
async fn a_connect_marks_an_unresolvable_or_refusing_parent_dead_and_the_next_skips_it() {
    let echo = echo_server().await;
    let ports = format!("[forward]\nconnect_ports = [{}]\n", echo.port());
    let upper_dir = tempfile::tempdir().unwrap();
    let upper = TestProxy::start_text(&config(upper_dir.path(), &ports), None).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // `.invalid` never resolves (RFC 6761 §6.4), and no query leaves the machine for it.
    let text = child_config(
        dir.path(),
        &format!(
            "{}{}{}{ports}[[never_direct]]\nallow = [\"all\"]\n\
             [hierarchy]\ndead_peer_timeout = \"1h\"\n[log]\naccess_log = \"{}\"\n",
            parent_at("gone.invalid", 3128, "gone", ""),
            parent_at("127.0.0.1", refused_port(), "refusing", ""),
            parent_at("127.0.0.1", upper.addr.port(), "upper", ""),
            log.display()
        ),
    );
    let child = TestProxy::start_text(&text, None).await;
    tunnel(child.addr, echo).await;
    tunnel(child.addr, echo).await;
    let metrics = admin_metrics(child.admin.unwrap()).await;
    for name in ["gone", "refusing"] {
        assert_eq!(
            hop(&metrics, "parent", name),
            (Some(0.0), Some(1.0)),
            "{name} is down, once:\n{metrics}"
        );
    }
    assert_eq!(hop(&metrics, "parent", "upper"), (Some(1.0), Some(0.0)));
    let lines = log_lines(child, &log).await;
    let tunnels: Vec<&str> = lines
        .iter()
        .filter(|l| l[1] == "CONNECT")
        .map(|l| l[2].as_str())
        .collect();
    // The first tunnel found both dead on its way; the second went to `upper` first, as the
    // first live parent, without trying either again.
    assert_eq!(
        tunnels,
        ["ANY_OLD_PARENT/upper", "FIRSTUP_PARENT/upper"],
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_tls_handshake_failure_to_a_parent_is_retried_like_a_refused_connection() {
    // The first parent is configured for TLS but speaks plain HTTP: the handshake fails before
    // any request byte is sent, so the request goes on to the next parent.
    let plain = Origin::builder()
        .route("/object", |_| reply(200, "never over TLS"))
        .spawn()
        .await;
    let good = Origin::builder()
        .route("/object", |_| {
            reply_with(
                200,
                "from the good parent",
                &[("cache-control", "no-store")],
            )
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = child_config(
        dir.path(),
        &format!(
            "{}{}[[never_direct]]\nallow = [\"all\"]\n[log]\naccess_log = \"{}\"\n",
            parent_at(
                "127.0.0.1",
                plain.addr.port(),
                "tls-broken",
                "tls = true\ntls_verify = false"
            ),
            parent_at("127.0.0.1", good.addr.port(), "good", ""),
            log.display()
        ),
    );
    let child = TestProxy::start_text(&text, None).await;
    for _ in 0..2 {
        let r = http_client(&child)
            .get("http://example.test/object")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "from the good parent");
    }
    assert_eq!(plain.hits(), 0, "no request reached the broken parent");
    let metrics = admin_metrics(child.admin.unwrap()).await;
    assert_eq!(
        hop(&metrics, "parent", "tls-broken"),
        (Some(0.0), Some(1.0))
    );
    let lines = log_lines(child, &log).await;
    let hier: Vec<&str> = lines.iter().map(|l| l[2].as_str()).collect();
    assert_eq!(
        hier,
        ["ANY_OLD_PARENT/good", "FIRSTUP_PARENT/good"],
        "{lines:?}"
    );
}

#[tokio::test]
async fn servers_peers_and_cluster_members_report_up_and_down_in_one_metrics_family() {
    let dead = refused_port();
    let origin = Origin::builder()
        .route("/", |_| reply(200, "direct"))
        .spawn()
        .await;
    // A group server that refuses (nginx max_fails = 1).
    let dir = tempfile::tempdir().unwrap();
    let reverse = format!(
        "visible_hostname = \"edge-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"127.0.0.1:{dead}\", max_fails = 1, \
         fail_timeout = \"1h\" }}]\n\
         [cache.disk]\npath = \"{}\"\n[log]\naccess_log = \"none\"\n",
        dir.path().join("cache").display()
    );
    let edge = TestProxy::start_text(&reverse, None).await;
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
        .get(edge.url() + "/")
        .header("host", "www.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let server = format!("app/127.0.0.1:{dead}");
    let metrics = admin_metrics(edge.admin.unwrap()).await;
    assert_eq!(hop(&metrics, "server", &server), (Some(0.0), Some(1.0)));

    // A parent that refuses; the request then goes direct.
    let dir = tempfile::tempdir().unwrap();
    let child = TestProxy::start_text(
        &child_config(dir.path(), &parent_at("127.0.0.1", dead, "upper", "")),
        None,
    )
    .await;
    let r = http_client(&child)
        .get(origin.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "direct");
    let metrics = admin_metrics(child.admin.unwrap()).await;
    assert_eq!(hop(&metrics, "parent", "upper"), (Some(0.0), Some(1.0)));

    // A cluster member nobody runs: its probe fails.
    let dir = tempfile::tempdir().unwrap();
    let me = refused_port();
    let text = config(
        dir.path(),
        &format!(
            "[cluster]\nself = \"a\"\nprobe_interval = \"50ms\"\n\
             [[cluster.member]]\nname = \"a\"\naddress = \"127.0.0.1:{me}\"\n\
             [[cluster.member]]\nname = \"b\"\naddress = \"127.0.0.1:{dead}\"\n"
        ),
    );
    let node = TestProxy::start_text(&text, None).await;
    let mut seen = None;
    for _ in 0..100 {
        let metrics = admin_metrics(node.admin.unwrap()).await;
        seen = Some(hop(&metrics, "member", "b"));
        if seen == Some((Some(0.0), Some(1.0))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, Some((Some(0.0), Some(1.0))));
    let metrics = admin_metrics(node.admin.unwrap()).await;
    assert_eq!(
        hop(&metrics, "member", "a"),
        (None, None),
        "self is no next hop"
    );
}
