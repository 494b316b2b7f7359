//! The HTTP cache: storage tiers and their configuration.
//!
//! This module currently holds the configuration shape of the two tiers (a moka memory tier and
//! a cacache disk tier), so config files written today keep working when the cache lands; the
//! disk directory is created at startup so a bad path fails early.

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
