//! The `cuttle` command: parse the command line, load the config, run until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cuttle::cli::{Cli, Command};
use cuttle::config::{self, Config, ConfigError, Overrides};

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
    match cli.command {
        Some(Command::Man) => {
            return written(cuttle::cli::write_man_page(&mut std::io::stdout().lock()));
        }
        Some(Command::Completions { shell }) => {
            return written(cuttle::cli::write_completions(
                shell,
                &mut std::io::stdout().lock(),
            ));
        }
        Some(Command::Check) | None => {}
    }
    let mut config = match load(cli.config.as_ref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cuttle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let name = cli.config.as_ref().map_or_else(
        || config::DEFAULT_NAME.to_owned(),
        |p| p.display().to_string(),
    );
    if matches!(cli.command, Some(Command::Check)) {
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
    runtime.block_on(run(name, config))
}

/// The exit code after writing generated text (man page, completions) to stdout.
fn written(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cuttle: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
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

async fn run(name: String, config: Config) -> ExitCode {
    // Kept for the start-up lines, which show the addresses really bound.
    let described = config.clone();
    let server = match cuttle::app::start(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cuttle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bound: Vec<_> = server.addrs().iter().map(|(addr, _)| *addr).collect();
    for line in config::summary(&name, &described, &bound) {
        eprintln!("cuttle: {line}");
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
