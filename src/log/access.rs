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

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use tokio::io::{AsyncWrite, AsyncWriteExt};
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
    /// The client address as logged (see [`client_text`]), rendered once per connection.
    pub client: Arc<str>,
    /// Squid result code (`TCP_MISS`, `TCP_TUNNEL`, `TCP_DENIED`, `NONE_NONE`...).
    pub code: &'static str,
    pub status: u16,
    /// Bytes sent to the client, header included.
    pub bytes: u64,
    pub method: http::Method,
    pub url: String,
    /// Authenticated user, if any.
    pub user: Option<String>,
    /// Squid hierarchy code (`HIER_DIRECT`, `HIER_NONE`...).
    pub hierarchy: &'static str,
    /// The next hop that served it.
    pub peer: Option<String>,
    pub content_type: Option<HeaderValue>,
}

/// How a client address appears in the log: IPv4-mapped IPv6 addresses as plain IPv4.
pub fn client_text(ip: IpAddr) -> Arc<str> {
    Arc::from(ip.to_canonical().to_string())
}

/// Appends one Squid-native line (with a trailing newline) for `rec` to `out`.
///
/// Written field by field with `itoa` rather than `format!`: this runs once per request.
pub fn format_squid(rec: &AccessRecord, out: &mut String) {
    let since_epoch = rec.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut num = itoa::Buffer::new();
    // %ts.%03tu
    out.push_str(num.format(since_epoch.as_secs()));
    out.push('.');
    push_padded(out, num.format(since_epoch.subsec_millis()), 3, '0');
    out.push(' ');
    // %6tr
    push_padded(out, num.format(rec.elapsed.as_millis()), 6, ' ');
    out.push(' ');
    out.push_str(&rec.client);
    out.push(' ');
    out.push_str(rec.code);
    out.push('/');
    push_padded(out, num.format(rec.status), 3, '0');
    out.push(' ');
    out.push_str(num.format(rec.bytes));
    out.push(' ');
    push_word(out, rec.method.as_str().as_bytes());
    out.push(' ');
    push_url(out, &rec.url);
    out.push(' ');
    push_word(out, rec.user.as_deref().unwrap_or("").as_bytes());
    out.push(' ');
    out.push_str(rec.hierarchy);
    out.push('/');
    push_word(out, rec.peer.as_deref().unwrap_or("").as_bytes());
    out.push(' ');
    push_word(
        out,
        rec.content_type
            .as_ref()
            .map_or(&b""[..], HeaderValue::as_bytes),
    );
    out.push('\n');
}

/// `digits` right-aligned in `width` columns, padded with `pad`.
fn push_padded(out: &mut String, digits: &str, width: usize, pad: char) {
    for _ in digits.len()..width {
        out.push(pad);
    }
    out.push_str(digits);
}

/// A free-text field as one log word: `-` when empty, runs of whitespace as `+`, and bytes that
/// are not printable ASCII dropped (the line must stay one line of ASCII words).
fn push_word(out: &mut String, value: &[u8]) {
    let start = out.len();
    let mut gap = false;
    for &b in value {
        if b.is_ascii_whitespace() {
            gap = out.len() > start;
        } else if b.is_ascii_graphic() {
            if gap {
                out.push('+');
                gap = false;
            }
            out.push(char::from(b));
        }
    }
    if out.len() == start {
        out.push('-');
    }
}

/// URLs may not contain spaces or line breaks in a log line (they would split the fields):
/// such characters are percent-encoded (their UTF-8 bytes), non-ASCII ones included (C1
/// controls such as U+0085 NEL and separators such as U+2028 end a line for some readers).
fn push_url(out: &mut String, url: &str) {
    let unsafe_char = |c: char| c.is_whitespace() || c.is_control();
    if url.is_empty() {
        out.push('-');
        return;
    }
    if !url.chars().any(unsafe_char) {
        out.push_str(url);
        return;
    }
    for ch in url.chars() {
        if unsafe_char(ch) {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            let mut utf8 = [0u8; 4];
            for &b in ch.encode_utf8(&mut utf8).as_bytes() {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        } else {
            out.push(ch);
        }
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

/// The running writer task: [`finish`](Self::finish) it at shutdown.
#[derive(Debug)]
pub struct Writer {
    task: JoinHandle<()>,
    /// Set at shutdown: write what is batched now, and every later batch at once.
    hurry: tokio::sync::watch::Sender<bool>,
}

impl Writer {
    /// Writes the pending batch now and waits up to `wait` for the task, which ends once every
    /// [`AccessLog`] sender is gone. Lines logged after this are written without delay, so a
    /// request still finishing when the wait runs out has its line written as soon as it logs.
    pub async fn finish(self, wait: Duration) {
        let _ = self.hurry.send(true);
        let _ = tokio::time::timeout(wait, self.task).await;
    }
}

/// Opens `target` and starts the writer task, which writes a line at most `flush_every` after
/// it was logged (sooner once [`Writer::finish`] is called). The task ends (after a final write)
/// once every [`AccessLog`] clone of the sender is dropped.
pub async fn start(
    target: &Target,
    flush_every: Duration,
) -> std::io::Result<(AccessLog, Option<Writer>)> {
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
    let (log, writer) = spawn_writer(sink, flush_every);
    Ok((log, Some(writer)))
}

/// Starts the writer task over `sink`; the returned log feeds it.
fn spawn_writer(
    sink: Box<dyn AsyncWrite + Send + Unpin>,
    flush_every: Duration,
) -> (AccessLog, Writer) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (hurry, hurry_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(write_loop(rx, sink, flush_every, hurry_rx));
    let log = AccessLog {
        tx: Some(tx),
        dropped: AtomicU64::new(0),
    };
    (log, Writer { task, hurry })
}

/// A batch is written once it holds this much, even before its flush time.
const BATCH_BYTES: usize = 64 * 1024;

/// Writes records in batches: a batch opens with the first record after a write and is
/// written when it reaches [`BATCH_BYTES`] or is `flush_every` old. Asynchronous file and stdio
/// writes each cost a hand-off to tokio's blocking pool, so writing per record made that
/// hand-off (two futex calls) part of every request under load; a batch pays it once.
async fn write_loop(
    mut rx: mpsc::Receiver<AccessRecord>,
    mut sink: Box<dyn AsyncWrite + Send + Unpin>,
    flush_every: Duration,
    mut hurry: tokio::sync::watch::Receiver<bool>,
) {
    let mut batch = String::with_capacity(BATCH_BYTES);
    let mut open = true;
    while open {
        let Some(rec) = rx.recv().await else {
            break;
        };
        format_squid(&rec, &mut batch);
        let flush_at = tokio::time::sleep(flush_every);
        tokio::pin!(flush_at);
        while batch.len() < BATCH_BYTES {
            // Records already queued join the batch even when it is due (`biased`).
            tokio::select! {
                biased;
                rec = rx.recv() => match rec {
                    Some(rec) => format_squid(&rec, &mut batch),
                    None => {
                        open = false;
                        break;
                    }
                },
                () = &mut flush_at => break,
                // Shutdown, now or earlier: the batch goes out at once (once nothing more is
                // queued). A dropped `Writer` ends the wait the same way.
                _ = hurry.wait_for(|now| *now) => break,
            }
        }
        if let Err(e) = sink.write_all(batch.as_bytes()).await {
            tracing::error!(error = %e, "access log write failed");
        }
        if let Err(e) = sink.flush().await {
            tracing::error!(error = %e, "access log flush failed");
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            elapsed: Duration::from_millis(45),
            client: client_text("::ffff:127.0.0.1".parse().unwrap()),
            code: "TCP_MISS",
            status: 200,
            bytes: 1234,
            method: http::Method::GET,
            url: "http://example.com/a b".into(),
            user: None,
            hierarchy: "HIER_DIRECT",
            peer: Some("example.com".into()),
            content_type: Some(HeaderValue::from_static("text/html; charset=utf-8")),
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

    #[test]
    fn unicode_line_ends_in_a_url_are_encoded_and_an_empty_url_is_a_dash() {
        let mut rec = record();
        rec.url = "http://example.com/\u{85}a\u{2028}b\u{80}".into();
        let mut out = String::new();
        format_squid(&rec, &mut out);
        assert!(
            out.contains(" GET http://example.com/%C2%85a%E2%80%A8b%C2%80 - "),
            "{out}"
        );
        rec.url = String::new();
        out.clear();
        format_squid(&rec, &mut out);
        assert!(out.contains(" GET - - HIER_DIRECT/"), "{out}");
    }

    #[test]
    fn odd_fields_stay_one_word_each() {
        let mut rec = record();
        rec.url = "http://example.com/\r\nx".into();
        rec.elapsed = Duration::from_millis(1_234_567);
        rec.user = Some("  ".into());
        rec.content_type = Some(HeaderValue::from_bytes(b"text/plain;\t charset=\xff x").unwrap());
        rec.method = http::Method::from_bytes(b"PURGE").unwrap();
        let mut out = String::new();
        format_squid(&rec, &mut out);
        assert_eq!(
            out,
            "1700000000.123 1234567 127.0.0.1 TCP_MISS/200 1234 PURGE http://example.com/%0D%0Ax - HIER_DIRECT/example.com text/plain;+charset=+x\n"
        );
    }

    /// A sink that notes when each write happened and how many bytes it carried.
    #[derive(Clone, Default)]
    struct Recorder(Arc<std::sync::Mutex<Vec<(tokio::time::Instant, usize)>>>);

    impl Recorder {
        fn writes(&self) -> Vec<(tokio::time::Instant, usize)> {
            self.0.lock().unwrap().clone()
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0
                .lock()
                .unwrap()
                .push((tokio::time::Instant::now(), buf.len()));
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn line_len() -> usize {
        let mut line = String::new();
        format_squid(&record(), &mut line);
        line.len()
    }

    /// A writer over a fresh [`Recorder`] with `flush_every`.
    fn recorded(flush_every: Duration) -> (Recorder, AccessLog, Writer) {
        let sink = Recorder::default();
        let (log, writer) = spawn_writer(Box::new(sink.clone()), flush_every);
        (sink, log, writer)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_write_at_its_flush_time_and_closing_writes_the_rest() {
        let (sink, log, writer) = recorded(Duration::from_millis(500));
        let start = tokio::time::Instant::now();
        for _ in 0..100 {
            log.log(record());
        }
        tokio::time::sleep(Duration::from_millis(499)).await;
        assert!(sink.writes().is_empty(), "written before its flush time");
        tokio::time::sleep(Duration::from_millis(2)).await;
        let writes = sink.writes();
        assert_eq!(writes.len(), 1, "{writes:?}");
        assert_eq!(writes[0].0 - start, Duration::from_millis(500));
        assert_eq!(writes[0].1, 100 * line_len());

        log.log(record());
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(log);
        writer.task.await.unwrap();
        let writes = sink.writes();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert_eq!(writes[1].1, line_len());
        assert_eq!(
            writes[1].0 - start,
            Duration::from_millis(601),
            "closing writes at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_written_before_its_flush_time() {
        let (sink, log, _writer) = recorded(Duration::from_secs(60));
        for _ in 0..BATCH_BYTES.div_ceil(line_len()) {
            log.log(record());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let writes = sink.writes();
        assert_eq!(writes.len(), 1, "{writes:?}");
        assert!(writes[0].1 >= BATCH_BYTES);
        assert_eq!(log.dropped(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_flush_time_writes_each_batch_at_once() {
        let (sink, log, _writer) = recorded(Duration::ZERO);
        log.log(record());
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(sink.writes().len(), 1);
        log.log(record());
        log.log(record());
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        let writes = sink.writes();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert_eq!(writes[1].1, 2 * line_len());
    }

    #[tokio::test(start_paused = true)]
    async fn finishing_writes_the_pending_batch_at_once_and_later_lines_without_delay() {
        let (sink, log, writer) = recorded(Duration::from_secs(60));
        log.log(record());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(sink.writes().is_empty());
        let start = tokio::time::Instant::now();
        // The log is still alive (a request still finishing): finishing must not wait for
        // the 60 s flush time, only for its own bound.
        writer.finish(Duration::from_millis(100)).await;
        let writes = sink.writes();
        assert_eq!(writes.len(), 1, "{writes:?}");
        assert_eq!(writes[0].0, start, "written at once");
        log.log(record());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            sink.writes().len(),
            2,
            "a late line is written without delay"
        );
    }
}
