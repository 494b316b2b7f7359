//! Invalidation epochs: a fill that began before its URL was invalidated must never become
//! visible (RFC 9111 §4.4: the response it holds is from before the change).
//!
//! A fill takes an [`Epoch`] before its request goes upstream. An invalidation bumps the URL's
//! epoch and removes its entries while holding the URL's gate exclusively; a commit holds the
//! same gate shared from its epoch check until the entry is visible. So the check and the
//! commit are one step as far as an invalidation can tell: it lands either before the check
//! (the commit is refused) or after the commit (and removes what was committed), never in
//! between. Gates are sharded by the primary key's hash; only misses and invalidations take
//! them, never a hit.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Gates per store: enough that unrelated URLs rarely share one.
const SHARDS: usize = 64;

/// Taken when a fill starts; its commit is refused after a later invalidation of `primary`.
#[derive(Clone)]
pub struct Epoch {
    primary: String,
    seq: u64,
    /// Another reason to refuse the commit, asked inside the gate (a later ban matching the
    /// URL, see `cache::invalidate::bans`).
    veto: Option<Veto>,
}

/// See [`Epoch::with_veto`].
pub type Veto = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("primary", &self.primary)
            .field("seq", &self.seq)
            .field("veto", &self.veto.is_some())
            .finish()
    }
}

impl Epoch {
    /// Also refuses the commit when `veto` says so at commit time.
    pub fn with_veto(mut self, veto: Veto) -> Self {
        self.veto = Some(veto);
        self
    }

    /// The primary key (URL) this epoch belongs to.
    pub fn primary(&self) -> &str {
        &self.primary
    }
}

/// The latest invalidation of each recently invalidated URL, and the gates.
pub(super) struct Epochs {
    seq: AtomicU64,
    /// Bounded: a fill older than the eviction of its URL's mark is older than any sane fill.
    latest: moka::sync::Cache<String, u64>,
    /// The latest purge of each recently purged tag: a fill that began before it and carries
    /// the tag is refused too, whatever its URL (it was not listed under the tag yet).
    tags: moka::sync::Cache<String, u64>,
    /// Whether any tag was ever purged (commits skip reading their tags until then).
    any_tag_purged: AtomicBool,
    gates: [RwLock<()>; SHARDS],
}

impl Epochs {
    pub(super) fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            latest: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            tags: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            any_tag_purged: AtomicBool::new(false),
            gates: std::array::from_fn(|_| RwLock::new(())),
        }
    }

    /// An epoch for a fill of `primary` starting now.
    pub(super) fn begin(&self, primary: &str) -> Epoch {
        Self::begin_at(primary, self.now())
    }

    /// Where the epochs are now: [`begin_at`](Self::begin_at) with it makes the epoch
    /// [`begin`](Self::begin) would have made at this moment.
    pub(super) fn now(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// The epoch for a fill of `primary` that started when the epochs were at `seq`.
    pub(super) fn begin_at(primary: &str, seq: u64) -> Epoch {
        Epoch {
            primary: primary.to_owned(),
            seq,
            veto: None,
        }
    }

    /// Holds `epoch`'s gate for a commit: `None` if its URL was invalidated after it began.
    /// `tags` gives the entry's tags, read only once some tag has been purged.
    pub(super) async fn admit_commit(
        &self,
        epoch: &Epoch,
        tags: impl FnOnce() -> Vec<Box<str>>,
    ) -> Option<RwLockReadGuard<'_, ()>> {
        let gate = self.gate(&epoch.primary).read().await;
        let valid = self
            .latest
            .get(&epoch.primary)
            .is_none_or(|seq| seq <= epoch.seq)
            && !epoch.veto.as_ref().is_some_and(|veto| veto())
            && !(self.any_tag_purged.load(Ordering::Acquire)
                && tags()
                    .iter()
                    .any(|tag| self.tags.get(&**tag).is_some_and(|seq| seq > epoch.seq)));
        valid.then_some(gate)
    }

    /// Starts purging `tags`: refuses every fill that began before now and carries one of
    /// them, then waits until every commit already past its check has listed its key (each
    /// holds its gate until then), so the purge's look at the tag index that follows sees
    /// every entry committed before it.
    pub(super) async fn purge_tags(&self, tags: &[String]) {
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        for tag in tags {
            self.tags.insert(tag.clone(), seq);
        }
        self.any_tag_purged.store(true, Ordering::Release);
        for gate in &self.gates {
            drop(gate.write().await);
        }
    }

    /// Starts invalidating `primary`: waits for commits under way, then refuses every fill
    /// that began before now. Remove the entries while holding the returned guard.
    pub(super) async fn invalidate(&self, primary: &str) -> RwLockWriteGuard<'_, ()> {
        let gate = self.gate(primary).write().await;
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        self.latest.insert(primary.to_owned(), seq);
        gate
    }

    fn gate(&self, primary: &str) -> &RwLock<()> {
        let mut hasher = DefaultHasher::new();
        primary.hash(&mut hasher);
        // In range by construction: the remainder of a division by the array's length.
        let shard = usize::try_from(hasher.finish() % SHARDS as u64).unwrap_or(0) % SHARDS;
        &self.gates[shard]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|t| Box::from(*t)).collect()
    }

    #[tokio::test]
    async fn a_tag_purge_refuses_earlier_fills_carrying_the_tag_only() {
        let epochs = Epochs::new();
        let before = epochs.begin("http://a/1");
        epochs.purge_tags(&["t1".to_owned()]).await;
        assert!(
            epochs
                .admit_commit(&before, || tags(&["t1", "t2"]))
                .await
                .is_none(),
            "a fill that began before the purge and carries the tag"
        );
        assert!(
            epochs
                .admit_commit(&before, || tags(&["t2"]))
                .await
                .is_some(),
            "other tags are not purged"
        );
        let after = epochs.begin("http://a/1");
        assert!(
            epochs
                .admit_commit(&after, || tags(&["t1"]))
                .await
                .is_some(),
            "a fill that began after the purge"
        );
    }
}
