//! The access log: one line per transaction in Squid's native format, written off the request
//! path.
//!
//! A request hands its finished [`AccessRecord`] to a bounded channel and moves on; a single
//! writer task formats and writes the lines, batching flushes. When the channel is full (the disk
//! cannot keep up), records are dropped and counted rather than slowing clients down. The
//! formatter is a pure function so the format is pinned by unit tests.
//!
//! Squid's native format is `%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt`:
//! time, elapsed ms, client, code/status, bytes, method, URL, user, hierarchy/peer, type.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Stderr,
    File(PathBuf),
    /// Logging disabled.
    None,
}

/// One finished transaction.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// Wall-clock time the transaction ended.
    pub time: SystemTime,
    pub elapsed: Duration,
    pub client: IpAddr,
    /// Squid result code (`TCP_MISS`, `TCP_TUNNEL`, `TCP_DENIED`, `NONE_NONE`...).
    pub code: &'static str,
    pub status: u16,
    /// Bytes sent to the client, header included.
    pub bytes: u64,
    pub method: String,
    pub url: String,
    /// Authenticated user, if any.
    pub user: Option<String>,
    /// Squid hierarchy code (`HIER_DIRECT`, `HIER_NONE`...).
    pub hierarchy: &'static str,
    /// The next hop that served it.
    pub peer: Option<String>,
    pub content_type: Option<String>,
}

/// Appends one Squid-native line (with a trailing newline) for `rec` to `out`.
pub fn format_squid(rec: &AccessRecord, out: &mut String) {
    let since_epoch = rec.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let dash = |v: &Option<String>| -> String {
        match v.as_deref() {
            Some(s) if !s.is_empty() => s.split_whitespace().collect::<Vec<_>>().join("+"),
            _ => "-".to_owned(),
        }
    };
    let _ = writeln!(
        out,
        "{}.{:03} {:>6} {} {}/{:03} {} {} {} {} {}/{} {}",
        since_epoch.as_secs(),
        since_epoch.subsec_millis(),
        rec.elapsed.as_millis(),
        rec.client.to_canonical(),
        rec.code,
        rec.status,
        rec.bytes,
        rec.method,
        sanitize(&rec.url),
        dash(&rec.user),
        rec.hierarchy,
        dash(&rec.peer),
        dash(&rec.content_type),
    );
}

/// URLs may not contain spaces or line breaks in a log line (they would split the fields).
fn sanitize(url: &str) -> std::borrow::Cow<'_, str> {
    if url
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        std::borrow::Cow::Owned(
            url.bytes()
                .map(|b| {
                    if b.is_ascii_whitespace() || b.is_ascii_control() {
                        format!("%{b:02X}")
                    } else {
                        char::from(b).to_string()
                    }
                })
                .collect(),
        )
    } else {
        std::borrow::Cow::Borrowed(url)
    }
}

/// Records waiting to be written; beyond this, new records are dropped.
const QUEUE: usize = 16 * 1024;

/// The sending side, held by the request path.
#[derive(Debug)]
pub struct AccessLog {
    tx: Option<mpsc::Sender<AccessRecord>>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// A log that discards everything.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues a record; never waits.
    pub fn log(&self, rec: AccessRecord) {
        if let Some(tx) = &self.tx {
            if tx.try_send(rec).is_err() {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n + 1,
                        "access log cannot keep up; dropping records"
                    );
                }
            }
        }
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Opens `target` and starts the writer task. The task ends (after a final flush) once every
/// [`AccessLog`] clone of the sender is dropped.
pub async fn start(target: &Target) -> std::io::Result<(AccessLog, Option<JoinHandle<()>>)> {
    let sink: Box<dyn AsyncWrite + Send + Unpin> = match target {
        Target::None => return Ok((AccessLog::disabled(), None)),
        Target::Stdout => Box::new(tokio::io::stdout()),
        Target::Stderr => Box::new(tokio::io::stderr()),
        Target::File(path) => Box::new(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("access log {}: {e}", path.display()))
                })?,
        ),
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let handle = tokio::spawn(write_loop(rx, sink));
    Ok((
        AccessLog {
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        },
        Some(handle),
    ))
}

async fn write_loop(
    mut rx: mpsc::Receiver<AccessRecord>,
    sink: Box<dyn AsyncWrite + Send + Unpin>,
) {
    let mut out = BufWriter::new(sink);
    let mut line = String::with_capacity(256);
    while let Some(rec) = rx.recv().await {
        line.clear();
        format_squid(&rec, &mut line);
        // Drain what is already queued before flushing, so bursts cost one write.
        while let Ok(rec) = rx.try_recv() {
            format_squid(&rec, &mut line);
        }
        if let Err(e) = out.write_all(line.as_bytes()).await {
            tracing::error!(error = %e, "access log write failed");
        }
        if let Err(e) = out.flush().await {
            tracing::error!(error = %e, "access log flush failed");
        }
    }
    let _ = out.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            elapsed: Duration::from_millis(45),
            client: "::ffff:127.0.0.1".parse().unwrap(),
            code: "TCP_MISS",
            status: 200,
            bytes: 1234,
            method: "GET".into(),
            url: "http://example.com/a b".into(),
            user: None,
            hierarchy: "HIER_DIRECT",
            peer: Some("example.com".into()),
            content_type: Some("text/html; charset=utf-8".into()),
        }
    }

    #[test]
    fn squid_native_line() {
        let mut out = String::new();
        format_squid(&record(), &mut out);
        assert_eq!(
            out,
            "1700000000.123     45 127.0.0.1 TCP_MISS/200 1234 GET http://example.com/a%20b - HIER_DIRECT/example.com text/html;+charset=utf-8\n"
        );
    }

    #[test]
    fn missing_fields_are_dashes() {
        let mut rec = record();
        rec.peer = None;
        rec.content_type = None;
        rec.hierarchy = "HIER_NONE";
        rec.code = "TCP_DENIED";
        rec.status = 403;
        let mut out = String::new();
        format_squid(&rec, &mut out);
        assert!(
            out.ends_with("TCP_DENIED/403 1234 GET http://example.com/a%20b - HIER_NONE/- -\n"),
            "{out}"
        );
    }
}
