//! cacache's index buckets, read and rewritten whole, so the index holds live entries only.
//!
//! cacache (13.x, index version 5) keeps `key → integrity + metadata` as lines appended to
//! bucket files, `index-v5/ab/cd/<rest of the sha1 of the key in hex>`, each line
//! `\n<sha256 of the JSON in hex>\t<JSON>`; the last line of a key wins, a line without
//! integrity is a tombstone. The Rust crate has no call that shrinks a bucket: `index::insert`
//! appends, `remove` appends a tombstone, and `RemoveOpts::remove_fully` deletes the file with
//! every key in it (its maintainer suggests `ls` + `remove_fully` + `insert` to trim history,
//! zkat/cacache-rs#71, which loses the key if the process dies in between; the JS cacache has
//! `index.compact`, which this follows). So a freshen would add a line per 304 for as long as
//! the key lives.
//!
//! Here a change to an existing key rewrites its bucket: the latest live line of every other
//! key in it, plus the new line (or none, for a removal), written to a new file under the
//! cache's `tmp/` (emptied at every start) and renamed over the bucket. A crash leaves the old
//! bucket or the new one, never a mix; a reader (cacache's or ours) sees one of the two. The
//! rename is atomic but not synced, like cacache's own appends. Changes to one directory are
//! serialised by the disk tier, so two rewrites of one bucket never race.
//!
//! The start-up listing reads the buckets with the same parser, so it knows which buckets
//! hold dead lines (from versions before this, or a crash) and compacts those. A unit test
//! checks the format against cacache's own reader, so an upgrade that changes it fails there.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha1::Digest as _;

/// The index directory of cacache 13.
const INDEX_DIR: &str = "index-v5";

/// One decoded index line.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(super) struct Line {
    pub key: String,
    /// `None`: a tombstone.
    pub integrity: Option<String>,
    /// Unix milliseconds of the write.
    pub time: u64,
    pub size: u64,
    pub metadata: Value,
}

/// The live content of one bucket file.
#[derive(Debug, Default)]
pub(super) struct Bucket {
    /// The latest line of each key whose latest line is not a tombstone, in first-seen order.
    pub live: Vec<Line>,
    /// Lines in the file (valid or not): more than `live.len()` means dead lines.
    pub lines: usize,
}

impl Bucket {
    /// True when rewriting the file would drop lines.
    pub fn has_garbage(&self) -> bool {
        self.lines > self.live.len()
    }
}

/// The bucket file of `key` under the cache directory `dir` (cacache's `bucket_path`).
pub(super) fn path(dir: &Path, key: &str) -> PathBuf {
    let hashed = hex(&sha1::Sha1::digest(key.as_bytes()));
    let (a, rest) = hashed.split_at(2);
    let (b, rest) = rest.split_at(2);
    dir.join(INDEX_DIR).join(a).join(b).join(rest)
}

/// Decodes a bucket file's bytes; lines that fail their hash or do not parse are dropped.
pub(super) fn parse(bytes: &[u8]) -> Bucket {
    let mut bucket = Bucket::default();
    for raw in bytes.split(|&b| b == b'\n') {
        if raw.is_empty() {
            continue;
        }
        bucket.lines += 1;
        let Some(tab) = raw.iter().position(|&b| b == b'\t') else {
            continue;
        };
        let (hash, json) = (&raw[..tab], &raw[tab + 1..]);
        if hex(&sha2::Sha256::digest(json)).as_bytes() != hash {
            continue;
        }
        let Ok(line) = serde_json::from_slice::<Line>(json) else {
            continue;
        };
        match bucket.live.iter().position(|l| l.key == line.key) {
            Some(i) if line.integrity.is_none() => {
                bucket.live.remove(i);
            }
            Some(i) => bucket.live[i] = line,
            None if line.integrity.is_none() => {}
            None => bucket.live.push(line),
        }
    }
    bucket
}

/// Reads the bucket file at `file`; a missing file is an empty bucket.
pub(super) fn read(file: &Path) -> io::Result<Bucket> {
    match fs::read(file) {
        Ok(bytes) => Ok(parse(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Bucket::default()),
        Err(e) => Err(e),
    }
}

/// Encodes one line as cacache writes it (leading newline included).
pub(super) fn encode(line: &Line) -> io::Result<String> {
    #[derive(Serialize)]
    struct Wire<'a> {
        key: &'a str,
        integrity: Option<&'a str>,
        time: u64,
        size: u64,
        metadata: &'a Value,
        raw_metadata: Option<()>,
    }
    let json = serde_json::to_string(&Wire {
        key: &line.key,
        integrity: line.integrity.as_deref(),
        time: line.time,
        size: line.size,
        metadata: &line.metadata,
        raw_metadata: None,
    })
    .map_err(io::Error::other)?;
    Ok(format!(
        "\n{}\t{json}",
        hex(&sha2::Sha256::digest(json.as_bytes()))
    ))
}

/// Rewrites `key`'s bucket so that it holds `line` as `key`'s only line (none when `line` is
/// `None`) and the latest live line of every other key; returns `key`'s previous live line.
/// Crash-safe: the new file is complete before it replaces the old one. Blocking.
pub(super) fn rewrite(dir: &Path, key: &str, line: Option<&Line>) -> io::Result<Option<Line>> {
    let file = path(dir, key);
    let old = read(&file)?;
    let mut previous = None;
    let mut text = String::new();
    for l in old.live {
        if l.key == key {
            previous = Some(l);
        } else {
            text.push_str(&encode(&l)?);
        }
    }
    if let Some(line) = line {
        text.push_str(&encode(line)?);
    }
    if text.is_empty() {
        match fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => return Ok(previous),
        }
    }
    replace(dir, &file, text.as_bytes())?;
    Ok(previous)
}

/// Rewrites the bucket file `file` with its live lines only, if it holds dead ones. Blocking.
pub(super) fn compact(dir: &Path, file: &Path) -> io::Result<()> {
    let old = read(file)?;
    if !old.has_garbage() {
        return Ok(());
    }
    let mut text = String::new();
    for l in &old.live {
        text.push_str(&encode(l)?);
    }
    if text.is_empty() {
        return match fs::remove_file(file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    replace(dir, file, text.as_bytes())
}

/// Writes `bytes` to a new file under `dir/tmp/` and renames it to `file`.
fn replace(dir: &Path, file: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp_dir = dir.join("tmp");
    fs::create_dir_all(&tmp_dir)?;
    if let Some(parent) = file.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = tmp_dir.join(format!(
        "bucket-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes));
    match written.and_then(|()| fs::rename(&tmp, file)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Walks every bucket file under `dir`, handing each (path, contents) to `each`; stops when
/// `each` returns false. Unreadable directories and files are logged and skipped. Blocking.
pub(super) fn walk(dir: &Path, mut each: impl FnMut(PathBuf, Bucket) -> bool) {
    let root = dir.join(INDEX_DIR);
    let mut stack = vec![(root, 0u8)];
    while let Some((at, depth)) = stack.pop() {
        let entries = match fs::read_dir(&at) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(path = %at.display(), error = %e, "disk cache index unreadable");
                continue;
            }
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && depth < 2 {
                stack.push((p, depth + 1));
            } else if !is_dir && depth == 2 {
                match read(&p) {
                    Ok(bucket) => {
                        if !each(p, bucket) {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "disk cache bucket unreadable");
                    }
                }
            }
        }
    }
}

/// Bytes of every bucket file under `dir` (for tests and benchmarks of the index size).
pub fn index_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    walk_sizes(&dir.join(INDEX_DIR), &mut total);
    total
}

fn walk_sizes(at: &Path, total: &mut u64) {
    let Ok(entries) = fs::read_dir(at) else {
        return;
    };
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => walk_sizes(&entry.path(), total),
            Ok(m) => *total = total.saturating_add(m.len()),
            Err(_) => {}
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for &byte in bytes {
        for nibble in [byte >> 4, byte & 0xf] {
            out.push(char::from(DIGITS[usize::from(nibble)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: &str, n: u64) -> Line {
        Line {
            key: key.to_owned(),
            integrity: Some(cacache::Integrity::from(format!("body {n}")).to_string()),
            time: 1_700_000_000_000 + n,
            size: n,
            metadata: serde_json::json!({ "n": n }),
        }
    }

    #[test]
    fn cacache_reads_what_is_written_here_and_the_other_way_round() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        // cacache appends three lines and a tombstone; ours reads the latest live one.
        for n in 1..=3 {
            let opts = cacache::WriteOpts::new()
                .integrity(line("k", n).integrity.unwrap().parse().unwrap())
                .size(n as usize)
                .metadata(serde_json::json!({ "n": n }));
            cacache::index::insert(dir, "k", opts).unwrap();
        }
        cacache::index::insert(dir, "gone", cacache::WriteOpts::new()).unwrap();
        let b = read(&path(dir, "k")).unwrap();
        assert_eq!((b.lines, b.live.len()), (3, 1));
        assert_eq!(b.live[0].size, 3);
        assert!(read(&path(dir, "gone")).unwrap().live.is_empty());

        // A rewrite leaves one line, which cacache reads back.
        let previous = rewrite(dir, "k", Some(&line("k", 9))).unwrap().unwrap();
        assert_eq!(previous.size, 3);
        let found = cacache::index::find(dir, "k").unwrap().unwrap();
        assert_eq!((found.size, found.time), (9, 1_700_000_000_009));
        assert_eq!(found.metadata, serde_json::json!({ "n": 9 }));
        assert_eq!(read(&path(dir, "k")).unwrap().lines, 1);
        assert_eq!(cacache::index::ls(dir).count(), 1);

        // Removing the only key deletes its bucket; removing it again is fine.
        assert!(rewrite(dir, "k", None).unwrap().is_some());
        assert!(!path(dir, "k").exists());
        assert!(rewrite(dir, "k", None).unwrap().is_none());
        assert_eq!(index_bytes(dir), read_size(dir, "gone"));
    }

    fn read_size(dir: &Path, key: &str) -> u64 {
        fs::metadata(path(dir, key)).unwrap().len()
    }

    #[test]
    fn other_keys_in_a_bucket_and_damaged_lines_are_handled() {
        let good = encode(&line("a", 1)).unwrap();
        let other = encode(&line("b", 2)).unwrap();
        let newer = encode(&line("a", 3)).unwrap();
        let text = format!("{good}\nbadhash\t{{}}{other}\nno tab here{newer}");
        let b = parse(text.as_bytes());
        assert_eq!(b.lines, 5);
        let keys: Vec<_> = b.live.iter().map(|l| (l.key.as_str(), l.size)).collect();
        assert_eq!(keys, [("a", 3), ("b", 2)]);
        assert!(b.has_garbage());
    }

    #[test]
    fn walk_lists_every_bucket() {
        let dir = tempfile::tempdir().unwrap();
        for k in ["x", "y", "z"] {
            rewrite(dir.path(), k, Some(&line(k, 1))).unwrap();
        }
        let mut keys = Vec::new();
        walk(dir.path(), |_, b| {
            keys.extend(b.live.into_iter().map(|l| l.key));
            true
        });
        keys.sort();
        assert_eq!(keys, ["x", "y", "z"]);
        // Nothing is left behind in tmp/.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
