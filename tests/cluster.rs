//! Cluster mode (`[cluster]`): three real cuttle members on loopback act as one cache (each
//! key fetched from the origin once, whichever member is asked), survive a member's death
//! without a client error, give a returning member its keys back, and a purge at any member
//! reaches the owner. Plus the 100-member ring simulation: how many keys move when a member
//! joins or leaves, and how evenly equal weights spread them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use cuttle::upstream::carp::{Carp, CarpPeer};
use support::{reply_with, start_again, Origin, TestProxy, WAIT};

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
const URLS: usize = 300;

/// Free loopback ports for the members (each member's config names all of them).
fn free_ports() -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..NAMES.len())
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Member `me`'s config: its own port, every member, fast probes (a refused connection keeps
/// a member dead until a probe finds it up again).
fn member_config(me: usize, ports: &[u16], dir: &std::path::Path) -> String {
    let mut text = format!(
        "visible_hostname = \"cuttle-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:{}\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n[[http_access]]\ndeny = [\"all\"]\n\
         [cache]\nstatus_name = \"{}\"\n\
         [cache.disk]\npath = \"{}\"\n\
         [cluster]\nself = \"{}\"\nprobe_interval = \"100ms\"\ndead_peer_timeout = \"1h\"\n",
        ports[me],
        NAMES[me],
        dir.display(),
        NAMES[me]
    );
    for (name, port) in NAMES.iter().zip(ports) {
        text.push_str(&format!(
            "[[cluster.member]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\nweight = 1\n"
        ));
    }
    text
}

async fn start_member(me: usize, ports: &[u16], dir: &tempfile::TempDir) -> TestProxy {
    let text = member_config(me, ports, &dir.path().join(NAMES[me]));
    TestProxy::start_text(&text, None).await
}

/// Starts member `me` again on its old port, which the other members' probes may hold as a
/// local port for a moment (`support::start_again`).
async fn restart_member(me: usize, ports: &[u16], dir: &tempfile::TempDir) -> TestProxy {
    let text = member_config(me, ports, &dir.path().join(NAMES[me]));
    start_again(
        || TestProxy::try_start_text(&text, None),
        |e| {
            matches!(e, cuttle::app::StartError::Bind { source, .. }
                if source.kind() == std::io::ErrorKind::AddrInUse)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("member {me} did not start again: {e}"))
}

/// Starts every member, then waits out a few probe intervals: a member started before the
/// others found them down, and only its next probe finds them up.
async fn start_all(ports: &[u16], dir: &tempfile::TempDir) -> Vec<TestProxy> {
    let mut members = Vec::new();
    for me in 0..NAMES.len() {
        members.push(start_member(me, ports, dir).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    members
}

/// An origin whose `/obj?n=N` answers are cacheable and name N.
async fn origin() -> Origin {
    Origin::builder()
        .route("/obj", |r| {
            let body = format!("object {}", r.uri.query().unwrap_or(""));
            reply_with(200, &body, &[("cache-control", "max-age=600")])
        })
        .spawn()
        .await
}

fn client(proxy: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://127.0.0.1:{proxy}")).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// The member CARP makes the owner of `url` with every member up (the cluster key is the
/// cache key, which for these URLs is the URL itself).
fn owner(url: &str) -> usize {
    let peers: Vec<CarpPeer> = NAMES
        .iter()
        .map(|n| CarpPeer {
            name: (*n).to_owned(),
            weight: 1,
        })
        .collect();
    Carp::new(&peers).choose(url, |_| true).unwrap()
}

/// GETs `url` through `proxy`; the status, `Cache-Status` and body.
async fn get(client: &reqwest::Client, url: &str) -> Result<(u16, String, String), String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let cache_status = response
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, cache_status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_fetch_each_object_once_whichever_member_is_asked() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let members = start_all(&ports, &dir).await;
    let mut owned = [0usize; 3];
    for (round, port) in ports.iter().enumerate() {
        let client = client(*port);
        for n in 0..URLS {
            let url = origin.url(&format!("/obj?n={n}"));
            let (status, cache_status, body) = get(&client, &url).await.unwrap();
            assert_eq!(status, 200, "{url} via {}", NAMES[round]);
            assert_eq!(body, format!("object n={n}"));
            let o = owner(&url);
            if round == 0 {
                owned[o] += 1;
            }
            // The owner's Cache-Status member comes first: it served the object.
            let first = cache_status.split(',').next().unwrap_or("").trim();
            assert!(
                first.starts_with(&format!("{};", NAMES[o])),
                "{url} via {}: owner {} should have served it: {cache_status}",
                NAMES[round],
                NAMES[o]
            );
            if round > 0 {
                assert!(first.contains("hit"), "{url}: {cache_status}");
            }
            if o != round {
                assert!(
                    cache_status.contains(&format!("{};fwd=bypass;detail=cluster", NAMES[round])),
                    "a non-owner relays without a lookup: {cache_status}"
                );
            }
        }
    }
    assert_eq!(
        origin.hits(),
        URLS,
        "900 requests through 3 members, one origin fetch per object"
    );
    assert!(
        owned.iter().all(|&k| k > 50),
        "every member owns keys: {owned:?}"
    );
    for member in members {
        member.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_member_costs_no_client_errors_and_gets_its_keys_back() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let mut members: Vec<Option<TestProxy>> = start_all(&ports, &dir)
        .await
        .into_iter()
        .map(Some)
        .collect();
    let clients: Vec<reqwest::Client> = ports.iter().map(|p| client(*p)).collect();
    let urls: Vec<String> = (0..URLS)
        .map(|n| origin.url(&format!("/obj?n={n}")))
        .collect();
    // Warm the cluster through node-a.
    for url in &urls {
        assert_eq!(get(&clients[0], url).await.unwrap().0, 200);
    }
    assert_eq!(origin.hits(), URLS);

    // Requests through the survivors, node-c killed a third of the way in.
    let mut errors = Vec::new();
    for (n, url) in urls.iter().enumerate() {
        if n == URLS / 3 {
            members[2].take().unwrap().shutdown().await;
        }
        let via = n % 2;
        match get(&clients[via], url).await {
            Ok((200, _, body)) if body.starts_with("object") => {}
            other => errors.push(format!("{url} via {}: {other:?}", NAMES[via])),
        }
    }
    assert!(errors.is_empty(), "client errors: {errors:#?}");
    let c_keys: Vec<&String> = urls.iter().filter(|u| owner(u) == 2).collect();
    assert!(!c_keys.is_empty());
    // node-c's keys went to the next member in hash order, which fetched them once more.
    let after_death = origin.hits();
    assert!(after_death > URLS && after_death <= URLS + c_keys.len());

    // node-c comes back on its port (with its disk cache) and the probes of node-a and node-b
    // (each its own, on its own schedule) find it up.
    members[2] = Some(restart_member(2, &ports, &dir).await);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut back = true;
        let mut cache_status = String::new();
        for client in &clients[..2] {
            cache_status = get(client, c_keys[0]).await.unwrap().1;
            back &= cache_status.trim_start().starts_with("node-c;");
        }
        if back {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node-c never got its keys back: {cache_status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for url in &c_keys {
        for via in [0, 1] {
            let (status, cache_status, _) = get(&clients[via], url).await.unwrap();
            assert_eq!(status, 200);
            assert!(
                cache_status.trim_start().starts_with("node-c;"),
                "{url} via {}: {cache_status}",
                NAMES[via]
            );
        }
    }
    for member in members.into_iter().flatten() {
        member.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_at_any_member_reaches_the_owner() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let members = start_all(&ports, &dir).await;
    // A URL node-a does not own, purged at node-a.
    let url = (0..URLS)
        .map(|n| origin.url(&format!("/obj?n={n}")))
        .find(|u| owner(u) != 0)
        .unwrap();
    let a = client(ports[0]);
    get(&a, &url).await.unwrap();
    let (_, cache_status, _) = get(&a, &url).await.unwrap();
    assert!(cache_status.contains("hit"), "{cache_status}");
    assert_eq!(origin.hits(), 1);
    let purged = a
        .request(reqwest::Method::from_bytes(b"PURGE").unwrap(), &url)
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200, "the owner had it");
    let (_, cache_status, _) = get(&a, &url).await.unwrap();
    assert!(!cache_status.contains("hit"), "{cache_status}");
    assert_eq!(origin.hits(), 2, "purged at the owner, so fetched again");
    for member in members {
        member.shutdown().await;
    }
}

/// Ring simulation over the real cluster code: 100 equal members, 200 000 keys.
#[test]
fn a_hundred_member_ring_moves_one_percent_and_spreads_evenly() {
    use cuttle::upstream::cluster::{Cluster, ClusterConfig, MemberConfig};
    let members: Vec<MemberConfig> = (0..101)
        .map(|i| MemberConfig {
            name: format!("member-{i:03}"),
            host: "127.0.0.1".to_owned(),
            port: 9,
            weight: 1,
            admin: None,
        })
        .collect();
    let upstream = cuttle::upstream::Config {
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        max_response_header_size: 65536,
        pool_idle_timeout: Duration::from_secs(1),
    };
    let ring = |n: usize| {
        Cluster::new(
            ClusterConfig {
                self_name: Some("member-000".to_owned()),
                members: members[..n].to_vec(),
                probe_interval: Duration::from_secs(3600),
                probe_timeout: Duration::from_secs(1),
                dead_time: Duration::from_secs(3600),
                hot_copy: None,
            },
            &upstream,
            None,
            false,
        )
    };
    let (hundred, grown) = (ring(100), ring(101));
    let keys = 200_000;
    let mut counts = vec![0usize; 100];
    let (mut moved_add, mut moved_remove) = (0usize, 0usize);
    let before: Vec<usize> = (0..keys)
        .map(|k| {
            let key = format!("http://origin.example/objects/{k}");
            let owner = hundred.owners(&key).next().unwrap();
            counts[owner] += 1;
            if grown.owners(&key).next().unwrap() != owner {
                moved_add += 1;
            }
            owner
        })
        .collect();
    hundred.peers.liveness(42).unwrap().failed("refused");
    for (k, owner) in before.iter().enumerate() {
        let key = format!("http://origin.example/objects/{k}");
        if hundred.owners(&key).next().unwrap() != *owner {
            moved_remove += 1;
            assert_eq!(*owner, 42, "only the removed member's keys move");
        }
    }
    let even = keys as f64 / 100.0;
    let worst = counts
        .iter()
        .map(|&c| (c as f64 - even).abs() / even)
        .fold(0.0, f64::max);
    let (add, remove) = (
        moved_add as f64 / keys as f64,
        moved_remove as f64 / keys as f64,
    );
    println!(
        "100-member ring, {keys} keys: adding one moves {:.2}%, removing one moves {:.2}%, \
         worst member {:.1}% from even",
        add * 100.0,
        remove * 100.0,
        worst * 100.0
    );
    assert!((0.005..0.015).contains(&add), "add moved {add}");
    assert!((0.005..0.015).contains(&remove), "remove moved {remove}");
    assert!(worst <= 0.10, "spread {worst}");
}

/// `hash` upstream groups hash the cache key (after `store_id`), not the upstream URI: every
/// mirror URL of one file, stored under one key, goes to one server.
#[tokio::test]
async fn hash_groups_hash_the_cache_key_after_store_id() {
    let mut origins = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let mut builder = Origin::builder();
        for mirror in 0..6 {
            for file in 0..20 {
                builder = builder.route(&format!("/mirror{mirror}/file{file}"), move |_| {
                    reply_with(200, name, &[("cache-control", "no-store")])
                });
            }
        }
        origins.push(builder.spawn().await);
    }
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<String> = origins
        .iter()
        .map(|o| format!("{{ address = \"{}\" }}", o.addr))
        .collect();
    let text = format!(
        "visible_hostname = \"edge-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\nalgorithm = \"hash\"\nservers = [{}]\n\
         [[store_id]]\nregex = '^http://www\\.example\\.test/mirror[0-9]+/(.*)'\n\
         replace = 'http://www.example.test/file/$1'\n\
         [cache.disk]\npath = \"{}\"\n",
        servers.join(", "),
        dir.path().join("cache").display()
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap();
    let mut servers_used = std::collections::HashSet::new();
    for file in 0..5 {
        let mut served_by = std::collections::HashSet::new();
        for mirror in 0..6 {
            let response = client
                .get(format!("http://{}/mirror{mirror}/file{file}", proxy.addr))
                .header("host", "www.example.test")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            served_by.insert(response.text().await.unwrap());
        }
        assert_eq!(
            served_by.len(),
            1,
            "file{file}'s mirrors share a cache key, so a server: {served_by:?}"
        );
        servers_used.extend(served_by);
    }
    // The hash spreads keys: twenty keys all on one of three servers (a chance of 3^-19 with
    // the servers' random ports; five keys left it at 1 in 81) would mean it does not.
    for file in 5..20 {
        let response = client
            .get(format!("http://{}/mirror0/file{file}", proxy.addr))
            .header("host", "www.example.test")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        servers_used.insert(response.text().await.unwrap());
    }
    assert!(servers_used.len() >= 2, "twenty keys on one server");
    proxy.shutdown().await;
}

/// Membership comes from the file and follows a reload; `--cluster-self` names the member when
/// the shared file does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_is_reloaded_and_self_can_come_from_the_command_line() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let b = start_member(1, &ports, &dir).await;
    // node-a's file: no `self`, and at first only itself as a member.
    let file = dir.path().join("a.toml");
    let write = |members: &[usize]| {
        let mut text =
            member_config(0, &ports, &dir.path().join("node-a")).replace("self = \"node-a\"\n", "");
        let first_member = text.find("[[cluster.member]]").unwrap();
        text.truncate(first_member);
        for &m in members {
            text.push_str(&format!(
                "[[cluster.member]]\nname = \"{}\"\naddress = \"127.0.0.1:{}\"\n",
                NAMES[m], ports[m]
            ));
        }
        text.push_str("[log]\naccess_log = \"none\"\n[admin]\nlisten = \"none\"\n");
        std::fs::write(&file, text).unwrap();
    };
    write(&[0]);
    let source = cuttle::config::Source {
        path: Some(file.clone()),
        overrides: cuttle::config::Overrides {
            cluster_self: Some("node-a".to_owned()),
            ..Default::default()
        },
    };
    let no_self = cuttle::config::Source {
        overrides: cuttle::config::Overrides::default(),
        ..source.clone()
    };
    let refused = no_self.load().unwrap_err().to_string();
    assert!(refused.contains("--cluster-self"), "{refused}");
    let config = source.load().unwrap();
    let a = cuttle::app::start_with(config, cuttle::clock::system(), Some(source))
        .await
        .unwrap();
    let pair = Carp::new(
        &NAMES[..2]
            .iter()
            .map(|n| CarpPeer {
                name: (*n).to_owned(),
                weight: 1,
            })
            .collect::<Vec<_>>(),
    );
    let mut b_keys = (0..URLS)
        .map(|n| origin.url(&format!("/obj?n={n}")))
        .filter(|u| pair.choose(u, |_| true) == Some(1));
    let client = client(ports[0]);
    let (_, alone, _) = get(&client, &b_keys.next().unwrap()).await.unwrap();
    assert!(
        alone.starts_with("node-a;"),
        "a one-member cluster: {alone}"
    );
    write(&[0, 1]);
    a.control().reload().await.unwrap();
    let (_, joined, _) = get(&client, &b_keys.next().unwrap()).await.unwrap();
    assert!(joined.starts_with("node-b;"), "node-b joined: {joined}");
    a.shutdown().await;
    b.shutdown().await;
}

/// Concurrent misses for one object at every member are one origin fetch: the non-owners'
/// lookups all reach the owner, whose collapsed forwarding joins them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_at_every_member_collapse_at_the_owner() {
    let origin = Origin::builder()
        .route("/slow", |_| {
            // Long enough for every request to arrive while the first fetch is under way.
            std::thread::sleep(Duration::from_millis(400));
            reply_with(200, "slow object", &[("cache-control", "max-age=600")])
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let members = start_all(&ports, &dir).await;
    let url = origin.url("/slow");
    let clients: Vec<reqwest::Client> = ports.iter().map(|p| client(*p)).collect();
    let requests = (0..9).map(|n| get(&clients[n % 3], &url));
    let answers = futures_util::future::join_all(requests).await;
    for answer in answers {
        let (status, _, body) = answer.unwrap();
        assert_eq!((status, body.as_str()), (200, "slow object"));
    }
    assert_eq!(
        origin.hits(),
        1,
        "nine concurrent misses over three members"
    );
    for member in members {
        member.shutdown().await;
    }
}

/// Reverse mode: members accelerating one site share their cache the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_mode_members_share_one_cache() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let mut members = Vec::new();
    for me in 0..NAMES.len() {
        let text = member_config(me, &ports, &dir.path().join(NAMES[me])).replace(
            &format!("listen = \"127.0.0.1:{}\"\n", ports[me]),
            &format!(
                "listen = \"127.0.0.1:{}\"\nmode = \"reverse\"\n\
                 [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
                 [upstream.app]\nservers = [{{ address = \"{}\" }}]\n",
                ports[me], origin.addr
            ),
        );
        members.push(TestProxy::start_text(&text, None).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap();
    for port in &ports {
        for n in 0..60 {
            let response = client
                .get(format!("http://127.0.0.1:{port}/obj?n={n}"))
                .header("host", "www.example.test")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.text().await.unwrap(), format!("object n={n}"));
        }
    }
    assert_eq!(origin.hits(), 60, "180 requests through 3 reverse members");
    for member in members {
        member.shutdown().await;
    }
}

// === hot copies and purges across the cluster ===

/// Free loopback ports for the members' proxy ports and admin listeners.
fn free_port_pairs() -> (Vec<u16>, Vec<u16>) {
    let held: Vec<std::net::TcpListener> = (0..NAMES.len() * 2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    (ports[..NAMES.len()].to_vec(), ports[NAMES.len()..].to_vec())
}

/// Member `me` with hot copies (`cluster`: the `hot_copy_*` keys), extra `[cache]` keys, and
/// admin listeners on `admins` (each member's named in its `[[cluster.member]]`).
fn hot_member_config(
    me: usize,
    ports: &[u16],
    admins: &[u16],
    dir: &std::path::Path,
    cluster: &str,
    cache: &str,
) -> String {
    let mut text = member_config(me, ports, dir)
        .replace("[cluster]\n", &format!("[cluster]\n{cluster}\n"))
        .replace("[cache]\n", &format!("[cache]\n{cache}\n"));
    for (name, admin) in NAMES.iter().zip(admins) {
        text = text.replace(
            &format!("[[cluster.member]]\nname = \"{name}\"\n"),
            &format!("[[cluster.member]]\nname = \"{name}\"\nadmin = \"127.0.0.1:{admin}\"\n"),
        );
    }
    text.push_str(&format!("[admin]\nlisten = \"127.0.0.1:{}\"\n", admins[me]));
    text
}

/// Three members sharing `clock`, with hot copies and admin listeners.
async fn start_hot(
    ports: &[u16],
    admins: &[u16],
    dir: &tempfile::TempDir,
    cluster: &str,
    cache: &str,
    clock: &std::sync::Arc<cuttle::clock::ManualClock>,
) -> Vec<TestProxy> {
    let mut members = Vec::new();
    for (me, name) in NAMES.iter().enumerate() {
        let text = hot_member_config(me, ports, admins, &dir.path().join(name), cluster, cache);
        let shared: cuttle::clock::SharedClock = clock.clone();
        members.push(TestProxy::start_with_clock(&text, None, shared).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    members
}

/// A clock the members share, before the wall clock (so the origin's `Date` adds no age).
fn test_clock() -> std::sync::Arc<cuttle::clock::ManualClock> {
    std::sync::Arc::new(cuttle::clock::ManualClock::new(
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ))
}

/// A URL served by `origin` at `path?n=N` that member `owner_index` owns.
fn owned_by(origin: &Origin, path: &str, owner_index: usize) -> String {
    (0..URLS)
        .map(|n| origin.url(&format!("{path}?n={n}")))
        .find(|u| owner(u) == owner_index)
        .unwrap()
}

/// Requests member `admin` has finished, once no more are being counted (a transaction is
/// counted just after its response ends).
async fn settled_requests(admin: std::net::SocketAddr) -> u64 {
    let mut last = u64::MAX;
    for _ in 0..50 {
        let now = support::admin_status(admin).await["requests"]["total"]
            .as_u64()
            .unwrap();
        if now == last {
            return now;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("request count of {admin} never settled");
}

fn from_hot_copy(cache_status: &str, member: &str) -> bool {
    cache_status.contains(&format!("{member};hit;ttl=")) && cache_status.contains("detail=hot-copy")
}

/// A very hot URL asked through a non-owner is answered from that member's hot copy until
/// `hot_copy_ttl` has passed (the owner sees none of those requests), then from the owner
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_url_is_served_from_the_non_owners_copy_within_its_ttl() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let (ports, admins) = free_port_pairs();
    let clock = test_clock();
    let members = start_hot(
        &ports,
        &admins,
        &dir,
        "hot_copy_ttl = \"5s\"\nhot_copy_threshold = 2",
        "",
        &clock,
    )
    .await;
    let url = owned_by(&origin, "/obj", 1);
    let c = client(ports[2]);
    // Below the threshold: relayed, no copy.
    let (_, cache_status, _) = get(&c, &url).await.unwrap();
    assert!(
        cache_status.contains("node-c;fwd=bypass;detail=cluster"),
        "{cache_status}"
    );
    // The second lookup within the ttl makes the key hot: the owner's answer is copied.
    let (_, cache_status, _) = get(&c, &url).await.unwrap();
    assert!(
        cache_status.contains("node-c;fwd=bypass;stored;detail=cluster"),
        "{cache_status}"
    );
    let owner_admin = members[1].admin.unwrap();
    let before = settled_requests(owner_admin).await;
    for _ in 0..5 {
        let (status, cache_status, body) = get(&c, &url).await.unwrap();
        assert_eq!((status, body.as_str()), (200, url_body(&url).as_str()));
        assert!(from_hot_copy(&cache_status, "node-c"), "{cache_status}");
    }
    assert_eq!(
        settled_requests(owner_admin).await,
        before,
        "the owner saw none of the requests answered from the hot copy"
    );
    let status = support::admin_status(members[2].admin.unwrap()).await;
    assert_eq!(status["cache"]["results"]["hot_copy_hit"], 5, "{status}");
    // Past the ttl: asked from the owner again (which still holds it fresh).
    clock.advance(Duration::from_secs(6));
    let (_, cache_status, _) = get(&c, &url).await.unwrap();
    assert!(!cache_status.contains("hot-copy"), "{cache_status}");
    assert!(cache_status.starts_with("node-b;hit"), "{cache_status}");
    assert_eq!(settled_requests(owner_admin).await, before + 1);
    assert_eq!(origin.hits(), 1);
    for member in members {
        member.shutdown().await;
    }
}

fn url_body(url: &str) -> String {
    format!("object {}", url.split_once('?').unwrap().1)
}

/// Responses the owner would not share, or that carry a cookie, never become hot copies;
/// a plain one under the same settings does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_set_cookie_responses_never_become_hot_copies() {
    let origin = Origin::builder()
        .route("/private", |_| {
            reply_with(200, "mine", &[("cache-control", "private, max-age=600")])
        })
        .route("/cookie", |_| {
            reply_with(
                200,
                "with a session",
                &[("cache-control", "max-age=600"), ("set-cookie", "s=42")],
            )
        })
        .route("/plain", |_| {
            reply_with(200, "everyone's", &[("cache-control", "max-age=600")])
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (ports, admins) = free_port_pairs();
    let clock = test_clock();
    // The owner keeps and replays cookies (`store_set_cookie`): the member still must not.
    let members = start_hot(
        &ports,
        &admins,
        &dir,
        "hot_copy_ttl = \"5s\"\nhot_copy_threshold = 1",
        "store_set_cookie = true",
        &clock,
    )
    .await;
    let c = client(ports[2]);
    for path in ["/private", "/cookie"] {
        let url = owned_by(&origin, path, 1);
        for n in 0..4 {
            let (status, cache_status, _) = get(&c, &url).await.unwrap();
            assert_eq!(status, 200);
            assert!(
                !cache_status.contains("hot-copy")
                    && !cache_status.contains("node-c;fwd=bypass;stored"),
                "{path} request {n}: {cache_status}"
            );
        }
    }
    let url = owned_by(&origin, "/plain", 1);
    get(&c, &url).await.unwrap();
    let (_, cache_status, body) = get(&c, &url).await.unwrap();
    assert_eq!(body, "everyone's");
    assert!(from_hot_copy(&cache_status, "node-c"), "{cache_status}");
    for member in members {
        member.shutdown().await;
    }
}

/// `POST /purge` on member A's admin listener (by URL, prefix, and soft by tag) reaches the
/// owner and the hot copy at member C, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_purge_at_one_member_reaches_the_owner_and_every_hot_copy() {
    let origin = Origin::builder()
        .route("/obj", |r| {
            let body = format!("object {}", r.uri.query().unwrap_or(""));
            reply_with(
                200,
                &body,
                &[
                    ("cache-control", "max-age=600"),
                    ("surrogate-key", "all-objects"),
                    ("etag", "\"v1\""),
                ],
            )
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (ports, admins) = free_port_pairs();
    let clock = test_clock();
    let members = start_hot(
        &ports,
        &admins,
        &dir,
        "hot_copy_ttl = \"60s\"\nhot_copy_threshold = 1",
        "",
        &clock,
    )
    .await;
    let c = client(ports[2]);
    let admin = support::admin_client();
    let url = owned_by(&origin, "/obj", 1);
    let queries = [
        format!("url={}", encode(&url)),
        format!("prefix={}", encode(&url)),
        "tag=all-objects&soft=1".to_owned(),
    ];
    for (round, query) in queries.iter().enumerate() {
        get(&c, &url).await.unwrap();
        let (_, cache_status, _) = get(&c, &url).await.unwrap();
        let hits_before = origin.hits();
        assert!(
            from_hot_copy(&cache_status, "node-c"),
            "{query}: {cache_status}"
        );
        let response = admin
            .post(format!("http://127.0.0.1:{}/purge?{query}", admins[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{query}");
        let answer: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(
            answer["cluster"],
            serde_json::json!([
                { "member": "node-b", "status": 200 },
                { "member": "node-c", "status": 200 },
            ]),
            "sent once to each other member: {answer}"
        );
        let (_, cache_status, body) = get(&c, &url).await.unwrap();
        assert_eq!(body, url_body(&url));
        assert!(
            !cache_status.contains("hot-copy"),
            "{query}: the hot copy at node-c is gone: {cache_status}"
        );
        assert!(
            !cache_status.starts_with("node-b;hit"),
            "{query}: purged at the owner: {cache_status}"
        );
        assert_eq!(
            origin.hits(),
            hits_before + 1,
            "{query} (round {round}): the owner asked the origin again"
        );
    }
    // A PURGE on node-a's proxy port reaches the owner and node-c's hot copy the same way.
    get(&c, &url).await.unwrap();
    let (_, cache_status, _) = get(&c, &url).await.unwrap();
    assert!(from_hot_copy(&cache_status, "node-c"), "{cache_status}");
    let hits_before = origin.hits();
    let purged = client(ports[0])
        .request(reqwest::Method::from_bytes(b"PURGE").unwrap(), &url)
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    let (_, cache_status, _) = get(&c, &url).await.unwrap();
    assert!(!cache_status.contains("hot-copy"), "{cache_status}");
    assert_eq!(origin.hits(), hits_before + 1, "purged at the owner too");
    for member in members {
        member.shutdown().await;
    }
}

/// A purge sent on by a member (marked with the cluster hop) is applied and not sent round
/// the cluster again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_propagated_admin_purge_does_not_bounce_back() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let (ports, admins) = free_port_pairs();
    let clock = test_clock();
    let members = start_hot(
        &ports,
        &admins,
        &dir,
        "hot_copy_ttl = \"60s\"\nhot_copy_threshold = 1",
        "",
        &clock,
    )
    .await;
    // Stored at node-b (its owner) and copied at node-c.
    let url = owned_by(&origin, "/obj", 1);
    let c = client(ports[2]);
    get(&c, &url).await.unwrap();
    let (_, cache_status, _) = get(&c, &url).await.unwrap();
    assert!(from_hot_copy(&cache_status, "node-c"), "{cache_status}");
    // As node-a would send it on: node-c applies it and sends it to no member.
    let response = support::admin_client()
        .post(format!(
            "http://127.0.0.1:{}/purge?url={}",
            admins[2],
            encode(&url)
        ))
        .header("cuttle-cluster-hop", "node-a")
        .header("cuttle-purge-hop", "node-a")
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["purged"], 1, "node-c's hot copy: {answer}");
    assert_eq!(answer["cluster"], serde_json::json!([]), "{answer}");
    let (_, cache_status, _) = get(&c, &url).await.unwrap();
    assert!(
        cache_status.starts_with("node-b;hit"),
        "not sent on to the owner: {cache_status}"
    );
    assert_eq!(origin.hits(), 1);
    // Come back to node-a (through some member's `purge_propagate`): applied there already.
    let response = support::admin_client()
        .post(format!(
            "http://127.0.0.1:{}/purge?url={}",
            admins[0],
            encode(&url)
        ))
        .header("cuttle-purge-hop", "node-a, node-c")
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["already_applied"], true, "{answer}");
    let (_, cache_status, _) = get(&c, &url).await.unwrap();
    assert!(cache_status.starts_with("node-b;hit"), "{cache_status}");
    for member in members {
        member.shutdown().await;
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
