//! Size accounting and least-recently-used order for the disk tier.
//!
//! cacache has no size bound, so the disk tier keeps this index in process: key → content
//! integrity, plus a use order. Content is addressed by hash, so two keys with identical
//! bodies share one content file: contents are reference-counted and a file is reported
//! for deletion only when its last key goes. The index is plain data (no I/O, no locks);
//! `disk` holds it behind a mutex and does the file work it reports.

use std::collections::{BTreeMap, HashMap};

use cacache::Integrity;

/// Bytes charged per key for its index line on top of the head (key, integrity, time).
const LINE_OVERHEAD: u64 = 160;

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
}

#[derive(Debug)]
struct Slot {
    tick: u64,
    sri: Integrity,
    line_bytes: u64,
}

#[derive(Debug)]
struct Content {
    size: u64,
    refs: u64,
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

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The content a key points at, and that content's size.
    pub fn get(&self, key: &str) -> Option<(Integrity, u64)> {
        let slot = self.entries.get(key)?;
        let size = self.contents.get(&slot.sri).map_or(0, |c| c.size);
        Some((slot.sri.clone(), size))
    }

    /// True if some key refers to `sri`.
    pub fn references(&self, sri: &Integrity) -> bool {
        self.contents.contains_key(sri)
    }

    /// Records `key` → `sri` as the most recently used entry. Returns what the key held
    /// before, if it pointed at other content.
    pub fn insert(
        &mut self,
        key: String,
        sri: Integrity,
        size: u64,
        head_bytes: u64,
    ) -> Option<Removed> {
        // Reference the new content first so that re-inserting the same content under the
        // same key never reports it as orphaned.
        let content = self.contents.entry(sri.clone()).or_insert_with(|| {
            self.total = self.total.saturating_add(size);
            Content { size, refs: 0 }
        });
        content.refs = content.refs.saturating_add(1);
        let previous = self.remove(&key).filter(|old| old.sri != sri);
        let tick = self.tick();
        let line_bytes = line_bytes(&key, head_bytes);
        self.total = self.total.saturating_add(line_bytes);
        self.order.insert(tick, key.clone());
        self.entries.insert(
            key,
            Slot {
                tick,
                sri,
                line_bytes,
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

    /// Re-accounts `key`'s index line after its head changed, and marks it used.
    pub fn set_head_bytes(&mut self, key: &str, head_bytes: u64) -> bool {
        let Some(slot) = self.entries.get_mut(key) else {
            return false;
        };
        let line = line_bytes(key, head_bytes);
        self.total = self
            .total
            .saturating_sub(slot.line_bytes)
            .saturating_add(line);
        slot.line_bytes = line;
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

    fn tick(&mut self) -> u64 {
        self.next_tick = self.next_tick.saturating_add(1);
        self.next_tick
    }
}

fn line_bytes(key: &str, head_bytes: u64) -> u64 {
    let key = u64::try_from(key.len()).unwrap_or(u64::MAX);
    key.saturating_add(head_bytes).saturating_add(LINE_OVERHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sri(data: &str) -> Integrity {
        Integrity::from(data)
    }

    #[test]
    fn shared_content_is_counted_once_and_orphaned_last() {
        let mut ix = DiskIndex::default();
        assert_eq!(ix.insert("a".into(), sri("x"), 1000, 0), None);
        assert_eq!(ix.insert("b".into(), sri("x"), 1000, 0), None);
        assert_eq!(ix.total(), 1000 + 2 * (1 + LINE_OVERHEAD));
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
        ix.insert("a".into(), sri("x"), 10, 5);
        // Same content again: nothing to delete.
        assert_eq!(ix.insert("a".into(), sri("x"), 10, 7), None);
        let old = ix.insert("a".into(), sri("y"), 20, 7).unwrap();
        assert_eq!(old.sri, sri("x"));
        assert!(old.orphaned);
        assert_eq!(ix.total(), 20 + 1 + 7 + LINE_OVERHEAD);
        assert_eq!(ix.get("a"), Some((sri("y"), 20)));
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let mut ix = DiskIndex::default();
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
            ix.insert(k.into(), sri(v), 1000, 0);
        }
        assert!(ix.touch("a"));
        let line = 1 + LINE_OVERHEAD;
        let evicted = ix.evict(2 * (1000 + line));
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
        ix.insert("a".into(), sri("x"), 1, 0);
        assert_eq!(ix.remove_if("a", &sri("y")), None);
        assert!(ix.remove_if("a", &sri("x")).is_some());
        assert!(!ix.references(&sri("x")));
    }

    #[test]
    fn head_bytes_are_reaccounted() {
        let mut ix = DiskIndex::default();
        ix.insert("k".into(), sri("x"), 10, 100);
        ix.set_head_bytes("k", 300);
        assert_eq!(ix.total(), 10 + 1 + 300 + LINE_OVERHEAD);
        assert!(!ix.set_head_bytes("missing", 1));
        assert_eq!(ix.keys_with_prefix("k"), ["k"]);
    }
}
