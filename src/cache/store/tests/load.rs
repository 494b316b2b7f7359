//! The disk index's background load and the bounded on-disk index, on real directories.

use std::sync::{Arc, Mutex};

use super::*;

/// Waits for the load, at most 20 s.
async fn loaded(store: &Store) {
    tokio::time::timeout(Duration::from_secs(20), store.disk_loaded())
        .await
        .expect("disk index loaded within 20 s");
}

/// `config` with a load gate.
fn gated(dir: &Path, gate: &LoadGate) -> Config {
    let mut cfg = config(dir, KIB, 16 * MIB, MIB);
    if let Some(disk) = cfg.disk.as_mut() {
        disk.load_gate = Some(gate.clone());
    }
    cfg
}

#[tokio::test]
async fn stores_and_purges_made_while_loading_survive_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), KIB, 16 * MIB, MIB);
    let old = payload(8 * KIB, 1);
    {
        let store = open_loaded(&cfg).await.unwrap();
        for key in ["replaced", "removed", "kept", "http://u/", "http://u/\nv"] {
            put(&store, key, &old).await;
        }
        put(&store, "alone", &payload(9 * KIB, 2)).await;
    }
    let gate = LoadGate::closed();
    let store = Store::open(&gated(dir.path(), &gate)).await.unwrap();
    let progress = store.disk_load().unwrap();
    assert!(!progress.ready && progress.loaded == 0, "{progress:?}");
    // While the gate holds the load, stored entries are misses...
    assert!(store.lookup("kept").await.is_none());
    // ...a store replaces one, a removal and an invalidation remove others.
    let new = payload(8 * KIB, 3);
    put(&store, "replaced", &new).await;
    assert_eq!(served(&store, "replaced").await, new);
    assert!(store.remove("removed").await, "the entry was on disk");
    assert!(!store.remove("never-stored").await);
    store.drop_unloaded("http://u/").await;
    assert!(!store.disk_load().unwrap().ready);

    gate.open();
    loaded(&store).await;
    let progress = store.disk_load().unwrap();
    assert!(progress.ready && progress.took.is_some(), "{progress:?}");
    assert_eq!(progress.loaded, 2, "kept and alone");
    assert_eq!(
        served(&store, "replaced").await,
        new,
        "the loader did not undo the store"
    );
    assert_eq!(served(&store, "kept").await, old);
    for gone in ["removed", "http://u/", "http://u/\nv"] {
        assert!(store.lookup(gone).await.is_none(), "{gone} came back");
    }
    // The tag and URL index lists loaded entries as older than anything since start, and
    // keeps the newer registration of the replaced one.
    assert_eq!(store.index().seq_of("kept"), 0);
    assert!(store.index().seq_of("replaced") > 0);
    assert_eq!(store.index().keys_of_url("alone"), ["alone"]);
    // Accounting is that of the entries kept; `old` is still named by "kept", so two
    // contents are left (old, new) plus "alone"'s.
    let usage = store.disk_usage().unwrap();
    assert_eq!(content_files(dir.path()).len(), 3);
    drop(store);

    // A restart sees the same entries and the same accounting.
    let store = open_loaded(&cfg).await.unwrap();
    assert_eq!(store.disk_usage(), Some(usage));
    assert_eq!(served(&store, "replaced").await, new);
    for gone in ["removed", "http://u/", "http://u/\nv"] {
        assert!(
            store.lookup(gone).await.is_none(),
            "{gone} came back after a restart"
        );
    }
}

#[tokio::test]
async fn content_left_without_a_key_by_a_store_while_loading_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), KIB, 16 * MIB, MIB);
    {
        let store = open_loaded(&cfg).await.unwrap();
        put(&store, "k", &payload(8 * KIB, 1)).await;
    }
    let gate = LoadGate::closed();
    let store = Store::open(&gated(dir.path(), &gate)).await.unwrap();
    put(&store, "k", &payload(8 * KIB, 2)).await;
    assert_eq!(content_files(dir.path()).len(), 2);
    gate.open();
    loaded(&store).await;
    assert_eq!(content_files(dir.path()).len(), 1, "the old body went");
    assert_eq!(served(&store, "k").await, payload(8 * KIB, 2));
}

/// Captures formatted log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_end_of_the_load_is_logged_with_the_entry_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), KIB, 16 * MIB, MIB);
    {
        let store = open_loaded(&cfg).await.unwrap();
        for i in 0..3u8 {
            put(&store, &format!("k{i}"), &payload(2 * KIB, i)).await;
        }
    }
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The loader runs on this thread (a current-thread runtime), where this default applies.
    let _default = tracing::subscriber::set_default(subscriber);
    let store = Store::open(&cfg).await.unwrap();
    loaded(&store).await;
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("disk cache index ready"))
        .unwrap_or_else(|| panic!("no ready line in {text:?}"));
    assert!(line.contains("entries=3"), "{line}");
    assert!(line.contains("took_ms="), "{line}");
}

/// A head whose `Date` is `n` seconds in, so that every freshen writes a new head.
fn head_at(url: &str, n: u64, len: u64) -> StoredHead {
    let mut head = head(url);
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + n));
    let mut headers = head.headers.to_map();
    headers.insert("date", HeaderValue::from_str(&date).unwrap());
    head.headers = StoredFields::from_map(&headers);
    head.body_len = len;
    head
}

#[tokio::test]
async fn freshens_and_removals_do_not_grow_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), KIB, 16 * MIB, MIB);
    let store = open_loaded(&cfg).await.unwrap();
    let body = payload(2 * KIB, 1);
    for i in 0..20 {
        put(&store, &format!("k{i}"), &body).await;
    }
    let stored = store.disk_index_bytes().unwrap();
    for round in 1..=50 {
        for i in 0..20 {
            let key = format!("k{i}");
            assert!(store.update_head(&key, head_at(&key, round, 0)).await);
        }
    }
    let freshened = store.disk_index_bytes().unwrap();
    assert!(
        freshened <= stored * 3 / 2,
        "1000 freshens of 20 keys: {stored} -> {freshened} bytes"
    );
    // Storing again over a key rewrites its line too.
    for i in 0..20 {
        put(&store, &format!("k{i}"), &payload(2 * KIB, 2)).await;
    }
    assert!(store.disk_index_bytes().unwrap() <= stored * 3 / 2);
    // Removing keys that share their content leaves no tombstones behind.
    for i in 0..20 {
        assert!(store.remove(&format!("k{i}")).await);
    }
    assert_eq!(store.disk_index_bytes(), Some(0));
    drop(store);
    let store = open_loaded(&cfg).await.unwrap();
    assert_eq!(store.disk_usage(), Some(0));
}

#[tokio::test]
async fn a_bloated_index_from_before_is_compacted_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), KIB, 16 * MIB, MIB);
    {
        let store = open_loaded(&cfg).await.unwrap();
        put(&store, "k", &payload(2 * KIB, 1)).await;
        put(&store, "gone", &payload(2 * KIB, 2)).await;
    }
    let one_key = bucket::index_bytes(dir.path()) / 2;
    // What versions before this left: a line per freshen, and tombstones.
    let found = cacache::index::find(dir.path(), "k").unwrap().unwrap();
    for _ in 0..100 {
        let opts = cacache::WriteOpts::new()
            .integrity(found.integrity.clone())
            .size(found.size)
            .metadata(found.metadata.clone());
        cacache::index::insert(dir.path(), "k", opts).unwrap();
    }
    cacache::index::delete(dir.path(), "gone").unwrap();
    assert!(bucket::index_bytes(dir.path()) > 50 * one_key);
    let store = open_loaded(&cfg).await.unwrap();
    assert_eq!(served(&store, "k").await, payload(2 * KIB, 1));
    assert!(store.lookup("gone").await.is_none());
    let after = bucket::index_bytes(dir.path());
    assert!(
        after <= one_key + one_key / 4,
        "{after} bytes left, one key is {one_key}"
    );
    drop(store);
    let store = open_loaded(&cfg).await.unwrap();
    assert_eq!(served(&store, "k").await, payload(2 * KIB, 1));
}
