//! Store tests on real temporary directories and real cacache.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;

use super::*;
use crate::cache::meta::StoredFields;
use crate::cache::{Config, DiskConfig, MemoryConfig};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn head(url: &str) -> StoredHead {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    headers.insert("x-bytes", HeaderValue::from_bytes(b"\xfe\xff").unwrap());
    StoredHead {
        status: StatusCode::OK,
        headers: StoredFields::from_map(&headers),
        request_time: UNIX_EPOCH + Duration::new(1_700_000_000, 5),
        response_time: UNIX_EPOCH + Duration::new(1_700_000_002, 7),
        url: url.into(),
        body_len: 0,
        derived: Default::default(),
    }
}

fn config(dir: &Path, mem_object: u64, disk_size: u64, disk_object: u64) -> Config {
    Config {
        memory: MemoryConfig {
            max_size: 64 * MIB,
            max_object_size: mem_object,
        },
        disk: Some(DiskConfig {
            path: dir.to_path_buf(),
            max_size: disk_size,
            max_object_size: disk_object,
            load_gate: None,
        }),
        behaviour: crate::cache::Behaviour::default(),
    }
}

/// Opens a store and waits for its disk index (the tests of the load itself, in
/// `loading_tests`, use `Store::open`).
async fn open_loaded(config: &Config) -> std::io::Result<Store> {
    let store = Store::open(config).await?;
    store.disk_loaded().await;
    Ok(store)
}

/// Deterministic bytes that differ per `seed`.
fn payload(len: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) as u8) ^ seed.wrapping_mul(7))
        .collect()
}

async fn put_with(store: &Store, key: &str, body: &[u8], expected: Option<u64>) {
    let mut w = store.writer(key, head(key), expected).unwrap();
    for chunk in body.chunks(100_000) {
        w.write(&Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    w.commit().await.unwrap();
}

async fn put(store: &Store, key: &str, body: &[u8]) {
    put_with(store, key, body, Some(body.len() as u64)).await;
}

async fn read_body(body: HitBody) -> std::io::Result<Vec<u8>> {
    match body {
        HitBody::Memory(b) => Ok(b.to_vec()),
        HitBody::Disk(d) => Ok(d.collect().await?.to_bytes().to_vec()),
    }
}

/// A store whose memory tier takes objects up to 1 KiB, so larger ones are disk hits.
async fn disk_store(dir: &Path) -> Store {
    open_loaded(&config(dir, KIB, 16 * MIB, 4 * MIB))
        .await
        .unwrap()
}

/// The body served for `key`, which must be a hit that reads back whole.
async fn served(store: &Store, key: &str) -> Vec<u8> {
    read_body(store.lookup(key).await.unwrap().body)
        .await
        .unwrap()
}

/// Every content file cacache holds under `dir`.
fn content_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(p) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("content-v2"), &mut out);
    walk(&dir.join("tmp"), &mut out);
    out
}

/// Flips one byte in the middle of the only content file.
fn corrupt_content(dir: &Path) {
    let files = content_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&files[0], bytes).unwrap();
}

#[test]
fn handles_are_send_and_tiers_name_themselves() {
    fn send<T: Send + 'static>() {}
    send::<Store>();
    send::<Writer>();
    send::<Hit>();
    send::<DiskBody>();
    assert_eq!(Tier::Memory.as_str(), "memory");
    assert_eq!(Tier::Disk.as_str(), "disk");
}

#[tokio::test]
async fn memory_round_trip_shares_the_body() {
    let store = Store::memory_only(MIB, 64 * KIB);
    assert_eq!(store.disk_usage(), None);
    let body = payload(5000, 1);
    put(&store, "k", &body).await;
    let hit = store.lookup("k").await.unwrap();
    assert_eq!(hit.tier, Tier::Memory);
    assert_eq!(hit.head.body_len, 5000);
    assert_eq!(hit.head.headers, head("k").headers);
    let HitBody::Memory(first) = hit.body else {
        panic!("memory body expected");
    };
    let HitBody::Memory(second) = store.lookup("k").await.unwrap().body else {
        panic!("memory body expected");
    };
    assert_eq!(first, body);
    // Zero-copy: both hits point at the same bytes.
    assert_eq!(first.as_ptr(), second.as_ptr());
}

#[tokio::test]
async fn an_entry_keeps_one_copy_of_its_url() {
    let store = Store::memory_only(MIB, 64 * KIB);
    put(&store, "http://a/one", b"body").await;
    let hit = store.lookup("http://a/one").await.unwrap();
    // The memory tier's key, the index's URL and the head's URL are one string.
    assert_eq!(&*hit.head.url, "http://a/one");
    assert_eq!(std::sync::Arc::strong_count(&hit.head.url), 3);
    assert_eq!(store.index().keys_of_url("http://a/one"), ["http://a/one"]);
    // A key that is not the head's URL (a variant) shares nothing with it.
    let mut w = store
        .writer("http://a/one\nv=1", head("http://a/one"), Some(1))
        .unwrap();
    w.write(&Bytes::from_static(b"v")).await.unwrap();
    w.commit().await.unwrap();
    let variant = store.lookup("http://a/one\nv=1").await.unwrap();
    assert_eq!(std::sync::Arc::strong_count(&variant.head.url), 1);
    assert_eq!(store.index().keys_of_url("http://a/one").len(), 2);
    // Freshening replaces the head: the new one is registered under the same string.
    let fresh = hit
        .head
        .freshened(&http::HeaderMap::new(), UNIX_EPOCH, UNIX_EPOCH);
    drop(hit);
    assert!(store.update_head("http://a/one", fresh).await);
    store.remove("http://a/one").await;
    store.remove("http://a/one\nv=1").await;
    assert!(store.index().is_empty());
}

#[tokio::test]
async fn disk_round_trip_keeps_head_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), KIB, 16 * MIB, MIB))
        .await
        .unwrap();
    let body = payload(300 * KIB, 2);
    put(&store, "k", &body).await;
    let hit = store.lookup("k").await.unwrap();
    assert_eq!(hit.tier, Tier::Disk);
    assert!(matches!(hit.body, HitBody::Disk(_)));
    let mut expected = head("k");
    expected.body_len = body.len() as u64;
    assert_eq!(*hit.head, expected);
    assert_eq!(read_body(hit.body).await.unwrap(), body);
    assert!(store.disk_usage().unwrap() >= body.len() as u64);
}

#[tokio::test]
async fn nothing_is_visible_before_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), 64 * KIB, 16 * MIB, MIB))
        .await
        .unwrap();
    for (key, len) in [("small", 10 * KIB), ("large", 200 * KIB)] {
        let body = payload(len, 3);
        let mut w = store.writer(key, head(key), None).unwrap();
        for chunk in body.chunks(4096) {
            w.write(&Bytes::copy_from_slice(chunk)).await.unwrap();
            assert!(store.lookup(key).await.is_none());
        }
        assert!(store.lookup(key).await.is_none());
        w.commit().await.unwrap();
        let hit = store.lookup(key).await.unwrap();
        assert_eq!(hit.head.body_len, len);
        assert_eq!(read_body(hit.body).await.unwrap(), body);
    }
}

#[tokio::test]
async fn dropped_writer_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), 64 * KIB, 16 * MIB, MIB))
        .await
        .unwrap();
    let mut w = store.writer("k", head("k"), Some(100 * KIB)).unwrap();
    w.write(&Bytes::from(payload(50 * KIB, 4))).await.unwrap();
    drop(w);
    assert!(store.lookup("k").await.is_none());
    assert_eq!(store.disk_usage(), Some(0));
    assert_eq!(content_files(dir.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn wrong_length_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), 64 * KIB, 16 * MIB, MIB))
        .await
        .unwrap();
    // Shorter than announced: commit fails.
    let mut w = store.writer("short", head("short"), Some(100)).unwrap();
    w.write(&Bytes::from(payload(60, 5))).await.unwrap();
    assert!(w.commit().await.is_err());
    // Longer than announced: the write fails, and so does a later commit.
    let mut w = store.writer("long", head("long"), Some(100)).unwrap();
    w.write(&Bytes::from(payload(60, 5))).await.unwrap();
    assert!(w.write(&Bytes::from(payload(60, 5))).await.is_err());
    assert!(w.write(&Bytes::from_static(b"x")).await.is_err());
    assert!(w.commit().await.is_err());
    for key in ["short", "long"] {
        assert!(store.lookup(key).await.is_none());
    }
    assert_eq!(store.disk_usage(), Some(0));
    assert_eq!(content_files(dir.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn objects_too_large_for_every_tier_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), KIB, 16 * MIB, 64 * KIB))
        .await
        .unwrap();
    assert!(store.writer("k", head("k"), Some(64 * KIB + 1)).is_none());
    assert!(store.writer("k", head("k"), Some(64 * KIB)).is_some());
    let mem = Store::memory_only(MIB, KIB);
    assert!(mem.writer("k", head("k"), Some(KIB + 1)).is_none());
    // Unknown length: the write that crosses the last limit fails.
    let mut w = store.writer("k", head("k"), None).unwrap();
    w.write(&Bytes::from(payload(64 * KIB, 6))).await.unwrap();
    let err = w.write(&Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
    assert!(w.commit().await.is_err());
    assert!(store.lookup("k").await.is_none());
    assert_eq!(content_files(dir.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn too_large_for_memory_goes_to_disk_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), 8 * KIB, 16 * MIB, MIB))
        .await
        .unwrap();
    // Above the verify-before-serving size, so both stream from disk.
    let known = payload(300 * KIB, 7);
    let unknown = payload(300 * KIB, 8);
    put(&store, "known", &known).await;
    // Without a length, memory accumulates until 8 KiB is passed, then lets go.
    put_with(&store, "unknown", &unknown, None).await;
    assert!(store.memory_usage().await < 8 * KIB);
    for (key, body) in [("known", &known), ("unknown", &unknown)] {
        for _ in 0..2 {
            let hit = store.lookup(key).await.unwrap();
            assert_eq!(hit.tier, Tier::Disk);
            assert!(matches!(hit.body, HitBody::Disk(_)));
            assert_eq!(&read_body(hit.body).await.unwrap(), body);
        }
    }
}

#[tokio::test]
async fn small_disk_hits_are_promoted_to_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), 64 * KIB, 16 * MIB, MIB))
        .await
        .unwrap();
    let body = payload(10 * KIB, 9);
    put(&store, "k", &body).await;
    assert_eq!(store.lookup("k").await.unwrap().tier, Tier::Memory);
    store.inner.memory.remove("k").await;
    let hit = store.lookup("k").await.unwrap();
    assert_eq!(hit.tier, Tier::Disk);
    // Read whole and checked before returning, so it is served as shared bytes.
    let HitBody::Memory(bytes) = hit.body else {
        panic!("small disk hits are read whole");
    };
    assert_eq!(bytes, body);
    let hit = store.lookup("k").await.unwrap();
    assert_eq!(hit.tier, Tier::Memory);
    assert_eq!(&*hit.head.url, "k");
}

#[tokio::test]
async fn entries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 * KIB, 16 * MIB, MIB);
    let small = payload(3 * KIB, 10);
    let large = payload(500 * KIB, 11);
    let usage = {
        let store = open_loaded(&cfg).await.unwrap();
        put(&store, "small", &small).await;
        put(&store, "large", &large).await;
        put(&store, "empty", b"").await;
        store.disk_usage().unwrap()
    };
    let store = open_loaded(&cfg).await.unwrap();
    assert_eq!(store.disk_usage(), Some(usage));
    for (key, body) in [("small", &small[..]), ("large", &large[..]), ("empty", b"")] {
        let hit = store.lookup(key).await.unwrap();
        assert_eq!(hit.tier, Tier::Disk);
        let mut expected = head(key);
        expected.body_len = body.len() as u64;
        assert_eq!(*hit.head, expected, "{key}: times and fields intact");
        assert_eq!(read_body(hit.body).await.unwrap(), body);
    }
    assert_eq!(store.lookup("small").await.unwrap().tier, Tier::Memory);
}

#[tokio::test]
async fn corrupt_small_entry_is_a_miss_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64 * KIB, 16 * MIB, MIB);
    {
        let store = open_loaded(&cfg).await.unwrap();
        put(&store, "k", &payload(20 * KIB, 12)).await;
    }
    corrupt_content(dir.path());
    let store = open_loaded(&cfg).await.unwrap();
    assert!(store.lookup("k").await.is_none());
    assert_eq!(store.disk_usage(), Some(0));
    assert_eq!(content_files(dir.path()), Vec::<PathBuf>::new());
    drop(store);
    let store = open_loaded(&cfg).await.unwrap();
    assert!(store.lookup("k").await.is_none());
}

#[tokio::test]
async fn corrupt_large_entry_fails_the_stream_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = disk_store(dir.path()).await;
    put(&store, "k", &payload(MIB, 13)).await;
    corrupt_content(dir.path());
    let hit = store.lookup("k").await.unwrap();
    let HitBody::Disk(mut body) = hit.body else {
        panic!("large hits stream");
    };
    let mut delivered = 0u64;
    let err = loop {
        match body.frame().await {
            Some(Ok(frame)) => delivered += frame.into_data().unwrap().len() as u64,
            Some(Err(e)) => break e,
            None => panic!("a corrupt body must not end cleanly"),
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(delivered < MIB, "the last chunk is held back until checked");
    assert!(body.frame().await.is_none());
    assert!(store.lookup("k").await.is_none());
    assert_eq!(store.disk_usage(), Some(0));
    assert_eq!(content_files(dir.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn disk_stays_within_max_size_and_keeps_recent_entries() {
    let dir = tempfile::tempdir().unwrap();
    let max = 512 * KIB;
    let cfg = config(dir.path(), KIB, max, 64 * KIB);
    let store = open_loaded(&cfg).await.unwrap();
    put(&store, "hot", &payload(64 * KIB, 0)).await;
    // 24 × 64 KiB = 3 × max_size, touching "hot" after each write.
    for i in 0..24u8 {
        put(&store, &format!("k{i}"), &payload(64 * KIB, i + 1)).await;
        assert!(store.disk_usage().unwrap() <= max);
        assert!(store.lookup("hot").await.is_some());
    }
    let on_disk: u64 = content_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= max, "{on_disk} bytes of content on disk");
    assert!(store.lookup("k0").await.is_none());
    for key in ["hot", "k23", "k22"] {
        assert!(store.lookup(key).await.is_some(), "{key} evicted");
    }
    drop(store);
    // Evictions reached cacache's index too: a restart finds the same set.
    let store = open_loaded(&cfg).await.unwrap();
    assert!(store.lookup("k0").await.is_none());
    assert!(store.lookup("k23").await.is_some());
    assert!(store.disk_usage().unwrap() <= max);
}

#[tokio::test]
async fn open_trims_to_a_smaller_max_size() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_loaded(&config(dir.path(), KIB, 4 * MIB, MIB))
            .await
            .unwrap();
        for i in 0..8u8 {
            put(&store, &format!("k{i}"), &payload(100 * KIB, i)).await;
        }
    }
    let store = open_loaded(&config(dir.path(), KIB, 300 * KIB, MIB))
        .await
        .unwrap();
    assert!(store.disk_usage().unwrap() <= 300 * KIB);
    // Use order after a restart is write order, at cacache's millisecond resolution, so
    // which two survive is not pinned here; that only two do is.
    let mut survivors = 0;
    for i in 0..8u8 {
        if let Some(hit) = store.lookup(&format!("k{i}")).await {
            assert_eq!(read_body(hit.body).await.unwrap(), payload(100 * KIB, i));
            survivors += 1;
        }
    }
    assert_eq!(survivors, 2);
    assert_eq!(content_files(dir.path()).len(), 2);
}

#[tokio::test]
async fn remove_prefix_removes_every_variant_in_both_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), 8 * KIB, 16 * MIB, MIB))
        .await
        .unwrap();
    let keys = ["http://a/\nx=1", "http://a/\nx=2", "http://b/\nx=1"];
    put(&store, keys[0], &payload(KIB, 1)).await; // memory and disk
    put(&store, keys[1], &payload(100 * KIB, 2)).await; // disk only
    put(&store, keys[2], &payload(KIB, 3)).await;
    assert_eq!(store.remove_prefix("http://a/\n").await, 2);
    assert!(store.lookup(keys[0]).await.is_none());
    assert!(store.lookup(keys[1]).await.is_none());
    assert!(store.lookup(keys[2]).await.is_some());
    assert_eq!(store.remove_prefix("http://a/\n").await, 0);
    assert_eq!(content_files(dir.path()).len(), 1);
    store.remove(keys[2]).await;
    assert!(store.lookup(keys[2]).await.is_none());
    assert_eq!(store.disk_usage(), Some(0));
}

#[tokio::test]
async fn update_head_keeps_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 8 * KIB, 16 * MIB, MIB);
    let small = payload(KIB, 1);
    let large = payload(100 * KIB, 2);
    let mut fresh = head("new");
    let mut fields = fresh.headers.to_map();
    fields.insert("etag", HeaderValue::from_static("\"v2\""));
    fresh.headers = StoredFields::from_map(&fields);
    fresh.response_time = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    {
        let store = open_loaded(&cfg).await.unwrap();
        put(&store, "small", &small).await;
        put(&store, "large", &large).await;
        assert!(!store.update_head("missing", fresh.clone()).await);
        for key in ["small", "large"] {
            // body_len in the new head is ignored: the stored body's length is kept.
            assert!(store.update_head(key, fresh.clone()).await);
            let hit = store.lookup(key).await.unwrap();
            assert_eq!(hit.head.headers.get(&http::header::ETAG).unwrap(), "\"v2\"");
            assert_eq!(hit.head.response_time, fresh.response_time);
        }
        let hit = store.lookup("small").await.unwrap();
        assert_eq!(hit.tier, Tier::Memory);
        assert_eq!(hit.head.body_len, KIB);
        assert_eq!(read_body(hit.body).await.unwrap(), small);
    }
    // The new head was written to disk, pointing at the same content.
    let store = open_loaded(&cfg).await.unwrap();
    assert_eq!(content_files(dir.path()).len(), 2);
    for (key, body) in [("small", &small), ("large", &large)] {
        let hit = store.lookup(key).await.unwrap();
        assert_eq!(&*hit.head.url, "new");
        assert_eq!(hit.head.body_len, body.len() as u64);
        assert_eq!(&read_body(hit.body).await.unwrap(), body);
    }
}

#[tokio::test]
async fn replacing_and_sharing_content_keeps_files_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), KIB, 16 * MIB, MIB))
        .await
        .unwrap();
    let body = payload(50 * KIB, 1);
    put(&store, "a", &payload(50 * KIB, 2)).await;
    put(&store, "a", &body).await; // replaces: the old content goes
    put(&store, "b", &body).await; // same bytes: one content file
    assert_eq!(content_files(dir.path()).len(), 1);
    store.remove("a").await;
    assert_eq!(served(&store, "b").await, body);
    store.remove("b").await;
    assert_eq!(content_files(dir.path()).len(), 0);
    assert_eq!(store.disk_usage(), Some(0));
}

#[tokio::test]
async fn unreadable_heads_are_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    cacache::WriteOpts::new()
        .metadata(serde_json::json!({"v": 99}))
        .open(dir.path(), "future")
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    let store = open_loaded(&config(dir.path(), KIB, MIB, MIB))
        .await
        .unwrap();
    assert!(store.lookup("future").await.is_none());
    assert_eq!(store.disk_usage(), Some(0));
    let found = cacache::index::find(dir.path(), "future").unwrap();
    assert!(found.is_none());
}

#[tokio::test]
async fn memory_tier_stays_within_its_weight() {
    let store = Store::memory_only(100 * KIB, 10 * KIB);
    for i in 0..40u8 {
        put(&store, &format!("k{i}"), &payload(9 * KIB, i)).await;
    }
    let used = store.memory_usage().await;
    assert!(used <= 100 * KIB && used > 0, "{used}");
}

#[tokio::test]
async fn large_entry_streams_back_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), MIB, 64 * MIB, 16 * MIB))
        .await
        .unwrap();
    let body = payload(8 * MIB, 14);
    put(&store, "big", &body).await;
    assert!(store.memory_usage().await < MIB);
    let hit = store.lookup("big").await.unwrap();
    let HitBody::Disk(mut stream) = hit.body else {
        panic!("8 MiB must stream from disk");
    };
    assert_eq!(stream.size_hint().exact(), Some(8 * MIB));
    let mut got = Vec::with_capacity(body.len());
    let mut chunks = 0;
    while let Some(frame) = stream.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        assert!(!data.is_empty() && data.len() <= file::CHUNK);
        got.extend_from_slice(&data);
        chunks += 1;
    }
    assert!(stream.is_end_stream());
    // Bounded memory: never more than a chunk at a time.
    assert!(chunks >= body.len() / file::CHUNK, "{chunks} chunks");
    assert!(got == body);
}

/// The only content file, rewritten by `edit` with its mtime then set to `mtime(old)`.
fn rewrite_content(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<u8>),
    mtime: impl FnOnce(SystemTime) -> SystemTime,
) {
    let files = content_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let before = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    edit(&mut bytes);
    std::fs::write(&files[0], bytes).unwrap();
    let file = std::fs::File::options()
        .write(true)
        .open(&files[0])
        .unwrap();
    file.set_modified(mtime(before)).unwrap();
}

fn flip_middle(bytes: &mut [u8]) {
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
}

#[tokio::test]
async fn content_path_is_where_cacache_keeps_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_loaded(&config(dir.path(), KIB, 16 * MIB, MIB))
        .await
        .unwrap();
    put(&store, "k", &payload(10 * KIB, 1)).await;
    let sri = cacache::index::find(dir.path(), "k")
        .unwrap()
        .unwrap()
        .integrity;
    let path = file::content_path(dir.path(), &sri).unwrap();
    assert_eq!(content_files(dir.path()), [path]);
    // Integrity read back from a damaged index line must not panic (cacache's own
    // `to_hex` would).
    for bad in ["sha256-%%%", "sha256-", "sha256-AAA="] {
        let sri: cacache::Integrity = bad.parse().unwrap();
        assert_eq!(file::content_path(dir.path(), &sri), None, "{bad}");
    }
    assert_eq!(
        file::content_path(dir.path(), &cacache::Integrity { hashes: vec![] }),
        None
    );
}

/// A content is checked against its hash on its first read, then trusted while its file
/// keeps its size and mtime (as nginx and Squid trust their cache files); a file changed
/// since is checked again, and damage found then is a miss as before.
#[tokio::test]
async fn checked_content_is_trusted_until_its_file_changes() {
    for len in [20 * KIB, MIB] {
        let dir = tempfile::tempdir().unwrap();
        let store = disk_store(dir.path()).await;
        let body = payload(len, 15);
        put(&store, "k", &body).await;
        // First read: checked (whole, or as the stream ends); then trusted while unchanged.
        assert_eq!(served(&store, "k").await, body);
        assert_eq!(served(&store, "k").await, body);
        // Bytes changed under an unchanged size and mtime: the write set ctime, so the file is
        // checked again and the damage is a miss (issue 11).
        rewrite_content(dir.path(), |b| flip_middle(b), |t| t);
        match store.lookup("k").await {
            None => {}
            Some(hit) => assert!(read_body(hit.body).await.is_err(), "{len}"),
        }
        assert!(store.lookup("k").await.is_none(), "{len}: removed");
        assert_eq!(content_files(dir.path()), Vec::<PathBuf>::new());
    }
}

#[tokio::test]
async fn a_file_of_the_wrong_size_is_a_miss_even_when_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = disk_store(dir.path()).await;
    let body = payload(MIB, 16);
    put(&store, "k", &body).await;
    assert_eq!(served(&store, "k").await, body);
    rewrite_content(dir.path(), |b| b.truncate(b.len() - 1), |t| t);
    assert!(store.lookup("k").await.is_none());
    assert_eq!(store.disk_usage(), Some(0));
}

#[tokio::test]
async fn a_restart_checks_every_content_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), KIB, 16 * MIB, MIB);
    {
        let store = open_loaded(&cfg).await.unwrap();
        put(&store, "k", &payload(20 * KIB, 17)).await;
        assert!(store.lookup("k").await.is_some());
    }
    rewrite_content(dir.path(), |b| flip_middle(b), |t| t);
    let store = open_loaded(&cfg).await.unwrap();
    assert!(store.lookup("k").await.is_none());
    assert_eq!(content_files(dir.path()), Vec::<PathBuf>::new());
}

/// Files read moments ago are read on the polling thread, others on the blocking pool;
/// both serve the same bytes, whole or streamed.
#[tokio::test(start_paused = true)]
async fn hot_and_cold_reads_serve_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = disk_store(dir.path()).await;
    let small = payload(100 * KIB, 18);
    let large = payload(3 * MIB / 2, 19);
    put(&store, "small", &small).await;
    put(&store, "large", &large).await;
    // First read (checks), hot read, then a read after the hot window.
    for pause in [0, 0, 11] {
        tokio::time::advance(Duration::from_secs(pause)).await;
        for (key, body) in [("small", &small), ("large", &large)] {
            let hit = store.lookup(key).await.unwrap();
            assert_eq!(hit.tier, Tier::Disk);
            assert_eq!(
                &read_body(hit.body).await.unwrap(),
                body,
                "{key} after {pause} s"
            );
        }
    }
}

#[test]
fn only_a_missing_or_mismatched_file_is_damage() {
    use std::io::{Error, ErrorKind};
    for kind in [
        ErrorKind::NotFound,
        ErrorKind::InvalidData,
        ErrorKind::UnexpectedEof,
    ] {
        assert!(failure::is_damage(&Error::from(kind)), "{kind:?}");
    }
    // Anything else (a cancelled blocking task, a refused open): a miss; the entry stays.
    assert!(!failure::is_damage(&Error::other("task cancelled")));
    assert!(!failure::is_damage(&Error::from(
        ErrorKind::PermissionDenied
    )));
}

/// The next `n` content writes fail as on a full file system.
fn inject_disk_full(store: &Store, n: usize) {
    let disk = store.inner.disk.as_ref().unwrap();
    let mut faults = disk.faults.lock().unwrap();
    for _ in 0..n {
        faults.push_back(std::io::Error::from(std::io::ErrorKind::StorageFull));
    }
}

/// Files in cacache's temporary directory (partial writes).
fn partial_files(dir: &Path) -> Vec<PathBuf> {
    content_files(&dir.join("tmp"))
}

/// A store whose memory tier takes objects up to 64 KiB, holding five 400 KiB disk entries
/// `old0`..`old4` (oldest first).
async fn full_store(dir: &Path) -> Store {
    let store = open_loaded(&config(dir, 64 * KIB, 64 * MIB, 4 * MIB))
        .await
        .unwrap();
    for i in 0..5u8 {
        put(&store, &format!("old{i}"), &payload(400 * KIB, i)).await;
    }
    store
}

#[tokio::test]
async fn a_full_disk_evicts_room_and_the_retry_stores_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = full_store(dir.path()).await;
    let body = payload(20 * KIB, 40);
    inject_disk_full(&store, 1);
    put(&store, "new", &body).await;
    assert_eq!(store.disk_full_events(), Some(1));
    // At least 1 MiB of the least recently used entries went; the newest stayed.
    for gone in ["old0", "old1", "old2"] {
        assert!(store.lookup(gone).await.is_none(), "{gone}");
    }
    assert_eq!(served(&store, "old4").await, payload(400 * KIB, 4));
    // The retried copy is whole on disk (the memory copy removed to read it from there).
    store.inner.memory.remove("new").await;
    let hit = store.lookup("new").await.unwrap();
    assert_eq!(hit.tier, Tier::Disk);
    assert_eq!(read_body(hit.body).await.unwrap(), body);
    assert_eq!(partial_files(dir.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn a_disk_still_full_after_the_retry_stores_no_disk_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = full_store(dir.path()).await;
    let files_before = content_files(dir.path()).len();
    inject_disk_full(&store, 2);
    put(&store, "new", &payload(20 * KIB, 41)).await;
    assert_eq!(store.disk_full_events(), Some(1), "one eviction per object");
    // Memory still took it; the disk holds no copy, whole or partial.
    assert_eq!(served(&store, "new").await, payload(20 * KIB, 41));
    store.inner.memory.remove("new").await;
    assert!(store.lookup("new").await.is_none());
    assert!(
        content_files(dir.path()).len() < files_before,
        "room was made"
    );
    assert_eq!(partial_files(dir.path()), Vec::<PathBuf>::new());
}

/// The next index line written with its content (a new key's, see `Disk::commit_whole`)
/// fails with `kind`.
fn inject_index_fault(store: &Store, kind: std::io::ErrorKind) {
    let disk = store.inner.disk.as_ref().unwrap();
    disk.index_faults
        .lock()
        .unwrap()
        .push_back(std::io::Error::from(kind));
}

#[tokio::test]
async fn a_full_disk_at_the_index_line_evicts_room_and_records_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = full_store(dir.path()).await;
    let body = payload(20 * KIB, 43);
    inject_index_fault(&store, std::io::ErrorKind::StorageFull);
    put(&store, "new", &body).await;
    assert_eq!(store.disk_full_events(), Some(1));
    assert!(store.lookup("old0").await.is_none(), "room was made");
    // The content written before the line failed is what the line, written again, names.
    store.inner.memory.remove("new").await;
    let hit = store.lookup("new").await.unwrap();
    assert_eq!(hit.tier, Tier::Disk);
    assert_eq!(read_body(hit.body).await.unwrap(), body);
    // And it is in the index on disk: a store opened on the directory again finds it.
    drop(store);
    let reopened = open_loaded(&config(dir.path(), 64 * KIB, 64 * MIB, 4 * MIB))
        .await
        .unwrap();
    assert_eq!(served(&reopened, "new").await, body);
}

#[tokio::test]
async fn an_index_line_that_cannot_be_written_leaves_no_content_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = full_store(dir.path()).await;
    let content = |dir: &Path| content_files(&dir.join("content-v2")).len();
    let before = content(dir.path());
    inject_index_fault(&store, std::io::ErrorKind::PermissionDenied);
    put(&store, "new", &payload(20 * KIB, 44)).await;
    assert_eq!(store.disk_full_events(), Some(0), "no room was made for it");
    // Memory took it; the disk holds neither the key nor its content.
    assert_eq!(served(&store, "new").await, payload(20 * KIB, 44));
    store.inner.memory.remove("new").await;
    assert!(store.lookup("new").await.is_none());
    assert_eq!(content(dir.path()), before, "the content file was removed");
    // The next object is stored as usual.
    put(&store, "next", &payload(20 * KIB, 45)).await;
    store.inner.memory.remove("next").await;
    assert_eq!(served(&store, "next").await, payload(20 * KIB, 45));
}

#[tokio::test]
async fn a_full_disk_in_the_middle_of_a_large_body_never_leaves_a_partial_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = full_store(dir.path()).await;
    let body = payload(400 * KIB, 42);
    let mut w = store
        .writer("big", head("big"), Some(body.len() as u64))
        .unwrap();
    let mut chunks = body.chunks(100_000);
    w.write(&Bytes::copy_from_slice(chunks.next().unwrap()))
        .await
        .unwrap();
    // Too large for memory: the first chunks are gone, so there is nothing to retry from.
    inject_disk_full(&store, 1);
    let failed = w
        .write(&Bytes::copy_from_slice(chunks.next().unwrap()))
        .await;
    assert!(failed.is_err(), "the store is abandoned");
    assert!(w.commit().await.is_err());
    assert_eq!(store.disk_full_events(), Some(1));
    assert!(store.lookup("old0").await.is_none(), "room was made");
    assert!(store.lookup("big").await.is_none());
    assert_eq!(partial_files(dir.path()), Vec::<PathBuf>::new());
}

/// Issue 12: an invalidation landing between a fill's validity check and its commit used to
/// let the old body become visible. Here the commit is paused right after its check (an
/// explicit hook, on a paused clock: no sleeps): the invalidation must wait for it and then
/// remove what it committed, so the old body is never left visible.
#[tokio::test(start_paused = true)]
async fn an_invalidation_during_a_commit_never_leaves_the_old_body_visible() {
    let store = Store::memory_only(MIB, 64 * KIB);
    let key = "http://a.test/page";
    let epoch = store.epoch(key);
    let mut writer = store.writer(key, head(key), Some(3)).unwrap();
    writer.write(&Bytes::from_static(b"old")).await.unwrap();
    let (reached_tx, reached) = tokio::sync::oneshot::channel();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    writer.pause_before_commit = Some(Box::pin(async move {
        let _ = reached_tx.send(());
        let _ = go_rx.await;
    }));
    let commit = tokio::spawn(writer.commit_unless_invalidated(epoch));
    reached.await.unwrap();
    // The commit has passed its check and is not visible yet; now the URL changes.
    let invalidator = store.clone();
    let mut invalidation = tokio::spawn(async move {
        let _gate = invalidator.invalidating(key).await;
        invalidator.remove(key).await
    });
    // The paused clock only moves once every task is idle: the invalidation is waiting for
    // the commit under way, not racing it.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), &mut invalidation)
            .await
            .is_err(),
        "the invalidation finished while a commit of its URL was between check and write"
    );
    go.send(()).unwrap();
    commit.await.unwrap().unwrap();
    assert!(invalidation.await.unwrap(), "it removed what was committed");
    assert!(store.lookup(key).await.is_none(), "the old body is visible");
    // A fill that began before the invalidation is refused outright.
    let mut late = store.writer(key, head(key), Some(3)).unwrap();
    late.write(&Bytes::from_static(b"old")).await.unwrap();
    assert!(late
        .commit_unless_invalidated(store.epoch(key))
        .await
        .is_ok());
    let stale_epoch = {
        let epoch = store.epoch(key);
        let _gate = store.invalidating(key).await;
        epoch
    };
    let mut refused = store.writer(key, head(key), Some(3)).unwrap();
    refused.write(&Bytes::from_static(b"new")).await.unwrap();
    assert!(refused
        .commit_unless_invalidated(stale_epoch)
        .await
        .is_err());
    let hit = store.lookup(key).await.unwrap();
    match hit.body {
        HitBody::Memory(bytes) => assert_eq!(&bytes[..], b"old"),
        HitBody::Disk(_) => panic!("memory-only store"),
    }
}

mod load;
