//! The command line, as a clap definition the binary parses and the man page and shell
//! completions are generated from.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A caching forward and reverse HTTP proxy in the Squid tradition.
///
/// With no options, runs a forward proxy on 127.0.0.1:3128 from the embedded default config
/// (use it as http_proxy=http://127.0.0.1:3128).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    /// TOML config file (default: the embedded config; see --print-default-config).
    #[arg(short, long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Listen here instead of the configured ports, e.g. 0.0.0.0:3128.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Use this directory for the disk cache.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Accelerate this origin: a reverse proxy (on --listen, default 127.0.0.1:8080) for any
    /// Host, caching what the origin allows, e.g. --origin http://127.0.0.1:8000.
    #[arg(long, value_name = "URL")]
    pub origin: Option<http::Uri>,
    /// Send misses through this parent cache (HOST:PORT); repeat for failover. Implies
    /// never_direct.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_parent)]
    pub parent: Vec<(String, u16)>,
    /// Runtime worker threads (default: the config's `workers`, else one per CPU core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Diagnostics level (off, error, warn, info, debug, trace) or filter directives like
    /// warn,cuttle=debug; overrides RUST_LOG and the config's log.level.
    #[arg(long, value_name = "LEVEL", global = true, value_parser = parse_level)]
    pub log_level: Option<String>,
    /// Print the embedded default config and exit.
    #[arg(long)]
    pub print_default_config: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file (or the default) and exit: 0 if valid, 1 with file:line: key:
    /// reason if not.
    Check,
}

fn parse_level(value: &str) -> Result<String, String> {
    crate::log::parse_filter(value).map(|_| value.to_owned())
}

fn parse_parent(value: &str) -> Result<(String, u16), String> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("`{value}` is not HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{port}` is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{value}` has no host"));
    }
    Ok((host.to_owned(), port))
}
