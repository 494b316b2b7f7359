//! Running changes without a restart: an atomic config reload under load (in process, through
//! `app::Control`), and the real binary's signals: SIGUSR1 reopens the access log after
//! logrotate moved it, SIGHUP reloads, SIGUSR2 toggles debugging; none of them stops it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Polls `done` every 20 ms until it holds or [`WAIT`] passes.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// === atomic reload, in process ===

/// cuttle started from `file`, which its reloads read again.
async fn start_from(file: &Path) -> cuttle::app::Server {
    let source = cuttle::config::Source {
        path: Some(file.to_owned()),
        overrides: cuttle::config::Overrides::default(),
    };
    let config = source.load().unwrap();
    cuttle::app::start_with(config, cuttle::clock::system(), Some(source))
        .await
        .unwrap()
}

/// A reverse config whose site `www.example.test` goes to group `app` on `server`, plus
/// `extra_ports` more listeners.
fn reverse_config(dir: &Path, server: SocketAddr, extra_ports: usize) -> String {
    let mut text = "visible_hostname = \"edge-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n"
        .to_owned();
    for _ in 0..extra_ports {
        text.push_str("[[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n");
    }
    text.push_str(&format!(
        "[acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"www.example.test\"]\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"{server}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n[log]\naccess_log = \"none\"\n",
        dir.join("cache").display()
    ));
    text
}

/// An origin named `name`: `/x` answers its name (not storable), `/cached` a storable body,
/// `/slow` its name in two parts 300 ms apart (so a request stays in flight).
async fn named(name: &'static str) -> Origin {
    Origin::builder()
        .route("/x", move |_| {
            reply_with(200, name, &[("cache-control", "no-store")])
        })
        .route("/cached", move |_| {
            reply_with(
                200,
                &format!("cached by {name}"),
                &[("cache-control", "max-age=600")],
            )
        })
        .route("/slow", move |_| {
            let parts = futures_util::stream::unfold(0u8, move |step| async move {
                match step {
                    0 => Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"slow "))),
                        1,
                    )),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Some((Ok(Frame::data(Bytes::from_static(name.as_bytes()))), 2))
                    }
                    _ => None,
                }
            });
            let mut r = http::Response::new(BodyExt::boxed(StreamBody::new(parts)));
            r.headers_mut()
                .insert("cache-control", "no-store".parse().unwrap());
            r
        })
        .spawn()
        .await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> reqwest::Response {
    client()
        .get(format!("http://{addr}{path}"))
        .header("host", "www.example.test")
        .send()
        .await
        .unwrap()
}

async fn body_of(addr: SocketAddr, path: &str) -> String {
    get(addr, path).await.text().await.unwrap()
}

fn cache_status(r: &reqwest::Response) -> String {
    r.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// One request on an open keep-alive connection; returns the body.
async fn on_connection(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: www.example.test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = tokio::time::timeout(WAIT, read_response(stream))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    String::from_utf8(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_upstream_under_load_and_keeps_sockets_cache_and_old_config_on_error() {
    let a = named("A").await;
    let b = named("B").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cuttle.toml");
    std::fs::write(&file, reverse_config(dir.path(), a.addr, 0)).unwrap();
    let server = start_from(&file).await;
    let addr = server.addr().unwrap();
    let control = server.control();
    assert_eq!(control.generation(), 1);

    // Before: a memory hit, a kept-alive connection, both on A.
    assert_eq!(body_of(addr, "/cached").await, "cached by A");
    let hit = get(addr, "/cached").await;
    assert!(cache_status(&hit).contains("detail=memory"), "{hit:?}");
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    assert_eq!(on_connection(&mut kept_alive, "/x").await, "A");

    // 200 requests in flight on A when the reload lands.
    let in_flight: Vec<_> = (0..200)
        .map(|i| {
            tokio::spawn(async move {
                let r = get(addr, &format!("/slow?i={i}")).await;
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    until("200 requests at origin A", || {
        a.requests()
            .iter()
            .filter(|r| r.uri.path() == "/slow")
            .count()
            == 200
    })
    .await;
    std::fs::write(&file, reverse_config(dir.path(), b.addr, 1)).unwrap();
    let report = control.reload().await.unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(report.groups_changed, vec!["app".to_owned()]);
    assert_eq!(report.servers_added, vec![format!("app/{}", b.addr)]);
    assert_eq!(report.servers_removed, vec![format!("app/{}", a.addr)]);
    assert_eq!(report.listeners_opened.len(), 1, "{report}");
    assert!(report.listeners_closed.is_empty(), "{report}");
    assert_eq!(control.generation(), 2);
    for request in in_flight {
        let (status, body) = request.await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "slow A"),
            "in flight: old config"
        );
    }

    // After: new requests on the same socket (the file says port 0, so a new socket would
    // have another port) and on the old connection go to B; the memory hit is still a hit.
    assert_eq!(body_of(addr, "/x").await, "B");
    assert_eq!(on_connection(&mut kept_alive, "/x").await, "B");
    let hit = get(addr, "/cached").await;
    assert!(cache_status(&hit).contains("detail=memory"), "{hit:?}");
    assert_eq!(hit.text().await.unwrap(), "cached by A");
    let added = report.listeners_opened[0];
    assert_eq!(body_of(added, "/x").await, "B", "the added port serves");

    // A broken file is refused with file:line: key: reason; the running config stays.
    let mut broken = reverse_config(dir.path(), a.addr, 1);
    broken.push_str("[timeouts]\nconect = \"5s\"\n");
    let line = broken.lines().count();
    std::fs::write(&file, &broken).unwrap();
    let err = control.reload().await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}:{line}: timeouts.conect: unknown field",
            file.display()
        )),
        "{err}"
    );
    assert_eq!(control.generation(), 2);
    assert_eq!(body_of(addr, "/x").await, "B");
    assert_eq!(body_of(added, "/x").await, "B", "the added port stays open");
    let counts = control.reload_counts();
    assert_eq!((counts.succeeded, counts.failed), (1, 1));

    // Dropping the added port closes it; the first one stays. The access log, off so far,
    // starts; a new memory-tier size is reported as needing a restart.
    let log = dir.path().join("access.log");
    let text = reverse_config(dir.path(), b.addr, 0).replace(
        "access_log = \"none\"",
        &format!(
            "access_log = \"{}\"\naccess_log_flush = \"0s\"\n[cache.memory]\nmax_size = \"32 MiB\"",
            log.display()
        ),
    );
    std::fs::write(&file, text).unwrap();
    let report = control.reload().await.unwrap();
    assert_eq!(report.listeners_closed, vec![added], "{report}");
    assert!(report.groups_changed.is_empty(), "{report}");
    assert!(report.access_log_changed, "{report}");
    assert_eq!(report.needs_restart, vec!["cache.memory"], "{report}");
    assert!(
        TcpStream::connect(added).await.is_err(),
        "the removed port is closed"
    );
    assert_eq!(body_of(addr, "/x").await, "B");
    until("a line in the new access log", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/x"))
    })
    .await;
    server.shutdown().await;
}

// === the real binary and its signals ===

/// `cuttle` started from a config file, with every stderr line kept.
struct Running {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    _home: tempfile::TempDir,
}

impl Running {
    async fn start(config: &Path) -> Self {
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(cuttle_bin())
            .args(["--config", config.to_str().unwrap()])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "info",
                "--workers",
                "2",
            ])
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                lines.lock().unwrap().push(line);
            }
        });
        let mut running = Self {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            stderr,
            _home: home,
        };
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let found = running.stderr.lock().unwrap().iter().find_map(|line| {
                let rest = line.strip_prefix("cuttle: listening on ")?;
                rest.split_whitespace().next()?.parse().ok()
            });
            if let Some(addr) = found {
                break addr;
            }
            assert!(running.child.try_wait().unwrap().is_none(), "cuttle exited");
            assert!(Instant::now() < deadline, "no listening line");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        running.addr = addr;
        running
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Stderr lines containing `needle`.
    fn lines_with(&self, needle: &str) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    async fn wait_for_line(&mut self, needle: &str, count: usize) {
        let deadline = Instant::now() + WAIT;
        while self.lines_with(needle) < count {
            assert!(self.alive(), "cuttle exited");
            assert!(
                Instant::now() < deadline,
                "no {needle:?} line: {:?}",
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then the exit status.
    async fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "cuttle did not exit on SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A forward-proxy config logging to `log` (each batch written at once).
fn forward_config(dir: &Path, log: &Path, access: &str) -> PathBuf {
    let file = dir.join("cuttle.toml");
    std::fs::write(
        &file,
        format!(
            "[acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
             [[http_access]]\n{access} = [\"localhost\"]\n\
             [cache.disk]\npath = \"{}\"\n\
             [log]\naccess_log = \"{}\"\naccess_log_flush = \"0s\"\n",
            dir.join("cache").display(),
            log.display()
        ),
    )
    .unwrap();
    file
}

fn proxied(proxy: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// `n` requests through the proxy, one after another; all must answer 200 `body`.
async fn requests(client: &reqwest::Client, url: &str, n: usize) {
    for _ in 0..n {
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

async fn until_lines(path: &Path, n: usize) {
    until(&format!("{n} lines in {}", path.display()), || {
        lines(path) >= n
    })
    .await;
    assert_eq!(lines(path), n, "{}", path.display());
}

fn origin_x() -> OriginBuilder {
    Origin::builder().route("/x", |_| {
        reply_with(200, "x", &[("cache-control", "no-store")])
    })
}

#[tokio::test]
async fn sigusr1_after_logrotate_moved_the_file_writes_a_new_one_and_loses_nothing() {
    let origin = origin_x().spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let mut cuttle = Running::start(&forward_config(dir.path(), &log, "allow")).await;
    let client = proxied(cuttle.addr);
    let url = origin.url("/x");

    requests(&client, &url, 5).await;
    until_lines(&log, 5).await;
    std::fs::rename(&log, &rotated).unwrap();
    // Until the signal, lines still go to the moved file (the open descriptor).
    requests(&client, &url, 3).await;
    until_lines(&rotated, 8).await;
    cuttle.signal("USR1");
    until("the new access.log", || log.exists()).await;
    requests(&client, &url, 4).await;
    until_lines(&log, 4).await;
    assert!(cuttle.alive(), "SIGUSR1 must not stop cuttle");
    assert_eq!(cuttle.lines_with("access log reopened"), 1);

    assert!(cuttle.stop().await.success());
    assert_eq!(
        (lines(&rotated), lines(&log)),
        (8, 4),
        "none lost, none twice"
    );
}

#[tokio::test]
async fn sighup_reloads_sigusr2_toggles_debug_and_neither_stops_the_proxy() {
    let origin = origin_x().spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let file = forward_config(dir.path(), &log, "allow");
    let mut cuttle = Running::start(&file).await;
    let client = proxied(cuttle.addr);
    let url = origin.url("/x");

    // SIGHUP with the file unchanged, twice, while requests flow: none fails or goes unlogged.
    let traffic = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { requests(&client, &url, 100).await })
    };
    cuttle.signal("HUP");
    cuttle
        .wait_for_line("config reloaded: generation 2", 1)
        .await;
    cuttle.signal("HUP");
    cuttle
        .wait_for_line("config reloaded: generation 3", 1)
        .await;
    tokio::time::timeout(WAIT, traffic).await.unwrap().unwrap();
    until_lines(&log, 100).await;
    assert!(cuttle.alive());

    // SIGUSR2 toggles debugging on, then off; the proxy keeps serving.
    cuttle.signal("USR2");
    cuttle.wait_for_line("debug diagnostics on", 1).await;
    requests(&client, &url, 1).await;
    cuttle.signal("USR2");
    cuttle.wait_for_line("debug diagnostics off", 1).await;
    requests(&client, &url, 1).await;

    // SIGHUP with a changed file applies it: localhost is now denied.
    forward_config(dir.path(), &log, "deny");
    cuttle.signal("HUP");
    cuttle
        .wait_for_line("config reloaded: generation 4", 1)
        .await;
    let denied = client.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), 403);

    // A broken file is refused with file:line: key: reason; the proxy goes on as it was.
    std::fs::write(&file, "[timeouts]\nconect = \"5s\"\n").unwrap();
    cuttle.signal("HUP");
    let refusal = format!("{}:2: timeouts.conect: unknown field", file.display());
    cuttle.wait_for_line(&refusal, 1).await;
    let still_denied = client.get(&url).send().await.unwrap();
    assert_eq!(still_denied.status(), 403);

    assert!(cuttle.stop().await.success());
    assert_eq!(lines(&log), 100 + 2 + 2, "every request logged once");
}

// === POST /reload on the admin listener ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_on_the_admin_listener_reloads_answers_and_counts() {
    let a = named("A").await;
    let b = named("B").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cuttle.toml");
    let admin_section = "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let write = |server: SocketAddr, extra: &str| {
        let text = format!(
            "{}{admin_section}{extra}",
            reverse_config(dir.path(), server, 0)
        );
        std::fs::write(&file, &text).unwrap();
        text
    };
    write(a.addr, "");
    let server = start_from(&file).await;
    let addr = server.addr().unwrap();
    let admin = server.admin_addr().expect("the admin listener runs");
    let http = admin_client();
    let url = |path: &str| format!("http://{admin}{path}");
    assert_eq!(body_of(addr, "/x").await, "A");

    // Only POST reloads: a link or a prefetch must not.
    let get = http.get(url("/reload")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(server.control().generation(), 1);

    // The same as SIGHUP: the new upstream serves, the answer says what changed.
    write(b.addr, "");
    let ok = http.post(url("/reload")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.unwrap();
    assert!(text.starts_with("config reloaded: generation 2"), "{text}");
    assert!(text.contains(&format!("app/{}", b.addr)), "{text}");
    assert_eq!(body_of(addr, "/x").await, "B");

    // A broken file: 422 with file:line: key: reason, and the old config keeps serving.
    let broken = write(b.addr, "[timeouts]\nconect = \"5s\"\n");
    let refused = http.post(url("/reload")).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    let text = refused.text().await.unwrap();
    let line = broken.lines().count();
    assert!(
        text.contains(&format!(
            "{}:{line}: timeouts.conect: unknown field",
            file.display()
        )),
        "{text}"
    );
    assert_eq!(body_of(addr, "/x").await, "B");

    // /status and /metrics count both, and read the new generation's upstream group.
    let status = admin_status(admin).await;
    assert_eq!(status["config"]["generation"], 2, "{status}");
    assert_eq!(status["config"]["reloads_ok"], 1, "{status}");
    assert_eq!(status["config"]["reloads_failed"], 1, "{status}");
    let servers: Vec<String> = status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["server"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(servers, vec![b.addr.to_string()], "{status}");
    let metrics = admin_metrics(admin).await;
    assert!(
        metrics.contains("cuttle_config_reloads_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cuttle_config_reloads_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cuttle_config_generation 2"), "{metrics}");
    server.shutdown().await;
}
