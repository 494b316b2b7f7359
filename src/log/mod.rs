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

/// The diagnostics levels, quietest first (`off` silences diagnostics).
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a diagnostics filter and builds it: a level (`info`), or comma-separated directives
/// in tracing-subscriber's `EnvFilter` syntax whose every part names a level (`warn,cuttle=debug`,
/// `cuttle::cache=trace`). A bare word that is not a level (`verbose`) is refused: `EnvFilter`
/// would take it for a target name and silently drop every other diagnostic.
pub fn parse_filter(text: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let wanted = || {
        format!(
            "use one of {}, or directives like \"warn,cuttle=debug\"",
            LEVELS.join(", ")
        )
    };
    if text.trim().is_empty() {
        return Err(format!("is empty: {}", wanted()));
    }
    for directive in split_top_level(text, ',') {
        let directive = directive.trim();
        if directive.is_empty() {
            continue;
        }
        let level = match rsplit_top_level(directive, '=') {
            Some((target, level)) if !target.trim().is_empty() => level.trim(),
            Some(_) => return Err(format!("`{directive}` names no target: {}", wanted())),
            None => directive,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(format!("`{level}` is not a level: {}", wanted()));
        }
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map_err(|e| format!("`{text}` is not a filter: {e}: {}", wanted()))
}

/// Parts of `text` between top-level `sep`s: ones inside `[span{field=value}]` do not count.
fn split_top_level(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            c if c == sep && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `text` split at its last top-level `sep`.
fn rsplit_top_level(text: &str, sep: char) -> Option<(&str, &str)> {
    let parts = split_top_level(text, sep);
    let last = parts.last()?;
    if parts.len() < 2 {
        return None;
    }
    let cut = text.len() - last.len() - sep.len_utf8();
    Some((&text[..cut], last))
}

/// Installs the diagnostics subscriber on stderr. `cli_level` (from `--log-level`) wins over
/// `RUST_LOG`, which wins over the config file's level. All three are checked with
/// [`parse_filter`]; a `RUST_LOG` it refuses is ignored with a warning. Returns the handle that
/// switches debugging on and off, unless a subscriber was already installed.
pub fn init_tracing(cli_level: Option<&str>, config_level: &str) -> Option<Diagnostics> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let mut refused_env = None;
    let filter = match (cli_level, from_env) {
        (Some(level), _) => parse_filter(level),
        (None, Some(env)) => parse_filter(&env).or_else(|reason| {
            refused_env = Some((env, reason));
            parse_filter(config_level)
        }),
        (None, None) => parse_filter(config_level),
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
    if let Some((env, reason)) = refused_env {
        tracing::warn!("RUST_LOG=`{env}` ignored: {reason}");
    }
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

#[cfg(test)]
mod tests {
    use super::parse_filter;

    #[test]
    fn levels_and_directives_are_accepted() {
        for ok in [
            "info",
            "WARN",
            "off",
            "trace",
            "warn,cuttle=debug",
            "cuttle::cache=trace",
            "cuttle[request{method=GET}]=debug",
        ] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn words_that_are_not_levels_are_refused_with_the_list() {
        for (bad, names) in [
            ("verbose", "`verbose` is not a level"),
            ("info,loud", "`loud` is not a level"),
            ("cuttle=chatty", "`chatty` is not a level"),
            ("cuttle", "`cuttle` is not a level"),
            ("=debug", "names no target"),
            ("", "is empty"),
        ] {
            let e = parse_filter(bad).unwrap_err();
            assert!(e.contains(names), "{bad}: {e}");
            assert!(
                e.contains("off, error, warn, info, debug, trace"),
                "{bad}: {e}"
            );
        }
    }
}
