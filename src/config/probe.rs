//! Trying the paths a config names before anything runs, so `cuttle check`, start-up and a
//! reload refuse an access log or cache directory the proxy could not use later.
//!
//! Each check does what the proxy will do (open the log for appending, create the cache
//! directory and write in it) and then undoes what it created, so a check leaves no trace: a
//! log file or directory that did not exist before is removed again. Nothing is truncated.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Checks run one at a time: each removes what it created, so two at once on the same new
/// path (two configs loaded by one process, as tests do) could remove a directory while the
/// other writes its probe file in it.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Opens `path` for appending as the access-log writer does (creating it, never truncating);
/// removes it again if it did not exist.
pub fn append_file(path: &Path) -> Result<(), String> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let shown = path.display();
    if path.is_dir() {
        return Err(format!("`{shown}` is a directory, not a file"));
    }
    let dir = parent(path);
    if !dir.is_dir() {
        let why = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(format!("cannot open `{shown}`: `{}` {why}", dir.display()));
    }
    let existed = path.exists();
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open `{shown}` for appending: {e}"))?;
    if !existed {
        let _ = fs::remove_file(path);
    }
    Ok(())
}

/// Creates the cache directory `path` (with its parents) as the disk tier does and writes a
/// file in it; removes whatever it created.
pub fn cache_dir(path: &Path) -> Result<(), String> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let shown = path.display();
    if path.exists() && !path.is_dir() {
        return Err(format!("`{shown}` exists and is not a directory"));
    }
    // The directories this check creates, outermost first, to remove them afterwards.
    let created: Vec<PathBuf> = path
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .map(Path::to_path_buf)
        .collect();
    let result = fs::create_dir_all(path)
        .map_err(|e| format!("cannot create `{shown}`: {e}"))
        .and_then(|()| write_probe(path));
    for dir in &created {
        // Innermost first (`ancestors` starts at `path`); only empty directories go.
        let _ = fs::remove_dir(dir);
    }
    result
}

/// Creates and removes a file in `dir`.
fn write_probe(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".cuttle-check-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        // Another check of the same process raced us here: the directory is writable.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot write in `{}`: {e}", dir.display())),
    }
}

/// The directory `path` is in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_of_one_new_path_at_once_all_succeed_and_leave_nothing() {
        // A fresh machine's default `~/.cache/cuttle`, checked by several config loads at once.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".cache").join("cuttle");
        let failures: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..200).filter(|_| cache_dir(&path).is_err()).count()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(failures, 0);
        assert!(!dir.path().join(".cache").exists());
    }

    #[test]
    fn an_existing_log_is_appended_to_not_truncated_and_a_new_one_is_not_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        fs::write(&log, "kept\n").unwrap();
        append_file(&log).unwrap();
        assert_eq!(fs::read_to_string(&log).unwrap(), "kept\n");
        let fresh = dir.path().join("new.log");
        append_file(&fresh).unwrap();
        assert!(!fresh.exists(), "the check removed the file it created");
    }

    #[test]
    fn a_log_in_a_missing_directory_or_under_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = append_file(&dir.path().join("nope/access.log")).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let e = append_file(&file.join("access.log")).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        let e = append_file(dir.path()).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
    }

    #[test]
    fn a_creatable_cache_dir_passes_and_is_not_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("a/b/cache");
        cache_dir(&cache).unwrap();
        assert!(
            !dir.path().join("a").exists(),
            "created directories removed"
        );
        fs::create_dir(dir.path().join("kept")).unwrap();
        cache_dir(&dir.path().join("kept")).unwrap();
        assert!(
            dir.path().join("kept").is_dir(),
            "an existing directory stays"
        );
        assert_eq!(fs::read_dir(dir.path().join("kept")).unwrap().count(), 0);
    }

    #[test]
    fn a_cache_dir_that_cannot_be_created_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let e = cache_dir(&file).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        let e = cache_dir(&file.join("cache")).unwrap_err();
        assert!(e.contains("cannot create"), "{e}");
    }
}
