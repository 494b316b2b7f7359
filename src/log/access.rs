//! The access log: one line per transaction, written off the request path.
//!
//! A request hands its finished [`AccessRecord`] to a bounded channel and moves on; a single
//! writer task formats the lines (in the configured [`LineFormat`], see [`super::format`]) and
//! writes them, batching flushes. When the channel is full (the disk cannot keep up), records
//! are dropped and counted rather than slowing clients down.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use super::format::{format_squid, LineFormat};
pub use super::record::{client_text, AccessRecord};

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Stderr,
    File(PathBuf),
    /// Logging disabled.
    None,
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

/// Opens `target` and starts the writer task, which writes lines in `format` at most
/// `flush_every` after they were logged (sooner once [`Writer::finish`] is called). The task ends (after a final write)
/// once every [`AccessLog`] clone of the sender is dropped.
pub async fn start(
    target: &Target,
    flush_every: Duration,
    format: LineFormat,
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
    let (log, writer) = spawn_writer(sink, flush_every, format);
    Ok((log, Some(writer)))
}

/// Starts the writer task over `sink`; the returned log feeds it.
fn spawn_writer(
    sink: Box<dyn AsyncWrite + Send + Unpin>,
    flush_every: Duration,
    format: LineFormat,
) -> (AccessLog, Writer) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (hurry, hurry_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(write_loop(rx, sink, flush_every, format, hurry_rx));
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
    format: LineFormat,
    mut hurry: tokio::sync::watch::Receiver<bool>,
) {
    let mut batch = String::with_capacity(BATCH_BYTES);
    let mut open = true;
    while open {
        let Some(rec) = rx.recv().await else {
            break;
        };
        format.write(&rec, &mut batch);
        let flush_at = tokio::time::sleep(flush_every);
        tokio::pin!(flush_at);
        while batch.len() < BATCH_BYTES {
            // Records already queued join the batch even when it is due (`biased`).
            tokio::select! {
                biased;
                rec = rx.recv() => match rec {
                    Some(rec) => format.write(&rec, &mut batch),
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

    use std::sync::Arc;

    use crate::log::record::sample as record;

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
        LineFormat::default().write(&record(), &mut line);
        line.len()
    }

    /// A writer over a fresh [`Recorder`] with `flush_every`.
    fn recorded(flush_every: Duration) -> (Recorder, AccessLog, Writer) {
        let sink = Recorder::default();
        let (log, writer) =
            spawn_writer(Box::new(sink.clone()), flush_every, LineFormat::default());
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
