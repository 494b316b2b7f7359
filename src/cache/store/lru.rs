//! Size accounting, least-recently-used order and hit data for the disk tier.
//!
//! cacache has no size bound, so the disk tier keeps this index in process: key → content
//! integrity and parsed head, plus a use order. A hit is answered from here without reading
//! cacache's index file or parsing its JSON (the head costs memory per entry, roughly its
//! [`approx_size`](StoredHead::approx_size)). Content is addressed by hash, so two keys with
//! identical bodies share one content file: contents are reference-counted, carry whether
//! their file has been checked against the hash and when it was last read, and a file is
//! reported for deletion only when its last key goes. The index is plain data (no I/O, no
//! locks, `now` a parameter); `disk` holds it behind a mutex and does the file work it
//! reports.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cacache::Integrity;
use tokio::time::Instant;

use super::file::Stamp;
use crate::cache::meta::StoredHead;

/// Bytes charged per key for its index line on top of the head (key, integrity, time).
const LINE_OVERHEAD: u64 = 160;

/// A content read again within this long of its last read is taken to be in the page cache
/// ("hot")...
const HOT_FOR: Duration = Duration::from_secs(10);

/// ...if less than this many bytes were read from the disk tier in between, and it is no
/// larger than this itself. The page cache keeps recently read file data unless memory is
/// short; these bounds keep the guess to data read moments ago.
const HOT_BYTES: u64 = 64 * 1024 * 1024;

/// Use-order ticks from here up are uses since start; entries loaded from disk sit below,
/// ordered by their last write (so any use since start is more recent than every load).
const LIVE_TICKS: u64 = 1 << 62;

/// Ticks per millisecond of write time for loaded entries: room for that many entries written
/// in one millisecond before two share a slot (then the next free tick is taken).
const LOADED_PER_MS: u64 = 1024;

/// The disk tier's in-process index.
#[derive(Debug, Default)]
pub(super) struct DiskIndex {
    entries: HashMap<String, Slot>,
    /// Use order: the smallest tick is the least recently used key.
    order: BTreeMap<u64, String>,
    contents: HashMap<Integrity, Content>,
    /// Bytes accounted: each distinct content once, plus every key's index line.
    total: u64,
    /// A logical clock: one tick per insert or use, so order never depends on wall time.
    next_tick: u64,
    /// Body bytes of every read so far, the clock for [`HOT_BYTES`].
    read_bytes: u64,
}

#[derive(Debug)]
struct Slot {
    tick: u64,
    sri: Integrity,
    line_bytes: u64,
    /// The head as committed (or freshened); the same data as cacache's index line.
    head: Arc<StoredHead>,
}

#[derive(Debug)]
struct Content {
    size: u64,
    refs: u64,
    /// The file's size and mtime when it was last read whole and matched its hash; `None`
    /// until then (after a write, and after every start).
    checked: Option<Stamp>,
    /// When the content was last read, and `read_bytes` just after.
    last_read: Option<(Instant, u64)>,
}

/// What a hit needs to know about a key.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub sri: Integrity,
    pub size: u64,
    pub head: Arc<StoredHead>,
    pub checked: Option<Stamp>,
    /// Read lately enough to be in the page cache (see [`HOT_FOR`]); only from `read`.
    pub hot: bool,
}

/// A key that left the index, and whether its content file is now unreferenced.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Removed {
    pub key: String,
    pub sri: Integrity,
    /// No key refers to `sri` any more: delete the content file.
    pub orphaned: bool,
}

impl DiskIndex {
    /// Bytes currently accounted.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The content a key points at, that content's size, and the key's head.
    pub fn get(&self, key: &str) -> Option<Entry> {
        let slot = self.entries.get(key)?;
        let content = self.contents.get(&slot.sri);
        Some(Entry {
            sri: slot.sri.clone(),
            size: content.map_or(0, |c| c.size),
            head: Arc::clone(&slot.head),
            checked: content.and_then(|c| c.checked),
            hot: false,
        })
    }

    /// Notes a read of `key` at `now`: marks the key used and returns what a hit needs,
    /// saying whether its content is hot.
    pub fn read(&mut self, key: &str, now: Instant) -> Option<Entry> {
        if !self.touch(key) {
            return None;
        }
        let mut entry = self.get(key)?;
        let content = self.contents.get_mut(&entry.sri)?;
        let since = self.read_bytes;
        entry.hot = content.size <= HOT_BYTES
            && content.last_read.is_some_and(|(at, bytes)| {
                now.saturating_duration_since(at) < HOT_FOR
                    && since.saturating_sub(bytes) < HOT_BYTES
            });
        self.read_bytes = since.saturating_add(content.size);
        content.last_read = Some((now, self.read_bytes));
        Some(entry)
    }

    /// True while `key` names `sri` (it has not been replaced or removed).
    pub fn holds(&self, key: &str, sri: &Integrity) -> bool {
        self.entries.get(key).is_some_and(|slot| slot.sri == *sri)
    }

    /// Records that `sri`'s file, as described by `stamp`, matched its hash.
    pub fn set_checked(&mut self, sri: &Integrity, stamp: Stamp) {
        if let Some(content) = self.contents.get_mut(sri) {
            content.checked = Some(stamp);
        }
    }

    /// True if some key refers to `sri`.
    pub fn references(&self, sri: &Integrity) -> bool {
        self.contents.contains_key(sri)
    }

    /// Records `key` → `sri` with `head` as the most recently used entry; the content's
    /// size is `head.body_len`. Returns what the key held before, if it pointed at other
    /// content.
    pub fn insert(
        &mut self,
        key: String,
        sri: Integrity,
        head: Arc<StoredHead>,
    ) -> Option<Removed> {
        self.insert_at(key, sri, head, None)
    }

    /// [`insert`](Self::insert) for an entry read back from disk, last written at
    /// `written_ms` (Unix milliseconds): older in use order than every entry used since start.
    pub fn insert_loaded(
        &mut self,
        key: String,
        sri: Integrity,
        head: Arc<StoredHead>,
        written_ms: u64,
    ) -> Option<Removed> {
        let mut tick = written_ms
            .saturating_mul(LOADED_PER_MS)
            .min(LIVE_TICKS - LOADED_PER_MS);
        while self.order.contains_key(&tick) && tick < LIVE_TICKS - 1 {
            tick += 1;
        }
        self.insert_at(key, sri, head, Some(tick))
    }

    fn insert_at(
        &mut self,
        key: String,
        sri: Integrity,
        head: Arc<StoredHead>,
        tick: Option<u64>,
    ) -> Option<Removed> {
        // Reference the new content first so that re-inserting the same content under the
        // same key never reports it as orphaned.
        let size = head.body_len;
        let content = self.contents.entry(sri.clone()).or_insert_with(|| {
            self.total = self.total.saturating_add(size);
            Content {
                size,
                refs: 0,
                checked: None,
                last_read: None,
            }
        });
        content.refs = content.refs.saturating_add(1);
        let previous = self.remove(&key).filter(|old| old.sri != sri);
        let tick = match tick {
            Some(t) if !self.order.contains_key(&t) => t,
            _ => self.tick(),
        };
        let line_bytes = line_bytes(&key, head.approx_size());
        self.total = self.total.saturating_add(line_bytes);
        self.order.insert(tick, key.clone());
        self.entries.insert(
            key,
            Slot {
                tick,
                sri,
                line_bytes,
                head,
            },
        );
        previous
    }

    /// Marks `key` as just used; false if absent.
    pub fn touch(&mut self, key: &str) -> bool {
        let tick = self.tick();
        let Some(slot) = self.entries.get_mut(key) else {
            return false;
        };
        if let Some(name) = self.order.remove(&slot.tick) {
            self.order.insert(tick, name);
        }
        slot.tick = tick;
        true
    }

    /// Replaces `key`'s head (its content stays), re-accounts its index line, and marks
    /// it used; false if absent.
    pub fn set_head(&mut self, key: &str, head: Arc<StoredHead>) -> bool {
        let Some(slot) = self.entries.get_mut(key) else {
            return false;
        };
        let line = line_bytes(key, head.approx_size());
        self.total = self
            .total
            .saturating_sub(slot.line_bytes)
            .saturating_add(line);
        slot.line_bytes = line;
        slot.head = head;
        self.touch(key)
    }

    /// Drops `key`; reports its content and whether that is now unreferenced.
    pub fn remove(&mut self, key: &str) -> Option<Removed> {
        let (key, slot) = self.entries.remove_entry(key)?;
        self.order.remove(&slot.tick);
        self.total = self.total.saturating_sub(slot.line_bytes);
        let mut orphaned = false;
        if let Some(content) = self.contents.get_mut(&slot.sri) {
            content.refs = content.refs.saturating_sub(1);
            if content.refs == 0 {
                self.total = self.total.saturating_sub(content.size);
                self.contents.remove(&slot.sri);
                orphaned = true;
            }
        }
        Some(Removed {
            key,
            sri: slot.sri,
            orphaned,
        })
    }

    /// Drops `key` only while it still points at `sri` (it may have been replaced since).
    pub fn remove_if(&mut self, key: &str, sri: &Integrity) -> Option<Removed> {
        if self.entries.get(key)?.sri != *sri {
            return None;
        }
        self.remove(key)
    }

    /// Drops least recently used keys until at most `max` bytes are accounted.
    pub fn evict(&mut self, max: u64) -> Vec<Removed> {
        let mut out = Vec::new();
        while self.total > max {
            let Some((&tick, key)) = self.order.first_key_value() else {
                break;
            };
            let key = key.clone();
            match self.remove(&key) {
                Some(removed) => out.push(removed),
                // An order entry without a slot: drop it so the loop moves on.
                None => {
                    self.order.remove(&tick);
                }
            }
        }
        out
    }

    /// Every key starting with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// True if `key` is indexed.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    fn tick(&mut self) -> u64 {
        self.next_tick = self.next_tick.max(LIVE_TICKS).saturating_add(1);
        self.next_tick
    }
}

fn line_bytes(key: &str, head_bytes: u64) -> u64 {
    let key = u64::try_from(key.len()).unwrap_or(u64::MAX);
    key.saturating_add(head_bytes).saturating_add(LINE_OVERHEAD)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn sri(data: &str) -> Integrity {
        Integrity::from(data)
    }

    /// A head for a body of `size` bytes whose URL is `url`.
    fn head_with(size: u64, url: &str) -> Arc<StoredHead> {
        Arc::new(StoredHead {
            status: http::StatusCode::OK,
            headers: Default::default(),
            request_time: UNIX_EPOCH,
            response_time: UNIX_EPOCH,
            url: url.into(),
            body_len: size,
            derived: Default::default(),
        })
    }

    fn head(size: u64) -> Arc<StoredHead> {
        head_with(size, "")
    }

    /// Bytes charged for a one-letter key's line with `head(_)`.
    fn line() -> u64 {
        1 + head(0).approx_size() + LINE_OVERHEAD
    }

    #[test]
    fn shared_content_is_counted_once_and_orphaned_last() {
        let mut ix = DiskIndex::default();
        assert_eq!(ix.insert("a".into(), sri("x"), head(1000)), None);
        assert_eq!(ix.insert("b".into(), sri("x"), head(1000)), None);
        assert_eq!(ix.total(), 1000 + 2 * line());
        let a = ix.remove("a").unwrap();
        assert!(!a.orphaned);
        let b = ix.remove("b").unwrap();
        assert!(b.orphaned);
        assert_eq!(ix.total(), 0);
        assert_eq!(ix.len(), 0);
    }

    #[test]
    fn replacing_content_reports_the_old_one() {
        let mut ix = DiskIndex::default();
        ix.insert("a".into(), sri("x"), head(10));
        // Same content again: nothing to delete.
        assert_eq!(ix.insert("a".into(), sri("x"), head(10)), None);
        let old = ix.insert("a".into(), sri("y"), head(20)).unwrap();
        assert_eq!(old.sri, sri("x"));
        assert!(old.orphaned);
        assert_eq!(ix.total(), 20 + line());
        let entry = ix.get("a").unwrap();
        assert_eq!((entry.sri, entry.size), (sri("y"), 20));
        assert!(ix.holds("a", &sri("y")) && !ix.holds("a", &sri("x")));
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let mut ix = DiskIndex::default();
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
            ix.insert(k.into(), sri(v), head(1000));
        }
        assert!(ix.touch("a"));
        let evicted = ix.evict(2 * (1000 + line()));
        let keys: Vec<_> = evicted.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["b"]);
        assert!(ix.get("a").is_some() && ix.get("c").is_some());
        let evicted = ix.evict(0);
        let keys: Vec<_> = evicted.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["c", "a"]);
        assert_eq!(ix.total(), 0);
    }

    #[test]
    fn remove_if_only_matches_the_same_content() {
        let mut ix = DiskIndex::default();
        ix.insert("a".into(), sri("x"), head(1));
        assert_eq!(ix.remove_if("a", &sri("y")), None);
        assert!(ix.remove_if("a", &sri("x")).is_some());
        assert!(!ix.references(&sri("x")));
    }

    #[test]
    fn heads_are_replaced_and_reaccounted() {
        let mut ix = DiskIndex::default();
        ix.insert("k".into(), sri("x"), head(10));
        assert!(ix.set_head("k", head_with(10, "http://a/")));
        assert_eq!(ix.total(), 10 + line() + 9);
        assert_eq!(&*ix.get("k").unwrap().head.url, "http://a/");
        assert!(!ix.set_head("missing", head(1)));
        assert_eq!(ix.keys_with_prefix("k"), ["k"]);
    }

    #[test]
    fn contents_read_moments_ago_are_hot() {
        let t0 = Instant::now();
        let mut ix = DiskIndex::default();
        ix.insert("a".into(), sri("x"), head(1000));
        ix.insert("b".into(), sri("x"), head(1000));
        ix.insert("big".into(), sri("y"), head(HOT_BYTES));
        ix.insert("huge".into(), sri("z"), head(HOT_BYTES + 1));
        assert!(!ix.read("a", t0).unwrap().hot, "never read before");
        // The content is what is hot, whichever key read it.
        assert!(ix.read("b", t0 + Duration::from_secs(1)).unwrap().hot);
        assert!(!ix.read("a", t0 + Duration::from_secs(12)).unwrap().hot);
        assert!(ix.read("a", t0 + Duration::from_secs(13)).unwrap().hot);
        // 64 MiB read in between pushes it out.
        assert!(!ix.read("big", t0 + Duration::from_secs(13)).unwrap().hot);
        assert!(!ix.read("a", t0 + Duration::from_secs(13)).unwrap().hot);
        assert!(ix.read("big", t0 + Duration::from_secs(14)).unwrap().hot);
        for _ in 0..2 {
            assert!(
                !ix.read("huge", t0).unwrap().hot,
                "larger than a hot file may be"
            );
        }
        assert!(ix.read("missing", t0).is_none());
        assert!(!ix.get("a").unwrap().hot);
    }

    #[test]
    fn loaded_entries_are_older_than_any_use_and_ordered_by_write_time() {
        let mut ix = DiskIndex::default();
        ix.insert("new".into(), sri("n"), head(1000));
        ix.insert_loaded("later".into(), sri("b"), head(1000), 1_700_000_000_002);
        ix.insert_loaded("early".into(), sri("a"), head(1000), 1_700_000_000_001);
        // Same millisecond: both kept, in load order.
        ix.insert_loaded("early2".into(), sri("c"), head(1000), 1_700_000_000_001);
        let evicted = ix.evict(0);
        let keys: Vec<_> = evicted.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["early", "early2", "later", "new"]);
        // A loaded entry used since start is as recent as any other use.
        ix.insert_loaded("old".into(), sri("a"), head(1000), 1);
        ix.insert("mid".into(), sri("b"), head(1000));
        assert!(ix.touch("old"));
        let keys: Vec<_> = ix.evict(0).into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["mid", "old"]);
    }

    #[test]
    fn checked_marks_belong_to_the_content_and_go_with_it() {
        let stamp = Stamp {
            len: 10,
            modified: UNIX_EPOCH,
            changed: (0, 0),
            inode: (1, 2),
        };
        let mut ix = DiskIndex::default();
        ix.insert("a".into(), sri("x"), head(10));
        ix.insert("b".into(), sri("x"), head(10));
        assert_eq!(ix.get("a").unwrap().checked, None);
        ix.set_checked(&sri("x"), stamp);
        assert_eq!(ix.get("b").unwrap().checked, Some(stamp));
        // Content stored again after its last key went starts unchecked.
        ix.remove("a");
        ix.remove("b");
        ix.set_checked(&sri("x"), stamp);
        ix.insert("a".into(), sri("x"), head(10));
        assert_eq!(ix.get("a").unwrap().checked, None);
    }
}
