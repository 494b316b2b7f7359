//! Interoperability with a real Squid (Debian package `squid`, installed by `.ci/run`):
//! cuttle as a child under a Squid parent, and Squid as a child under a cuttle parent, each
//! serving a second request as a parent hit. Squid runs from a temp dir on 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// A Squid process with its own config, pid file and logs.
struct Squid {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// The `-n` service name: Squid prefixes its shared-memory segments in /dev/shm with it, so
    /// concurrent Squids (tests run in parallel) must each have their own or the second one
    /// dies with `shm_open(/squid-cf__metadata.shm): File exists`.
    service: String,
}

impl Squid {
    fn start(name: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Squid drops root privileges to its own user, which must write here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let d = dir.path().display();
        let conf = format!(
            "http_port 127.0.0.1:{port}\nvisible_hostname {name}\npid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\naccess_log stdio:{d}/access.log\ncoredump_dir {d}\n\
             cache_mem 16 MB\nmaximum_object_size_in_memory 1 MB\nshutdown_lifetime 1 seconds\n\
             pinger_enable off\n{extra}\nhttp_access allow localhost\nhttp_access deny all\n"
        );
        let file = dir.path().join("squid.conf");
        std::fs::write(&file, conf).unwrap();
        // /usr/sbin is not on every PATH.
        let binary = if std::path::Path::new("/usr/sbin/squid").exists() {
            "/usr/sbin/squid"
        } else {
            "squid"
        };
        let service = format!("cuttletest{port}");
        remove_shared_memory(&service);
        let child = Command::new(binary)
            .args(["-N", "-n"])
            .arg(&service)
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squid is installed (.ci/run installs the Debian package)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let squid = Self {
            child,
            addr,
            dir,
            service,
        };
        squid.wait_ready();
        squid
    }

    fn wait_ready(&self) {
        for _ in 0..200 {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.path().join("cache.log")).unwrap_or_default();
        panic!("squid did not start listening on {}:\n{log}", self.addr);
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        // SIGTERM lets Squid unlink its segments; SIGKILL after a bounded wait, then clean up
        // whatever it left so the next run on this machine starts clean.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..60 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_shared_memory(&self.service);
    }
}

/// Removes the /dev/shm segments of one Squid service name.
fn remove_shared_memory(service: &str) {
    let prefix = format!("{service}-");
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn cacheable_origin() -> support::OriginBuilder {
    Origin::builder().route("/object", |_| {
        let mut r = reply(200, "interop body");
        r.headers_mut()
            .insert("cache-control", "max-age=300".parse().unwrap());
        r
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_children_under_a_squid_parent_get_a_parent_hit() {
    let origin = cacheable_origin().spawn().await;
    let squid = Squid::start("squid-parent", "");
    let child = |name: &str| {
        let dir = tempfile::tempdir().unwrap();
        let text = config(
            dir.path(),
            &format!(
                "[[peer]]\nhost = \"127.0.0.1\"\nport = {}\ntype = \"parent\"\n\
                 [[never_direct]]\nallow = [\"all\"]\n[cache]\nstatus_name = \"{name}\"\n",
                squid.addr.port()
            ),
        );
        (text, dir)
    };
    let (t1, d1) = child("child1");
    let child1 = TestProxy::start_text(&t1, Some(d1)).await;
    let (t2, d2) = child("child2");
    let child2 = TestProxy::start_text(&t2, Some(d2)).await;

    let first = http_client(&child1)
        .get(origin.url("/object"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "interop body");
    assert_eq!(origin.hits(), 1);

    let second = http_client(&child2)
        .get(origin.url("/object"))
        .send()
        .await
        .unwrap();
    let x_cache = second
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(second.text().await.unwrap(), "interop body");
    assert_eq!(
        origin.hits(),
        1,
        "the second child was served by Squid's cache"
    );
    assert_eq!(x_cache.as_deref(), Some("HIT from squid-parent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_child_under_a_cuttle_parent_gets_a_parent_hit() {
    let origin = cacheable_origin().spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let parent = TestProxy::start_text(
        &config(dir.path(), "[cache]\nstatus_name = \"cuttle-parent\"\n"),
        None,
    )
    .await;
    // The child caches nothing itself, so its second request reaches the parent.
    let squid = Squid::start(
        "squid-child",
        &format!(
            "cache_peer 127.0.0.1 parent {} 0 no-query default\nnever_direct allow all\ncache deny all",
            parent.addr.port()
        ),
    );
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", squid.addr)).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap();
    let first = client.get(origin.url("/object")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "interop body");
    let second = client.get(origin.url("/object")).send().await.unwrap();
    let status = second
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(second.text().await.unwrap(), "interop body");
    assert_eq!(origin.hits(), 1, "the second request was a hit in cuttle");
    assert!(status.starts_with("cuttle-parent;hit"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_and_squid_pick_the_same_carp_parent_for_every_url() {
    // Stand-in parents that answer with their own name (no-store: nothing is cached anywhere).
    let parent = |name: &'static str| {
        Origin::builder().route("/obj", move |_| {
            let mut r = reply(200, name);
            r.headers_mut()
                .insert("cache-control", "no-store".parse().unwrap());
            r
        })
    };
    let parents = [
        parent("p1").spawn().await,
        parent("p2").spawn().await,
        parent("p3").spawn().await,
    ];
    let members = [("p1", 1), ("p2", 2), ("p3", 3)];
    let squid_peers: String = parents
        .iter()
        .zip(members)
        .map(|(p, (name, w))| {
            format!(
                "cache_peer 127.0.0.1 parent {} 0 carp no-query name={name} weight={w}\n",
                p.addr.port()
            )
        })
        .collect();
    let squid = Squid::start(
        "squid-carp",
        &format!("{squid_peers}never_direct allow all\ncache deny all"),
    );
    let cuttle_peers: String = parents
        .iter()
        .zip(members)
        .map(|(p, (name, w))| {
            format!(
                "[[peer]]\nhost = \"127.0.0.1\"\nport = {}\ntype = \"parent\"\nname = \"{name}\"\nweight = {w}\n",
                p.addr.port()
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cuttle = TestProxy::start_text(
        &config(
            dir.path(),
            &format!("{cuttle_peers}[hierarchy]\nparent_selection = \"carp\"\n[[never_direct]]\nallow = [\"all\"]\n"),
        ),
        None,
    )
    .await;
    let via = |addr: SocketAddr| {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{addr}")).unwrap())
            .timeout(WAIT)
            .build()
            .unwrap()
    };
    let (squid_client, cuttle_client) = (via(squid.addr), via(cuttle.addr));
    let mut seen = std::collections::HashSet::new();
    for n in 0..60 {
        let url = format!("http://carp.example/obj?item={n}");
        let by_squid = squid_client
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let by_cuttle = cuttle_client
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(by_cuttle, by_squid, "{url}");
        seen.insert(by_squid);
    }
    assert_eq!(seen.len(), 3, "all three parents were used");
}

/// The fields of a Squid-native access log's request lines, once there are `n`. Squid also
/// logs connections that sent no request (the readiness probe) as `error:...` URLs; those are
/// left out.
fn squid_log_fields(path: &std::path::Path, n: usize) -> Vec<Vec<String>> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Vec<String>> = text
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .filter(|fields| fields.get(6).is_some_and(|url| !url.starts_with("error:")))
            .collect();
        if lines.len() >= n {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} has fewer than {n} lines", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_logs_a_miss_and_a_hit_as_squid_does_with_strip_query_terms() {
    let origin = cacheable_origin().spawn().await;
    let squid = Squid::start("squid-log", "");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cuttle = TestProxy::start_text(
        &config(
            dir.path(),
            &format!("[log]\naccess_log = \"{}\"\n", log.display()),
        ),
        None,
    )
    .await;
    let url = origin.url("/object?secret=1&user=alice");
    for proxy in [format!("http://{}", squid.addr), cuttle.url()] {
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(proxy).unwrap())
            .timeout(WAIT)
            .build()
            .unwrap();
        for _ in 0..2 {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.text().await.unwrap(), "interop body");
        }
    }
    cuttle.shutdown().await;
    let theirs = squid_log_fields(&squid.dir.path().join("access.log"), 2);
    let ours = squid_log_fields(&log, 2);
    // Code/status, method, URL, user, hierarchy/peer and type; time, elapsed and byte counts
    // differ by nature.
    let comparable = |line: &[String]| -> Vec<String> {
        [3, 5, 6, 7, 8, 9]
            .iter()
            .map(|&i| line[i].clone())
            .collect()
    };
    for (ours, theirs) in ours.iter().zip(&theirs) {
        assert_eq!(comparable(ours), comparable(theirs));
    }
    assert_eq!(
        ours[0][6],
        origin.url("/object?"),
        "the query is not logged"
    );
    assert_eq!(ours[1][3], "TCP_MEM_HIT/200");
    assert_eq!(ours[1][8], "HIER_NONE/-");
}

/// The code/status and hierarchy/peer fields of a log line.
fn code_and_hierarchy(line: &[String]) -> (String, String) {
    (line[3].clone(), line[8].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_logs_a_parent_miss_and_a_failed_direct_attempt_as_squid_does() {
    // A stand-in parent; Squid and cuttle both name it after its host (Squid's default).
    let parent = Origin::builder()
        .route("/object", |_| {
            let mut r = reply(200, "via parent");
            r.headers_mut()
                .insert("cache-control", "no-store".parse().unwrap());
            r
        })
        .spawn()
        .await;
    let port = parent.addr.port();
    let squid = Squid::start(
        "squid-child",
        &format!("cache_peer 127.0.0.1 parent {port} 0 no-query\nnever_direct allow all"),
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cuttle = TestProxy::start_text(
        &config(
            dir.path(),
            &format!(
                "[[peer]]\nhost = \"127.0.0.1\"\nport = {port}\ntype = \"parent\"\n\
                 [[never_direct]]\nallow = [\"all\"]\n[log]\naccess_log = \"{}\"\n",
                log.display()
            ),
        ),
        None,
    )
    .await;
    for proxy in [format!("http://{}", squid.addr), cuttle.url()] {
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(proxy).unwrap())
            .timeout(WAIT)
            .build()
            .unwrap();
        let response = client
            .get("http://example.test/object")
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "via parent");
    }
    cuttle.shutdown().await;
    let theirs = squid_log_fields(&squid.dir.path().join("access.log"), 1);
    let ours = squid_log_fields(&log, 1);
    assert_eq!(
        code_and_hierarchy(&ours[0]),
        code_and_hierarchy(&theirs[0]),
        "ours {ours:?}, Squid's {theirs:?}"
    );
    assert_eq!(ours[0][8], "FIRSTUP_PARENT/127.0.0.1");

    // Straight to an origin that refuses the connection.
    let squid = Squid::start("squid-direct", "");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cuttle = TestProxy::start_text(
        &config(
            dir.path(),
            &format!("[log]\naccess_log = \"{}\"\n", log.display()),
        ),
        None,
    )
    .await;
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for proxy in [format!("http://{}", squid.addr), cuttle.url()] {
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(proxy).unwrap())
            .timeout(WAIT)
            .build()
            .unwrap();
        let response = client
            .get(format!("http://{refused}/gone"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
    }
    cuttle.shutdown().await;
    let theirs = squid_log_fields(&squid.dir.path().join("access.log"), 1);
    let ours = squid_log_fields(&log, 1);
    assert_eq!(
        code_and_hierarchy(&ours[0]),
        code_and_hierarchy(&theirs[0]),
        "ours {ours:?}, Squid's {theirs:?}"
    );
}

/// A free UDP port on 127.0.0.2, where the tests' Squids take ICP: Squid ignores ICP datagrams
/// from its own ICP address whatever their port (`icpHandleUdp`, "sent by myself"), so on one
/// host it needs another loopback address than cuttle's 127.0.0.1.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Squid's lines for HTTP requests (its ICP lines are `UDP_*`), once there are `n`.
fn squid_tcp_lines(path: &std::path::Path, n: usize) -> Vec<Vec<String>> {
    for _ in 0..200 {
        let lines: Vec<Vec<String>> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .filter(|f| f.get(3).is_some_and(|c| c.starts_with("TCP_")))
            .collect();
        if lines.len() >= n {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} has fewer than {n} request lines", path.display());
}

/// Waits until the ICP server at `addr` answers a query (Squid opens its ICP socket a little
/// after its HTTP port).
async fn wait_for_icp(addr: SocketAddr) {
    use cuttle::icp::client::{ping, Target};
    for _ in 0..100 {
        let outcome = ping(
            &[Target { index: 0, addr }],
            "http://icp-ready.test/",
            Duration::from_millis(100),
        )
        .await;
        if !outcome.replies.is_empty() {
            return;
        }
    }
    panic!("no ICP reply from {addr}");
}

fn two_objects() -> support::OriginBuilder {
    let cacheable = |body: &'static str| {
        move |_: &support::Recorded| {
            let mut r = reply(200, body);
            r.headers_mut()
                .insert("cache-control", "max-age=300".parse().unwrap());
            r
        }
    };
    Origin::builder()
        .route("/cached", cacheable("cached body"))
        .route("/uncached", cacheable("uncached body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_child_fetches_what_its_cuttle_icp_sibling_has_cached() {
    let origin = two_objects().spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let cuttle = TestProxy::start_text(
        // Top-level keys go before the tables `config` writes.
        &format!("icp_port = \"127.0.0.1:0\"\n{}", config(dir.path(), "")),
        None,
    )
    .await;
    let cuttle_icp = cuttle.icp.expect("the ICP server runs");
    // Cached in cuttle first.
    let direct = http_client(&cuttle)
        .get(origin.url("/cached"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.text().await.unwrap(), "cached body");
    assert_eq!(origin.hits(), 1);

    // A fixed query timeout: Squid's dynamic one starts at 5ms, less than a debug build on a
    // loaded machine may take to answer. No `CLOSEST_DIRECT`: Squid's netdb knows the origin
    // (on this host) is close, and with the default `minimum_direct_*` it may go there on an
    // ICP hit.
    let squid = Squid::start(
        "squid-icp-child",
        &format!(
            "icp_port {}\nudp_incoming_address 127.0.0.2\n\
             cache_peer 127.0.0.1 sibling {} {} name=cuttle\nicp_query_timeout 2000\n\
             minimum_direct_hops 0\nminimum_direct_rtt 0\n",
            free_udp_port(),
            cuttle.addr.port(),
            cuttle_icp.port()
        ),
    );
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", squid.addr)).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap();
    let hit = client.get(origin.url("/cached")).send().await.unwrap();
    assert_eq!(hit.text().await.unwrap(), "cached body");
    assert_eq!(origin.hits(), 1, "Squid got it from cuttle, not the origin");
    let miss = client.get(origin.url("/uncached")).send().await.unwrap();
    assert_eq!(miss.text().await.unwrap(), "uncached body");
    assert_eq!(origin.hits(), 2, "the uncached one came from the origin");

    let lines = squid_tcp_lines(&squid.dir.path().join("access.log"), 2);
    assert_eq!(lines[0][6], origin.url("/cached"));
    assert_eq!(lines[0][8], "SIBLING_HIT/127.0.0.1", "{lines:?}");
    assert_eq!(lines[1][6], origin.url("/uncached"));
    assert_eq!(lines[1][8], "HIER_DIRECT/127.0.0.1", "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuttle_fetches_what_its_squid_icp_sibling_has_cached() {
    let origin = two_objects().spawn().await;
    let squid_icp = free_udp_port();
    // The peer is one address for HTTP and ICP: Squid also takes HTTP on 127.0.0.2.
    let http_port = {
        let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let squid = Squid::start(
        "squid-icp-sibling",
        &format!(
            "icp_port {squid_icp}\nudp_incoming_address 127.0.0.2\n\
             icp_access allow localhost\nicp_access deny all\n\
             http_port 127.0.0.2:{http_port}\n"
        ),
    );
    let squid_icp: SocketAddr = format!("127.0.0.2:{squid_icp}").parse().unwrap();
    wait_for_icp(squid_icp).await;
    // Cached in Squid first.
    let via_squid = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", squid.addr)).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap();
    let filled = via_squid.get(origin.url("/cached")).send().await.unwrap();
    assert_eq!(filled.text().await.unwrap(), "cached body");
    assert_eq!(origin.hits(), 1);

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cuttle = TestProxy::start_text(
        &config(
            dir.path(),
            &format!(
                "[[peer]]\nhost = \"127.0.0.2\"\nport = {}\nicp_port = {}\ntype = \"sibling\"\n\
                 [log]\naccess_log = \"{}\"\n",
                http_port,
                squid_icp.port(),
                log.display()
            ),
        ),
        None,
    )
    .await;
    let client = http_client(&cuttle);
    let hit = client.get(origin.url("/cached")).send().await.unwrap();
    assert_eq!(hit.text().await.unwrap(), "cached body");
    assert_eq!(origin.hits(), 1, "cuttle got it from Squid, not the origin");
    let miss = client.get(origin.url("/uncached")).send().await.unwrap();
    assert_eq!(miss.text().await.unwrap(), "uncached body");
    assert_eq!(origin.hits(), 2);
    cuttle.shutdown().await;

    let ours = squid_log_fields(&log, 2);
    assert_eq!(ours[0][3], "TCP_MISS/200");
    assert_eq!(ours[0][8], "SIBLING_HIT/127.0.0.2", "{ours:?}");
    assert_eq!(ours[1][8], "HIER_DIRECT/127.0.0.1", "{ours:?}");
    // Squid served the hit over HTTP and was asked about the other URL only over ICP.
    let theirs = squid_tcp_lines(&squid.dir.path().join("access.log"), 2);
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert!(theirs[1][3].contains("HIT/200"), "{theirs:?}");
    let text = std::fs::read_to_string(squid.dir.path().join("access.log")).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("UDP_MISS") && l.contains(&origin.url("/uncached"))),
        "{text}"
    );
}
// === golden hierarchy lines: the same traffic through Squid and cuttle ===

/// Peer names the golden tests give peers on 127.0.0.1 (two peers on one host need names).
const PEER_NAMES: [&str; 4] = ["p1", "p2", "upper", "gone"];

/// The code/status and hierarchy/peer fields of a native log line, normalised: the peer's port
/// dropped (cuttle logs a reverse group's server as `address:port`), and a peer named in
/// [`PEER_NAMES`] read as its address. Squid's native format logs `%Sh/%<a`, the *address* of
/// the peer it used, where cuttle logs the peer's name (its host unless `name` is set): the
/// one difference left, and the reason for the mapping.
fn golden(line: &[String]) -> (String, String) {
    let hier = &line[8];
    let hier = match hier.rsplit_once(':') {
        Some((head, port)) if port.bytes().all(|b| b.is_ascii_digit()) => head.to_owned(),
        _ => hier.clone(),
    };
    let hier = match hier.split_once('/') {
        Some((code, peer)) if PEER_NAMES.contains(&peer) => format!("{code}/127.0.0.1"),
        _ => hier,
    };
    (line[3].clone(), hier)
}

/// A client sending everything through the proxy at `addr`.
fn through(addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{addr}")).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// Parents that answer with their own name and let nothing be stored.
async fn named_parents(names: &[&'static str]) -> Vec<support::Origin> {
    let mut parents = Vec::new();
    for &name in names {
        let origin = Origin::builder()
            .route("/obj", move |_| {
                let mut r = reply(200, name);
                r.headers_mut()
                    .insert("cache-control", "no-store".parse().unwrap());
                r
            })
            .spawn()
            .await;
        parents.push(origin);
    }
    parents
}

/// cuttle with `extra` (tables) logging to a file in a fresh dir.
async fn logging_cuttle(extra: &str) -> (TestProxy, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cuttle = TestProxy::start_text(
        &config(
            dir.path(),
            &format!("{extra}[log]\naccess_log = \"{}\"\n", log.display()),
        ),
        None,
    )
    .await;
    (cuttle, log, dir)
}

/// Asserts both logs hold the same code/status and hierarchy for each of the first `n` lines.
async fn assert_same_lines(squid: &Squid, cuttle: TestProxy, log: &std::path::Path, n: usize) {
    cuttle.shutdown().await;
    let theirs = squid_tcp_lines(&squid.dir.path().join("access.log"), n);
    let ours = squid_log_fields(log, n);
    assert_eq!(ours.len(), n, "{ours:?}");
    for (ours, theirs) in ours.iter().zip(&theirs) {
        assert_eq!(
            golden(ours),
            golden(theirs),
            "ours {ours:?}, Squid's {theirs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_and_carp_parents_are_logged_as_squid_logs_them() {
    let parents = named_parents(&["p1", "p2"]).await;
    for (squid_option, selection, expected) in [
        ("round-robin", "round_robin", "ROUNDROBIN_PARENT"),
        ("carp", "carp", "CARP"),
    ] {
        let squid_peers: String = parents
            .iter()
            .zip(["p1", "p2"])
            .map(|(p, name)| {
                format!(
                    "cache_peer 127.0.0.1 parent {} 0 {squid_option} no-query name={name}\n",
                    p.addr.port()
                )
            })
            .collect();
        let squid = Squid::start(
            "squid-golden",
            &format!("{squid_peers}never_direct allow all\ncache deny all"),
        );
        let cuttle_peers: String = parents
            .iter()
            .zip(["p1", "p2"])
            .map(|(p, name)| {
                format!(
                    "[[peer]]\nhost = \"127.0.0.1\"\nport = {}\ntype = \"parent\"\nname = \"{name}\"\n",
                    p.addr.port()
                )
            })
            .collect();
        let (cuttle, log, _dir) = logging_cuttle(&format!(
            "{cuttle_peers}[hierarchy]\nparent_selection = \"{selection}\"\n\
             [[never_direct]]\nallow = [\"all\"]\n"
        ))
        .await;
        for client in [through(squid.addr), through(cuttle.addr)] {
            for n in 0..2 {
                let response = client
                    .get(format!("http://golden.test/obj?n={n}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                // Read to the end: a client that leaves early is `TCP_MISS_ABORTED` in Squid.
                response.text().await.unwrap();
            }
        }
        let ours = squid_log_fields(&log, 2);
        assert!(ours[0][8].starts_with(expected), "{ours:?}");
        assert_same_lines(&squid, cuttle, &log, 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_through_a_parent_and_a_never_direct_failure_are_logged_as_squid_logs_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = echo_server().await;
    let ports = format!("[forward]\nconnect_ports = [{}]\n", echo.port());
    let (upper, _upper_log, _upper_dir) = logging_cuttle(&ports).await;
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let squid = Squid::start(
        "squid-golden-connect",
        &format!(
            "cache_peer 127.0.0.1 parent {} 0 no-query name=upper\n\
             cache_peer 127.0.0.1 parent {gone} 0 no-query name=gone\n\
             acl to_gone dstdomain gone.test\n\
             cache_peer_access upper deny to_gone\ncache_peer_access gone allow to_gone\n\
             cache_peer_access gone deny all\nnever_direct allow all",
            upper.addr.port()
        ),
    );
    let (cuttle, log, _dir) = logging_cuttle(&format!(
        "[[peer]]\nhost = \"127.0.0.1\"\nport = {}\ntype = \"parent\"\nname = \"upper\"\n\
         {ports}[[never_direct]]\nallow = [\"all\"]\n",
        upper.addr.port()
    ))
    .await;
    let (dead_cuttle, dead_log, _dead_dir) = logging_cuttle(&format!(
        "[[peer]]\nhost = \"127.0.0.1\"\nport = {gone}\ntype = \"parent\"\nname = \"gone\"\n\
         [[never_direct]]\nallow = [\"all\"]\n"
    ))
    .await;
    for proxy in [squid.addr, cuttle.addr] {
        let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
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
        assert_eq!(&back, b"ping");
    }
    // The only parent for gone.test refuses connections: no route under never_direct.
    let mut statuses = Vec::new();
    for proxy in [squid.addr, dead_cuttle.addr] {
        let response = through(proxy)
            .get("http://gone.test/page")
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        response.text().await.unwrap();
    }
    dead_cuttle.shutdown().await;
    cuttle.shutdown().await;
    let theirs = squid_tcp_lines(&squid.dir.path().join("access.log"), 2);
    let ours: Vec<Vec<String>> =
        [squid_log_fields(&log, 1), squid_log_fields(&dead_log, 1)].concat();
    let by_method = |lines: &[Vec<String>], method: &str| {
        golden(lines.iter().find(|l| l[5] == method).unwrap())
    };
    assert_eq!(
        by_method(&ours, "CONNECT"),
        by_method(&theirs, "CONNECT"),
        "ours {ours:?}, Squid's {theirs:?}"
    );
    assert_eq!(by_method(&ours, "CONNECT").1, "FIRSTUP_PARENT/127.0.0.1");
    // Nothing was forwarded: HIER_NONE in both. The status differs, and is pinned here so a
    // change on either side shows: Squid 5.7 answers a refused parent with 502
    // (ERR_READ_ERROR), cuttle with 503 (ERR_CONNECT_FAIL, as Squid answers a refused origin).
    let (our_code, our_hier) = by_method(&ours, "GET");
    let (their_code, their_hier) = by_method(&theirs, "GET");
    assert_eq!(our_hier, "HIER_NONE/-", "{ours:?}");
    assert_eq!(our_hier, their_hier, "ours {ours:?}, Squid's {theirs:?}");
    assert_eq!(
        (their_code.as_str(), our_code.as_str()),
        ("TCP_MISS/502", "TCP_MISS/503"),
        "statuses {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_and_purge_are_logged_as_squid_logs_them() {
    let origin = cacheable_origin().spawn().await;
    let squid = Squid::start(
        "squid-golden-purge",
        "acl purge method PURGE\nhttp_access allow purge localhost",
    );
    let (cuttle, log, _dir) = logging_cuttle("").await;
    for proxy in [squid.addr, cuttle.addr] {
        let client = through(proxy);
        for _ in 0..2 {
            let r = client.get(origin.url("/object")).send().await.unwrap();
            assert_eq!(r.text().await.unwrap(), "interop body");
        }
        for expected in [200, 404] {
            let r = client
                .request(
                    reqwest::Method::from_bytes(b"PURGE").unwrap(),
                    origin.url("/object"),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), expected, "{proxy}");
            r.text().await.unwrap();
        }
    }
    let ours = squid_log_fields(&log, 4);
    assert_eq!(golden(&ours[1]).1, "HIER_NONE/-");
    assert_same_lines(&squid, cuttle, &log, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_mode_upstreams_are_logged_as_squid_logs_them() {
    let origin = cacheable_origin().spawn().await;
    let accel = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let squid = Squid::start(
        "squid-golden-accel",
        &format!(
            "http_port 127.0.0.1:{accel} accel defaultsite=www.example.test vhost\n\
             cache_peer 127.0.0.1 parent {} 0 no-query originserver",
            origin.addr.port()
        ),
    );
    let accel: SocketAddr = format!("127.0.0.1:{accel}").parse().unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(accel).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = format!(
        "visible_hostname = \"cuttle-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"{}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n[log]\naccess_log = \"{}\"\n",
        origin.addr,
        dir.path().join("cache").display(),
        log.display()
    );
    let cuttle = TestProxy::start_text(&text, None).await;
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    for front in [accel, cuttle.addr] {
        for _ in 0..2 {
            let r = client
                .get(format!("http://{front}/object"))
                .header("host", "www.example.test")
                .send()
                .await
                .unwrap();
            assert_eq!(r.text().await.unwrap(), "interop body");
        }
    }
    let ours = squid_log_fields(&log, 2);
    assert_eq!(golden(&ours[0]).1, "FIRSTUP_PARENT/127.0.0.1", "{ours:?}");
    assert_eq!(golden(&ours[1]).1, "HIER_NONE/-", "{ours:?}");
    assert_same_lines(&squid, cuttle, &log, 2).await;
}
