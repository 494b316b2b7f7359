#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The declarative HTTP caching conformance suite: every `cache-spec/*.toml` case, run end to
//! end through the real proxy over loopback.
//!
//! Each case gets a fresh proxy (own temp cache dir), a fresh scripted origin and a fresh
//! `ManualClock` shared by both. A case is a list of steps; each step may advance the clock,
//! sets what the origin answers while the step runs, sends one request through the proxy and
//! checks the response and what the origin saw. Cases run concurrently in bounded batches; a
//! failing (or panicking, or hanging) case never stops the others. The format is described in
//! `cache-spec/README.md`.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cuttle::clock::{Clock, ManualClock, SharedClock};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use support::TestProxy;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};

/// The shared clock starts here: 2025-01-01T00:00:00Z (a Wednesday).
const CLOCK_START_SECS: u64 = 1_735_689_600;
/// Cases running at once (2 cores; most of a case's time is waiting on loopback I/O).
const CONCURRENCY: usize = 8;
/// The whole suite must hold at least this many cases.
const MIN_CASES: usize = 150;
/// One case, all steps included, may take at most this long (real time).
const CASE_TIMEOUT: Duration = Duration::from_secs(30);
/// One client request may take at most this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounded polling for background work (stale-while-revalidate refreshes).
const POLL_LIMIT: Duration = Duration::from_secs(5);
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Real-time pause between steps so a response the proxy is still committing to its store is
/// visible to the next step. It does not move the shared clock.
const STEP_SETTLE: Duration = Duration::from_millis(20);
/// Extra real-time pause after `await_origin_hits` is satisfied, for the proxy to store the
/// background response it just received.
const AWAIT_SETTLE: Duration = Duration::from_millis(150);
/// How long a deliberately short origin response waits after its content before the origin
/// drops the connection.
const TRUNCATE_PAUSE: Duration = Duration::from_millis(50);

// === the case format ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    id: String,
    section: String,
    description: String,
    /// Extra TOML merged into the proxy config (tables deep-merge, keys replace).
    #[serde(default)]
    config: String,
    /// Asserts a documented cuttle choice rather than an RFC requirement.
    #[serde(default)]
    choice: bool,
    #[serde(rename = "step")]
    steps: Vec<Step>,
    /// Set by the loader: the file the case came from.
    #[serde(skip)]
    file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// Seconds to advance the shared clock before this step.
    #[serde(default)]
    advance: u64,
    /// Before this step: wait (bounded) until the origin has received this many requests in
    /// total and has finished answering them all (for background refreshes).
    #[serde(default)]
    await_origin_hits: Option<usize>,
    request: ClientRequest,
    /// What the origin answers while this step runs; omitted = 500 "unexpected".
    #[serde(default)]
    origin: Option<OriginReply>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientRequest {
    #[serde(default = "default_method")]
    method: String,
    /// A path on the case's origin (`/r?q`), or a full URL (templates allowed, e.g.
    /// `{other_origin}/r`).
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, FieldValue>,
    #[serde(default)]
    body: String,
}

fn default_method() -> String {
    "GET".to_owned()
}

fn default_path() -> String {
    "/r".to_owned()
}

/// One field line, or several lines of the same field.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum FieldValue {
    One(String),
    Lines(Vec<String>),
}

impl FieldValue {
    fn lines(&self) -> Vec<&str> {
        match self {
            FieldValue::One(v) => vec![v.as_str()],
            FieldValue::Lines(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginReply {
    /// The origin is down: connections are reset and requests on kept-alive connections are
    /// dropped without an answer.
    #[serde(default)]
    close: bool,
    #[serde(default = "default_status")]
    status: u16,
    /// `date` is stamped from the shared clock unless set here; `date = ""` sends no Date.
    #[serde(default)]
    headers: BTreeMap<String, FieldValue>,
    #[serde(default)]
    body: String,
}

fn default_status() -> u16 {
    200
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: Option<u16>,
    /// The status must be one of these (when the exact code is not what is under test).
    #[serde(default)]
    status_in: Vec<u16>,
    body: Option<String>,
    #[serde(default)]
    body_contains: Vec<String>,
    /// The response body must end early (the connection drops before Content-Length bytes).
    #[serde(default)]
    incomplete: bool,
    /// Whether the origin received a request during this step.
    origin_contacted: Option<bool>,
    /// Exact values (all lines of the field joined with ", ").
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    headers_contain: BTreeMap<String, String>,
    #[serde(default)]
    absent: Vec<String>,
    /// Substrings that must all appear in Cache-Status.
    #[serde(default)]
    cache_status: Vec<String>,
    #[serde(default)]
    cache_status_absent: Vec<String>,
    /// Exact request header values the origin saw: in the last request of this step, or, when
    /// `origin_hits_total` is set, in the most recent request of the case.
    #[serde(default)]
    origin_saw: BTreeMap<String, String>,
    #[serde(default)]
    origin_saw_contain: BTreeMap<String, String>,
    /// Request headers the origin must not have seen (last request of this step).
    #[serde(default)]
    origin_absent: Vec<String>,
    /// The method of the last request the origin saw in this step.
    origin_method: Option<String>,
    /// Total requests the origin has received since the case began (polled, bounded).
    origin_hits_total: Option<usize>,
}

// === loading ===

fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cache-spec")
}

/// Loads and sanity-checks every case; a malformed file is a suite bug and panics.
fn load_cases() -> (Vec<Case>, BTreeMap<String, usize>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(spec_dir())
        .expect("cache-spec/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    let mut per_file = BTreeMap::new();
    let mut ids = HashSet::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let file: SpecFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("cache-spec/{name}: {e}"));
        per_file.insert(name.clone(), file.cases.len());
        for mut case in file.cases {
            assert!(
                ids.insert(case.id.clone()),
                "{name}: duplicate id {}",
                case.id
            );
            assert!(
                case.section.starts_with("RFC "),
                "{name}: {}: section must cite an RFC section",
                case.id
            );
            assert!(!case.steps.is_empty(), "{name}: {}: no steps", case.id);
            assert!(
                !case.description.trim().is_empty(),
                "{name}: {}: empty description",
                case.id
            );
            if let Err(e) = validate_case(&case) {
                panic!("{name}: {}: {e}", case.id);
            }
            if !case.config.trim().is_empty() {
                toml::from_str::<toml::Table>(&case.config).unwrap_or_else(|e| {
                    panic!("{name}: {}: config is not valid TOML: {e}", case.id)
                });
            }
            case.file = name.clone();
            cases.push(case);
        }
    }
    (cases, per_file)
}

/// Catches malformed field names, values and templates when loading, so a typo in a case is
/// reported as such instead of as a confusing proxy or origin failure.
fn validate_case(case: &Case) -> Result<(), String> {
    let vars = Vars {
        now: UNIX_EPOCH + Duration::from_secs(CLOCK_START_SECS),
        origin: "http://127.0.0.1:1".to_owned(),
        other_origin: "http://127.0.0.1:2".to_owned(),
    };
    let fields = |what: &str, map: &BTreeMap<String, FieldValue>| -> Result<(), String> {
        for (name, value) in map {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{what}: invalid field name {name:?}"))?;
            for line in value.lines() {
                let line = expand(line, &vars)?;
                HeaderValue::from_str(&line)
                    .map_err(|_| format!("{what}: invalid value {line:?} for {name}"))?;
            }
        }
        Ok(())
    };
    for (i, step) in case.steps.iter().enumerate() {
        let at = |what: &str| format!("step {} {what}", i + 1);
        http::Method::from_bytes(step.request.method.as_bytes())
            .map_err(|_| format!("{}: bad method", at("request")))?;
        expand(&step.request.path, &vars)?;
        fields(&at("request"), &step.request.headers)?;
        if let Some(origin) = &step.origin {
            StatusCode::from_u16(origin.status)
                .map_err(|_| format!("{}: bad status {}", at("origin"), origin.status))?;
            fields(&at("origin"), &origin.headers)?;
        }
        let e = &step.expect;
        for value in e.headers.values().chain(e.headers_contain.values()) {
            expand(value, &vars)?;
        }
        for value in e.origin_saw.values().chain(e.origin_saw_contain.values()) {
            expand(value, &vars)?;
        }
    }
    Ok(())
}

// === templates ===

/// Values substituted into `{...}` placeholders.
struct Vars {
    now: SystemTime,
    origin: String,
    other_origin: String,
}

/// Expands `{now}`, `{now+N}`, `{now-N}` (HTTP-dates), `{origin}` and `{other_origin}`.
fn expand(text: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed placeholder in {text:?}"));
        };
        let name = after[..end].trim();
        let value = match name {
            "origin" => vars.origin.clone(),
            "other_origin" => vars.other_origin.clone(),
            "now" => httpdate::fmt_http_date(vars.now),
            _ => {
                let offset = if let Some(n) = name.strip_prefix("now+") {
                    n.trim().parse::<u64>().map(|n| (n, true))
                } else if let Some(n) = name.strip_prefix("now-") {
                    n.trim().parse::<u64>().map(|n| (n, false))
                } else {
                    return Err(format!("unknown placeholder {{{name}}} in {text:?}"));
                };
                let (secs, later) =
                    offset.map_err(|_| format!("bad offset in {{{name}}} in {text:?}"))?;
                let d = Duration::from_secs(secs);
                httpdate::fmt_http_date(if later { vars.now + d } else { vars.now - d })
            }
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

// === the scripted origin ===

/// A request as the origin saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: HeaderMap,
}

#[derive(Default)]
struct OriginState {
    /// The reply for the current step.
    reply: Option<OriginReply>,
    /// Index of the current step; requests are recorded under it.
    step: usize,
    seen: Vec<Vec<Seen>>,
    total: usize,
    /// Responses not yet fully written (or dropped).
    in_flight: usize,
    /// Connections reset or requests dropped because the origin was down.
    refused: usize,
}

/// A scripted HTTP/1.1 origin on two loopback ports (two origins, for cross-origin cases)
/// sharing one script. It stamps `Date` from the shared clock.
struct ScriptedOrigin {
    addr: SocketAddr,
    other_addr: SocketAddr,
    state: Arc<Mutex<OriginState>>,
    tasks: Vec<AbortHandle>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl ScriptedOrigin {
    async fn spawn(clock: Arc<ManualClock>) -> Self {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let second = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = first.local_addr().unwrap();
        let other_addr = second.local_addr().unwrap();
        let state = Arc::new(Mutex::new(OriginState::default()));
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let vars = Arc::new((format!("http://{addr}"), format!("http://{other_addr}")));
        let mut tasks = Vec::new();
        for listener in [first, second] {
            let state = Arc::clone(&state);
            let clock = Arc::clone(&clock);
            let connections = Arc::clone(&connections);
            let vars = Arc::clone(&vars);
            let task = tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let down = {
                        let mut s = state.lock().unwrap();
                        let down = s.reply.as_ref().is_some_and(|r| r.close);
                        if down {
                            s.refused += 1;
                        }
                        down
                    };
                    if down {
                        // Reset, as close as a live socket gets to "connection refused".
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        continue;
                    }
                    let state = Arc::clone(&state);
                    let clock = Arc::clone(&clock);
                    let vars = Arc::clone(&vars);
                    connections.lock().unwrap().spawn(async move {
                        let service = service_fn(move |req: Request<Incoming>| {
                            let state = Arc::clone(&state);
                            let clock = Arc::clone(&clock);
                            let vars = Arc::clone(&vars);
                            async move { serve(req, &state, &clock, &vars) }
                        });
                        let _ = http1::Builder::new()
                            .auto_date_header(false)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            tasks.push(task.abort_handle());
        }
        Self {
            addr,
            other_addr,
            state,
            tasks,
            connections,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn other_url(&self) -> String {
        format!("http://{}", self.other_addr)
    }

    /// Starts step `index` with `reply` as the scripted answer.
    fn begin_step(&self, index: usize, reply: Option<OriginReply>) {
        let mut s = self.state.lock().unwrap();
        s.step = index;
        while s.seen.len() <= index {
            s.seen.push(Vec::new());
        }
        s.reply = reply;
    }

    fn seen_in_step(&self, index: usize) -> Vec<Seen> {
        let s = self.state.lock().unwrap();
        s.seen.get(index).cloned().unwrap_or_default()
    }

    fn last_seen(&self) -> Option<Seen> {
        let s = self.state.lock().unwrap();
        s.seen.iter().rev().find_map(|step| step.last().cloned())
    }

    fn total(&self) -> usize {
        self.state.lock().unwrap().total
    }

    fn in_flight(&self) -> usize {
        self.state.lock().unwrap().in_flight
    }

    fn all_seen(&self) -> String {
        let s = self.state.lock().unwrap();
        let mut out = Vec::new();
        for (i, step) in s.seen.iter().enumerate() {
            for r in step {
                out.push(format!("step {}: {} {}", i + 1, r.method, r.target));
            }
        }
        if out.is_empty() {
            "none".to_owned()
        } else {
            out.join("; ")
        }
    }

    fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.connections.lock().unwrap().abort_all();
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Answers one request from the current step's script.
fn serve(
    req: Request<Incoming>,
    state: &Arc<Mutex<OriginState>>,
    clock: &ManualClock,
    vars: &(String, String),
) -> Result<Response<TrackedBody>, std::io::Error> {
    let mut s = state.lock().unwrap();
    if s.reply.as_ref().is_some_and(|r| r.close) {
        // A request on a kept-alive connection while "down": drop the connection unanswered.
        s.refused += 1;
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "origin is down for this step",
        ));
    }
    let step = s.step;
    while s.seen.len() <= step {
        s.seen.push(Vec::new());
    }
    s.seen[step].push(Seen {
        method: req.method().to_string(),
        target: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    s.total += 1;
    s.in_flight += 1;
    let reply = s.reply.clone();
    drop(s);
    let guard = InFlight(Arc::clone(state));
    let vars = Vars {
        now: clock.now(),
        origin: vars.0.clone(),
        other_origin: vars.1.clone(),
    };
    let (status, headers, body) = match reply {
        None => (
            500,
            BTreeMap::new(),
            "unexpected request to origin".to_owned(),
        ),
        Some(r) => (r.status, r.headers, r.body),
    };
    // A scripted Content-Length is sent as is: the body then reports no size of its own, so a
    // Content-Length larger than the body makes hyper cut the connection after the body (an
    // incomplete response).
    let declared_length = headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("content-length"));
    let mut response = Response::new(TrackedBody {
        inner: Full::new(Bytes::from(body)),
        declared_length,
        pause: None,
        _guard: guard,
    });
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut has_date = false;
    for (name, value) in &headers {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        if name == http::header::DATE {
            has_date = true;
        }
        for line in value.lines() {
            if line.is_empty() && name == http::header::DATE {
                continue;
            }
            let line = expand(line, &vars).unwrap_or_else(|e| e);
            response
                .headers_mut()
                .append(name.clone(), HeaderValue::from_str(&line).unwrap());
        }
    }
    if !has_date {
        response.headers_mut().insert(
            http::header::DATE,
            HeaderValue::from_str(&httpdate::fmt_http_date(vars.now)).unwrap(),
        );
    }
    Ok(response)
}

/// Decrements the origin's in-flight count when the response body is done with.
struct InFlight(Arc<Mutex<OriginState>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

struct TrackedBody {
    inner: Full<Bytes>,
    /// The script set Content-Length itself: report an unknown size and never claim the end
    /// early, so hyper frames the message by the scripted header.
    declared_length: bool,
    /// With a declared length, a short pause after the content so the head and content are
    /// flushed before hyper notices the shortfall and drops the connection.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    _guard: InFlight,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if !this.inner.is_end_stream() {
            return Pin::new(&mut this.inner).poll_frame(cx);
        }
        if this.declared_length {
            let pause = this
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(TRUNCATE_PAUSE)));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        !self.declared_length && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.declared_length {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

// === running a case ===

/// The proxy config for a case: the harness config with the case's TOML deep-merged in.
fn case_config(dir: &Path, extra: &str) -> Result<String, String> {
    let base = support::config(dir, "[timeouts]\nshutdown = \"1s\"\n");
    let mut table: toml::Table = toml::from_str(&base).map_err(|e| e.to_string())?;
    if !extra.trim().is_empty() {
        let extra: toml::Table = toml::from_str(extra).map_err(|e| format!("case config: {e}"))?;
        merge(&mut table, extra);
    }
    toml::to_string(&table).map_err(|e| e.to_string())
}

fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge(b, e),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// One field's value as the client saw it: all lines joined with ", ".
fn field(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

async fn run_case(case: Case) -> Result<(), String> {
    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(CLOCK_START_SECS),
    ));
    let shared: SharedClock = clock.clone();
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let text = case_config(dir.path(), &case.config)?;
    let origin = ScriptedOrigin::spawn(Arc::clone(&clock)).await;
    let proxy = TestProxy::try_start_with_clock(&text, Some(dir), shared)
        .await
        .map_err(|e| first_line(&e).to_owned())?;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let mut outcome = Ok(());
    for (index, step) in case.steps.iter().enumerate() {
        if let Err(e) = run_step(&client, &origin, &clock, index, step).await {
            outcome = Err(format!("step {}: {e}", index + 1));
            break;
        }
        tokio::time::sleep(STEP_SETTLE).await;
    }
    drop(client);
    origin.stop();
    let _ = tokio::time::timeout(Duration::from_secs(3), proxy.shutdown()).await;
    outcome
}

async fn run_step(
    client: &reqwest::Client,
    origin: &ScriptedOrigin,
    clock: &ManualClock,
    index: usize,
    step: &Step,
) -> Result<(), String> {
    clock.advance(Duration::from_secs(step.advance));
    if let Some(n) = step.await_origin_hits {
        let waited = poll(|| origin.total() >= n && origin.in_flight() == 0).await;
        if !waited {
            return Err(format!(
                "waited {POLL_LIMIT:?} for the origin to have answered {n} requests in total; \
                 it has {} (requests: {})",
                origin.total(),
                origin.all_seen()
            ));
        }
        tokio::time::sleep(AWAIT_SETTLE).await;
    }
    origin.begin_step(index, step.origin.clone());
    let vars = Vars {
        now: clock.now(),
        origin: origin.url(),
        other_origin: origin.other_url(),
    };
    let req = &step.request;
    let target = expand(&req.path, &vars)?;
    let url = if target.starts_with("http://") || target.starts_with("https://") {
        target
    } else {
        format!("{}{}", origin.url(), target)
    };
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|e| format!("bad method {}: {e}", req.method))?;
    let mut builder = client.request(method.clone(), &url);
    for (name, value) in &req.headers {
        for line in value.lines() {
            builder = builder.header(name.as_str(), expand(line, &vars)?);
        }
    }
    if !req.body.is_empty() {
        builder = builder.body(req.body.clone());
    }
    let response = builder
        .send()
        .await
        .map_err(|e| format!("{method} {url}: request failed: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut problems = Vec::new();
    let body = match response.bytes().await {
        Ok(body) => {
            if step.expect.incomplete {
                problems.push(format!(
                    "the body arrived complete ({} bytes), expected it to be cut short",
                    body.len()
                ));
            }
            String::from_utf8_lossy(&body).into_owned()
        }
        Err(_) if step.expect.incomplete => String::new(),
        Err(e) => return Err(format!("{method} {url}: reading the body failed: {e}")),
    };
    check_response(&step.expect, status, &headers, &body, &vars, &mut problems)?;
    check_origin(&step.expect, origin, index, &vars, &mut problems).await?;
    if problems.is_empty() {
        Ok(())
    } else {
        let cache_status = field(&headers, "cache-status").unwrap_or_else(|| "-".to_owned());
        Err(format!(
            "{method} {} -> {status} [Cache-Status: {cache_status}]: {}",
            req.path,
            problems.join("; ")
        ))
    }
}

fn check_response(
    expect: &Expect,
    status: u16,
    headers: &HeaderMap,
    body: &str,
    vars: &Vars,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    if let Some(want) = expect.status {
        if want != status {
            problems.push(format!("status {status}, expected {want}"));
        }
    }
    if !expect.status_in.is_empty() && !expect.status_in.contains(&status) {
        problems.push(format!(
            "status {status}, expected one of {:?}",
            expect.status_in
        ));
    }
    if let Some(want) = &expect.body {
        if want != body {
            problems.push(format!("body {body:?}, expected {want:?}"));
        }
    }
    for want in &expect.body_contains {
        if !body.contains(want.as_str()) {
            problems.push(format!("body {body:?} lacks {want:?}"));
        }
    }
    for (name, want) in &expect.headers {
        let want = expand(want, vars)?;
        match field(headers, name) {
            None => problems.push(format!("no {name} (expected {want:?})")),
            Some(got) if got != want => {
                problems.push(format!("{name}: {got:?}, expected {want:?}"));
            }
            Some(_) => {}
        }
    }
    for (name, want) in &expect.headers_contain {
        let want = expand(want, vars)?;
        match field(headers, name) {
            None => problems.push(format!("no {name} (expected it to contain {want:?})")),
            Some(got) if !got.contains(want.as_str()) => {
                problems.push(format!("{name}: {got:?} lacks {want:?}"));
            }
            Some(_) => {}
        }
    }
    for name in &expect.absent {
        if let Some(got) = field(headers, name) {
            problems.push(format!("{name}: {got:?} present, expected absent"));
        }
    }
    if !expect.cache_status.is_empty() || !expect.cache_status_absent.is_empty() {
        match field(headers, "cache-status") {
            None => problems.push("no Cache-Status".to_owned()),
            Some(got) => {
                for want in &expect.cache_status {
                    if !got.contains(want.as_str()) {
                        problems.push(format!("Cache-Status lacks {want:?}"));
                    }
                }
                for unwanted in &expect.cache_status_absent {
                    if got.contains(unwanted.as_str()) {
                        problems.push(format!("Cache-Status has {unwanted:?}"));
                    }
                }
            }
        }
    }
    Ok(())
}

async fn check_origin(
    expect: &Expect,
    origin: &ScriptedOrigin,
    index: usize,
    vars: &Vars,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    let seen = origin.seen_in_step(index);
    if let Some(want) = expect.origin_contacted {
        let got = !seen.is_empty();
        if got != want {
            problems.push(if want {
                "origin was not contacted, expected it to be".to_owned()
            } else {
                let what: Vec<String> = seen
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.target))
                    .collect();
                format!(
                    "origin was contacted ({}), expected it not to be",
                    what.join(", ")
                )
            });
        }
    }
    if let Some(want) = expect.origin_hits_total {
        poll(|| origin.total() >= want).await;
        let got = origin.total();
        if got != want {
            problems.push(format!(
                "origin received {got} requests in total, expected {want} ({})",
                origin.all_seen()
            ));
        }
    }
    let needs_request = !expect.origin_saw.is_empty()
        || !expect.origin_saw_contain.is_empty()
        || !expect.origin_absent.is_empty()
        || expect.origin_method.is_some();
    if needs_request {
        // With `origin_hits_total` (background requests) the most recent request of the whole
        // case is checked; otherwise the last request of this step.
        // Otherwise the step's request that carries every expected field (a step may make
        // several, e.g. a validation then an unconditional retry), else its last request.
        let subject = if expect.origin_hits_total.is_some() {
            origin.last_seen()
        } else {
            seen.iter()
                .find(|r| {
                    !expect.origin_saw.is_empty()
                        && expect.origin_saw.iter().all(|(name, want)| {
                            expand(want, vars).ok().is_some_and(|want| {
                                field(&r.headers, name).as_deref() == Some(want.as_str())
                            })
                        })
                })
                .or(seen.last())
                .cloned()
        };
        match subject.as_ref() {
            None => problems.push("origin saw no request in this step to check".to_owned()),
            Some(last) => {
                if let Some(want) = &expect.origin_method {
                    if !last.method.eq_ignore_ascii_case(want) {
                        problems.push(format!(
                            "origin saw method {}, expected {want}",
                            last.method
                        ));
                    }
                }
                for (name, want) in &expect.origin_saw {
                    let want = expand(want, vars)?;
                    match field(&last.headers, name) {
                        None => problems.push(format!("origin saw no {name} (expected {want:?})")),
                        Some(got) if got != want => {
                            problems.push(format!("origin saw {name}: {got:?}, expected {want:?}"));
                        }
                        Some(_) => {}
                    }
                }
                for (name, want) in &expect.origin_saw_contain {
                    let want = expand(want, vars)?;
                    match field(&last.headers, name) {
                        None => problems.push(format!(
                            "origin saw no {name} (expected it to contain {want:?})"
                        )),
                        Some(got) if !got.contains(want.as_str()) => {
                            problems.push(format!("origin saw {name}: {got:?} lacking {want:?}"));
                        }
                        Some(_) => {}
                    }
                }
                for name in &expect.origin_absent {
                    if let Some(got) = field(&last.headers, name) {
                        problems.push(format!("origin saw {name}: {got:?}, expected none"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Polls `done` every [`POLL_EVERY`] for at most [`POLL_LIMIT`] (real time).
async fn poll(mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + POLL_LIMIT;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

// === the test ===

struct Outcome {
    id: String,
    section: String,
    file: String,
    result: Result<(), String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_spec() {
    let (mut cases, per_file) = load_cases();
    let all = cases.len();
    // CACHE_SPEC_FILTER=text runs only the cases whose id or file contains `text`.
    let filter = std::env::var("CACHE_SPEC_FILTER")
        .ok()
        .filter(|f| !f.is_empty());
    if let Some(filter) = &filter {
        cases.retain(|c| c.id.contains(filter.as_str()) || c.file.contains(filter.as_str()));
        println!(
            "cache-spec: CACHE_SPEC_FILTER={filter:?} selects {} of {all} cases",
            cases.len()
        );
    }
    let total = cases.len();
    let choices = cases.iter().filter(|c| c.choice).count();
    println!("cache-spec: {total} cases ({choices} assert documented cuttle choices)");
    for (file, n) in &per_file {
        println!("  {file}: {n}");
    }

    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut set = JoinSet::new();
    let mut names = HashMap::new();
    for case in cases {
        let limit = Arc::clone(&limit);
        let label = (case.id.clone(), case.section.clone(), case.file.clone());
        let handle = set.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            match tokio::time::timeout(CASE_TIMEOUT, run_case(case)).await {
                Ok(result) => result,
                Err(_) => Err(format!("case did not finish within {CASE_TIMEOUT:?}")),
            }
        });
        names.insert(handle.id(), label);
    }
    let mut outcomes = Vec::with_capacity(total);
    while let Some(joined) = set.join_next_with_id().await {
        let (task, result) = match joined {
            Ok((task, result)) => (task, result),
            Err(err) => {
                let task = err.id();
                let message = if err.is_panic() {
                    let payload = err.into_panic();
                    let text = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "non-string panic".to_owned());
                    format!("runner panicked: {}", first_line(&text))
                } else {
                    "case task was cancelled".to_owned()
                };
                (task, Err(message))
            }
        };
        let (id, section, file) = names.remove(&task).unwrap();
        outcomes.push(Outcome {
            id,
            section,
            file,
            result,
        });
    }
    outcomes.sort_by(|a, b| (&a.file, &a.id).cmp(&(&b.file, &b.id)));

    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    let passed = outcomes.len() - failed.len();
    let mut report = String::new();
    for o in &failed {
        if let Err(e) = &o.result {
            let _ = writeln!(report, "FAIL {} ({}) [{}]: {e}", o.id, o.section, o.file);
        }
    }
    print!("{report}");
    println!("{passed} passed, {} failed", failed.len());
    assert!(
        all >= MIN_CASES,
        "the suite has {all} cases; at least {MIN_CASES} expected"
    );
    assert!(
        failed.is_empty(),
        "{} of {total} cache-spec cases failed (see above)",
        failed.len()
    );
}
