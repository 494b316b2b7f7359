//! Request smuggling, proved from the outside: hostile request bytes go through the real proxy
//! on loopback to a recording origin (a raw TCP listener that keeps the exact bytes it got), and
//! whatever reaches the origin must be one unambiguous HTTP/1.1 message (RFC 9112 §6.3: one
//! framing, no `Transfer-Encoding` with `Content-Length`, no obs-fold §5.2, no bare CR §2.2, no
//! bytes after the message) — or the client gets an error and the origin sees nothing.
//!
//! Two tests: a property test over requests generated from a grammar of nasty framing (issue 11
//! asked for fuzzing; cargo-fuzz needs nightly, so this is `proptest` on stable:
//! `PROPTEST_CASES=2000 cargo test --release --test smuggling` runs longer), and a
//! differential test that sends the same bytes through cuttle and through a real nginx reverse
//! proxy (`.ci/run` installs nginx) and prints where they differ.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use support::TestProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long the recording origin waits for more bytes before it answers.
const ORIGIN_IDLE: Duration = Duration::from_millis(120);
/// How long a client waits for the proxy's answer.
const CLIENT_WAIT: Duration = Duration::from_secs(3);

// === the recording origin ===

/// A TCP origin that records every byte each connection sent it, answers `200` with
/// `Connection: close` once the peer goes quiet, and closes.
struct Recorder {
    addr: SocketAddr,
    done: Arc<Mutex<Vec<Vec<u8>>>>,
    open: Arc<std::sync::atomic::AtomicUsize>,
}

impl Recorder {
    async fn spawn() -> Self {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let done = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (d, o) = (Arc::clone(&done), Arc::clone(&open));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                o.fetch_add(1, Ordering::SeqCst);
                let (d, o) = (Arc::clone(&d), Arc::clone(&o));
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 8192];
                    // Bounded: at most 1 MiB or 3 s of input.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
                    while got.len() < 1 << 20 && tokio::time::Instant::now() < deadline {
                        match tokio::time::timeout(ORIGIN_IDLE, stream.read(&mut buf)).await {
                            Ok(Ok(0)) | Ok(Err(_)) => break,
                            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                            Err(_) => break,
                        }
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = stream.shutdown().await;
                    d.lock().unwrap().push(got);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self { addr, done, open }
    }

    /// Waits (bounded) until no connection is open, then takes what was recorded.
    async fn take(&self) -> Vec<Vec<u8>> {
        use std::sync::atomic::Ordering;
        // Give a proxy that is still forwarding a moment to connect, then wait for closes.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for _ in 0..200 {
            if self.open.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::mem::take(&mut *self.done.lock().unwrap())
    }
}

// === the strict reading of what reached the origin ===

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `Ok` when `bytes` are (a prefix of) exactly one HTTP/1.1 request that every reader frames
/// the same way; `Err(why)` otherwise. A body cut short is not ambiguous (the client stopped
/// sending); anything after the end of the message is.
fn unambiguous(bytes: &[u8]) -> Result<(), String> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err("no complete header section".into());
    };
    let head = &bytes[..end + 2];
    let body = &bytes[end + 4..];
    if head.contains(&0) {
        return Err("NUL in the header section".into());
    }
    for (i, &b) in head.iter().enumerate() {
        if b == b'\r' && head.get(i + 1) != Some(&b'\n') {
            return Err("bare CR".into());
        }
        if b == b'\n' && (i == 0 || head[i - 1] != b'\r') {
            return Err("bare LF".into());
        }
    }
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default();
    if start.split(' ').count() != 3 || !start.ends_with("HTTP/1.1") {
        return Err(format!("odd request line {start:?}"));
    }
    let (mut cl, mut te) = (Vec::new(), Vec::new());
    for line in lines.filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err("obs-fold".into());
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("field line without a colon {line:?}"));
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(format!("bad field name {name:?}"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            cl.push(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te.push(value.to_owned());
        }
    }
    match (cl.as_slice(), te.as_slice()) {
        ([], []) if body.is_empty() => Ok(()),
        ([], []) => Err(format!("{} bytes after a bodiless message", body.len())),
        ([n], []) => {
            let n: usize = n
                .parse()
                .ok()
                .filter(|_| n.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("Content-Length {n:?}"))?;
            if body.len() > n {
                Err(format!("{} bytes after the content", body.len() - n))
            } else {
                Ok(())
            }
        }
        ([], [coding]) if coding.eq_ignore_ascii_case("chunked") => chunked_ok(body),
        _ => Err(format!("framing fields CL={cl:?} TE={te:?}")),
    }
}

/// Strict chunked reading (RFC 9112 §7.1): `Ok` for a well-formed (possibly cut short) body
/// with nothing after its end.
fn chunked_ok(mut body: &[u8]) -> Result<(), String> {
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return Ok(()); // cut short
        };
        let line = &body[..eol];
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        if size_text.is_empty()
            || !size_text.iter().all(u8::is_ascii_hexdigit)
            || size_text.len() > 15
        {
            return Err(format!("chunk size {:?}", String::from_utf8_lossy(line)));
        }
        let size = usize::from_str_radix(std::str::from_utf8(size_text).unwrap(), 16).unwrap();
        body = &body[eol + 2..];
        if size == 0 {
            // Trailer section, then the end.
            loop {
                let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
                    return Ok(());
                };
                let empty = eol == 0;
                body = &body[eol + 2..];
                if empty {
                    return if body.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("{} bytes after the last chunk", body.len()))
                    };
                }
            }
        }
        if body.len() < size + 2 {
            return Ok(());
        }
        if &body[size..size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        body = &body[size + 2..];
    }
}

// === one exchange ===

/// What happened to one hostile request.
#[derive(Debug)]
struct Outcome {
    /// The status line the client got first, if any.
    status: Option<u16>,
    /// What each origin connection received.
    forwarded: Vec<Vec<u8>>,
    /// The proxy closed the client connection (rather than the client giving up waiting).
    closed: bool,
}

impl Outcome {
    fn rejected(&self) -> bool {
        self.forwarded.iter().all(Vec::is_empty)
    }

    fn summary(&self) -> String {
        let status = self.status.map_or("none".to_owned(), |s| s.to_string());
        if self.rejected() {
            format!("{status}, nothing forwarded")
        } else {
            let verdict: Vec<String> = self
                .forwarded
                .iter()
                .map(|f| match unambiguous(f) {
                    Ok(()) => "one clean message".to_owned(),
                    Err(e) => format!("AMBIGUOUS ({e})"),
                })
                .collect();
            format!("{status}, forwarded {}", verdict.join(" + "))
        }
    }
}

async fn exchange(proxy: SocketAddr, origin: &Recorder, request: &[u8]) -> Outcome {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(CLIENT_WAIT, stream.read_to_end(&mut got))
        .await
        .is_ok();
    drop(stream);
    let status = got
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok());
    Outcome {
        status,
        forwarded: origin.take().await,
        closed,
    }
}

/// The promise: whatever reached the origin is one unambiguous message; when nothing did and
/// the client got an answer, it is an error.
fn check(request: &[u8], out: &Outcome) -> Result<(), String> {
    for f in &out.forwarded {
        if f.is_empty() {
            continue;
        }
        unambiguous(f).map_err(|e| {
            format!(
                "{e}\nclient sent {:?}\norigin got {:?}",
                String::from_utf8_lossy(request),
                String::from_utf8_lossy(f)
            )
        })?;
    }
    // Every request carries `Connection: close` (or both CL and TE, after which RFC 9112 §6.1
    // says the connection MUST be closed), so bytes after it are never a request of their own:
    // no origin connection may start with the smuggled request line.
    let smuggled = |f: &&Vec<u8>| {
        let line = f.split(|&b| b == b'\n').next().unwrap_or_default();
        line.windows(10).any(|w| w == b"/smuggled ")
    };
    if let Some(f) = out.forwarded.iter().find(smuggled) {
        return Err(format!(
            "a smuggled request reached the origin\nclient sent {:?}\norigin got {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(f)
        ));
    }
    // RFC 9112 §6.1: after a request with both framings "the server MUST close the connection
    // after responding to such a request" (the client's `Connection: close` aside).
    let head = request
        .split(|&b| b == b'\n')
        .take_while(|l| *l != b"\r" && !l.is_empty())
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect::<Vec<_>>();
    let both = head.iter().any(|l| l.starts_with("content-length:"))
        && head.iter().any(|l| l.starts_with("transfer-encoding:"));
    if both && !out.rejected() && !out.closed {
        return Err(format!(
            "connection left open after a request with both Content-Length and \
             Transfer-Encoding: {:?}",
            String::from_utf8_lossy(request)
        ));
    }
    if out.rejected() {
        if let Some(s) = out.status {
            if s < 400 {
                return Err(format!(
                    "status {s} but nothing forwarded for {:?}",
                    String::from_utf8_lossy(request)
                ));
            }
        }
    }
    Ok(())
}

// === the grammar of nasty framing ===

const HOST: &str = "site.example";

fn framing_field() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "Content-Length: 5",
        "Content-Length: 5",
        "Content-Length: 6",
        "Content-Length: 4",
        "Content-Length: 0",
        "Content-Length: 5, 5",
        "Content-Length: 5, 6",
        "Content-Length: +5",
        "Content-Length: -1",
        "Content-Length: 0x5",
        "Content-Length: 5 ",
        "Content-Length : 5",
        "Content-Length: 99999999999999999999999",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: CHUNKED",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: identity, chunked",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding : chunked",
        "Transfer-Encoding:\tchunked",
        "Transfer-Encoding: \"chunked\"",
        " Transfer-Encoding: chunked",
        "X-Pad: a\r\n chunked",
        "X-Pad: a\r\n\tTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\rX: y",
        "X-Pad: a\rTransfer-Encoding: chunked",
        "X-Pad: a\0b",
        "Transfer-Encoding\0: chunked",
        "X-Pad: \u{ff}",
    ])
}

fn body_text() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "",
        "hello",
        "5\r\nhello\r\n0\r\n\r\n",
        "0\r\n\r\n",
        "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: site.example\r\n\r\n",
        "5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: site.example\r\n\r\n",
        "hello GET /smuggled HTTP/1.1\r\nHost: site.example\r\n\r\n",
        "-1\r\nhello\r\n0\r\n\r\n",
        "+5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
        "5;a=b\r\nhello\r\n0\r\n\r\n",
        "5\nhello\n0\n\n",
        "5\rhello\r0\r\r",
        "5\r\nhelloXX0\r\n\r\n",
        "3\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nX-Trailer: a\r\n\r\n",
        "5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ])
}

/// A request for the reverse-mode site (origin-form, `Host: site.example`).
fn hostile_request() -> impl Strategy<Value = Vec<u8>> {
    hostile_request_to("/p".to_owned(), HOST.to_owned())
}

/// A request: request line for `target`, `Host: host`, `Connection: close`, 0-3 framing fields,
/// each ended by CRLF or (sometimes) a bare LF, then a body.
fn hostile_request_to(target: String, host: String) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT"]),
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
        prop::collection::vec((framing_field(), prop::bool::weighted(0.1)), 0..4),
        body_text(),
    )
        .prop_map(move |(method, version, fields, body)| {
            let mut r = format!("{method} {target} {version}\r\nHost: {host}\r\n").into_bytes();
            r.extend_from_slice(b"Connection: close\r\n");
            for (field, bare_lf) in fields {
                r.extend_from_slice(field.as_bytes());
                r.extend_from_slice(if bare_lf { b"\n" } else { b"\r\n" });
            }
            r.extend_from_slice(b"\r\n");
            r.extend_from_slice(body.as_bytes());
            r
        })
}

// === the proxies ===

async fn reverse_cuttle(origin: SocketAddr) -> TestProxy {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\"] }}\n\
         [[http_access]]\nallow = [\"localhost\"]\n\
         [[site]]\nhosts = [\"{HOST}\"]\nupstream = \"app\"\n\
         [upstream.app]\nservers = [{{ address = \"{origin}\" }}]\n\
         [cache.disk]\npath = \"{}\"\n",
        dir.path().join("cache").display()
    );
    TestProxy::start_text(&text, Some(dir)).await
}

fn case_count(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends every generated request through `proxy` to `origin` and applies [`check`].
async fn run_property(
    proxy: &TestProxy,
    origin: &Recorder,
    strategy: impl Strategy<Value = Vec<u8>>,
) {
    let mut runner = TestRunner::new(PropConfig::with_cases(case_count(60)));
    let mut requests = Vec::new();
    for _ in 0..case_count(60) {
        let tree = strategy.new_tree(&mut runner).unwrap();
        requests.push(tree.current());
    }
    let (mut forwarded, mut rejected) = (0, 0);
    for request in &requests {
        let out = exchange(proxy.addr, origin, request).await;
        if let Err(e) = check(request, &out) {
            panic!("{e}");
        }
        if out.rejected() {
            rejected += 1;
        } else {
            forwarded += 1;
        }
    }
    eprintln!(
        "{} requests: {forwarded} forwarded cleanly, {rejected} rejected",
        requests.len()
    );
    assert!(
        forwarded > 0 && rejected > 0,
        "the grammar exercises both outcomes"
    );
}

/// Generated hostile requests through cuttle (reverse mode) to a recording origin: every
/// forwarded message is unambiguous, and a request that reached nothing got an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_forwarded_requests_are_one_unambiguous_message() {
    let origin = Recorder::spawn().await;
    let proxy = reverse_cuttle(origin.addr).await;
    run_property(&proxy, &origin, hostile_request()).await;
    proxy.shutdown().await;
}

/// The same in forward mode: absolute-form targets naming the recording origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_forward_mode_forwards_one_unambiguous_message() {
    let origin = Recorder::spawn().await;
    let proxy = TestProxy::start("").await;
    let authority = origin.addr.to_string();
    let strategy = hostile_request_to(format!("http://{authority}/p"), authority);
    run_property(&proxy, &origin, strategy).await;
    proxy.shutdown().await;
}

// === nginx ===

/// A real nginx reverse proxy in a temp dir; stopped when dropped.
struct Nginx {
    addr: SocketAddr,
    pid: Option<u32>,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(origin: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A free loopback port: bind, read, release (nginx binds it right after).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
        let conf = format!(
            "{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n    server_name {HOST};\n\
             location / {{\n      proxy_pass http://{origin};\n      proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\";\n      proxy_request_buffering off;\n    }}\n  }}\n}}\n",
            user = if root { "user root;\n" } else { "" },
            d = d.display(),
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let status = std::process::Command::new(nginx_bin())
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-e")
            .arg(d.join("error.log"))
            .status()
            .expect("nginx is installed (.ci/run installs it)");
        assert!(
            status.success(),
            "nginx failed to start: {}",
            read(&d.join("error.log"))
        );
        let mut pid = None;
        for _ in 0..100 {
            if let Ok(text) = std::fs::read_to_string(d.join("nginx.pid")) {
                pid = text.trim().parse().ok();
                if pid.is_some() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(pid.is_some(), "nginx wrote no pid file");
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
}

fn nginx_bin() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Classic smuggling requests, then generated ones.
fn differential_corpus() -> Vec<Vec<u8>> {
    let mut corpus: Vec<Vec<u8>> = [
        "POST /p HTTP/1.1\r\nHost: site.example\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: site.example\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\nConnection: close\r\n\r\n5c\r\nGPOST /smuggled HTTP/1.1\r\n\r\n0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: xchunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding : chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nX-Pad: a\r\n Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nX-Pad: a\rTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nX-Pad: a\0b\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n-1\r\nhello\r\n0\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\nhello\n0\n\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nContent-Length: +5\r\nConnection: close\r\n\r\nhello",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello",
        "GET /p HTTP/1.1\r\nHost: site.example\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
        "GET /p HTTP/1.1\nHost: site.example\nConnection: close\n\n",
        // Keep-alive: after CL+TE the connection must still be closed (RFC 9112 §6.1).
        "POST /p HTTP/1.1\r\nHost: site.example\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: site.example\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: site.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: site.example\r\n\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let mut runner = TestRunner::deterministic();
    for _ in 0..case_count(24) {
        corpus.push(hostile_request().new_tree(&mut runner).unwrap().current());
    }
    corpus
}

/// The same hostile bytes through cuttle and through nginx, each to its own recording origin:
/// cuttle never forwards an ambiguous message (in particular none that nginx rejects), and the
/// cases where the two differ are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_cuttle_and_nginx_on_hostile_framing() {
    let cuttle_origin = Recorder::spawn().await;
    let nginx_origin = Recorder::spawn().await;
    let proxy = reverse_cuttle(cuttle_origin.addr).await;
    let nginx = Nginx::start(nginx_origin.addr);
    let corpus = differential_corpus();
    let mut failures = Vec::new();
    let (mut differ, mut both_reject, mut both_forward, mut nginx_ambiguous) = (0, 0, 0, 0);
    for request in &corpus {
        let c = exchange(proxy.addr, &cuttle_origin, request).await;
        let n = exchange(nginx.addr, &nginx_origin, request).await;
        if let Err(e) = check(request, &c) {
            failures.push(format!("cuttle: {e} (nginx: {})", n.summary()));
        }
        if n.forwarded
            .iter()
            .any(|f| !f.is_empty() && unambiguous(f).is_err())
        {
            nginx_ambiguous += 1;
        }
        match (c.rejected(), n.rejected()) {
            (true, true) => both_reject += 1,
            (false, false) => both_forward += 1,
            _ => {
                differ += 1;
                eprintln!(
                    "DIFFERS {:?}\n  cuttle: {}\n  nginx:  {}",
                    String::from_utf8_lossy(request),
                    c.summary(),
                    n.summary()
                );
            }
        }
    }
    eprintln!(
        "{} requests: both rejected {both_reject}, both forwarded {both_forward}, differ {differ}; \
         nginx forwarded something ambiguous to this strict reader {nginx_ambiguous} times",
        corpus.len()
    );
    drop(nginx);
    proxy.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        both_reject > 0 && both_forward > 0,
        "the corpus exercises both outcomes"
    );
}
