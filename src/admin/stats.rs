//! `cuttle stats [--admin ADDR]`: a short summary of a running cuttle, read from its
//! `/status` (in the spirit of `squidclient mgr:info`).

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long to wait for the admin listener to answer.
const WAIT: Duration = Duration::from_secs(5);
/// The largest `/status` document read.
const MAX_STATUS: u64 = 16 * 1024 * 1024;

/// Fetches `/status` from the admin listener at `addr` (`host:port`).
pub async fn fetch(addr: &str) -> Result<Value, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to the admin listener at {addr}: {e}"))?;
        let request = format!(
            "GET /status HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send to {addr}: {e}"))?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_STATUS)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("cannot read from {addr}: {e}"))?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(WAIT, exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within {WAIT:?}"))??;
    if raw.is_empty() {
        return Err(format!(
            "{addr} closed the connection: is this client allowed by [admin] access?"
        ));
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{addr} did not answer with HTTP"))?;
    let (head, body) = raw.split_at(split + 4);
    let head = String::from_utf8_lossy(head);
    let status_line = head.lines().next().unwrap_or("");
    if !status_line.contains(" 200 ") {
        return Err(format!("{addr} answered `{status_line}`"));
    }
    serde_json::from_slice(body).map_err(|e| format!("{addr}/status is not JSON: {e}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The terminal summary of a `/status` document.
pub fn summary(s: &Value) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let uptime = s["uptime_seconds"].as_f64().unwrap_or(0.0);
    line(format!(
        "cuttle {}  up {}  config generation {} (reloads: {} ok, {} failed)",
        s["version"].as_str().unwrap_or("?"),
        humantime::format_duration(Duration::from_secs(uptime as u64)),
        n(&s["config"]["generation"]),
        n(&s["config"]["reloads_ok"]),
        n(&s["config"]["reloads_failed"]),
    ));
    let r = &s["requests"];
    line(format!(
        "Requests:     {} total ({} forward, {} reverse)",
        n(&r["total"]),
        n(&r["by_mode"]["forward"]),
        n(&r["by_mode"]["reverse"])
    ));
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .map(|c| format!("{c} {}", n(&r["by_status_class"][*c])))
        .collect::<Vec<_>>()
        .join(", ");
    line(format!("  by status:  {classes}"));
    let c = &s["cache"];
    line(format!(
        "Cache:        hit ratio {:.1}% ({} hits / {} lookups)",
        c["hit_ratio"].as_f64().unwrap_or(0.0) * 100.0,
        n(&c["hits"]),
        n(&c["lookups"])
    ));
    if let Some(results) = c["results"].as_object() {
        let parts: Vec<String> = results
            .iter()
            .map(|(k, v)| format!("{k} {}", n(v)))
            .collect();
        line(format!("  results:    {}", parts.join(", ")));
    }
    let tier = |name: &str, t: &Value| {
        format!(
            "  {name:<11} {} objects, {} of {}, {} evictions",
            n(&t["objects"]),
            crate::config::summary::size(n(&t["bytes"])),
            crate::config::summary::size(n(&t["max_bytes"])),
            n(&t["evictions"])
        )
    };
    line(tier("memory:", &c["tiers"]["memory"]));
    let disk = &c["tiers"]["disk"];
    if disk.is_null() {
        line("  disk:       off".to_owned());
    } else {
        line(format!(
            "{} ({})",
            tier("disk:", disk),
            disk["path"].as_str().unwrap_or("")
        ));
    }
    let b = &s["bytes"];
    line(format!(
        "Bandwidth:    {} to clients, {} from upstream, {} saved",
        crate::config::summary::size(n(&b["to_clients"])),
        crate::config::summary::size(n(&b["from_upstream"])),
        crate::config::summary::size(n(&b["saved"]))
    ));
    line(format!(
        "Connections:  {} clients, {} upstream",
        n(&s["connections"]["clients_open"]),
        n(&s["connections"]["upstream_open"])
    ));
    for u in s["upstreams"].as_array().into_iter().flatten() {
        line(format!(
            "Upstream:     {}/{} {} ({} requests, {} failures, {:.1} ms avg)",
            u["group"].as_str().unwrap_or(""),
            u["server"].as_str().unwrap_or(""),
            if u["up"].as_bool() == Some(true) {
                "up"
            } else {
                "DOWN"
            },
            n(&u["requests"]),
            n(&u["failures"]),
            u["latency_ms_avg"].as_f64().unwrap_or(0.0)
        ));
    }
    for p in s["peers"].as_array().into_iter().flatten() {
        line(format!(
            "Peer:         {} ({}) {} ({} requests, {} failures)",
            p["name"].as_str().unwrap_or(""),
            p["kind"].as_str().unwrap_or(""),
            if p["up"].as_bool() == Some(true) {
                "up"
            } else {
                "DOWN"
            },
            n(&p["requests"]),
            n(&p["failures"])
        ));
    }
    line(format!(
        "Access log:   {} records dropped",
        n(&s["access_log"]["dropped"])
    ));
    out
}

/// Runs `cuttle stats`: prints the summary, or the error on stderr; the process exit code.
pub fn run(addr: &str) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cuttle stats: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fetch(addr)) {
        Ok(status) => {
            print!("{}", summary(&status));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cuttle stats: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
