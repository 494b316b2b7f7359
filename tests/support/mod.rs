//! Loopback test harness: scripted origins, the real proxy on port 0, and clients.
//!
//! - [`Origin`]: a real HTTP/1.1 server on `127.0.0.1:0` whose routes are closures; it records
//!   every request (method, URI as received, headers, body) and counts TCP connections.
//! - [`RawOrigin`]: a TCP server that answers with fixed bytes (garbage, truncated replies) or
//!   with silence, for upstream-failure tests.
//! - [`TestProxy`]: cuttle itself (the library's `app::start`) on `127.0.0.1:0` with a config
//!   built by [`config`], plus helpers to run the `cuttle` binary.
//! - Clients: [`http_client`] (reqwest with the proxy set), [`curl`] (the real binary), and
//!   [`raw`] exchanges for byte-exact requests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod certs;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

/// Starts a server again on its old port with `start`. Until it listens there the port is an
/// ordinary free one, which an outgoing connection may hold as its local port for a moment:
/// a start whose error `port_taken` says so is tried again, for at most [`WAIT`].
pub async fn start_again<T, E, F>(
    mut start: impl FnMut() -> F,
    port_taken: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match start().await {
            Err(e) if port_taken(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            done => return done,
        }
    }
}

/// Binds `addr` again (see [`start_again`]).
pub async fn bind_again(addr: std::net::SocketAddr) -> tokio::net::TcpListener {
    start_again(
        || tokio::net::TcpListener::bind(addr),
        |e: &std::io::Error| e.kind() == std::io::ErrorKind::AddrInUse,
    )
    .await
    .unwrap_or_else(|e| panic!("cannot bind {addr} again: {e}"))
}

// === origin ===

/// A request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    /// The body, when it was small enough to keep (see `body_len` for the real size).
    pub body: Bytes,
    pub body_len: u64,
    /// FNV-1a over the whole body, to compare large bodies without keeping them.
    pub body_hash: u64,
}

/// The body type origins reply with.
pub type OriginBody = BoxBody<Bytes, Infallible>;

/// A route handler.
pub type Handler = Arc<dyn Fn(&Recorded) -> Response<OriginBody> + Send + Sync>;

/// Bodies up to this size are kept in `Recorded::body`.
const KEEP_BODY: u64 = 1 << 20;

/// A scripted origin server.
#[derive(Clone)]
pub struct Origin {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
}

/// Builds an [`Origin`].
#[derive(Default)]
pub struct OriginBuilder {
    routes: HashMap<String, Handler>,
}

impl OriginBuilder {
    /// Serves `path` with `handler` (exact path match, query ignored).
    pub fn route(
        mut self,
        path: &str,
        handler: impl Fn(&Recorded) -> Response<OriginBody> + Send + Sync + 'static,
    ) -> Self {
        self.routes.insert(path.to_owned(), Arc::new(handler));
        self
    }

    pub async fn spawn(self) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = Origin {
            addr,
            requests: Arc::default(),
            connections: Arc::default(),
        };
        let routes = Arc::new(self.routes);
        let state = origin.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                state.connections.fetch_add(1, Ordering::SeqCst);
                let routes = Arc::clone(&routes);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let routes = Arc::clone(&routes);
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.serve(req, &routes).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        origin
    }
}

impl Origin {
    pub fn builder() -> OriginBuilder {
        OriginBuilder::default()
    }

    async fn serve(
        &self,
        req: Request<Incoming>,
        routes: &HashMap<String, Handler>,
    ) -> Response<OriginBody> {
        let (parts, mut body) = req.into_parts();
        let mut kept = Vec::new();
        let mut len = 0u64;
        let mut hash = FNV_OFFSET;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(data) = frame.data_ref() {
                len += data.len() as u64;
                hash = fnv(hash, data);
                if (kept.len() as u64) < KEEP_BODY {
                    kept.extend_from_slice(data);
                }
            }
        }
        let recorded = Recorded {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body: Bytes::from(kept),
            body_len: len,
            body_hash: hash,
        };
        let response = match routes.get(recorded.uri.path()) {
            Some(handler) => handler(&recorded),
            None => reply(404, "not found"),
        };
        self.requests.lock().unwrap().push(recorded);
        response
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Number of requests seen so far.
    pub fn hits(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A reply with a text body.
pub fn reply(status: u16, body: &str) -> Response<OriginBody> {
    reply_bytes(status, Bytes::from(body.to_owned()))
}

/// A reply with these header fields, e.g. `reply_with(200, "x", &[("cache-control", "max-age=60")])`.
pub fn reply_with(
    status: u16,
    body: &str,
    fields: &[(&'static str, &str)],
) -> Response<OriginBody> {
    let mut response = reply(status, body);
    for (name, value) in fields {
        response
            .headers_mut()
            .append(*name, http::HeaderValue::from_str(value).unwrap());
    }
    response
}

/// An origin whose `/empty` is a stored 200 of length 0 and `/moved` a stored 302 with no body
/// (both fresh for a minute): responses whose whole message is the head.
pub async fn empty_body_origin() -> Origin {
    Origin::builder()
        .route("/empty", |_| {
            reply_with(200, "", &[("cache-control", "max-age=60")])
        })
        .route("/moved", |_| {
            reply_with(
                302,
                "",
                &[("cache-control", "max-age=60"), ("location", "/elsewhere")],
            )
        })
        .spawn()
        .await
}

/// A reply with a byte body.
pub fn reply_bytes(status: u16, body: Bytes) -> Response<OriginBody> {
    let mut response = Response::new(Full::new(body).map_err(|e| match e {}).boxed());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

/// A reply whose body is `total` generated bytes sent in `chunk`-sized frames without a
/// Content-Length (so it is chunked), never held in memory at once.
pub fn reply_stream(total: u64, chunk: usize) -> Response<OriginBody> {
    let block = Bytes::from(pattern(chunk));
    let frames = (0..total.div_ceil(chunk as u64)).map(move |i| {
        let remaining = total - i * chunk as u64;
        let n = usize::try_from(remaining.min(chunk as u64)).unwrap();
        Ok::<_, Infallible>(Frame::data(block.slice(..n)))
    });
    let body = StreamBody::new(futures_util::stream::iter(frames));
    Response::new(BodyExt::boxed(body))
}

/// Deterministic test bytes: every byte value, in a pattern that does not repeat every 256.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, continued from `hash`.
pub fn fnv(mut hash: u64, data: &[u8]) -> u64 {
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// FNV-1a of `data` from the start.
pub fn fnv_all(data: &[u8]) -> u64 {
    fnv(FNV_OFFSET, data)
}

// === raw origin ===

/// What a [`RawOrigin`] does after reading a request header.
#[derive(Clone)]
pub enum RawBehaviour {
    /// Writes these bytes, then closes.
    Reply(Vec<u8>),
    /// Writes these bytes, then keeps the connection open without writing more.
    ReplyThenHang(Vec<u8>),
    /// Never answers (keeps the connection open).
    Silent,
}

/// A TCP origin that misbehaves on purpose.
pub struct RawOrigin {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

impl RawOrigin {
    pub async fn spawn(behaviour: RawBehaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let behaviour = behaviour.clone();
                tokio::spawn(async move {
                    read_head(&mut stream).await;
                    match behaviour {
                        RawBehaviour::Reply(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                            let _ = stream.shutdown().await;
                        }
                        RawBehaviour::ReplyThenHang(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                            tokio::time::sleep(WAIT * 2).await;
                        }
                        RawBehaviour::Silent => tokio::time::sleep(WAIT * 2).await,
                    }
                });
            }
        });
        Self { addr, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Reads until the end of a request header (or EOF), bounded in size.
async fn read_head(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 1 << 20 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A TCP echo server (for CONNECT tests); returns its address.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

// === proxy ===

/// A config for tests: port 0, loopback clients allowed, cache in `dir`, plus `extra` TOML
/// (tables only; it is appended).
pub fn config(dir: &Path, extra: &str) -> String {
    config_with_access(
        dir,
        "[[http_access]]\nallow = [\"localhost\"]\n[[http_access]]\ndeny = [\"all\"]\n",
        extra,
    )
}

/// Like [`config`] but with the given `http_access` rules.
pub fn config_with_access(dir: &Path, access: &str, extra: &str) -> String {
    format!(
        "visible_hostname = \"cuttle-test\"\n\
         [[http_port]]\nlisten = \"127.0.0.1:0\"\n\
         [acl]\nlocalhost = {{ src = [\"127.0.0.0/8\", \"::1\"] }}\n\
         {access}\n\
         [cache.disk]\npath = \"{}\"\n\
         {extra}\n",
        dir.join("cache").display()
    )
}

/// Waits (at most 30 s) for the disk index's background load, so a test sees the cache as it
/// was left by an earlier run (tests of the load itself start the proxy another way).
pub async fn wait_disk_index(server: &cuttle::app::Server) {
    tokio::time::timeout(Duration::from_secs(30), server.disk_index_loaded())
        .await
        .expect("disk index loaded within 30 s");
}

/// Test proxies get their own admin listener on a free port unless the text has `[admin]`.
const ADMIN_ON_PORT_0: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

/// `text` with what every test proxy needs unless it says otherwise: no access log, an admin
/// listener on a free port, and a disk tier in a temporary directory of its own (the default,
/// `~/.cache/cuttle`, would be shared by every test and every run, and grow without end).
fn with_test_defaults(text: &str) -> (String, Option<tempfile::TempDir>) {
    let mut text = text.to_owned();
    if !text.contains("[log]") {
        text.push_str("\n[log]\naccess_log = \"none\"\n");
    }
    if !text.contains("[admin]") {
        text.push_str(ADMIN_ON_PORT_0);
    }
    let mut disk = None;
    if !text.contains("[cache.disk]") {
        let dir = tempfile::tempdir().unwrap();
        text.push_str(&format!(
            "\n[cache.disk]\npath = \"{}\"\n",
            dir.path().join("cache").display()
        ));
        disk = Some(dir);
    }
    (text, disk)
}

/// cuttle running in this test process.
pub struct TestProxy {
    pub addr: SocketAddr,
    /// The admin listener's address, if it runs.
    pub admin: Option<SocketAddr>,
    /// The ICP server's UDP address, when the config sets `icp_port`.
    pub icp: Option<SocketAddr>,
    server: Option<cuttle::app::Server>,
    _dir: Option<tempfile::TempDir>,
    /// The disk tier's directory when the config names none (never the user's own cache).
    _disk: Option<tempfile::TempDir>,
}

impl TestProxy {
    /// Starts cuttle with `config(dir, extra)` in a fresh temp dir.
    pub async fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = config(dir.path(), extra);
        Self::start_text(&text, Some(dir)).await
    }

    /// Starts cuttle from full config text.
    pub async fn start_text(text: &str, dir: Option<tempfile::TempDir>) -> Self {
        Self::try_start_text(text, dir).await.unwrap()
    }

    /// [`start_text`](Self::start_text), the start's error returned (a test restarting a
    /// server on its old port may find the port taken for a moment).
    pub async fn try_start_text(
        text: &str,
        dir: Option<tempfile::TempDir>,
    ) -> Result<Self, cuttle::app::StartError> {
        let (text, disk) = with_test_defaults(text);
        let config = cuttle::config::load_str("test.toml", &text)
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
        let server = cuttle::app::start(config).await?;
        wait_disk_index(&server).await;
        Ok(Self {
            addr: server.addr().unwrap(),
            admin: server.admin_addr(),
            icp: server.icp_addr(),
            server: Some(server),
            _dir: dir,
            _disk: disk,
        })
    }

    /// Starts cuttle from full config text, reading wall time from `clock` (a shared
    /// `cuttle::clock::ManualClock` lets a test move time without sleeping).
    pub async fn start_with_clock(
        text: &str,
        dir: Option<tempfile::TempDir>,
        clock: cuttle::clock::SharedClock,
    ) -> Self {
        Self::try_start_with_clock(text, dir, clock)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`TestProxy::start_with_clock`], but an invalid config or a failed start is an
    /// `Err` with a readable message instead of a panic.
    pub async fn try_start_with_clock(
        text: &str,
        dir: Option<tempfile::TempDir>,
        clock: cuttle::clock::SharedClock,
    ) -> Result<Self, String> {
        let (text, disk) = with_test_defaults(text);
        let config = cuttle::config::load_str("test.toml", &text)
            .map_err(|e| format!("test config invalid: {e}\n{text}"))?;
        let server = cuttle::app::start_with_clock(config, clock)
            .await
            .map_err(|e| format!("proxy did not start: {e}"))?;
        wait_disk_index(&server).await;
        Ok(Self {
            admin: server.admin_addr(),
            icp: server.icp_addr(),
            addr: server
                .addr()
                .ok_or_else(|| "proxy has no listening address".to_owned())?,
            server: Some(server),
            _dir: dir,
            _disk: disk,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// A reqwest client that sends everything through `proxy`.
pub fn http_client(proxy: &TestProxy) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// Runs the real `curl` with `args` (already including `-x`), bounded by [`WAIT`].
pub async fn curl(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(WAIT + Duration::from_secs(5), cmd.output())
        .await
        .expect("curl did not finish")
        .expect("curl is installed (.ci/run installs it)")
}

/// Sends raw bytes to `addr` and reads until the peer closes or `wait` passes.
pub async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    out
}

/// Reads one HTTP/1.1 response with a Content-Length body from `stream`; returns (head, body).
pub async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed before a full response head: {buf:?}"
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("body in time")
            .unwrap();
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (head, body)
}

// === the binary ===

/// Path of the built `cuttle` binary.
pub fn cuttle_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cuttle"))
}

/// Runs `cuttle ARGS` to completion.
pub fn run_cuttle(args: &[&str]) -> Output {
    Command::new(cuttle_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The `cuttle` binary running as a server; killed on drop.
pub struct CuttleProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Runtime worker threads, as the binary reported them (`cuttle: N worker threads`).
    pub workers: usize,
    /// The private HOME, removed when the process is.
    _home: tempfile::TempDir,
}

impl CuttleProcess {
    /// Starts `cuttle --config FILE --listen 127.0.0.1:0` and waits for its listening line.
    pub fn spawn(config_file: &Path) -> Self {
        let file = config_file.to_str().unwrap();
        Self::start(&["--config", file])
    }

    /// Starts `cuttle ARGS --listen 127.0.0.1:0 --log-level warn` with a private HOME (so the
    /// default disk cache goes to a temp dir) and waits for its listening line.
    pub fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(cuttle_bin())
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.strip_prefix("cuttle: listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                } else if let Some(rest) = line.strip_prefix("cuttle: ") {
                    if rest.contains(" worker thread") {
                        let n = rest.split_whitespace().next().unwrap_or("").to_owned();
                        let _ = tx.send(n);
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .expect("cuttle printed its listening address")
            .parse()
            .unwrap();
        let workers = rx
            .recv_timeout(WAIT)
            .expect("cuttle printed its worker count")
            .parse()
            .unwrap();
        Self {
            child,
            addr,
            workers,
            _home: home,
        }
    }

    /// Resident and peak resident memory (VmRSS, VmHWM) in KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for CuttleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === the admin listener ===

/// A client for the admin listener: no proxy, bounded.
pub fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// `GET /status` on the admin listener at `admin`, parsed.
pub async fn admin_status(admin: SocketAddr) -> serde_json::Value {
    let response = admin_client()
        .get(format!("http://{admin}/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// `GET /metrics` on the admin listener at `admin`, checked to be Prometheus text.
pub async fn admin_metrics(admin: SocketAddr) -> String {
    let response = admin_client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    response.text().await.unwrap()
}
