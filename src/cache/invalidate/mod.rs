//! Invalidation: purges by URL, by tag (surrogate key) and by ban, hard or soft.
//!
//! - `index`: which keys each URL and each tag has, and when each was stored (kept in step by
//!   the store), so a purge touches only its own entries;
//! - `tags`: reading surrogate keys from response and PURGE fields;
//! - `bans`: prefix and regex bans, checked lazily at lookup and applied by a background lurker;
//! - `soft`: the stale mark a soft purge leaves, which makes the next request revalidate;
//! - `propagate`: forwarding a purge to other caches, once each.
//!
//! ```text
//! Purge { target: Url | Tags | Prefix | Regex, soft }
//!   ├ Url, Tags ─▶ index ─▶ keys ─▶ remove (or mark stale) in both tiers ─▶ count
//!   └ Prefix, Regex ─▶ ban list (returns at once) ─▶ lurker: index ─▶ older matching keys
//!                          └ lookup: an older matching entry is treated as purged meanwhile
//! ```

pub mod bans;
pub mod index;
pub mod propagate;
pub mod soft;
pub mod tags;

use std::sync::Arc;

use crate::cache::lookup::Cache;
use bans::{Ban, Matcher};

/// What a purge names.
#[derive(Debug, Clone)]
pub enum Target {
    /// One URL's primary key (every variant stored for it).
    Url(String),
    /// Every entry carrying any of these tags.
    Tags(Vec<String>),
    /// Every entry whose URL starts with this (a ban).
    Prefix(String),
    /// Every entry whose URL matches (a ban).
    Regex(regex::Regex),
}

impl Target {
    /// For logs.
    pub fn describe(&self) -> String {
        match self {
            Target::Url(url) => format!("url {url}"),
            Target::Tags(tags) => format!("tag {}", tags.join(" ")),
            Target::Prefix(p) => format!("prefix {p}"),
            Target::Regex(r) => format!("regex {}", r.as_str()),
        }
    }
}

/// One purge request.
#[derive(Debug, Clone)]
pub struct Purge {
    pub target: Target,
    /// Mark stale (revalidate next time) instead of removing.
    pub soft: bool,
}

/// What a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Entries removed or marked stale now (for a ban: none yet, its lurker applies it).
    pub entries: usize,
    /// A ban was added; entries are purged lazily and by a background lurker.
    pub banned: bool,
}

impl Cache {
    /// Applies `purge` to this cache (not to peers; see `propagate`).
    pub async fn purge(&self, purge: &Purge) -> Purged {
        let entries = match &purge.target {
            Target::Url(primary) => {
                if purge.soft {
                    self.stop_fills(primary);
                    self.soften(self.store.index().keys_of_url(primary)).await
                } else {
                    self.invalidate(primary).await
                }
            }
            Target::Tags(tags) => {
                let mut keys: Vec<String> = tags
                    .iter()
                    .flat_map(|t| self.store.index().keys_of_tag(t))
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                for key in &keys {
                    self.stop_fills(index::primary_of(key));
                }
                if purge.soft {
                    self.soften(keys).await
                } else {
                    let mut removed = 0;
                    for key in keys {
                        removed += usize::from(self.store.remove(&key).await);
                    }
                    removed
                }
            }
            Target::Prefix(prefix) => {
                self.ban(Matcher::Prefix(prefix.clone()), purge.soft);
                return Purged {
                    entries: 0,
                    banned: true,
                };
            }
            Target::Regex(regex) => {
                self.ban(Matcher::Regex(regex.clone()), purge.soft);
                return Purged {
                    entries: 0,
                    banned: true,
                };
            }
        };
        Purged {
            entries,
            banned: false,
        }
    }

    /// Marks each of `keys` stale; returns how many were stored.
    async fn soften(&self, keys: Vec<String>) -> usize {
        let mut marked = 0;
        for key in keys {
            if self.mark_stale(&key).await {
                marked += 1;
            }
        }
        marked
    }

    /// Marks `key` stale, keeping its store time; false if it is not stored.
    pub(crate) async fn mark_stale(&self, key: &str) -> bool {
        let Some(head) = self.store.head(key).await else {
            return false;
        };
        if soft::is_marked(&head) {
            return true;
        }
        self.store
            .replace_head(key, soft::marked(&head), true)
            .await
    }

    /// Adds a ban and starts its lurker; returns at once.
    fn ban(&self, matcher: Matcher, soft: bool) {
        let seq = self.store.index().tick();
        let ban = self.bans.add(Ban { seq, matcher, soft });
        let cache = self.clone();
        tokio::spawn(async move {
            let keys = {
                let matcher = &ban.matcher;
                cache
                    .store
                    .index()
                    .keys_before(ban.seq, |url| matcher.matches(url))
            };
            let mut applied = 0usize;
            for key in &keys {
                // Re-checked per key: a key stored again since the snapshot is newer.
                if cache.store.index().seq_of(key) >= ban.seq {
                    continue;
                }
                let done = if ban.soft {
                    cache.mark_stale(key).await
                } else {
                    cache.store.remove(key).await
                };
                applied += usize::from(done);
            }
            cache.bans.retire(&ban);
            tracing::info!(
                ban = ban.matcher.describe(),
                soft = ban.soft,
                entries = applied,
                "ban applied to every older entry; retired"
            );
        });
    }

    /// Bans not yet applied to every older entry (their lurkers still run).
    pub fn bans_pending(&self) -> usize {
        self.bans.active()
    }
}

/// The field a PURGE request asks for a soft purge with (`Cuttle-Purge: soft`).
pub const PURGE_MODE: &str = "cuttle-purge";

/// The purge a `PURGE` request asks for: the tags in its tag fields when it has any
/// (`Surrogate-Key: a b`), else every variant of its URL (`primary`); soft with
/// `Cuttle-Purge: soft`.
pub fn from_purge_request(
    primary: String,
    headers: &http::HeaderMap,
    tag_fields: &[http::HeaderName],
) -> Purge {
    let soft = headers.get_all(PURGE_MODE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("soft")))
    });
    let tags = tags::of_request(headers, tag_fields);
    let target = if tags.is_empty() {
        Target::Url(primary)
    } else {
        Target::Tags(tags)
    };
    Purge { target, soft }
}

impl Cache {
    /// Applies `purge` here, logs it, and forwards it to `cache.purge_propagate` with the hop
    /// marker `hops` plus our name. `None` (nothing done) when `hops` already names us: the
    /// purge came round a loop.
    pub async fn purge_and_propagate(
        &self,
        purge: &Purge,
        mut hops: Vec<String>,
    ) -> Option<(Purged, Vec<propagate::Forwarded>)> {
        let me = &self.behaviour.status_name;
        if hops.iter().any(|h| h == me) {
            tracing::info!(
                target = purge.target.describe(),
                "purge already applied here (hop marker)"
            );
            return None;
        }
        let purged = self.purge(purge).await;
        tracing::info!(
            target = purge.target.describe(),
            soft = purge.soft,
            entries = purged.entries,
            banned = purged.banned,
            "purge"
        );
        let peers = &self.behaviour.purge_propagate;
        let forwarded = if peers.is_empty() {
            Vec::new()
        } else {
            hops.push(me.clone());
            propagate::forward(peers, purge, &hops).await
        };
        Some((purged, forwarded))
    }
}

/// Removes from a response about to be sent what only this cache should see: the soft-purge
/// mark and, unless `cache.strip_tag_fields = false`, the tag fields.
pub fn strip_for_client(headers: &mut http::HeaderMap, behaviour: &crate::cache::Behaviour) {
    soft::unmark(headers);
    if behaviour.strip_tag_fields {
        for name in &behaviour.tag_fields {
            headers.remove(name);
        }
    }
}

/// The shared invalidation state a cache handle carries besides its store.
pub(crate) fn new_bans() -> Arc<bans::Bans> {
    Arc::new(bans::Bans::default())
}
