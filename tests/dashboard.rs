//! The live dashboard in a real browser: cuttle with its admin listener on loopback and a
//! loopback origin, traffic (misses and hits) flowing while headless Chromium (Debian's
//! `chromium`, which `.ci/run` installs) loads `/`; then the rendered key figures are compared
//! with `/status`.
//!
//! How the comparison is made deterministic: the dashboard's own requests (`/`, its CSS and
//! JS, `/status`) go to the admin listener, which the proxy's counters never see. While
//! traffic flows, the rendered request count must lie between `/status` read before and after
//! the browser ran. Then the traffic stops, the test waits until `/status` counts every request
//! the traffic task completed, and a last browser run must render exactly that `/status`
//! (which must not have moved while the browser polled it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::{admin_client, admin_status, reply_with, Origin, WAIT};

/// Longest a Chromium run may take before it is killed and the test fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// Virtual time the page gets before the DOM is dumped: the first poll and two more.
const VIRTUAL_TIME_MS: u32 = 5000;

/// Distinct cacheable URLs; every request after the first for each is a hit.
const CACHEABLE_URLS: u64 = 12;

/// The Chromium binary: `$CHROMIUM`, else `chromium` on `PATH`. Missing is a failure, not a
/// skip.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromium not found on PATH (nor $CHROMIUM): the dashboard test needs Debian's \
             `chromium` package; `apt-get install chromium` (.ci/run installs it)"
        )
    })
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=FILE`), bounded
/// by [`BROWSER_TIMEOUT`]; returns its stdout.
async fn browse(url: &str, mode: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
    .args(mode)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not start chromium: {e}"));
    let output = match tokio::time::timeout(BROWSER_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.unwrap(),
        // Dropping the future drops the child, which kills it (kill_on_drop).
        Err(_) => panic!("chromium did not finish within {BROWSER_TIMEOUT:?}; killed"),
    };
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The text of the element with `id` in a dumped DOM (elements holding text only).
fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in the DOM:\n{dom}"));
    let rest = &dom[at..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap();
    rest[open..open + close].to_owned()
}

/// The integer shown in `#id`.
fn int_of(dom: &str, id: &str) -> u64 {
    let text = text_of(dom, id);
    text.parse()
        .unwrap_or_else(|_| panic!("#{id} is {text:?}, not a plain integer"))
}

/// The dashboard's documented form of `num / den`: a percentage with one decimal, the
/// permille rounded half up.
fn percent(num: u64, den: u64) -> String {
    if den == 0 {
        return "n/a".to_owned();
    }
    let permille = (2 * 1000 * num + den) / (2 * den);
    format!("{}.{}%", permille / 10, permille % 10)
}

fn client() -> reqwest::Client {
    admin_client()
}

async fn status(admin: SocketAddr) -> Value {
    admin_status(admin).await
}

fn total(status: &Value) -> u64 {
    status["requests"]["total"].as_u64().unwrap()
}

/// Requests through the proxy until `stop`: a dozen cacheable URLs (a miss each, then hits)
/// and every fifth request an uncacheable one (always a miss). Returns the requests completed.
fn traffic(
    proxy: reqwest::Client,
    origin: Origin,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    let done = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        // Bounded: 2 minutes of traffic at most, even if nobody stops it.
        for i in 0..24_000u64 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let url = if i % 5 == 4 {
                origin.url("/private")
            } else {
                origin.url(&format!("/page/{}", i % CACHEABLE_URLS))
            };
            let response = proxy.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
            response.bytes().await.unwrap();
            done.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        done.load(Ordering::SeqCst)
    })
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 10_000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_the_status_figures_in_chromium() {
    // Fail first, before anything starts, when the browser is missing.
    let _ = chromium();
    let mut builder = Origin::builder().route("/private", |_| {
        reply_with(
            200,
            "per-user answer, never stored",
            &[("cache-control", "no-store")],
        )
    });
    for n in 0..CACHEABLE_URLS {
        builder = builder.route(&format!("/page/{n}"), move |_| {
            reply_with(
                200,
                &format!("page {n}: {}", "x".repeat(2000)),
                &[("cache-control", "max-age=600")],
            )
        });
    }
    let origin = builder.spawn().await;

    let dir = tempfile::tempdir().unwrap();
    let text = support::config(
        dir.path(),
        "[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = \"none\"\n",
    );
    let config = cuttle::config::load_str("dashboard.toml", &text).unwrap();
    let server = cuttle::app::start(config).await.unwrap();
    let proxy_url = format!("http://{}", server.addr().unwrap());
    let admin = server.admin_addr().expect("the admin listener runs");
    let page = format!("http://{admin}/");

    // The files are served with their types, no-store and a strict policy.
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard.css", "text/css"),
        ("/dashboard.js", "text/javascript"),
    ] {
        let r = client()
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(h["cache-control"], "no-store", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
    }

    let proxy = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(&proxy_url).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flowing = traffic(proxy, origin.clone(), Arc::clone(&stop));
    // Let the first misses fill the cache, so both kinds are on the page, and let the clock
    // pass the first history sample by 2 s, so the charts have an interval to draw.
    let mut warm = false;
    for _ in 0..400 {
        let s = status(admin).await;
        let first_sample = s["history"][0]["t"].as_f64().unwrap_or(f64::MAX);
        if total(&s) > CACHEABLE_URLS * 2 && s["now"].as_f64().unwrap() - first_sample >= 2.0 {
            warm = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(warm, "traffic and the first history sample in time");

    // 1. While traffic flows: the page shows a count between the ones before and after it ran.
    let before = status(admin).await;
    let dom = browse(&page, &["--dump-dom"]).await;
    let after = status(admin).await;
    assert!(total(&after) > total(&before), "traffic flowed meanwhile");
    let shown = int_of(&dom, "requests-total");
    assert!(
        (total(&before)..=total(&after)).contains(&shown),
        "#requests-total {shown} not within {}..={}",
        total(&before),
        total(&after)
    );
    let (hits, lookups) = (int_of(&dom, "cache-hits"), int_of(&dom, "cache-lookups"));
    assert!(hits > 0 && hits < lookups, "hits {hits} of {lookups}");
    assert_eq!(text_of(&dom, "hit-ratio"), percent(hits, lookups));
    for chart in ["chart-rate", "chart-hits"] {
        let svg = &dom[dom.find(&format!("id=\"{chart}\"")).unwrap()..];
        let svg = &svg[..svg.find("</svg>").unwrap()];
        assert!(
            svg.contains("class=\"line s"),
            "#{chart} draws a line: {svg}"
        );
    }
    assert_eq!(text_of(&dom, "live").split(" · ").next(), Some("live"));

    // 2. A screenshot, still under traffic, in the test's temp dir.
    let shot = dir.path().join("dashboard.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    browse(&page, &[&shot_arg, "--window-size=1280,900"]).await;
    assert!(is_png(&shot), "{} is not a screenshot", shot.display());
    println!("dashboard screenshot: {}", shot.display());
    // To look at it after the temp dir is gone: CUTTLE_DASHBOARD_SCREENSHOT=/some/file.png.
    if let Some(keep) = std::env::var_os("CUTTLE_DASHBOARD_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // 3. Traffic stopped: every completed request counted, the page shows /status exactly.
    stop.store(true, Ordering::SeqCst);
    let sent = tokio::time::timeout(WAIT, flowing)
        .await
        .expect("traffic stops")
        .unwrap();
    let mut settled = status(admin).await;
    for _ in 0..200 {
        if total(&settled) == sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        settled = status(admin).await;
    }
    assert_eq!(total(&settled), sent, "/status counts every request sent");
    let dom = browse(&page, &["--dump-dom"]).await;
    let last = status(admin).await;
    assert_eq!(
        total(&last),
        sent,
        "the dashboard's own requests are not counted"
    );
    let cache = &last["cache"];
    let (hits, lookups) = (
        cache["hits"].as_u64().unwrap(),
        cache["lookups"].as_u64().unwrap(),
    );
    assert_eq!(int_of(&dom, "requests-total"), sent);
    assert_eq!(int_of(&dom, "cache-hits"), hits);
    assert_eq!(int_of(&dom, "cache-lookups"), lookups);
    assert_eq!(text_of(&dom, "hit-ratio"), percent(hits, lookups));
    let ratio = cache["hit_ratio"].as_f64().unwrap();
    assert!(
        (ratio * 100.0
            - text_of(&dom, "hit-ratio")
                .trim_end_matches('%')
                .parse::<f64>()
                .unwrap())
        .abs()
            <= 0.05 + 1e-9
    );
    assert!(
        cache["results"]["miss"].as_u64().unwrap() >= CACHEABLE_URLS
            && cache["results"]["memory_hit"].as_u64().unwrap() > 0,
        "both misses and hits: {cache}"
    );
    assert_eq!(
        int_of(&dom, "log-dropped"),
        last["access_log"]["dropped"].as_u64().unwrap()
    );
    assert_eq!(
        int_of(&dom, "config-generation"),
        last["config"]["generation"].as_u64().unwrap()
    );
    server.shutdown().await;
}
