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
                self.ban(Matcher::Prefix(prefix.clone()), purge.soft).await;
                return Purged {
                    entries: hot,
                    banned: true,
                };
            }
            Target::Regex(regex) => {
                self.ban(Matcher::Regex(regex.clone()), purge.soft).await;
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

    /// Adds a ban, notes it in the pending-ban file and starts its lurker; returns without
    /// waiting for the lurker.
    async fn ban(&self, matcher: Matcher, soft: bool) {
        let seq = self.store.index().tick();
        let ban = self.bans.add(Ban { seq, matcher, soft });
        if let Some(journal) = &self.ban_journal {
            journal.save(&self.bans).await;
        }
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
            if let Some(journal) = &cache.ban_journal {
                journal.save(&cache.bans).await;
            }
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

    /// Makes again the bans a previous run left pending (see `ban_journal`): everything read
    /// back from disk counts as older than them. Called once, at open, before any lookup.
    pub(super) async fn resume_bans(&self) {
        let Some(journal) = &self.ban_journal else {
            return;
        };
        for (matcher, soft) in journal.read().await {
            tracing::info!(
                ban = matcher.describe(),
                soft,
                "ban left pending by the previous run made again"
            );
            self.ban(matcher, soft).await;
        }
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::cache::invalidate::ban_journal;
    use crate::cache::lookup::Lookup;
    use crate::cache::meta::{StoredFields, StoredHead};
    use crate::cache::store::LoadGate;
    use crate::cache::{Behaviour, Config, DiskConfig, MemoryConfig};

    fn config(dir: &std::path::Path, gate: Option<LoadGate>) -> Config {
        Config {
            memory: MemoryConfig {
                max_size: 1 << 20,
                max_object_size: 1 << 16,
            },
            disk: Some(DiskConfig {
                path: dir.to_path_buf(),
                max_size: 1 << 24,
                max_object_size: 1 << 20,
                load_gate: gate,
            }),
            behaviour: Behaviour::default(),
        }
    }

    async fn put(cache: &Cache, url: &str) {
        let head = StoredHead {
            status: StatusCode::OK,
            headers: StoredFields::from_map(&HeaderMap::new()),
            request_time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            response_time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            url: url.into(),
            body_len: 0,
            derived: Default::default(),
        };
        let mut writer = cache.store.writer(url, head, Some(4)).unwrap();
        writer.write(&Bytes::from_static(b"body")).await.unwrap();
        writer.commit().await.unwrap();
    }

    async fn found(cache: &Cache, url: &str) -> bool {
        matches!(
            cache.lookup(url, &HeaderMap::new()).await,
            Lookup::Found { .. }
        )
    }

    /// A ban whose lurker had not finished when the proxy stopped still applies after the
    /// restart (it used to live in memory only, and the banned entry was served from disk).
    #[tokio::test]
    async fn a_ban_pending_at_a_restart_applies_after_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = Cache::open(&config(dir.path(), None)).await.unwrap();
            cache.store.disk_loaded().await;
            put(&cache, "http://a/banned/1").await;
            put(&cache, "http://a/kept").await;
        }
        // The next run bans while its disk index is still loading (the gate holds it), so the
        // ban's lurker cannot finish before this run ends.
        let gate = LoadGate::closed();
        {
            let cache = Cache::open(&config(dir.path(), Some(gate.clone())))
                .await
                .unwrap();
            cache
                .ban(Matcher::Prefix("http://a/banned/".into()), false)
                .await;
            assert_eq!(cache.bans_pending(), 1);
            assert!(dir.path().join(ban_journal::FILE).exists());
        }

        let cache = Cache::open(&config(dir.path(), None)).await.unwrap();
        assert_eq!(cache.bans_pending(), 1, "made again from the file");
        cache.store.disk_loaded().await;
        assert!(
            !found(&cache, "http://a/banned/1").await,
            "served after the ban"
        );
        assert!(found(&cache, "http://a/kept").await);
        // What is stored after the restart is newer than the ban.
        put(&cache, "http://a/banned/2").await;
        assert!(found(&cache, "http://a/banned/2").await);
        // The lurker finishes the ban, and the file goes with it.
        for _ in 0..500 {
            if cache.bans_pending() == 0 && !dir.path().join(ban_journal::FILE).exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(cache.bans_pending(), 0);
        assert!(!dir.path().join(ban_journal::FILE).exists());
        drop(cache);
        let cache = Cache::open(&config(dir.path(), None)).await.unwrap();
        assert_eq!(cache.bans_pending(), 0);
        cache.store.disk_loaded().await;
        assert!(!found(&cache, "http://a/banned/1").await);
        assert!(found(&cache, "http://a/banned/2").await);
        gate.open();
    }
}
