//! The `cuttle` command: parse the command line, load the config, run until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cuttle::config::{self, Config, ConfigError, Overrides};

/// A caching forward and reverse HTTP proxy in the Squid tradition.
///
/// With no options, runs a forward proxy on 127.0.0.1:3128 from the embedded default config
/// (use it as http_proxy=http://127.0.0.1:3128).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// TOML config file (default: the embedded config; see --print-default-config).
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Listen here instead of the configured ports, e.g. 0.0.0.0:3128.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Use this directory for the disk cache.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Accelerate this origin: a reverse proxy (on --listen, default 127.0.0.1:8080) for any
    /// Host, caching what the origin allows, e.g. --origin http://127.0.0.1:8000.
    #[arg(long, value_name = "URL")]
    origin: Option<http::Uri>,
    /// Send misses through this parent cache (HOST:PORT); repeat for failover. Implies
    /// never_direct.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_parent)]
    parent: Vec<(String, u16)>,
    /// Runtime worker threads (default: the config's `workers`, else one per CPU core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Diagnostics level or filter (error, warn, info, debug, trace); overrides RUST_LOG.
    #[arg(long, value_name = "LEVEL", global = true)]
    log_level: Option<String>,
    /// Print the embedded default config and exit.
    #[arg(long)]
    print_default_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file (or the default) and exit: 0 if valid, 1 with file:line: key:
    /// reason if not.
    Check,
    /// Print a short summary of a running cuttle, read from its admin listener's /status.
    Stats {
        /// The admin listener (`[admin] listen`).
        #[arg(long, value_name = "ADDR", default_value = cuttle::admin::DEFAULT_LISTEN)]
        admin: String,
    },
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

fn load(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => config::load_file(path),
        None => config::load_default(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", config::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Stats { admin }) = &cli.command {
        return cuttle::admin::stats::run(admin);
    }
    let mut config = match load(cli.config.as_ref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cuttle: {e}");
            return ExitCode::FAILURE;
        }
    };
    if matches!(cli.command, Some(Command::Check)) {
        let name = cli.config.as_ref().map_or_else(
            || config::DEFAULT_NAME.to_owned(),
            |p| p.display().to_string(),
        );
        println!("{name}: OK");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = config.apply(&Overrides {
        listen: cli.listen,
        cache_dir: cli.cache_dir,
        workers: cli.workers,
        parents: cli.parent,
        origin: cli.origin,
    }) {
        eprintln!("cuttle: {e}");
        return ExitCode::FAILURE;
    }
    cuttle::log::init_tracing(cli.log_level.as_deref(), &config.log.level);
    let runtime = match build_runtime(config.workers) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cuttle: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

/// The runtime `workers` asks for (0: one thread per core). One worker gets a current-thread
/// runtime: every task runs on the main thread, so a request never crosses threads (no wake-ups
/// through futexes, no work stealing), which is what a proxy pinned to one core wants. More
/// workers get tokio's work-stealing scheduler; what they share is listed in README's
/// performance section.
fn build_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all().thread_name("cuttle-worker").build()
}

async fn run(config: Config) -> ExitCode {
    let server = match cuttle::app::start(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cuttle: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (addr, mode) in server.addrs() {
        eprintln!("cuttle: listening on {addr} ({})", mode.as_str());
    }
    // Read back from the runtime itself, so the line shows what really runs.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    eprintln!(
        "cuttle: {workers} worker thread{}",
        if workers == 1 { "" } else { "s" }
    );
    wait_for_signal().await;
    eprintln!("cuttle: shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
