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
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
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
    /// This node's member name in the config's [cluster] (overrides `self` there), so every
    /// member can run from one shared file.
    #[arg(long, value_name = "NAME")]
    pub cluster_self: Option<String>,
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
    /// Validate a config file (or the default) and open the files it names (access log, cache
    /// directory, TLS certificates and keys), then exit: 0 if valid, 1 with file:line: key:
    /// reason if not.
    Check,
    /// Print a short summary of a running cuttle, read from its admin listener's /status.
    Stats {
        /// The admin listener (`[admin] listen`).
        #[arg(long, value_name = "ADDR", default_value = crate::admin::DEFAULT_LISTEN)]
        admin: String,
    },
    /// Manage the local CA that `[tls_intercept]` signs minted certificates with.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Print the man page (roff) to stdout.
    #[command(hide = true)]
    Man,
    /// Print completions for SHELL to stdout.
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `cuttle ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make a CA for TLS interception (key file mode 0600) and print how to trust it on
    /// Debian/Ubuntu, in Firefox and Chromium (NSS), and for pip, npm, cargo, git and Docker.
    Init {
        /// Directory for cuttle-ca.pem and cuttle-ca.key.
        #[arg(long, value_name = "DIR", default_value = "/etc/cuttle/ca")]
        dir: PathBuf,
        /// Let the CA sign only for this domain and its subdomains (RFC 5280 name
        /// constraints, enforced by clients); repeat for more. Default: any name.
        #[arg(long, value_name = "DOMAIN")]
        name_constraint: Vec<String>,
        /// The CA's common name, as trust stores show it.
        #[arg(long, value_name = "NAME", default_value = "cuttle interception CA")]
        common_name: String,
        /// Validity in days.
        #[arg(long, value_name = "DAYS", default_value_t = 1825)]
        days: u32,
        /// Replace an existing key (clients must then trust the new certificate).
        #[arg(long)]
        force: bool,
    },
}

/// Sections of the man page that the options do not describe.
const MAN_EXTRA: &str = r#".SH "EXIT STATUS"
0 on success; 1 when the config is refused (\fIfile\fR:\fIline\fR: \fIkey\fR: \fIreason\fR on
standard error) or the proxy cannot start; 2 for a command-line error.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, let in-flight requests finish for up to \fBtimeouts.shutdown\fR, then exit.
.TP
\fBSIGHUP\fR
Re-read the config file and swap it in; a refused file leaves the running config in place.
.TP
\fBSIGUSR1\fR
Reopen the access log (after logrotate moved it).
.SH FILES
.TP
\fI/etc/cuttle/cuttle.toml\fR
The config file the systemd unit passes with \fB\-\-config\fR; \fBcuttle
\-\-print\-default\-config\fR prints a commented starting point.
.TP
\fI/var/cache/cuttle\fR
The disk cache tier of a service install (\fBcache.disk.path\fR).
.TP
\fI/var/log/cuttle/access.log\fR
The access log of a service install (\fBlog.access_log\fR).
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
Diagnostics filter when \fB\-\-log\-level\fR is not given (same syntax).
.SH "SEE ALSO"
\fBsquid\fR(8), \fBsystemd.service\fR(5)
"#;

/// Writes the man page, generated from this definition, as roff.
pub fn write_man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    // clap_mangen's own list points at cuttle-check(1) pages; the subcommands are one line each
    // and are described here instead.
    let command = <Cli as clap::CommandFactory>::command();
    out.write_all(b".SH COMMANDS\n")?;
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        writeln!(
            out,
            ".TP\n\\fBcuttle {}\\fR [\\fB\\-\\-config\\fR \\fIFILE\\fR]\n{}",
            roff_escape(sub.get_name()),
            roff_escape(&about)
        )?;
    }
    out.write_all(MAN_EXTRA.as_bytes())?;
    man.render_version_section(out)
}

/// `text` as roff body text: backslashes and hyphens escaped, no line starting with a control
/// character.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.chars().next() {
        Some('.' | '\'') => format!("\\&{escaped}"),
        _ => escaped,
    }
}

/// Writes `shell`'s completion script for `cuttle`.
pub fn write_completions(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut command = <Cli as clap::CommandFactory>::command();
    // Generated into memory: clap_complete panics if its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "cuttle", &mut script);
    out.write_all(&script)
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}` is not an IP address and port like 127.0.0.1:3128"))
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
