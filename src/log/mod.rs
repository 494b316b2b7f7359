//! Logging: the access log (what was served) and diagnostics (what went wrong, via `tracing`).

pub mod access;
pub mod format;
pub mod record;

pub use access::{AccessLog, Target};
pub use format::{Format, LineFormat};
pub use record::AccessRecord;

/// Logging settings from the `[log]` section.
#[derive(Debug, Clone)]
pub struct Config {
    pub access_log: Target,
    /// Longest time an access-log line waits in the buffer before it is written.
    pub access_log_flush: std::time::Duration,
    /// Line format and query stripping of the access log.
    pub access_log_format: LineFormat,
    /// `tracing` filter used when neither `--log-level` nor `RUST_LOG` is given.
    pub level: String,
}

/// Installs the diagnostics subscriber on stderr. `cli_level` (from `--log-level`) wins over
/// `RUST_LOG`, which wins over the config file's level.
pub fn init_tracing(cli_level: Option<&str>, config_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match cli_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(config_level)),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
