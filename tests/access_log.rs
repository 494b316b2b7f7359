//! The access log through the real proxy: each `log.access_log_format` writes a real exchange
//! (a miss, then a memory hit) to a file as documented, `strip_query_terms` hides query strings
//! unless turned off, and the `combined` line is byte for byte what a real nginx (Debian package
//! `nginx`, installed by `.ci/run`) logs for the same request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// Fields with everything the formats must escape: quotes, a backslash, a tab, non-ASCII.
const REFERER: &[u8] = b"http://ref.example/\"quoted\"";
const USER_AGENT: &[u8] = b"agent \"q\" \\ caf\xc3\xa9\tend";

/// An origin serving a cacheable 12-byte `text/plain` body at `/obj` (any query).
async fn origin() -> Origin {
    Origin::builder()
        .route("/obj", |_| {
            reply_with(
                200,
                "twelve bytes",
                &[
                    ("content-type", "text/plain"),
                    ("cache-control", "max-age=300"),
                ],
            )
        })
        .spawn()
        .await
}

/// Sends one raw HTTP/1.1 request to `addr` for `target` with the odd fields; returns the
/// response head.
async fn get(addr: SocketAddr, target: &str, host: &str) -> String {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nReferer: ").into_bytes();
    request.extend_from_slice(REFERER);
    request.extend_from_slice(b"\r\nUser-Agent: ");
    request.extend_from_slice(USER_AGENT);
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let out = raw(addr, &request, WAIT).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("twelve bytes"), "{text}");
    text.split("\r\n\r\n").next().unwrap().to_owned()
}

/// The value of `name` in a response head.
fn field<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

/// Runs a miss and a memory hit for `/obj?token=secret` through a forward proxy logging in
/// `format` (with `extra` in `[log]`); returns the two response heads and the log's lines.
async fn exchange(format: &str, extra: &str) -> (Origin, [String; 2], Vec<String>) {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = config(
        dir.path(),
        &format!(
            "[log]\naccess_log = \"{}\"\naccess_log_format = \"{format}\"\n{extra}",
            log.display()
        ),
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let url = origin.url("/obj?token=secret");
    let host = origin.addr.to_string();
    let miss = get(proxy.addr, &url, &host).await;
    let hit = get(proxy.addr, &url, &host).await;
    proxy.shutdown().await;
    let lines = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<String> = lines.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    (origin, [miss, hit], lines)
}

#[tokio::test]
async fn squid_format_logs_a_miss_and_a_hit_with_the_query_stripped() {
    let (origin, _, lines) = exchange("squid", "").await;
    let url = origin.url("/obj?");
    let fields: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split(' ').filter(|f| !f.is_empty()).collect())
        .collect();
    for (line, (code, hierarchy)) in fields.iter().zip([
        ("TCP_MISS/200", "HIER_DIRECT/127.0.0.1"),
        ("TCP_MEM_HIT/200", "HIER_NONE/-"),
    ]) {
        assert_eq!(line.len(), 10, "{line:?}");
        assert_eq!(line[2], "127.0.0.1");
        assert_eq!(line[3], code);
        assert_eq!(line[5], "GET");
        assert_eq!(line[6], url, "Squid keeps the `?` and drops the rest");
        assert_eq!(line[7], "-");
        assert_eq!(line[8], hierarchy);
        assert_eq!(line[9], "text/plain");
    }
}

#[tokio::test]
async fn strip_query_terms_off_logs_the_whole_url() {
    let (origin, _, lines) = exchange("squid", "strip_query_terms = false\n").await;
    let url = origin.url("/obj?token=secret");
    for line in &lines {
        assert_eq!(line.split_whitespace().nth(6), Some(url.as_str()), "{line}");
    }
}

#[tokio::test]
async fn combined_format_logs_nginx_style_lines() {
    let (origin, _, lines) = exchange("combined", "").await;
    for line in &lines {
        let (before, rest) = line.split_once(" [").unwrap();
        let (time, after) = rest.split_once("] ").unwrap();
        assert_eq!(before, "127.0.0.1 - -");
        assert_time_local(time);
        assert_eq!(
            after,
            format!(
                "\"GET {} HTTP/1.1\" 200 12 \"http://ref.example/\\x22quoted\\x22\" \"agent \\x22q\\x22 \\x5C caf\\xC3\\xA9\\x09end\"",
                origin.url("/obj?")
            )
        );
    }
}

/// `dd/Mon/yyyy:hh:mm:ss +0000`.
fn assert_time_local(time: &str) {
    let b = time.as_bytes();
    assert_eq!(b.len(), 26, "{time}");
    assert!(time.ends_with(" +0000"), "{time}");
    assert_eq!(
        (b[2], b[6], b[11], b[14], b[17]),
        (b'/', b'/', b':', b':', b':'),
        "{time}"
    );
    assert!(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            .contains(&&time[3..6]),
        "{time}"
    );
}

#[tokio::test]
async fn json_format_logs_parseable_objects_with_the_documented_keys() {
    let (origin, heads, lines) = exchange("json", "").await;
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for (v, head) in objects.iter().zip(&heads) {
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut documented = cuttle::log::format::json::KEYS.to_vec();
        documented.sort_unstable();
        assert_eq!(keys, documented, "serde_json's map sorts keys");
        assert_eq!(v["client"], "127.0.0.1");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["url"], origin.url("/obj?"));
        assert_eq!(v["http_version"], "HTTP/1.1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["body_bytes"], 12);
        assert!(v["bytes"].as_u64().unwrap() > 12 + 50, "{v}");
        assert_eq!(v["content_type"], "text/plain");
        assert_eq!(v["cache_status"], field(head, "cache-status"), "as sent");
        assert_eq!(v["user"], serde_json::Value::Null);
        assert_eq!(v["referer"], "http://ref.example/\"quoted\"");
        assert_eq!(v["user_agent"], "agent \"q\" \\ caf\u{e9}\tend");
        let unix = v["unix"].as_f64().unwrap();
        let time = humantime::parse_rfc3339(v["time"].as_str().unwrap()).unwrap();
        let since = time.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert!((since.as_secs_f64() - unix).abs() < 0.001, "{v}");
        assert!(v["elapsed_ms"].as_f64().unwrap() >= 0.0);
    }
    let (miss, hit) = (&objects[0], &objects[1]);
    assert_eq!(miss["result_code"], "TCP_MISS");
    assert_eq!(miss["hierarchy_code"], "HIER_DIRECT");
    assert_eq!(miss["peer"], "127.0.0.1");
    assert_eq!(miss["upstream_addr"], origin.addr.to_string());
    let waited = miss["upstream_wait_ms"].as_f64().unwrap();
    assert!(
        waited > 0.0 && waited <= miss["elapsed_ms"].as_f64().unwrap(),
        "{miss}"
    );
    assert_eq!(hit["result_code"], "TCP_MEM_HIT");
    assert_eq!(hit["hierarchy_code"], "HIER_NONE");
    for key in ["peer", "upstream_addr", "upstream_wait_ms"] {
        assert_eq!(
            hit[key],
            serde_json::Value::Null,
            "{key}: a hit went nowhere"
        );
    }
    assert!(
        miss["cache_status"]
            .as_str()
            .unwrap()
            .contains("fwd=uri-miss"),
        "{miss}"
    );
    assert!(
        hit["cache_status"].as_str().unwrap().contains("hit"),
        "{hit}"
    );
}

// === the same request through nginx and through cuttle ===

/// A real nginx on loopback serving 12 bytes at `/obj`, logging in `combined`.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let d = dir.path().display();
        let log = dir.path().join("access.log");
        // One foreground process (no master, no workers to chase) that dies with the test.
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             access_log {} combined;\n\
             server {{\n    listen 127.0.0.1:{port};\n\
             location / {{ default_type text/plain; return 200 \"twelve bytes\"; }}\n  }}\n}}\n",
            log.display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let binary = if Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (.ci/run installs the Debian package)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let nginx = Self {
            child,
            addr,
            log,
            _dir: dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let errors =
            std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
        panic!("nginx did not start listening on {addr}:\n{errors}");
    }

    /// The access log's lines, once nginx has written `n` of them (it writes unbuffered).
    fn lines(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nginx logged fewer than {n} lines");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The line without its `[$time_local]`, which differs between the two by the clock alone.
fn without_time(line: &str) -> String {
    let (before, rest) = line.split_once(" [").unwrap();
    let (_, after) = rest.split_once("] ").unwrap();
    format!("{before} {after}")
}

#[tokio::test]
async fn combined_lines_match_a_real_nginx_for_the_same_request() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // An accelerator in front of nginx: both see the same origin-form request line, client
    // (127.0.0.1), Referer and User-Agent, and send the same status and body.
    let text = format!(
        "visible_hostname = \"edge-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"*\"]\nupstream = \"nginx\"\n\
         [upstream.nginx]\nservers = [{{ address = \"{}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n\
         [log]\naccess_log = \"{}\"\naccess_log_format = \"combined\"\nstrip_query_terms = false\n",
        nginx.addr,
        dir.path().join("cache").display(),
        log.display()
    );
    let proxy = TestProxy::start_text(&text, None).await;
    let targets = [
        "/obj",
        "/obj?q=%22x%22&y=caf%C3%A9",
        "/caf\u{e9}/{x}|^?a=\\b",
    ];
    for target in targets {
        get(proxy.addr, target, "www.example.test").await;
    }
    proxy.shutdown().await;
    let ours: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(without_time)
        .collect();
    let theirs: Vec<String> = nginx
        .lines(targets.len())
        .iter()
        .map(|l| without_time(l))
        .collect();
    assert_eq!(ours, theirs);
    assert!(
        ours[2].contains("/caf\\xC3\\xA9/{x}|^?a=\\x5Cb"),
        "{ours:?}"
    );
}
