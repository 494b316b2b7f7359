//! Logging: the access log (what was served) and diagnostics (what went wrong, via `tracing`).

pub mod access;

pub use access::{AccessLog, AccessRecord, Target};

/// Logging settings from the `[log]` section.
#[derive(Debug, Clone)]
pub struct Config {
    pub access_log: Target,
    /// Longest time an access-log line waits in the buffer before it is written.
    pub access_log_flush: std::time::Duration,
    /// `tracing` filter used when neither `--log-level` nor `RUST_LOG` is given.
    pub level: String,
}

/// Installs the diagnostics subscriber on stderr. `cli_level` (from `--log-level`) wins over
/// `RUST_LOG`, which wins over the config file's level. Returns the handle that switches
/// debugging on and off, unless a subscriber was already installed.
pub fn init_tracing(cli_level: Option<&str>, config_level: &str) -> Option<Diagnostics> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let filter = match cli_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(config_level)),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let normal = filter.to_string();
    let (filter, handle) = reload::Layer::new(filter);
    let output = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .ok()?;
    Some(Diagnostics {
        handle,
        normal: std::sync::Arc::from(normal),
        debug: std::sync::Arc::default(),
    })
}

/// Switches diagnostics between the configured filter and full `debug` (SIGUSR2, as Squid's
/// `squid -k debug` toggles full debugging).
#[derive(Debug, Clone)]
pub struct Diagnostics {
    handle: tracing_subscriber::reload::Handle<
        tracing_subscriber::EnvFilter,
        tracing_subscriber::Registry,
    >,
    /// The filter in force when debugging is off.
    normal: std::sync::Arc<str>,
    debug: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Diagnostics {
    /// Turns debugging on if it was off, off if it was on; returns whether it is now on.
    pub fn toggle_debug(&self) -> bool {
        use std::sync::atomic::Ordering;
        let on = !self.debug.fetch_xor(true, Ordering::Relaxed);
        let filter = if on { "debug" } else { &*self.normal };
        match tracing_subscriber::EnvFilter::try_new(filter) {
            Ok(filter) => {
                if let Err(e) = self.handle.reload(filter) {
                    tracing::warn!(error = %e, "cannot change the diagnostics level");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot change the diagnostics level"),
        }
        on
    }
}
