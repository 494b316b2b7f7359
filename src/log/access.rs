//! The access log: one line per transaction, written off the request path.
//!
//! A request hands its finished [`AccessRecord`] to a bounded channel and moves on; a single
//! writer task formats the lines (in the configured [`LineFormat`], see [`super::format`]) and
//! writes them, batching flushes. When the channel is full (the disk cannot keep up), records
//! are dropped and counted rather than slowing clients down.
//!
//! The writer task also takes commands ([`Writer::reopen`], [`Writer::retarget`],
//! [`Writer::finish`]), each carried out after the records queued before it: after logrotate
//! moves the file and asks for a reopen, every earlier line is in the moved file and every
//! later one in the new file, none lost or written twice.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
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
    /// Boxed: a record is ~400 bytes, which the channel copied in and out (five copies a
    /// request, counted); one allocation costs less than moving it.
    tx: Option<mpsc::Sender<Box<AccessRecord>>>,
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
            if tx.try_send(Box::new(rec)).is_err() {
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
    /// Ends once every [`AccessLog`] is gone; only tests wait for that (shutdown asks for a
    /// flush instead, as reload handles may outlive it).
    #[cfg_attr(not(test), allow(dead_code))]
    task: JoinHandle<()>,
    /// Set at shutdown: write what is batched now, and every later batch at once.
    hurry: tokio::sync::watch::Sender<bool>,
    /// Requests to the task (reopen, flush); each is carried out after the records queued
    /// before it are written, so a reopen splits the lines exactly where it was asked.
    commands: mpsc::Sender<Command>,
}

/// What the writer task can be asked to do besides writing.
#[derive(Debug)]
enum Command {
    /// Write what is queued, then open `to` (or reopen the current file) and write there,
    /// in `format` when given.
    Reopen {
        to: Option<Target>,
        format: Option<LineFormat>,
        done: oneshot::Sender<std::io::Result<()>>,
    },
    /// Write what is queued now and answer.
    Flush(oneshot::Sender<()>),
}

/// Why a command did not reach the writer task: it has ended.
fn task_gone() -> std::io::Error {
    std::io::Error::other("the access log writer has stopped")
}

impl Writer {
    /// Writes the pending batch and everything logged before this call now, waiting up to
    /// `wait`. Lines logged after this (a request still finishing) are written without delay.
    pub async fn finish(self, wait: Duration) {
        let _ = self.hurry.send(true);
        let (done, flushed) = oneshot::channel();
        let flush = async {
            if self.commands.send(Command::Flush(done)).await.is_ok() {
                let _ = flushed.await;
            }
        };
        if tokio::time::timeout(wait, flush).await.is_err() {
            tracing::warn!(after = ?wait, "access log: the last lines may not be written");
        }
    }

    /// Reopens the log file (logrotate's `postrotate`): lines logged before this call go to
    /// the file open until now, later ones to the file now at the configured path (created if
    /// it was moved away). Standard output and error are left as they are. On error the old
    /// file stays in use.
    pub async fn reopen(&self) -> std::io::Result<()> {
        self.command(None, None).await
    }

    /// Writes to `target` in `format` from now on (a reload that changed `access_log` or its
    /// format), as [`reopen`](Self::reopen) does; [`Target::None`] discards lines.
    pub async fn retarget(&self, target: Target, format: LineFormat) -> std::io::Result<()> {
        self.command(Some(target), Some(format)).await
    }

    async fn command(&self, to: Option<Target>, format: Option<LineFormat>) -> std::io::Result<()> {
        let (done, result) = oneshot::channel();
        self.commands
            .send(Command::Reopen { to, format, done })
            .await
            .map_err(|_| task_gone())?;
        result.await.map_err(|_| task_gone())?
    }
}

/// The output the writer writes to.
type Output = Box<dyn AsyncWrite + Send + Unpin>;

/// Opens `target` for appending; `None` for [`Target::None`].
async fn open(target: &Target) -> std::io::Result<Option<Output>> {
    Ok(Some(match target {
        Target::None => return Ok(None),
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
    }))
}

/// Opens `target` and starts the writer task, which writes lines in `format` at most
/// `flush_every` after they were logged (sooner once [`Writer::finish`] is called). The task
/// ends (after a final write) once every [`AccessLog`] clone of the sender is dropped.
pub async fn start(
    target: &Target,
    flush_every: Duration,
    format: LineFormat,
) -> std::io::Result<(AccessLog, Option<Writer>)> {
    let Some(out) = open(target).await? else {
        return Ok((AccessLog::disabled(), None));
    };
    let sink = Sink {
        out,
        target: Some(target.clone()),
        format,
    };
    let (log, writer) = spawn_writer(sink, flush_every);
    Ok((log, Some(writer)))
}

/// Starts the writer task over `sink`; the returned log feeds it.
fn spawn_writer(sink: Sink, flush_every: Duration) -> (AccessLog, Writer) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (hurry, hurry_rx) = tokio::sync::watch::channel(false);
    let (commands, commands_rx) = mpsc::channel(4);
    let task = tokio::spawn(write_loop(rx, sink, flush_every, hurry_rx, commands_rx));
    let log = AccessLog {
        tx: Some(tx),
        dropped: AtomicU64::new(0),
    };
    (
        log,
        Writer {
            task,
            hurry,
            commands,
        },
    )
}

/// Where the writer writes, and what it reopens.
struct Sink {
    out: Output,
    /// `None` for an output given in code (tests), which cannot be reopened.
    target: Option<Target>,
    /// How records become lines; a retarget may change it.
    format: LineFormat,
}

impl Sink {
    /// Writes and flushes `batch`, then empties it.
    async fn write(&mut self, batch: &mut String) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.out.write_all(batch.as_bytes()).await {
            tracing::error!(error = %e, "access log write failed");
        }
        if let Err(e) = self.out.flush().await {
            tracing::error!(error = %e, "access log flush failed");
        }
        batch.clear();
    }

    /// Carries out `command` once the records queued before it are written.
    async fn obey(
        &mut self,
        command: Command,
        rx: &mut mpsc::Receiver<Box<AccessRecord>>,
        batch: &mut String,
    ) {
        // Only what is queued now: records logged after the command go where it says.
        for _ in 0..rx.len() {
            match rx.try_recv() {
                Ok(rec) => self.format.write(&rec, batch),
                Err(_) => break,
            }
        }
        self.write(batch).await;
        match command {
            Command::Flush(done) => {
                let _ = done.send(());
            }
            Command::Reopen { to, format, done } => {
                let reopened = self.reopen(to).await;
                if let (Ok(()), Some(format)) = (&reopened, format) {
                    self.format = format;
                }
                let _ = done.send(reopened);
            }
        }
    }

    async fn reopen(&mut self, to: Option<Target>) -> std::io::Result<()> {
        let target = match (to, &self.target) {
            (Some(target), _) => target,
            // Standard streams and code-given outputs have nothing to reopen.
            (None, Some(target @ Target::File(_))) => target.clone(),
            (None, _) => return Ok(()),
        };
        let out = open(&target)
            .await?
            .unwrap_or_else(|| Box::new(tokio::io::sink()));
        self.out = out;
        self.target = Some(target);
        Ok(())
    }
}

/// The next command, or never once the [`Writer`] is gone.
async fn next_command(commands: &mut Option<mpsc::Receiver<Command>>) -> Command {
    if let Some(rx) = commands.as_mut() {
        if let Some(command) = rx.recv().await {
            return command;
        }
    }
    *commands = None;
    std::future::pending().await
}

/// A batch is written once it holds this much, even before its flush time.
const BATCH_BYTES: usize = 64 * 1024;

/// Writes records in batches: a batch opens with the first record after a write and is
/// written when it reaches [`BATCH_BYTES`] or is `flush_every` old. Asynchronous file and stdio
/// writes each cost a hand-off to tokio's blocking pool, so writing per record made that
/// hand-off (two futex calls) part of every request under load; a batch pays it once.
/// Commands are carried out between batches, after the records queued before them.
async fn write_loop(
    mut rx: mpsc::Receiver<Box<AccessRecord>>,
    mut sink: Sink,
    flush_every: Duration,
    mut hurry: tokio::sync::watch::Receiver<bool>,
    commands: mpsc::Receiver<Command>,
) {
    let mut commands = Some(commands);
    let mut batch = String::with_capacity(BATCH_BYTES);
    let mut open = true;
    while open {
        let rec = tokio::select! {
            rec = rx.recv() => match rec {
                Some(rec) => rec,
                None => break,
            },
            command = next_command(&mut commands) => {
                sink.obey(command, &mut rx, &mut batch).await;
                continue;
            }
        };
        sink.format.write(&rec, &mut batch);
        let flush_at = tokio::time::sleep(flush_every);
        tokio::pin!(flush_at);
        let mut command = None;
        while batch.len() < BATCH_BYTES {
            // Records already queued join the batch even when it is due; taken here without
            // setting up the `select` below per record (under load most are queued), which
            // would take them first anyway (`biased`).
            match rx.try_recv() {
                Ok(rec) => {
                    sink.format.write(&rec, &mut batch);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            tokio::select! {
                biased;
                rec = rx.recv() => match rec {
                    Some(rec) => sink.format.write(&rec, &mut batch),
                    None => {
                        open = false;
                        break;
                    }
                },
                next = next_command(&mut commands) => {
                    command = Some(next);
                    break;
                }
                () = &mut flush_at => break,
                // Shutdown, now or earlier: the batch goes out at once (once nothing more is
                // queued). A dropped `Writer` ends the wait the same way.
                _ = hurry.wait_for(|now| *now) => break,
            }
        }
        match command {
            Some(command) => sink.obey(command, &mut rx, &mut batch).await,
            None => sink.write(&mut batch).await,
        }
    }
    sink.write(&mut batch).await;
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
        let out = Sink {
            out: Box::new(sink.clone()),
            target: None,
            format: LineFormat::default(),
        };
        let (log, writer) = spawn_writer(out, flush_every);
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

    #[tokio::test]
    async fn reopen_splits_the_lines_where_it_was_asked_and_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let moved = dir.path().join("access.log.1");
        let (log, writer) = start(
            &Target::File(path.clone()),
            Duration::from_secs(60),
            LineFormat::default(),
        )
        .await
        .unwrap();
        let writer = writer.unwrap();
        for _ in 0..3 {
            log.log(record());
        }
        std::fs::rename(&path, &moved).unwrap();
        // The three lines are still batched (60 s flush time): the reopen writes them first,
        // to the file they were logged for.
        writer.reopen().await.unwrap();
        assert!(path.exists(), "a new file at the configured path");
        for _ in 0..2 {
            log.log(record());
        }
        writer.finish(Duration::from_secs(5)).await;
        let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!(lines(&moved), 3);
        assert_eq!(lines(&path), 2);
    }

    #[tokio::test]
    async fn retarget_moves_later_lines_and_a_failed_open_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a.log");
        let second = dir.path().join("b.log");
        let (log, writer) = start(
            &Target::File(first.clone()),
            Duration::ZERO,
            LineFormat::default(),
        )
        .await
        .unwrap();
        let writer = writer.unwrap();
        log.log(record());
        let missing = dir.path().join("no/such/dir.log");
        assert!(writer
            .retarget(Target::File(missing), LineFormat::default())
            .await
            .is_err());
        log.log(record());
        // A reload may change the format with the file: later lines are JSON.
        let json = LineFormat {
            format: crate::log::Format::Json,
            ..LineFormat::default()
        };
        writer
            .retarget(Target::File(second.clone()), json)
            .await
            .unwrap();
        log.log(record());
        writer.finish(Duration::from_secs(5)).await;
        let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!(
            lines(&first),
            2,
            "the failed switch kept writing to the old file"
        );
        assert_eq!(lines(&second), 1);
        let line = std::fs::read_to_string(&second).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert!(parsed.is_object(), "{line}");
    }
}
