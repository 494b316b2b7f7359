//! Top URLs by bytes served: a bounded space-saving summary (Metwally et al., 2005) per shard,
//! merged on scrape.
//!
//! Each shard keeps at most [`CAPACITY`] URLs. A URL already there adds its bytes; a new one
//! takes a free slot, or replaces the smallest entry and inherits its count (the summary
//! over-estimates a newcomer by at most the count it inherited, kept as `error`). Heavy URLs
//! therefore stay, and memory is fixed whatever the traffic. URLs are stored without their
//! query (Squid's `strip_query_terms`), so neither secrets in query strings nor one slot per
//! query variation end up here.

use std::collections::HashMap;
use std::hash::BuildHasher;

/// URLs kept per shard.
pub const CAPACITY: usize = 32;

/// One counted URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUrl {
    pub url: String,
    pub bytes: u64,
    pub requests: u64,
}

#[derive(Debug)]
struct Slot {
    url: Box<str>,
    bytes: u64,
    requests: u64,
}

/// One shard's summary.
#[derive(Debug, Default)]
pub struct TopK {
    /// Hashes beside the slots, so finding a URL compares integers first.
    hashes: Vec<u64>,
    slots: Vec<Slot>,
    hasher: std::hash::RandomState,
}

/// `url` up to its query or fragment.
pub fn strip_query(url: &str) -> &str {
    url.find(['?', '#']).map_or(url, |at| &url[..at])
}

impl TopK {
    /// Counts `bytes` served for `url` (its query is dropped here).
    pub fn add(&mut self, url: &str, bytes: u64) {
        let url = strip_query(url);
        let hash = self.hasher.hash_one(url);
        for (i, &stored) in self.hashes.iter().enumerate() {
            if stored == hash {
                if let Some(slot) = self.slots.get_mut(i).filter(|s| &*s.url == url) {
                    slot.bytes = slot.bytes.saturating_add(bytes);
                    slot.requests += 1;
                    return;
                }
            }
        }
        if self.slots.len() < CAPACITY {
            self.hashes.push(hash);
            self.slots.push(Slot {
                url: url.into(),
                bytes,
                requests: 1,
            });
            return;
        }
        // Replace the smallest: the newcomer inherits its count.
        let smallest = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.bytes)
            .map(|(i, _)| i);
        if let (Some(i), Some(stored)) = (smallest, smallest.and_then(|i| self.hashes.get_mut(i))) {
            *stored = hash;
            if let Some(slot) = self.slots.get_mut(i) {
                slot.url = url.into();
                slot.bytes = slot.bytes.saturating_add(bytes);
                slot.requests += 1;
            }
        }
    }

    /// This shard's entries, added into `into` by URL.
    pub fn merge_into(&self, into: &mut HashMap<String, (u64, u64)>) {
        for slot in &self.slots {
            let entry = into.entry(slot.url.to_string()).or_default();
            entry.0 = entry.0.saturating_add(slot.bytes);
            entry.1 += slot.requests;
        }
    }
}

/// The `n` largest of a merged map, by bytes (then URL, for a stable order).
pub fn largest(merged: HashMap<String, (u64, u64)>, n: usize) -> Vec<TopUrl> {
    let mut all: Vec<TopUrl> = merged
        .into_iter()
        .map(|(url, (bytes, requests))| TopUrl {
            url,
            bytes,
            requests,
        })
        .collect();
    all.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.url.cmp(&b.url)));
    all.truncate(n);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_urls_survive_many_light_ones() {
        let mut top = TopK::default();
        for round in 0..100 {
            top.add("http://a/big?token=secret", 10_000);
            for i in 0..50 {
                top.add(&format!("http://a/small/{round}/{i}"), 10);
            }
        }
        let mut merged = HashMap::new();
        top.merge_into(&mut merged);
        let best = largest(merged, 3);
        assert_eq!(best[0].url, "http://a/big");
        assert_eq!(best[0].requests, 100);
        assert!(best[0].bytes >= 1_000_000);
        assert!(top.slots.len() <= CAPACITY);
    }

    #[test]
    fn strips_query_and_fragment() {
        assert_eq!(strip_query("http://a/b?c=d"), "http://a/b");
        assert_eq!(strip_query("http://a/b#x"), "http://a/b");
        assert_eq!(strip_query("http://a/b"), "http://a/b");
    }
}
