//! The purge methods of the cache façade: a [`Purge`] applied to this cache's index, store
//! and ban list, logged, then forwarded to peers. Beside `invalidate` (which it uses) rather
//! than in it, so `lookup` can use `invalidate` without a circle.

use super::invalidate::bans::{Ban, Matcher};
use super::invalidate::{index, propagate, soft, Purge, Purged, Target};
use crate::cache::lookup::Cache;

impl Cache {
    /// Applies `purge` to this cache (not to peers; see `propagate`).
    pub async fn purge(&self, purge: &Purge) -> Purged {
        // A purge finds entries through the index, which lists disk entries once loaded.
        self.store.disk_loaded().await;
        // A cluster member's hot copies (`cache::hot`) go first: a fill under way for one
        // sees the purge's epoch and is not kept.
        let hot = self.hot.as_ref().map_or(0, |h| h.purge(purge));
        let entries = match &purge.target {
            Target::Url(primary) => {
                if purge.soft {
                    self.stop_fills(primary).await;
                    self.soften(self.store.index().keys_of_url(primary)).await
                } else {
                    self.invalidate(primary).await
                }
            }
            Target::Tags(tags) => {
                // Fills under way that carry a tag are refused from here on; entries
                // committed before are in the index by the time it is read.
                self.store.purging_tags(tags).await;
                let mut keys: Vec<String> = tags
                    .iter()
                    .flat_map(|t| self.store.index().keys_of_tag(t))
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                for key in &keys {
                    self.stop_fills(index::primary_of(key)).await;
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
                    entries: hot,
                    banned: true,
                };
            }
            Target::Regex(regex) => {
                self.ban(Matcher::Regex(regex.clone()), purge.soft);
                return Purged {
                    entries: hot,
                    banned: true,
                };
            }
        };
        Purged {
            entries: entries + hot,
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
            // Entries loaded from disk are older than the ban: wait until all are listed.
            cache.store.disk_loaded().await;
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
