//! The HTTP cache: RFC 9111 policy, cache keys, and storage tiers.
//!
//! `policy` is pure (no I/O, `now` is a parameter); `key` builds primary and Vary keys. The
//! disk directory is created at startup so a bad path fails early.

pub mod key;
pub mod meta;
pub mod policy;
pub mod store;

use std::path::PathBuf;

/// Cache settings from `[cache]`.
#[derive(Debug, Clone)]
pub struct Config {
    pub memory: MemoryConfig,
    /// `None` when the disk tier is disabled (`cache.disk.path = ""`).
    pub disk: Option<DiskConfig>,
}

/// The memory tier.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Total bytes of bodies and heads held in memory.
    pub max_size: u64,
    /// Larger objects are not kept in memory.
    pub max_object_size: u64,
}

/// The disk tier.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub max_size: u64,
    pub max_object_size: u64,
}

impl Default for DiskConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("cache"),
            max_size: 1 << 30,
            max_object_size: 128 << 20,
        }
    }
}
