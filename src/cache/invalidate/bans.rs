//! Bans: invalidation by URL prefix or regex without walking the cache first.
//!
//! A ban is added to a list with the logical time it was made (see `index::Entries::tick`) and
//! returns at once. Every lookup that finds an entry stored before a ban matching its URL
//! treats the entry as purged (removed, or marked stale for a soft ban); a background *lurker*
//! (Varnish's name) walks the index once and applies the ban to every older matching entry, and
//! then the ban leaves the list, since no older entry remains. Fills that started before a ban
//! and match it do not commit (the ban stays known to them for [`RECENT`] after it is retired).
//!
//! The list lives in memory; with a disk tier the bans not yet retired are also kept in a
//! file (`ban_journal`), so a restart before a lurker finishes does not serve what it banned.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

/// How long a retired ban still stops older fills from committing (as long as the URL
/// invalidation marks of `lookup` live).
pub const RECENT: Duration = Duration::from_secs(3600);

/// What a ban matches, against an entry's primary key (its normalised URL).
#[derive(Debug, Clone)]
pub enum Matcher {
    Prefix(String),
    Regex(regex::Regex),
}

impl Matcher {
    pub fn matches(&self, url: &str) -> bool {
        match self {
            Matcher::Prefix(p) => url.starts_with(p.as_str()),
            Matcher::Regex(r) => r.is_match(url),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Matcher::Prefix(p) => format!("prefix {p}"),
            Matcher::Regex(r) => format!("regex {}", r.as_str()),
        }
    }
}

/// One ban.
#[derive(Debug)]
pub struct Ban {
    /// Entries stored before this logical time are banned.
    pub seq: u64,
    pub matcher: Matcher,
    pub soft: bool,
}

#[derive(Debug, Default)]
struct List {
    /// Not yet applied to every older entry: checked at lookup.
    active: Vec<Arc<Ban>>,
    /// Applied, but still stopping older fills from committing.
    retired: Vec<(Instant, Arc<Ban>)>,
}

/// The ban list.
#[derive(Debug, Default)]
pub struct Bans {
    list: RwLock<List>,
    /// Active bans: when 0 (nearly always), a lookup reads this one atomic and no lock.
    active: AtomicUsize,
    /// Active bans plus retired ones: when 0, commits skip the lock.
    known: AtomicUsize,
}

impl Bans {
    /// Adds a ban; the caller starts its lurker.
    pub fn add(&self, ban: Ban) -> Arc<Ban> {
        let ban = Arc::new(ban);
        let mut list = self.list.write().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        list.retired
            .retain(|(at, _)| now.duration_since(*at) < RECENT);
        list.active.push(Arc::clone(&ban));
        self.active.store(list.active.len(), Ordering::Release);
        self.known
            .store(list.active.len() + list.retired.len(), Ordering::Release);
        ban
    }

    /// Moves `ban` from the lookup list to the recent list (its lurker is done).
    pub fn retire(&self, ban: &Arc<Ban>) {
        let mut list = self.list.write().unwrap_or_else(PoisonError::into_inner);
        list.active.retain(|b| !Arc::ptr_eq(b, ban));
        list.retired.push((Instant::now(), Arc::clone(ban)));
        self.active.store(list.active.len(), Ordering::Release);
        self.known
            .store(list.active.len() + list.retired.len(), Ordering::Release);
    }

    /// The bans not yet applied to every older entry, oldest first.
    pub fn pending(&self) -> Vec<Arc<Ban>> {
        let list = self.list.read().unwrap_or_else(PoisonError::into_inner);
        list.active.clone()
    }

    /// Bans not yet applied to every older entry.
    pub fn active(&self) -> usize {
        self.list.read().map_or(0, |l| l.active.len())
    }

    /// Whether a ban is being applied now: read before a lookup reads an entry (one atomic
    /// load; nearly always false), and passed to [`applying`](Self::applying).
    pub fn any_active(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// The ban that applies to an entry of `url` stored at `seq`, if any: a hard one first.
    ///
    /// `active_at_start` is [`any_active`](Self::any_active) from before the lookup read the
    /// entry. Such a lookup is also checked against the bans retired since: a lurker may have
    /// removed the entry after the lookup found it (a disk read in flight) and then retired its
    /// ban, and the entry must not be served by a request that began after the ban.
    pub fn applying(
        &self,
        url: &str,
        seq: impl FnOnce() -> u64,
        active_at_start: bool,
    ) -> Option<Arc<Ban>> {
        if !active_at_start && self.active.load(Ordering::Acquire) == 0 {
            return None;
        }
        let list = self.list.read().unwrap_or_else(PoisonError::into_inner);
        let retired = active_at_start
            .then_some(&list.retired)
            .into_iter()
            .flatten();
        if list.active.is_empty() && list.retired.is_empty() {
            return None;
        }
        let seq = seq();
        let mut found: Option<&Arc<Ban>> = None;
        for ban in list
            .active
            .iter()
            .chain(retired.map(|(_, ban)| ban))
            .filter(|b| b.seq > seq && b.matcher.matches(url))
        {
            if !ban.soft {
                return Some(Arc::clone(ban));
            }
            found.get_or_insert(ban);
        }
        found.cloned()
    }

    /// True if a ban made after `seq` (active or recent) matches `url`: a fill that started
    /// at `seq` holds a banned representation.
    pub fn bans_fill(&self, url: &str, seq: u64) -> bool {
        if self.known.load(Ordering::Acquire) == 0 {
            return false;
        }
        let list = self.list.read().unwrap_or_else(PoisonError::into_inner);
        list.active
            .iter()
            .chain(list.retired.iter().map(|(_, b)| b))
            .any(|b| b.seq > seq && b.matcher.matches(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_applies_to_older_matching_entries_only() {
        let bans = Bans::default();
        assert!(bans.applying("http://a/x", || 0, false).is_none());
        let ban = bans.add(Ban {
            seq: 10,
            matcher: Matcher::Prefix("http://a/".into()),
            soft: false,
        });
        assert!(bans.applying("http://a/x", || 9, false).is_some());
        assert!(bans.applying("http://a/x", || 10, false).is_none());
        assert!(bans.applying("http://b/x", || 9, false).is_none());
        assert!(bans.bans_fill("http://a/x", 9));
        bans.retire(&ban);
        assert!(bans.applying("http://a/x", || 9, false).is_none());
        assert!(bans.bans_fill("http://a/x", 9), "still stops older fills");
        assert_eq!(bans.active(), 0);
        assert!(!bans.any_active());
    }

    #[test]
    fn a_lookup_begun_while_a_ban_was_active_sees_it_after_it_retires() {
        let bans = Bans::default();
        let ban = bans.add(Ban {
            seq: 10,
            matcher: Matcher::Prefix("http://a/".into()),
            soft: false,
        });
        let at_start = bans.any_active();
        assert!(at_start);
        // The lurker removes the entry the lookup is reading, and retires the ban.
        bans.retire(&ban);
        assert!(bans.applying("http://a/x", || 0, at_start).is_some());
        assert!(
            bans.applying("http://a/x", || 10, at_start).is_none(),
            "newer"
        );
        assert!(bans.applying("http://b/x", || 0, at_start).is_none());
        // A lookup begun after the retirement reads no list.
        assert!(bans
            .applying("http://a/x", || 0, bans.any_active())
            .is_none());
    }

    #[test]
    fn a_hard_ban_wins_over_a_soft_one() {
        let bans = Bans::default();
        bans.add(Ban {
            seq: 5,
            matcher: Matcher::Regex(regex::Regex::new("/img/").unwrap()),
            soft: true,
        });
        bans.add(Ban {
            seq: 6,
            matcher: Matcher::Prefix("http://a/".into()),
            soft: false,
        });
        let ban = bans.applying("http://a/img/1", || 1, false).unwrap();
        assert!(!ban.soft);
        assert!(bans.applying("http://b/img/1", || 1, false).unwrap().soft);
    }
}
