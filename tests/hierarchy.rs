//! Cache hierarchies over loopback: chained cuttles (child -> parent -> origin), CARP arrays,
//! siblings, never_direct, CONNECT through a parent, and loop safety.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;

use support::*;

/// A forward-proxy config named `name` with `extra` (peers, hierarchy) appended.
fn named_config(dir: &std::path::Path, name: &str, extra: &str) -> String {
    config(dir, &format!("[cache]\nstatus_name = \"{name}\"\n{extra}")).replacen(
        "visible_hostname = \"cuttle-test\"",
        &format!("visible_hostname = \"{name}\""),
        1,
    )
}

async fn start(name: &str, extra: &str) -> (TestProxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start_text(&named_config(dir.path(), name, extra), None).await;
    (proxy, dir)
}

fn parent_entry(addr: SocketAddr, options: &str) -> String {
    format!(
        "[[peer]]\nhost = \"{}\"\nport = {}\ntype = \"parent\"\n{options}\n",
        addr.ip(),
        addr.port()
    )
}

async fn fetch(proxy: &TestProxy, url: &str) -> (u16, String, String) {
    let r = http_client(proxy).get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let cs = r
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cs, r.text().await.unwrap())
}

#[tokio::test]
async fn a_second_child_gets_a_parent_hit_and_both_caches_report() {
    let origin = Origin::builder()
        .route("/shared", |_| {
            let mut r = reply(200, "from the origin");
            r.headers_mut()
                .insert("cache-control", "max-age=300".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let (parent, _d1) = start("parent", "").await;
    let never_direct = "[[never_direct]]\nallow = [\"all\"]\n";
    let (child1, _d2) = start(
        "child1",
        &format!("{}{never_direct}", parent_entry(parent.addr, "")),
    )
    .await;
    let (child2, _d3) = start(
        "child2",
        &format!("{}{never_direct}", parent_entry(parent.addr, "")),
    )
    .await;

    let (status, cs, body) = fetch(&child1, &origin.url("/shared")).await;
    assert_eq!((status, body.as_str()), (200, "from the origin"));
    assert!(cs.starts_with("parent;fwd=uri-miss"), "{cs}");
    assert!(cs.contains("child1;fwd=uri-miss"), "{cs}");
    assert_eq!(origin.hits(), 1);
    // The origin saw the request through both caches, in order.
    let via = origin.requests()[0].headers["via"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(via.contains("child1") && via.contains("parent"), "{via}");

    let (status, cs, body) = fetch(&child2, &origin.url("/shared")).await;
    assert_eq!((status, body.as_str()), (200, "from the origin"));
    assert_eq!(origin.hits(), 1, "served by the parent's cache");
    assert!(cs.starts_with("parent;hit"), "{cs}");
    assert!(
        cs.contains("child2;fwd=uri-miss"),
        "both caches are listed: {cs}"
    );
}

/// Stand-in parents that record the absolute-form URLs they are sent.
async fn recording_parent(name: &'static str) -> Origin {
    Origin::builder()
        .route("/object", move |_| {
            let mut r = reply(200, name);
            r.headers_mut()
                .insert("cache-control", "no-store".parse().unwrap());
            r
        })
        .spawn()
        .await
}

#[tokio::test]
async fn carp_sends_each_url_to_one_parent_by_weight_and_a_dead_parent_only_moves_its_own() {
    let parents = [
        recording_parent("p1").await,
        recording_parent("p2").await,
        recording_parent("p3").await,
    ];
    let peers: String = parents
        .iter()
        .zip([("p1", 1), ("p2", 2), ("p3", 3)])
        .map(|(p, (name, w))| parent_entry(p.addr, &format!("name = \"{name}\"\nweight = {w}")))
        .collect();
    let extra = format!(
        "{peers}[hierarchy]\nparent_selection = \"carp\"\n[[never_direct]]\nallow = [\"all\"]\n"
    );
    let (child, _d) = start("child", &extra).await;
    let client = http_client(&child);
    let mut owner: HashMap<u32, String> = HashMap::new();
    for n in 0..3000u32 {
        let who = client
            .get(format!("http://origin.test/object?n={n}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        owner.insert(n, who);
    }
    let mut shares: HashMap<&str, usize> = HashMap::new();
    for who in owner.values() {
        *shares.entry(who.as_str()).or_default() += 1;
    }
    for (name, want) in [("p1", 500.0), ("p2", 1000.0), ("p3", 1500.0)] {
        let got = shares.get(name).copied().unwrap_or(0) as f64;
        assert!((got - want).abs() / want <= 0.05, "{shares:?}");
    }
    // Same names and weights, but p2 is dead (its address refuses connections).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let peers: String = [
        (parents[0].addr, "p1", 1),
        (dead, "p2", 2),
        (parents[2].addr, "p3", 3),
    ]
    .iter()
    .map(|(addr, name, w)| parent_entry(*addr, &format!("name = \"{name}\"\nweight = {w}")))
    .collect();
    let extra = format!(
        "{peers}[hierarchy]\nparent_selection = \"carp\"\n[[never_direct]]\nallow = [\"all\"]\n"
    );
    let (child, _d) = start("child", &extra).await;
    let client = http_client(&child);
    for n in (0..3000u32).step_by(10) {
        let who = client
            .get(format!("http://origin.test/object?n={n}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let before = &owner[&n];
        if before != "p2" {
            assert_eq!(&who, before, "url {n} moved although its parent is alive");
        } else {
            assert_ne!(who, "p2");
        }
    }
}

#[tokio::test]
async fn a_sibling_hit_is_served_and_a_sibling_miss_never_fetches_through_the_sibling() {
    let origin = Origin::builder()
        .route("/cached", |_| {
            let mut r = reply(200, "cached in the sibling");
            r.headers_mut()
                .insert("cache-control", "max-age=300".parse().unwrap());
            r
        })
        .route("/fresh", |req| {
            let via = req
                .headers
                .get("via")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            reply(200, &format!("direct via [{via}]"))
        })
        .spawn()
        .await;
    let (sibling, _d1) = start("sibling", "").await;
    // Warm the sibling's cache directly.
    fetch(&sibling, &origin.url("/cached")).await;
    assert_eq!(origin.hits(), 1);
    let entry = format!(
        "[[peer]]\nhost = \"127.0.0.1\"\nport = {}\ntype = \"sibling\"\n",
        sibling.addr.port()
    );
    let (child, _d2) = start("child", &entry).await;
    let (status, cs, body) = fetch(&child, &origin.url("/cached")).await;
    assert_eq!((status, body.as_str()), (200, "cached in the sibling"));
    assert!(cs.starts_with("sibling;hit"), "{cs}");
    assert_eq!(origin.hits(), 1, "a sibling hit does not touch the origin");
    // Not cached in the sibling: it answers 504 to only-if-cached, the child goes direct.
    let (status, _, body) = fetch(&child, &origin.url("/fresh")).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("child") && !body.contains("sibling"),
        "fetched through the sibling: {body}"
    );
}

#[tokio::test]
async fn never_direct_with_dead_parents_is_503_and_without_it_the_child_goes_direct() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "direct"))
        .spawn()
        .await;
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (strict, _d1) = start(
        "strict",
        &format!(
            "{}[[never_direct]]\nallow = [\"all\"]\n",
            parent_entry(dead, "")
        ),
    )
    .await;
    let (status, _, page) = fetch(&strict, &origin.url("/")).await;
    assert_eq!(status, 503, "{page}");
    let (loose, _d2) = start("loose", &parent_entry(dead, "")).await;
    let (status, _, body) = fetch(&loose, &origin.url("/")).await;
    assert_eq!((status, body.as_str()), (200, "direct"));
}

#[tokio::test]
async fn connect_goes_through_the_parent_as_connect() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = echo_server().await;
    let ports = format!("[forward]\nconnect_ports = [{}]\n", echo.port());
    let (parent, _d1) = start("parent", &ports).await;
    let (child, _d2) = start(
        "child",
        &format!(
            "{}{ports}[[never_direct]]\nallow = [\"all\"]\n",
            parent_entry(parent.addr, "")
        ),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(child.addr).await.unwrap();
    stream
        .write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"through two proxies").await.unwrap();
    let mut back = vec![0u8; 19];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"through two proxies");
}

#[tokio::test]
async fn two_caches_that_are_each_others_parent_do_not_bounce_a_request() {
    // Bind A's port first so B can name it, then configure A with B as its parent.
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a_addr: SocketAddr = format!("127.0.0.1:{a_port}").parse().unwrap();
    let never_direct = "[[never_direct]]\nallow = [\"all\"]\n";
    let b = TestProxy::start_text(
        &named_config(
            b_dir.path(),
            "cache-b",
            &format!("{}{never_direct}", parent_entry(a_addr, "")),
        ),
        None,
    )
    .await;
    let a_text = named_config(
        a_dir.path(),
        "cache-a",
        &format!("{}{never_direct}", parent_entry(b.addr, "")),
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{a_addr}\""),
    );
    let a = TestProxy::start_text(&a_text, None).await;
    let started = tokio::time::Instant::now();
    let r = http_client(&a)
        .get("http://loop.test/")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error() || r.status().is_server_error());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let page = r.text().await.unwrap();
    assert!(page.contains("forwarding loop"), "{page}");
}

#[tokio::test]
async fn parent_flag_sends_misses_through_the_parent() {
    let parent = recording_parent("the parent").await;
    let proxy = CuttleProcess::start(&["--parent", &parent.addr.to_string()]);
    let addr = proxy.addr;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{addr}")).unwrap())
        .build()
        .unwrap();
    let body = client
        .get("http://example.test/object")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "the parent");
    // The parent got the request in absolute-form.
    assert_eq!(
        parent.requests()[0].uri.to_string(),
        "http://example.test/object"
    );
    drop(proxy);
}

#[tokio::test]
async fn login_sends_basic_credentials_to_the_parent() {
    let parent = recording_parent("authenticated").await;
    let (child, _d) = start(
        "child",
        &format!(
            "{}[[never_direct]]\nallow = [\"all\"]\n",
            parent_entry(parent.addr, "login = \"branch:s3cret\"")
        ),
    )
    .await;
    let (status, _, _) = fetch(&child, "http://example.test/object").await;
    assert_eq!(status, 200);
    // base64("branch:s3cret")
    assert_eq!(
        parent.requests()[0].headers["proxy-authorization"],
        "Basic YnJhbmNoOnMzY3JldA=="
    );
}

#[tokio::test]
async fn always_direct_domains_bypass_the_parent() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "direct"))
        .spawn()
        .await;
    let parent = recording_parent("parent").await;
    let (child, _d) = start(
        "child",
        &format!(
            "{}[acl.local_sites]\ndst = [\"127.0.0.0/8\"]\n[[always_direct]]\nallow = [\"local_sites\"]\n[[never_direct]]\nallow = [\"all\"]\n",
            parent_entry(parent.addr, "")
        ),
    )
    .await;
    let (status, _, body) = fetch(&child, &origin.url("/")).await;
    assert_eq!((status, body.as_str()), (200, "direct"));
    assert_eq!(parent.hits(), 0);
    // A `dst` rule resolves the destination; `.invalid` never resolves (RFC 6761 §6.4), so
    // no DNS query leaves the machine, and the parent still carries the request.
    let (_, _, body) = fetch(&child, "http://example.invalid/object").await;
    assert_eq!(
        body, "parent",
        "other destinations still go through the parent"
    );
}

#[tokio::test]
async fn the_access_log_shows_squid_hierarchy_codes() {
    let parent = recording_parent("via parent").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = named_config(
        dir.path(),
        "child",
        &format!(
            "{}[[never_direct]]\nallow = [\"all\"]\n[log]\naccess_log = \"{}\"\n",
            parent_entry(parent.addr, "name = \"upper\""),
            log.display()
        ),
    );
    let child = TestProxy::start_text(&text, None).await;
    fetch(&child, "http://example.test/object").await;
    child.shutdown().await;
    let line = std::fs::read_to_string(&log).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[8], "FIRSTUP_PARENT/upper", "{line}");
}

/// The access log's lines as (code/status, method, URL, hierarchy/peer) after `proxy` stops.
async fn log_lines(proxy: TestProxy, log: &std::path::Path) -> Vec<[String; 4]> {
    proxy.shutdown().await;
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            [f[3], f[5], f[6], f[8]].map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn two_instances_on_one_host_chain_with_default_names_and_a_loop_between_them_is_caught() {
    let origin = Origin::builder()
        .route("/", |_| reply(200, "from the origin"))
        .spawn()
        .await;
    // A: no visible_hostname, so the machine's host name, as B (a separate process) has.
    let dir = tempfile::tempdir().unwrap();
    let a = TestProxy::start_text(
        &config(dir.path(), "").replace("visible_hostname = \"cuttle-test\"\n", ""),
        None,
    )
    .await;
    let b = CuttleProcess::start(&["--parent", &a.addr.to_string()]);
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", b.addr)).unwrap())
        .build()
        .unwrap();
    let r = client.get(origin.url("/")).send().await.unwrap();
    let via = r.headers()["via"].to_str().unwrap().to_owned();
    assert_eq!(r.status(), 200, "{via}");
    assert_eq!(r.text().await.unwrap(), "from the origin");
    // Each instance wrote its own entry, told apart by its port.
    assert!(
        via.contains(&format!(":{} (cuttle/", a.addr.port())),
        "{via}"
    );
    assert!(
        via.contains(&format!(":{} (cuttle/", b.addr.port())),
        "{via}"
    );
    drop(b);

    // Two in-process instances with one visible name, each the other's parent: still a loop.
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a_addr: SocketAddr = format!("127.0.0.1:{a_port}").parse().unwrap();
    let never_direct = "[[never_direct]]\nallow = [\"all\"]\n";
    let b = TestProxy::start_text(
        &config(
            b_dir.path(),
            &format!("{}{never_direct}", parent_entry(a_addr, "")),
        ),
        None,
    )
    .await;
    let a_text = config(
        a_dir.path(),
        &format!("{}{never_direct}", parent_entry(b.addr, "")),
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{a_addr}\""),
    );
    let a = TestProxy::start_text(&a_text, None).await;
    let r = http_client(&a)
        .get("http://loop.test/")
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("forwarding loop"), "{page}");
}

#[tokio::test]
async fn the_access_log_uses_squids_hierarchy_codes_for_every_case() {
    let origin = Origin::builder()
        .route("/cached", |_| {
            reply_with(200, "cacheable", &[("cache-control", "max-age=300")])
        })
        .spawn()
        .await;
    let echo = echo_server().await;
    let parent = recording_parent("via parent").await;
    let parent2 = recording_parent("via parent 2").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // A direct cache: a miss, a hit, a PURGE, a denied request, an unreachable origin.
    let text = config(
        dir.path(),
        &format!("[log]\naccess_log = \"{}\"\n", log.display()),
    );
    let direct = TestProxy::start_text(&text, None).await;
    let url = origin.url("/cached");
    fetch(&direct, &url).await;
    fetch(&direct, &url).await;
    let purge = http_client(&direct)
        .request(reqwest::Method::from_bytes(b"PURGE").unwrap(), &url)
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    fetch(&direct, &format!("http://{dead}/gone")).await;
    let lines = log_lines(direct, &log).await;
    let hier: Vec<&str> = lines.iter().map(|l| l[3].as_str()).collect();
    assert_eq!(
        hier,
        [
            "HIER_DIRECT/127.0.0.1",
            "HIER_NONE/-",
            "HIER_NONE/-",
            "HIER_DIRECT/127.0.0.1"
        ],
        "{lines:?}"
    );
    assert!(lines[1][0].contains("HIT"), "{lines:?}");

    // Through parents: round robin takes turns.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = named_config(
        dir.path(),
        "child",
        &format!(
            "{}{}[hierarchy]\nparent_selection = \"round_robin\"\n[[never_direct]]\nallow = [\"all\"]\n\
             [log]\naccess_log = \"{}\"\n",
            parent_entry(parent.addr, "name = \"p1\""),
            parent_entry(parent2.addr, "name = \"p2\""),
            log.display()
        ),
    );
    let child = TestProxy::start_text(&text, None).await;
    fetch(&child, "http://example.test/object").await;
    fetch(&child, "http://example.test/object").await;
    let lines = log_lines(child, &log).await;
    let hier: Vec<&str> = lines.iter().map(|l| l[3].as_str()).collect();
    assert!(
        hier.iter().all(|h| h.starts_with("ROUNDROBIN_PARENT/p")),
        "{lines:?}"
    );
    assert!(hier[0] != hier[1], "round robin takes turns: {lines:?}");

    // CONNECT through a parent, then never_direct with no parent left.
    let ports = format!("[forward]\nconnect_ports = [{}]\n", echo.port());
    let (upper, _d1) = start("upper", &ports).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = named_config(
        dir.path(),
        "child",
        &format!(
            "{}{ports}[[never_direct]]\nallow = [\"all\"]\n[log]\naccess_log = \"{}\"\n",
            parent_entry(upper.addr, "name = \"upper\""),
            log.display()
        ),
    );
    let child = TestProxy::start_text(&text, None).await;
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(child.addr).await.unwrap();
        stream
            .write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())
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
    }
    drop(upper);
    // The only parent is gone: never_direct fails without forwarding anything.
    let (status, _, _) = fetch(&child, "http://example.test/other").await;
    assert_eq!(status, 503);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let lines = log_lines(child, &log).await;
    let tunnel = lines.iter().find(|l| l[1] == "CONNECT").unwrap();
    assert_eq!(tunnel[0], "TCP_TUNNEL/200", "{lines:?}");
    assert_eq!(tunnel[3], "FIRSTUP_PARENT/upper", "{lines:?}");
    let failed = lines.iter().find(|l| l[2].ends_with("/other")).unwrap();
    assert_eq!(failed[3], "HIER_NONE/-", "{lines:?}");
}

#[tokio::test]
async fn squid_internal_urls_and_our_own_address_are_answered_here() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = config(
        dir.path(),
        &format!("[log]\naccess_log = \"{}\"\n", log.display()),
    );
    let proxy = TestProxy::start_text(&text, None).await;
    // A Squid child asks for our cache digest in origin-form.
    let answer = raw(
        proxy.addr,
        b"GET /squid-internal-periodic/store_digest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    // Absolute-form URLs naming the proxy itself are not forwarded to it.
    for url in [
        format!("http://{}/squid-internal-periodic/store_digest", proxy.addr),
        format!("http://{}/some/page", proxy.addr),
        format!("http://localhost:{}/", proxy.addr.port()),
    ] {
        let (status, _, body) = fetch(&proxy, &url).await;
        assert_eq!(status, 404, "{url}: {body}");
    }
    let lines = log_lines(proxy, &log).await;
    assert_eq!(
        lines.len(),
        4,
        "one line each, nothing forwarded: {lines:?}"
    );
    for line in &lines {
        assert_eq!(line[0], "TCP_MISS/404", "{lines:?}");
        assert_eq!(line[3], "HIER_NONE/-", "{lines:?}");
    }
}

#[tokio::test]
async fn a_monitored_parent_is_marked_dead_and_alive_by_its_probes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&healthy);
    let parent = Origin::builder()
        .route("/health", move |_| {
            reply(
                if flag.load(Ordering::SeqCst) {
                    200
                } else {
                    503
                },
                "",
            )
        })
        .route("/object", |_| reply(200, "via parent"))
        .spawn()
        .await;
    let (child, _d) = start(
        "child",
        &format!(
            "{}[[never_direct]]\nallow = [\"all\"]\n",
            parent_entry(
                parent.addr,
                "monitorurl = \"http://health.test/health\"\nmonitorinterval = \"50ms\"\nmonitortimeout = \"1s\""
            )
        ),
    )
    .await;
    let objects = || {
        parent
            .requests()
            .iter()
            .filter(|r| r.uri.path() == "/object")
            .count()
    };
    // The probe fails: the parent is dead, and no request is sent to it.
    let mut dead = false;
    for _ in 0..100 {
        let (status, _, _) = fetch(&child, "http://example.test/object").await;
        if status == 503 {
            dead = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(dead, "a failing monitorurl marks the parent dead");
    let sent_before = objects();
    let (status, _, _) = fetch(&child, "http://example.test/object").await;
    assert_eq!((status, objects()), (503, sent_before));
    // The probes went to the parent (the only address configured), in absolute-form.
    let probes: Vec<String> = parent
        .requests()
        .iter()
        .filter(|r| r.uri.path() == "/health")
        .map(|r| r.uri.to_string())
        .collect();
    assert!(
        probes.iter().all(|u| u == "http://health.test/health"),
        "{probes:?}"
    );
    // The probe succeeds again: the parent is back.
    healthy.store(true, Ordering::SeqCst);
    let mut back = false;
    for _ in 0..100 {
        let (status, _, body) = fetch(&child, "http://example.test/object").await;
        if status == 200 {
            assert_eq!(body, "via parent");
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(back, "a passing monitorurl brings the parent back");
}
