//! Read-while-writer (issue 14 item 4): requests collapsed behind a fill stream its bytes as
//! they arrive, an aborted fill aborts them all and stores nothing, and a response that is not
//! storable releases them at once and leaves a hit-for-miss marker.
//!
//! The origin here is a real HTTP/1.1 server on loopback whose replies wait on gates the test
//! opens, so "while the origin is still sending" is a fact of the test, not a timing guess.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use support::{http_client, pattern, OriginBody, TestProxy, WAIT};

// === a gated origin ===

type Reply = Pin<Box<dyn Future<Output = Response<OriginBody>> + Send>>;

/// An origin whose handler gets the request's index (0 for the first) and may wait.
struct GatedOrigin {
    addr: SocketAddr,
    /// Requests received so far.
    hits: watch::Receiver<usize>,
}

impl GatedOrigin {
    async fn spawn(handler: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hits_tx, hits) = watch::channel(0usize);
        let hits_tx = Arc::new(hits_tx);
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let hits_tx = Arc::clone(&hits_tx);
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        let mut index = 0;
                        hits_tx.send_modify(|n| {
                            index = *n;
                            *n += 1;
                        });
                        let reply = handler(index);
                        async move { Ok::<_, Infallible>(reply.await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn hits(&self) -> usize {
        *self.hits.borrow()
    }

    /// Waits (bounded) until the origin has seen `n` requests.
    async fn wait_hits(&self, n: usize) {
        let mut hits = self.hits.clone();
        tokio::time::timeout(WAIT, hits.wait_for(|h| *h >= n))
            .await
            .unwrap_or_else(|_| panic!("origin saw {} requests, expected {n}", self.hits()))
            .unwrap();
    }
}

const PART: usize = 256 << 10;
const LEN: usize = 2 * PART;

/// `pattern(LEN)` with `Content-Length`, cacheable; the second half waits for `gate`, and is
/// left out (the body ends short) if `abort`.
fn gated_body(gate: Arc<Semaphore>, abort: bool) -> Response<OriginBody> {
    let body = Bytes::from(pattern(LEN));
    let frames = futures_util::stream::unfold(0usize, move |sent| {
        let gate = Arc::clone(&gate);
        let body = body.clone();
        async move {
            if sent == PART {
                let _held = gate.acquire().await.unwrap();
                if abort {
                    return None;
                }
            }
            if sent >= LEN {
                return None;
            }
            let next = (sent + (16 << 10)).min(LEN);
            Some((
                Ok::<_, Infallible>(Frame::data(body.slice(sent..next))),
                next,
            ))
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert("content-length", LEN.to_string().parse().unwrap());
    headers.insert("cache-control", "max-age=600".parse().unwrap());
    response
}

// === clients ===

/// What a client got: `Cache-Status`, the bytes, and whether the body ended in an error.
struct Got {
    cache_status: String,
    body: Vec<u8>,
    failed: bool,
}

/// Fetches `url`, reporting on `first` once it holds the first `PART` bytes.
async fn fetch(client: reqwest::Client, url: String, first: mpsc::Sender<()>) -> Got {
    let mut response = client.get(&url).send().await.unwrap();
    let cache_status = response
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let mut body = Vec::new();
    let mut told = false;
    let failed = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break false,
            Err(_) => break true,
        }
        if !told && body.len() >= PART {
            told = true;
            first.send(()).await.unwrap();
        }
    };
    Got {
        cache_status,
        body,
        failed,
    }
}

async fn proxy() -> TestProxy {
    TestProxy::start("[cache]\ncollapsed_forwarding_timeout = \"60s\"\n").await
}

/// Starts `n` clients of `url`: the first alone (it leads the fill), the others once the
/// origin has its request. Returns them and the channel where each says it has `PART` bytes.
async fn start_clients(
    proxy: &TestProxy,
    origin: &GatedOrigin,
    url: &str,
    n: usize,
) -> (Vec<tokio::task::JoinHandle<Got>>, mpsc::Receiver<()>) {
    let (first_tx, first_rx) = mpsc::channel(n);
    let client = http_client(proxy);
    let mut clients = vec![tokio::spawn(fetch(
        client.clone(),
        url.to_owned(),
        first_tx.clone(),
    ))];
    origin.wait_hits(1).await;
    for _ in 1..n {
        clients.push(tokio::spawn(fetch(
            client.clone(),
            url.to_owned(),
            first_tx.clone(),
        )));
    }
    (clients, first_rx)
}

/// Waits (bounded) until `n` clients hold their first `PART` bytes.
async fn all_have_first_part(first: &mut mpsc::Receiver<()>, n: usize) {
    for got in 0..n {
        tokio::time::timeout(WAIT, first.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("only {got} of {n} clients had their first bytes while the origin held the rest")
            })
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_get_their_first_bytes_while_the_origin_is_still_sending() {
    const CLIENTS: usize = 6;
    let gate = Arc::new(Semaphore::new(0));
    let origin = GatedOrigin::spawn({
        let gate = Arc::clone(&gate);
        move |_| {
            let gate = Arc::clone(&gate);
            Box::pin(async move { gated_body(gate, false) })
        }
    })
    .await;
    let proxy = proxy().await;
    let url = origin.url("/big");
    let (clients, mut first) = start_clients(&proxy, &origin, &url, CLIENTS).await;
    // The origin has sent half and holds the rest: every client already has that half.
    all_have_first_part(&mut first, CLIENTS).await;
    assert_eq!(origin.hits(), 1);
    gate.add_permits(1);
    let expected = pattern(LEN);
    let mut collapsed = 0;
    for client in clients {
        let got = client.await.unwrap();
        assert!(!got.failed, "a body failed ({})", got.cache_status);
        assert!(
            got.body == expected,
            "a body differs ({})",
            got.cache_status
        );
        if got.cache_status.contains("collapsed") {
            collapsed += 1;
        }
    }
    assert_eq!(collapsed, CLIENTS - 1, "every waiter was collapsed");
    assert_eq!(origin.hits(), 1, "the origin saw one request");
    // The fill was stored: the next request is a hit.
    let again = http_client(&proxy).get(&url).send().await.unwrap();
    let status = again.headers()["cache-status"].to_str().unwrap().to_owned();
    assert!(status.contains("hit"), "{status}");
    assert!(again.bytes().await.unwrap() == expected);
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_fill_aborts_every_client_and_stores_nothing() {
    const CLIENTS: usize = 5;
    let gate = Arc::new(Semaphore::new(0));
    let origin = GatedOrigin::spawn({
        let gate = Arc::clone(&gate);
        move |index| {
            let gate = Arc::clone(&gate);
            // The first response breaks off half-way; later ones are whole and not gated.
            Box::pin(async move {
                if index > 0 {
                    gate.add_permits(1);
                }
                gated_body(gate, index == 0)
            })
        }
    })
    .await;
    let proxy = proxy().await;
    let url = origin.url("/broken");
    let (clients, mut first) = start_clients(&proxy, &origin, &url, CLIENTS).await;
    all_have_first_part(&mut first, CLIENTS).await;
    gate.add_permits(1);
    for client in clients {
        let got = client.await.unwrap();
        assert!(
            got.failed,
            "a client saw a clean end after {} of {LEN} bytes ({})",
            got.body.len(),
            got.cache_status
        );
        assert!(got.body.len() < LEN);
        assert!(got.body[..] == pattern(LEN)[..got.body.len()]);
    }
    assert_eq!(origin.hits(), 1, "the waiters did not fetch on their own");
    // Nothing was stored: the next request goes to the origin, and gets the whole body.
    let again = http_client(&proxy).get(&url).send().await.unwrap();
    let status = again.headers()["cache-status"].to_str().unwrap().to_owned();
    assert!(!status.contains("hit"), "{status}");
    assert!(again.bytes().await.unwrap() == pattern(LEN));
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

// === not storable: release and hit-for-miss ===

/// Counts the proxy's `collapsed-wait` phase events per URL: the moment a request is queued
/// behind a fetch, observed without sleeping.
#[derive(Default)]
struct PhaseCounter(Mutex<HashMap<String, usize>>);

fn phases() -> &'static PhaseCounter {
    static COUNTER: OnceLock<&'static PhaseCounter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let counter: &'static PhaseCounter = Box::leak(Box::default());
        let subscriber = tracing_subscriber::registry().with(CountLayer(counter));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        counter
    })
}

impl PhaseCounter {
    fn queued(&self, url: &str) -> usize {
        self.0.lock().unwrap().get(url).copied().unwrap_or(0)
    }
}

struct CountLayer(&'static PhaseCounter);

#[derive(Default)]
struct Fields {
    phase: Option<String>,
    url: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "phase" => self.phase = Some(value.to_owned()),
            "url" => self.url = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "phase" => self.phase = Some(text.trim_matches('"').to_owned()),
            "url" => self.url = Some(text),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (Some("collapsed-wait"), Some(url)) = (fields.phase.as_deref(), fields.url) {
            *self.0 .0.lock().unwrap().entry(url).or_default() += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_not_storable_releases_waiters_and_leaves_hit_for_miss() {
    const WAITERS: usize = 3;
    let counter = phases();
    // Every response waits for a permit before its header, and may not be stored.
    let gate = Arc::new(Semaphore::new(0));
    let origin = GatedOrigin::spawn({
        let gate = Arc::clone(&gate);
        move |index| {
            let gate = Arc::clone(&gate);
            Box::pin(async move {
                gate.acquire().await.unwrap().forget();
                support::reply_with(
                    200,
                    &format!("private {index}"),
                    &[("cache-control", "no-store")],
                )
            })
        }
    })
    .await;
    let proxy = proxy().await;
    let url = origin.url("/private");
    let client = http_client(&proxy);
    let get = |client: &reqwest::Client| {
        let request = client.get(&url).send();
        tokio::spawn(async move {
            let response = request.await.unwrap();
            let status = response.headers()["cache-status"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = response.text().await.unwrap();
            (status, body)
        })
    };
    let leader = get(&client);
    origin.wait_hits(1).await;
    let waiters: Vec<_> = (0..WAITERS).map(|_| get(&client)).collect();
    // Wait (bounded, no sleep) until all are queued behind the leader's fetch.
    let deadline = tokio::time::Instant::now() + WAIT;
    while counter.queued(&url) < WAITERS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiters never queued"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(origin.hits(), 1);
    // The leader's answer may not be stored: the waiters go to the origin at once (the
    // collapsed-forwarding timeout is a minute; the origin holds every answer).
    gate.add_permits(1);
    origin.wait_hits(1 + WAITERS).await;
    gate.add_permits(WAITERS);
    let (status, body) = leader.await.unwrap();
    assert_eq!(body, "private 0");
    assert!(
        status.contains("detail=no-store") || status.contains("fwd="),
        "{status}"
    );
    for waiter in waiters {
        let (status, body) = waiter.await.unwrap();
        assert!(body.starts_with("private "), "{body}");
        assert!(
            status.contains("collapsed=?0"),
            "released waiters: {status}"
        );
    }
    // Hit-for-miss: the next requests for the URL do not queue behind a fetch; each goes to
    // the origin while it still holds every answer.
    let seen = origin.hits();
    let next: Vec<_> = (0..WAITERS).map(|_| get(&client)).collect();
    origin.wait_hits(seen + WAITERS).await;
    gate.add_permits(WAITERS);
    for request in next {
        let (status, body) = request.await.unwrap();
        assert!(body.starts_with("private "), "{body}");
        assert!(!status.contains("collapsed"), "{status}");
    }
    assert_eq!(
        counter.queued(&url),
        WAITERS,
        "nobody queued under hit-for-miss"
    );
    proxy.shutdown().await;
}
