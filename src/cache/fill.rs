//! Filling the cache from an upstream body while it streams to the client.
//!
//! The body being relayed keeps a [`FillSink`]; each data frame is handed (as a cheap `Bytes`
//! clone) through a bounded channel to a writer task, which streams it into the store. The
//! channel gives backpressure: a slow disk slows the relay a little instead of buffering the
//! object in memory. The entry is committed only when the relay reports a clean end of the body
//! ([`FillSink::complete`]) and the store agrees the length matches; an aborted, truncated or
//! oversize body is dropped and never becomes visible. The collapsed-forwarding leader, if any,
//! is told the outcome after the commit so waiters find the entry. A fill of announced length
//! that leads waiters also feeds a [`Tap`], from which they stream the body as it arrives
//! (read-while-writer); a fill of unknown length may yet prove too large to store, so its
//! waiters wait for the commit as before.

use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

use std::sync::Arc;

use super::collapse::{Leader, Outcome, WaitingCount};
use super::store::{Epoch, Writer};
use super::tap::Tap;

/// Chunks buffered between the relay and the disk writer.
const DEPTH: usize = 16;

/// The relay's end of a fill.
#[derive(Debug)]
pub struct FillSink {
    /// `None` once the writer gave up (too large, I/O error): the relay goes on uncached.
    tx: Option<PollSender<Bytes>>,
    done: Option<oneshot::Sender<bool>>,
    /// Resolves once the entry is committed (true) or dropped (false).
    committed: Option<oneshot::Receiver<bool>>,
    /// Where the entry becomes visible.
    key: String,
    /// The announced body length the store accepted, if any.
    expected_len: Option<u64>,
    /// The stored head's response time (see [`FillIdentity::is_entry`]).
    response_time: std::time::SystemTime,
    /// Requests collapsed behind this fill, if it leads any.
    waiting: Option<WaitingCount>,
    /// Where waiters read the body as it is written (read-while-writer), if they may.
    tap: Option<Arc<Tap>>,
}

/// The key and response time of a fill's entry.
#[derive(Debug, Clone)]
pub struct FillIdentity {
    pub key: String,
    response_time: std::time::SystemTime,
}

impl FillIdentity {
    /// Whether `head` (found under `key`) is the entry this fill committed with a body of
    /// `len` bytes, and not one a later fill stored under the same key.
    pub fn is_entry(&self, head: &super::meta::StoredHead, len: u64) -> bool {
        head.response_time == self.response_time && head.body_len == len
    }
}

/// Starts a writer task for `writer`; returns the relay's sink and the task handle, which
/// resolves to whether the entry was committed. The commit is refused if the URL was
/// invalidated after `epoch` began (RFC 9111 §4.4: the body is from before the change).
pub fn start(
    writer: Writer,
    leader: Option<Leader>,
    epoch: Epoch,
) -> (FillSink, tokio::task::JoinHandle<bool>) {
    let key = writer.key().to_owned();
    let expected_len = writer.expected_len();
    let response_time = writer.response_time();
    let waiting = leader.as_ref().map(Leader::waiting);
    let tap = match (&leader, expected_len) {
        (Some(leader), Some(len)) => {
            let mut head = writer.head().clone();
            head.body_len = len;
            let tap = Arc::new(Tap::new(key.clone(), Arc::new(head)));
            leader.stream(Arc::clone(&tap));
            Some(tap)
        }
        _ => None,
    };
    let writer_tap = tap.clone();
    let (tx, rx) = mpsc::channel(DEPTH);
    let (done_tx, done_rx) = oneshot::channel();
    let (committed_tx, committed_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let stored = write_loop(writer, rx, done_rx, leader, epoch).await;
        if let Some(tap) = writer_tap {
            tap.settle(stored);
        }
        let _ = committed_tx.send(stored);
        stored
    });
    (
        FillSink {
            tx: Some(PollSender::new(tx)),
            done: Some(done_tx),
            committed: Some(committed_rx),
            key,
            expected_len,
            response_time,
            waiting,
            tap,
        },
        task,
    )
}

async fn write_loop(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Bytes>,
    done: oneshot::Receiver<bool>,
    leader: Option<Leader>,
    epoch: Epoch,
) -> bool {
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = writer.write(&chunk).await {
            tracing::debug!(error = %e, "cache fill abandoned");
            drop(rx);
            finish(leader, false);
            return false;
        }
    }
    let complete = done.await.unwrap_or(false);
    let stored = complete
        && match writer.commit_unless_invalidated(epoch).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "cache commit refused");
                false
            }
        };
    finish(leader, stored);
    stored
}

fn finish(leader: Option<Leader>, stored: bool) {
    if let Some(leader) = leader {
        leader.finish(if stored {
            Outcome::Stored
        } else {
            Outcome::NotStored
        });
    }
}

impl FillSink {
    /// The key the entry is stored under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the store took a body of announced length: the entry is then all but certain
    /// to be committed if the upstream sends what it announced.
    pub fn length_known(&self) -> bool {
        self.expected_len.is_some()
    }

    /// What identifies the entry this fill stores, to find it again after the commit.
    pub fn identity(&self) -> FillIdentity {
        FillIdentity {
            key: self.key.clone(),
            response_time: self.response_time,
        }
    }

    /// Whether requests are collapsed behind this fill now.
    pub fn has_waiters(&self) -> bool {
        self.waiting.as_ref().is_some_and(WaitingCount::any)
    }

    /// Whether the writer is still taking the body (false once it gave up: too large, I/O).
    pub fn is_filling(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Offers `chunk` to the writer: `Pending` while the writer is behind (backpressure),
    /// `Ready` once it was queued or the fill was abandoned.
    pub fn poll_offer(&mut self, cx: &mut Context<'_>, chunk: &Bytes) -> Poll<()> {
        let Some(tx) = self.tx.as_mut() else {
            return Poll::Ready(());
        };
        match tx.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                if tx.send_item(chunk.clone()).is_err() {
                    self.abandon();
                } else if let Some(tap) = &self.tap {
                    tap.push(chunk);
                }
                Poll::Ready(())
            }
            Poll::Ready(Err(_)) => {
                self.abandon();
                Poll::Ready(())
            }
        }
    }

    /// The body ended cleanly: commit. The returned receiver resolves once the entry is
    /// visible (true) or was refused (false), so the relay can hold the last bytes until then.
    pub fn complete(mut self) -> Option<oneshot::Receiver<bool>> {
        // Closing the data channel lets the writer see the end.
        self.tx = None;
        if let Some(tap) = &self.tap {
            tap.body_done();
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(true);
        }
        self.committed.take()
    }

    /// Stops filling; nothing will be stored.
    fn abandon(&mut self) {
        self.tx = None;
        if let Some(tap) = &self.tap {
            tap.abort();
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(false);
        }
    }
}

impl Drop for FillSink {
    fn drop(&mut self) {
        if self.done.is_some() {
            // Dropped before the body ended: the fill is abandoned; its readers need not
            // wait for the writer to notice.
            self.abandon();
        }
    }
}

/// Drains `body` into a fill without any client (background refreshes, and misses whose
/// client needs only a 304 or a range), waiting at most `read_timeout` for each frame.
/// Returns whether the entry was committed.
pub async fn drain<B>(
    mut body: B,
    mut sink: FillSink,
    task: tokio::task::JoinHandle<bool>,
    read_timeout: std::time::Duration,
) -> bool
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    use http_body_util::BodyExt;
    loop {
        let Ok(next) = tokio::time::timeout(read_timeout, body.frame()).await else {
            tracing::debug!(after = ?read_timeout, "cache fill abandoned: upstream stalled");
            sink.abandon();
            break;
        };
        match next {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    std::future::poll_fn(|cx| sink.poll_offer(cx, data)).await;
                }
            }
            Some(Err(_)) => {
                sink.abandon();
                break;
            }
            None => {
                let _ = sink.complete();
                break;
            }
        }
    }
    task.await.unwrap_or(false)
}
