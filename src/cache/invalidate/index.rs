//! The entry index: which keys are stored for each URL, and which keys carry each tag.
//!
//! Invalidating a URL (a PURGE, or a POST/PUT/DELETE, RFC 9111 §4.4) must touch only that URL's
//! own entries: this index maps each primary key to the keys stored under it (the plain entry or
//! the vary record, and every `primary\nsecondary` variant), so a URL never cached costs one
//! probe of one shard's map, whatever the cache holds. It also maps each surrogate key (tag) to
//! its keys, and remembers for every key the logical time it was stored at, which bans compare
//! against (Varnish's ban list idea; see `bans`).
//!
//! The index may hold more than the tiers do (an entry evicted from both tiers stays listed until
//! a [`sweep`](Entries::sweep) or a purge drops it), never less: a key is registered before its
//! commit makes it visible and again after, so a purge never misses a stored entry. Tags are
//! checked against a key's current tags at purge time, so a key whose newer response dropped a
//! tag is not purged with it.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Shards of each map: commits of unrelated URLs rarely wait for each other.
const SHARDS: usize = 64;

/// A stored key as the index is given it: as text, or as the shared string the memory tier
/// keys its entry with. The index keeps a shared one itself (as a URL's map key when the key
/// is the URL, and in the sets of its tags) instead of another copy of the URL.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Text(&'a str),
    Shared(&'a Arc<str>),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Text(key) => key,
            Key::Shared(key) => key,
        }
    }

    /// The key as a shared string: a count more when it is one, a copy otherwise.
    fn to_shared(self) -> Arc<str> {
        match self {
            Key::Text(key) => Arc::from(key),
            Key::Shared(key) => Arc::clone(key),
        }
    }
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(key: &'a str) -> Self {
        Key::Text(key)
    }
}

impl<'a> From<&'a String> for Key<'a> {
    fn from(key: &'a String) -> Self {
        Key::Text(key)
    }
}

impl<'a> From<&'a Arc<str>> for Key<'a> {
    fn from(key: &'a Arc<str>) -> Self {
        Key::Shared(key)
    }
}

/// What the index knows about one stored key.
#[derive(Debug, Clone, Default)]
struct KeyInfo {
    /// Logical time of the latest store (see [`Entries::now`]).
    seq: u64,
    /// The key's tags; `None` for none (most entries), so an untagged key's info is 16 bytes.
    tags: Option<Box<Tags>>,
}

/// The tags of one key (boxed behind [`KeyInfo::tags`] when there are any).
type Tags = Vec<Box<str>>;

impl KeyInfo {
    fn new(seq: u64, tags: &[Box<str>]) -> Self {
        Self {
            seq,
            tags: boxed_tags(tags),
        }
    }

    fn tags(&self) -> &[Box<str>] {
        self.tags.as_deref().map_or(&[], Vec::as_slice)
    }
}

/// `tags` in an exact-size box, or `None` when there are none.
fn boxed_tags(tags: &[Box<str>]) -> Option<Box<Tags>> {
    (!tags.is_empty()).then(|| Box::new(tags.to_vec()))
}

/// Keys a URL keeps in a vector before they move to a map.
const FEW_KEYS: usize = 16;

/// The keys of one primary key, each kept as what follows the primary (empty for the plain
/// entry or the vary record, `\nsecondary` for a variant). A URL's usual single entry, the
/// plain one, is kept inline ([`One`](Self::One)): it costs its map slot and nothing else.
/// A URL with a few keys keeps them in an exact-size vector; one with many (a sliced object's
/// parts) moves to a map, so finding one stays cheap.
#[derive(Debug)]
enum UrlKeys {
    /// Only the plain entry (empty suffix).
    One(KeyInfo),
    Few(Vec<(Box<str>, KeyInfo)>),
    // Boxed: the rare URL with many keys pays one allocation, so every URL's slot stays small.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Box<str>, KeyInfo>>),
}

impl Default for UrlKeys {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl UrlKeys {
    fn get(&self, suffix: &str) -> Option<&KeyInfo> {
        match self {
            Self::One(info) => suffix.is_empty().then_some(info),
            Self::Few(keys) => keys.iter().find(|(s, _)| &**s == suffix).map(|(_, i)| i),
            Self::Many(keys) => keys.get(suffix),
        }
    }

    fn get_mut(&mut self, suffix: &str) -> Option<&mut KeyInfo> {
        match self {
            Self::One(info) => suffix.is_empty().then_some(info),
            Self::Few(keys) => keys
                .iter_mut()
                .find(|(s, _)| &**s == suffix)
                .map(|(_, i)| i),
            Self::Many(keys) => keys.get_mut(suffix),
        }
    }

    /// Adds `suffix`, which is not listed yet.
    fn insert(&mut self, suffix: &str, info: KeyInfo) {
        match self {
            Self::Few(keys) if keys.is_empty() && suffix.is_empty() => *self = Self::One(info),
            Self::One(_) => {
                let Self::One(plain) = std::mem::take(self) else {
                    return;
                };
                *self = Self::Few(vec![(Box::from(""), plain), (Box::from(suffix), info)]);
            }
            Self::Few(keys) if keys.len() < FEW_KEYS => {
                // Exact growth: a URL with variants usually has only a few.
                keys.reserve_exact(1);
                keys.push((Box::from(suffix), info));
            }
            Self::Few(keys) => {
                let mut map: HashMap<Box<str>, KeyInfo> =
                    std::mem::take(keys).into_iter().collect();
                map.insert(Box::from(suffix), info);
                *self = Self::Many(Box::new(map));
            }
            Self::Many(keys) => {
                keys.insert(Box::from(suffix), info);
            }
        }
    }

    fn remove(&mut self, suffix: &str) -> Option<KeyInfo> {
        match self {
            Self::One(_) if suffix.is_empty() => match std::mem::take(self) {
                Self::One(info) => Some(info),
                _ => None,
            },
            Self::One(_) => None,
            Self::Few(keys) => {
                let at = keys.iter().position(|(s, _)| &**s == suffix)?;
                let (_, info) = keys.swap_remove(at);
                keys.shrink_to_fit();
                Some(info)
            }
            Self::Many(keys) => keys.remove(suffix),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::One(_) => false,
            Self::Few(keys) => keys.is_empty(),
            Self::Many(keys) => keys.is_empty(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &KeyInfo)> {
        let (one, few, many) = match self {
            Self::One(info) => (Some(info), None, None),
            Self::Few(keys) => (None, Some(keys.iter()), None),
            Self::Many(keys) => (None, None, Some(keys.iter())),
        };
        // Only one of the three is there; chaining them avoids boxing an iterator per call.
        one.into_iter()
            .map(|i| ("", i))
            .chain(few.into_iter().flatten().map(|(s, i)| (&**s, i)))
            .chain(many.into_iter().flatten().map(|(s, i)| (&**s, i)))
    }

    /// Keeps the keys `keep` (given the suffix) says to keep; the tags of the others are
    /// handed to `gone` with their suffix.
    fn retain(
        &mut self,
        mut keep: impl FnMut(&str) -> bool,
        mut gone: impl FnMut(&str, Option<Box<Tags>>),
    ) {
        let mut decide = |suffix: &str, info: &mut KeyInfo| {
            let kept = keep(suffix);
            if !kept {
                gone(suffix, info.tags.take());
            }
            kept
        };
        match self {
            Self::One(info) => {
                if !decide("", info) {
                    *self = Self::default();
                }
            }
            Self::Few(keys) => {
                keys.retain_mut(|(s, info)| decide(s, info));
                keys.shrink_to_fit();
            }
            Self::Many(keys) => keys.retain(|s, info| decide(s, info)),
        }
    }
}

/// What follows `primary` in `key` (`key` is `primary` or `primary\nsecondary`).
fn suffix_of<'k>(primary: &str, key: &'k str) -> &'k str {
    key.get(primary.len()..).unwrap_or("")
}

/// `primary` and `suffix` as one key, in `buf` (reused between keys).
fn full_key<'b>(buf: &'b mut String, primary: &str, suffix: &str) -> &'b str {
    buf.clear();
    buf.push_str(primary);
    buf.push_str(suffix);
    buf
}
/// One shard of the URL map: primary key -> its keys. The map key is the memory tier's own
/// key string when the URL's plain entry was registered with it.
type UrlShard = Mutex<HashMap<Arc<str>, UrlKeys>>;
/// One shard of the tag map: tag -> keys (shared with the memory tier where it can be).
type TagShard = Mutex<HashMap<Box<str>, HashSet<Arc<str>>>>;

/// The per-URL and per-tag index of stored keys, with the logical clock bans and fills use.
pub struct Entries {
    urls: Box<[UrlShard]>,
    tags: Box<[TagShard]>,
    hasher: std::collections::hash_map::RandomState,
    /// Logical clock: bumped by every invalidation and ban, read by every registration and fill.
    clock: AtomicU64,
    /// Keys listed (for the sweep threshold and metrics).
    len: AtomicUsize,
}

impl Default for Entries {
    fn default() -> Self {
        Self {
            urls: (0..SHARDS).map(|_| Mutex::default()).collect(),
            tags: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            clock: AtomicU64::new(1),
            len: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// The primary key a stored key belongs to (`primary` or `primary\nsecondary`).
pub fn primary_of(key: &str) -> &str {
    key.split_once('\n').map_or(key, |(primary, _)| primary)
}

impl Entries {
    /// The logical time now: a fill or a registration taken now is newer than every
    /// invalidation or ban made so far.
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::Acquire)
    }

    /// Advances the logical clock for an invalidation or a ban; returns its time, which is
    /// later than every registration made before it.
    pub fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Keys listed.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard<'a, T>(&self, shards: &'a [Mutex<T>], name: &str) -> MutexGuard<'a, T> {
        let i = usize::try_from(self.hasher.hash_one(name) % SHARDS as u64).unwrap_or(0);
        shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keys of `key`'s URL in `urls`, listing the URL first if needed (under `key`'s own
    /// shared string when `key` is the URL).
    fn url_keys<'m>(
        urls: &'m mut HashMap<Arc<str>, UrlKeys>,
        key: Key<'_>,
        primary: &str,
    ) -> &'m mut UrlKeys {
        let url = match key {
            Key::Shared(shared) if shared.len() == primary.len() => Arc::clone(shared),
            _ => match urls.get_key_value(primary) {
                Some((url, _)) => Arc::clone(url),
                None => Arc::from(primary),
            },
        };
        urls.entry(url).or_default()
    }

    /// Records that `key` is (about to be) stored now with `tags`. `seq` is kept when
    /// `keep_seq` (a head update that is not a new response, such as a soft purge's mark).
    pub fn register<'k>(&self, key: impl Into<Key<'k>>, tags: Vec<Box<str>>, keep_seq: bool) {
        let key = key.into();
        let text = key.as_str();
        let primary = primary_of(text);
        let mut urls = self.shard(&self.urls, primary);
        let seq = self.now();
        let keys = Self::url_keys(&mut urls, key, primary);
        let suffix = suffix_of(primary, text);
        let old = match keys.get_mut(suffix) {
            Some(info) => {
                if !keep_seq {
                    info.seq = seq;
                }
                std::mem::replace(&mut info.tags, boxed_tags(&tags))
            }
            None => {
                keys.insert(suffix, KeyInfo::new(seq, &tags));
                self.len.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        let old: &[Box<str>] = old.as_deref().map_or(&[], Vec::as_slice);
        // Tag shards are locked while the URL shard is held (always in this order), so two
        // registrations of one key cannot leave its tag sets out of step.
        for tag in old.iter().filter(|t| !tags.contains(t)) {
            let mut set = self.shard(&self.tags, tag);
            if let Some(keys) = set.get_mut(tag) {
                keys.remove(text);
                if keys.is_empty() {
                    set.remove(tag);
                }
            }
        }
        for tag in tags.iter().filter(|t| !old.contains(t)) {
            self.shard(&self.tags, tag)
                .entry(tag.clone())
                .or_default()
                .insert(key.to_shared());
        }
    }

    /// Lists `key`, read back from disk at start, as stored before anything this process did
    /// (logical time 0, so every ban made meanwhile applies to it); a key registered since the
    /// start is newer and left as it is.
    pub fn register_loaded(&self, key: &str, tags: Vec<Box<str>>) {
        let primary = primary_of(key);
        let mut urls = self.shard(&self.urls, primary);
        let keys = Self::url_keys(&mut urls, Key::Text(key), primary);
        let suffix = suffix_of(primary, key);
        if keys.get(suffix).is_some() {
            return;
        }
        keys.insert(suffix, KeyInfo::new(0, &tags));
        self.len.fetch_add(1, Ordering::Relaxed);
        if tags.is_empty() {
            return;
        }
        let shared: Arc<str> = Arc::from(key);
        for tag in tags {
            self.shard(&self.tags, &tag)
                .entry(tag)
                .or_default()
                .insert(Arc::clone(&shared));
        }
    }

    /// Drops `key` (removed from every tier).
    pub fn forget(&self, key: &str) {
        let primary = primary_of(key);
        let mut urls = self.shard(&self.urls, primary);
        let Some(keys) = urls.get_mut(primary) else {
            return;
        };
        let Some(info) = keys.remove(suffix_of(primary, key)) else {
            return;
        };
        if keys.is_empty() {
            urls.remove(primary);
        }
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.untag(key, info.tags());
    }

    fn untag(&self, key: &str, tags: &[Box<str>]) {
        for tag in tags {
            let mut set = self.shard(&self.tags, tag);
            if let Some(keys) = set.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    set.remove(tag);
                }
            }
        }
    }

    /// Every key listed under `primary` (one map probe when there is none).
    pub fn keys_of_url(&self, primary: &str) -> Vec<String> {
        self.filter_keys_of_url(primary, |key| Some(key.to_string()))
    }

    /// What `pick` makes of each key listed under `primary`, read in place under the shard's
    /// lock (no key is copied unless `pick` copies it; `pick` must not call back into the
    /// index).
    pub fn filter_keys_of_url<T>(
        &self,
        primary: &str,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Vec<T> {
        let urls = self.shard(&self.urls, primary);
        let Some(keys) = urls.get(primary) else {
            return Vec::new();
        };
        let mut buf = String::new();
        keys.iter()
            .filter_map(|(suffix, _)| pick(full_key(&mut buf, primary, suffix)))
            .collect()
    }

    /// Every key currently tagged `tag`.
    pub fn keys_of_tag(&self, tag: &str) -> Vec<String> {
        let candidates: Vec<Arc<str>> = {
            let set = self.shard(&self.tags, tag);
            set.get(tag)
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default()
        };
        candidates
            .into_iter()
            .filter(|key| {
                let primary = primary_of(key);
                let urls = self.shard(&self.urls, primary);
                urls.get(primary)
                    .and_then(|keys| keys.get(suffix_of(primary, key)))
                    .is_some_and(|info| info.tags().iter().any(|t| &**t == tag))
            })
            .map(|key| key.to_string())
            .collect()
    }

    /// The logical time `key` was stored at; 0 for a key not listed (older than any ban).
    pub fn seq_of(&self, key: &str) -> u64 {
        let primary = primary_of(key);
        let urls = self.shard(&self.urls, primary);
        urls.get(primary)
            .and_then(|keys| keys.get(suffix_of(primary, key)))
            .map_or(0, |info| info.seq)
    }

    /// Keys stored before `seq` whose primary key passes `matches` (for a ban's lurker).
    pub fn keys_before(&self, seq: u64, matches: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for shard in self.urls.iter() {
            let urls = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (primary, keys) in urls.iter() {
                if !matches(primary) {
                    continue;
                }
                out.extend(
                    keys.iter()
                        .filter(|(_, info)| info.seq < seq)
                        .map(|(suffix, _)| format!("{primary}{suffix}")),
                );
            }
        }
        out
    }

    /// Drops every key `live` says no tier holds any more (entries evicted for room).
    /// `live` runs under a shard lock, so a registration of the same key waits for it.
    pub fn sweep(&self, live: impl Fn(&str) -> bool) -> usize {
        let mut dropped = 0;
        for shard in self.urls.iter() {
            let mut urls = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let mut gone: Vec<(String, Option<Box<Tags>>)> = Vec::new();
            let mut buf = String::new();
            urls.retain(|primary, keys| {
                keys.retain(
                    |suffix| live(full_key(&mut buf, primary, suffix)),
                    |suffix, tags| gone.push((format!("{primary}{suffix}"), tags)),
                );
                !keys.is_empty()
            });
            for (key, tags) in &gone {
                self.untag(key, tags.as_deref().map_or(&[], Vec::as_slice));
            }
            dropped += gone.len();
        }
        self.len.fetch_sub(dropped, Ordering::Relaxed);
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|t| Box::from(*t)).collect()
    }

    #[test]
    fn urls_list_their_variants_only() {
        let ix = Entries::default();
        ix.register("http://a/x", Vec::new(), false);
        ix.register("http://a/x\naccept-encoding=gzip", Vec::new(), false);
        ix.register("http://a/xy", Vec::new(), false);
        let mut keys = ix.keys_of_url("http://a/x");
        keys.sort();
        assert_eq!(keys, ["http://a/x", "http://a/x\naccept-encoding=gzip"]);
        assert!(ix.keys_of_url("http://a/never").is_empty());
        ix.forget("http://a/x");
        ix.forget("http://a/x\naccept-encoding=gzip");
        assert!(ix.keys_of_url("http://a/x").is_empty());
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn a_retagged_key_leaves_its_old_tag() {
        let ix = Entries::default();
        ix.register("http://a/1", tags(&["red", "blue"]), false);
        ix.register("http://a/2", tags(&["red"]), false);
        ix.register("http://a/1", tags(&["blue"]), false);
        assert_eq!(ix.keys_of_tag("red"), ["http://a/2"]);
        assert_eq!(ix.keys_of_tag("blue"), ["http://a/1"]);
        ix.forget("http://a/1");
        assert!(ix.keys_of_tag("blue").is_empty());
    }

    #[test]
    fn store_times_order_against_ticks() {
        let ix = Entries::default();
        ix.register("http://a/old", Vec::new(), false);
        let ban = ix.tick();
        ix.register("http://a/new", Vec::new(), false);
        assert!(ix.seq_of("http://a/old") < ban);
        assert!(ix.seq_of("http://a/new") >= ban);
        assert_eq!(ix.keys_before(ban, |_| true), ["http://a/old"]);
        // A head update that keeps the time keeps the entry under the ban.
        ix.register("http://a/old", Vec::new(), true);
        assert!(ix.seq_of("http://a/old") < ban);
    }

    #[test]
    fn a_url_with_many_keys_keeps_every_one_findable() {
        let ix = Entries::default();
        let keys: Vec<String> = std::iter::once("http://a/big".to_owned())
            .chain((0..40).map(|n| format!("http://a/big\npart {n}")))
            .collect();
        for (n, key) in keys.iter().enumerate() {
            ix.register(key, tags(&[if n % 2 == 0 { "even" } else { "odd" }]), false);
        }
        ix.register("http://a/bigger", Vec::new(), false);
        assert_eq!(ix.len(), keys.len() + 1);
        let mut listed = ix.keys_of_url("http://a/big");
        listed.sort();
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(ix.keys_of_tag("odd").len(), 20);
        let ban = ix.tick();
        ix.register(&keys[7], tags(&["odd"]), false);
        assert_eq!(
            ix.keys_before(ban, |u| u == "http://a/big").len(),
            keys.len() - 1
        );
        assert!(ix.seq_of(&keys[7]) >= ban && ix.seq_of(&keys[8]) < ban);
        ix.forget(&keys[0]);
        assert_eq!(ix.keys_of_url("http://a/big").len(), keys.len() - 1);
        assert_eq!(ix.sweep(|k| k.ends_with("part 3")), keys.len() - 2 + 1);
        assert_eq!(ix.keys_of_url("http://a/big"), ["http://a/big\npart 3"]);
        // keys[4], the fifth registered, carries "even".
        assert_eq!(ix.keys_of_tag("even"), ["http://a/big\npart 3"]);
        assert!(ix.keys_of_tag("odd").is_empty());
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn a_url_is_listed_under_the_memory_tiers_own_key_string() {
        let ix = Entries::default();
        let plain: Arc<str> = Arc::from("http://a/shared");
        let variant: Arc<str> = Arc::from("http://a/shared\naccept-encoding=br");
        ix.register(&variant, tags(&["t"]), false);
        // The variant's URL had to be copied; its tag set shares the variant's key.
        assert_eq!(Arc::strong_count(&variant), 2);
        ix.register(&plain, tags(&["t"]), false);
        ix.register(&plain, tags(&["t"]), false);
        assert_eq!(Arc::strong_count(&plain), 2, "listed in the tag set only");

        let alone: Arc<str> = Arc::from("http://a/alone");
        ix.register(&alone, Vec::new(), false);
        ix.register(&alone, Vec::new(), true);
        assert_eq!(
            Arc::strong_count(&alone),
            2,
            "the URL map's key is the same string"
        );
        assert_eq!(ix.keys_of_url("http://a/alone"), ["http://a/alone"]);
        ix.forget("http://a/alone");
        assert_eq!(Arc::strong_count(&alone), 1);
        assert!(ix.keys_of_url("http://a/alone").is_empty());

        let mut keys = ix.keys_of_url("http://a/shared");
        keys.sort();
        assert_eq!(keys, [&*plain, &*variant]);
        ix.forget(&plain);
        ix.forget(&variant);
        assert!(ix.is_empty() && ix.keys_of_tag("t").is_empty());
        assert_eq!(Arc::strong_count(&plain), 1);
        assert_eq!(Arc::strong_count(&variant), 1);
    }

    #[test]
    fn the_plain_entry_moves_between_inline_and_listed() {
        let ix = Entries::default();
        let base = "http://a/p";
        let variant = format!("{base}\nv=1");
        // Plain first (kept inline), then a variant (both listed), then the plain one goes.
        ix.register(base, tags(&["x"]), false);
        ix.register(&*variant, Vec::new(), false);
        assert_eq!(ix.keys_of_url(base).len(), 2);
        ix.forget(base);
        assert_eq!(ix.keys_of_url(base), std::slice::from_ref(&variant));
        assert!(ix.keys_of_tag("x").is_empty());
        // Back again, swept, and re-listed: tags and times follow each key.
        ix.register(base, tags(&["y"]), false);
        let ban = ix.tick();
        assert_eq!(ix.keys_before(ban, |_| true).len(), 2);
        assert_eq!(ix.sweep(|k| k == base), 1);
        assert_eq!(ix.keys_of_url(base), [base]);
        assert_eq!(ix.keys_of_tag("y"), [base]);
        assert_eq!(ix.sweep(|_| false), 1);
        assert!(ix.is_empty() && ix.keys_of_url(base).is_empty());
        assert!(ix.keys_of_tag("y").is_empty());
    }

    #[test]
    fn a_urls_slot_stays_small() {
        // A URL's map slot is its shared string and this; the plain entry costs nothing more.
        assert!(
            std::mem::size_of::<UrlKeys>() <= 24,
            "{}",
            std::mem::size_of::<UrlKeys>()
        );
        assert_eq!(std::mem::size_of::<KeyInfo>(), 16);
    }

    #[test]
    fn sweep_drops_what_no_tier_holds() {
        let ix = Entries::default();
        ix.register("http://a/1", tags(&["t"]), false);
        ix.register("http://a/2", tags(&["t"]), false);
        assert_eq!(ix.sweep(|k| k == "http://a/2"), 1);
        assert_eq!(ix.keys_of_tag("t"), ["http://a/2"]);
        assert_eq!(ix.len(), 1);
    }
}
