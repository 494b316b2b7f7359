//! The `cuttle` command: parse the command line, load the config, run until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cuttle::cli::{Cli, Command};
use cuttle::config::{self, Config, ConfigError, Overrides, Source};

/// mimalloc instead of glibc's malloc, for the binary only: each miss frees short-lived blocks
/// between the lasting ones of the object it stores, and glibc's per-size caches of freed
/// blocks left ~1 KB of holes per cached object (README "Memory per cached object").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    match &cli.command {
        Some(Command::Man) => {
            return written(cuttle::cli::write_man_page(&mut std::io::stdout().lock()));
        }
        Some(Command::Completions { shell }) => {
            return written(cuttle::cli::write_completions(
                *shell,
                &mut std::io::stdout().lock(),
            ));
        }
        Some(Command::Stats { admin }) => return cuttle::admin::stats::run(admin),
        Some(Command::Ca(cuttle::cli::CaCommand::Init {
            dir,
            name_constraint,
            common_name,
            days,
            force,
        })) => {
            use cuttle::tls_intercept::ca;
            let options = ca::InitOptions {
                dir: dir.clone(),
                common_name: common_name.clone(),
                name_constraints: name_constraint.clone(),
                days: *days,
                force: *force,
            };
            let now = cuttle::clock::Clock::now(&cuttle::clock::SystemClock);
            return match ca::init(&options, now) {
                Ok((cert, key)) => {
                    print!("{}", ca::trust_steps(&cert, &key));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cuttle: ca init: {e}");
                    ExitCode::FAILURE
                }
            };
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
    // A reload reads the same file and re-applies the same overrides.
    let source = Source {
        path: cli.config,
        overrides: Overrides {
            listen: cli.listen,
            cache_dir: cli.cache_dir,
            workers: cli.workers,
            parents: cli.parent,
            origin: cli.origin,
            cluster_self: cli.cluster_self,
        },
    };
    if let Err(e) = config.apply(&source.overrides) {
        eprintln!("cuttle: {e}");
        return ExitCode::FAILURE;
    }
    let diagnostics = cuttle::log::init_tracing(cli.log_level.as_deref(), &config.log.level);
    let runtime = match build_runtime(config.workers) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cuttle: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(name, config, source, diagnostics))
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

async fn run(
    name: String,
    config: Config,
    source: Source,
    diagnostics: Option<cuttle::log::Diagnostics>,
) -> ExitCode {
    // Before anything is announced: a signal sent once the listening line is out must find
    // its handler (the default action of each of these ends the process).
    let signals = Signals::install();
    // Kept for the start-up lines, which show the addresses really bound.
    let described = config.clone();
    let server = match cuttle::app::start_with(config, cuttle::clock::system(), Some(source)).await
    {
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
    match server.admin_addr() {
        Some(addr) => eprintln!("cuttle: admin listener on http://{addr}/ (dashboard, /metrics, /status, /cache, POST /reload)"),
        None => eprintln!("cuttle: no admin listener"),
    }
    // Read back from the runtime itself, so the line shows what really runs.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    eprintln!(
        "cuttle: {workers} worker thread{}",
        if workers == 1 { "" } else { "s" }
    );
    signals.serve(&server.control(), diagnostics.as_ref()).await;
    eprintln!("cuttle: shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// The signals cuttle handles, each with its own stream.
struct Signals {
    #[cfg(unix)]
    streams: Option<[tokio::signal::unix::Signal; 5]>,
}

impl Signals {
    /// Installs the handlers; from here on none of these signals ends the process by itself.
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = [
                SignalKind::interrupt(),
                SignalKind::terminate(),
                SignalKind::hangup(),
                SignalKind::user_defined1(),
                SignalKind::user_defined2(),
            ]
            .map(signal);
            let streams = match streams {
                [Ok(int), Ok(term), Ok(hup), Ok(usr1), Ok(usr2)] => {
                    Some([int, term, hup, usr1, usr2])
                }
                _ => {
                    eprintln!(
                        "cuttle: cannot install signal handlers; only Ctrl-C stops the proxy"
                    );
                    None
                }
            };
            Self { streams }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Serves signals until Ctrl-C or SIGTERM: SIGHUP reloads the config, SIGUSR1 reopens the
    /// access log, SIGUSR2 toggles debug diagnostics. None of them stops the proxy; a failed
    /// reload or reopen is logged and the proxy goes on as before.
    async fn serve(
        self,
        control: &cuttle::app::Control,
        diagnostics: Option<&cuttle::log::Diagnostics>,
    ) {
        #[cfg(unix)]
        if let Some([mut int, mut term, mut hup, mut usr1, mut usr2]) = self.streams {
            loop {
                tokio::select! {
                    _ = int.recv() => return,
                    _ = term.recv() => return,
                    _ = hup.recv() => {
                        // `reload` logs the outcome (and what it changed) itself.
                        let _ = control.reload().await;
                    }
                    _ = usr1.recv() => {
                        let _ = control.reopen_logs().await;
                    }
                    _ = usr2.recv() => match diagnostics {
                        Some(diagnostics) => {
                            let on = diagnostics.toggle_debug();
                            tracing::warn!("SIGUSR2: debug diagnostics {}", if on { "on" } else { "off" });
                        }
                        None => tracing::warn!("SIGUSR2: ignored (diagnostics are set up elsewhere)"),
                    },
                }
            }
        }
        let _ = (control, diagnostics);
        let _ = tokio::signal::ctrl_c().await;
    }
}
