//! Pending bans kept on disk beside the disk tier, so a restart does not serve what a ban's
//! lurker had not reached yet.
//!
//! A ban returns before its lurker has applied it to every older entry, and until then the
//! ban list (in memory) is what keeps those entries from being served. Without this file a
//! restart in that window forgot the ban and served the banned entries from disk again. The
//! file (`bans.pending` in the disk tier's directory) lists the bans not yet retired, one JSON
//! object per line; it is rewritten whole (a temporary file renamed over it) when a ban is
//! added and when one retires, and removed when none is pending. At start every ban it lists
//! is made again: entries read back from disk count as older than anything made since start
//! (see `index::register_loaded`), so the ban covers them all. That includes entries stored
//! between the ban and the restart, which are purged too: a cache may always drop an entry,
//! never serve one it was told to drop.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bans::{Bans, Matcher};

/// The file's name in the disk tier's directory.
pub const FILE: &str = "bans.pending";

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    soft: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    regex: Option<String>,
}

/// The pending-ban file of one disk tier.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// Rewrites take turns, each writing the list as it is when its turn comes, so the last
    /// write is of the newest list.
    turn: tokio::sync::Mutex<()>,
}

impl Journal {
    /// The journal in the disk tier directory `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The bans the file lists, as (matcher, soft). A missing file is none; an unreadable
    /// line is logged and skipped (the others still apply).
    pub async fn read(&self) -> Vec<(Matcher, bool)> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(err) => {
                tracing::warn!(file = %self.path.display(), error = %err, "pending bans not read");
                return Vec::new();
            }
        };
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .filter_map(|(n, line)| match parse(line) {
                Ok(ban) => Some(ban),
                Err(reason) => {
                    tracing::warn!(
                        file = %self.path.display(),
                        line = n + 1,
                        reason,
                        "pending ban skipped"
                    );
                    None
                }
            })
            .collect()
    }

    /// Writes the bans `bans` has pending now (removes the file when none is).
    pub async fn save(&self, bans: &Bans) {
        let _turn = self.turn.lock().await;
        let text: String = bans
            .pending()
            .iter()
            .filter_map(|ban| serde_json::to_string(&saved(&ban.matcher, ban.soft)).ok())
            .map(|line| line + "\n")
            .collect();
        let written = if text.is_empty() {
            match tokio::fs::remove_file(&self.path).await {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        } else {
            let temp = self.path.with_extension("pending.tmp");
            match tokio::fs::write(&temp, text).await {
                Ok(()) => tokio::fs::rename(&temp, &self.path).await,
                Err(err) => Err(err),
            }
        };
        if let Err(err) = written {
            tracing::warn!(
                file = %self.path.display(),
                error = %err,
                "pending bans not saved: a restart before their lurkers finish forgets them"
            );
        }
    }
}

fn saved(matcher: &Matcher, soft: bool) -> Saved {
    match matcher {
        Matcher::Prefix(prefix) => Saved {
            soft,
            prefix: Some(prefix.clone()),
            regex: None,
        },
        Matcher::Regex(regex) => Saved {
            soft,
            prefix: None,
            regex: Some(regex.as_str().to_owned()),
        },
    }
}

fn parse(line: &str) -> Result<(Matcher, bool), String> {
    let saved: Saved = serde_json::from_str(line).map_err(|err| err.to_string())?;
    let matcher = match (saved.prefix, saved.regex) {
        (Some(prefix), None) => Matcher::Prefix(prefix),
        (None, Some(regex)) => {
            Matcher::Regex(regex::Regex::new(&regex).map_err(|err| err.to_string())?)
        }
        _ => return Err("expected one of `prefix` or `regex`".to_owned()),
    };
    Ok((matcher, saved.soft))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::invalidate::bans::Ban;

    #[tokio::test]
    async fn pending_bans_round_trip_and_the_file_goes_when_none_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::in_dir(dir.path());
        assert!(journal.read().await.is_empty(), "no file, no bans");
        let bans = Bans::default();
        let prefix = bans.add(Ban {
            seq: 1,
            matcher: Matcher::Prefix("http://a/\"quoted\"\n".into()),
            soft: false,
        });
        let regex = bans.add(Ban {
            seq: 2,
            matcher: Matcher::Regex(regex::Regex::new(r"(?i)\.JPG$").unwrap()),
            soft: true,
        });
        journal.save(&bans).await;
        let read = journal.read().await;
        assert_eq!(read.len(), 2);
        assert!(matches!(&read[0], (Matcher::Prefix(p), false) if p == "http://a/\"quoted\"\n"));
        assert!(
            matches!(&read[1], (Matcher::Regex(r), true) if r.is_match("http://b/X.jpg")),
            "the regex keeps its flags"
        );
        bans.retire(&prefix);
        journal.save(&bans).await;
        assert_eq!(journal.read().await.len(), 1);
        bans.retire(&regex);
        journal.save(&bans).await;
        assert!(
            !dir.path().join(FILE).exists(),
            "removed when none is pending"
        );
    }

    #[tokio::test]
    async fn a_damaged_line_is_skipped_and_the_others_apply() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "{\"soft\":false,\"prefix\":\"http://a/\"}\nnot json\n{\"soft\":true,\"regex\":\"(\"}\n{\"soft\":true}\n\n{\"soft\":true,\"regex\":\"x$\"}\n",
        )
        .unwrap();
        let read = Journal::in_dir(dir.path()).read().await;
        assert_eq!(read.len(), 2, "the prefix ban and the last regex ban");
    }
}
