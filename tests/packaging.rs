//! What a packager installs besides the binary: the man page and shell completions generated
//! from the CLI definition, and the licence files Cargo.toml names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use clap::CommandFactory;
use support::*;

/// The long (`--config`) and short (`-c`) spellings of every visible option.
fn every_option() -> Vec<String> {
    let mut command = cuttle::cli::Cli::command();
    // Building adds clap's own --help and --version.
    command.build();
    let mut names = Vec::new();
    for arg in command.get_arguments() {
        if arg.is_hide_set() {
            continue;
        }
        if let Some(long) = arg.get_long() {
            names.push(format!("--{long}"));
        }
        if let Some(short) = arg.get_short() {
            names.push(format!("-{short}"));
        }
    }
    assert!(
        names.contains(&"--help".to_owned()) && names.len() >= 10,
        "{names:?}"
    );
    names
}

fn stdout_of(args: &[&str]) -> String {
    let out = run_cuttle(args);
    assert!(
        out.status.success(),
        "cuttle {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `program args` with `input` on stdin: (success, stdout, stderr).
fn pipe(program: &str, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (.ci/run installs it)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_man_page_is_valid_roff_and_mentions_every_option_and_command() {
    let roff = stdout_of(&["man"]);
    assert!(roff.contains(".TH cuttle 1"), "{roff}");
    // groff with all warnings on: a malformed page warns on stderr. Rendered as plain text
    // (no overstrike, hyphenation or line filling) so option names can be searched for.
    let (ok, rendered, warnings) = pipe(
        "groff",
        &["-man", "-Tutf8", "-ww", "-rHY=0", "-rLL=300n", "-P-cbou"],
        &roff,
    );
    assert!(ok && warnings.is_empty(), "groff: {warnings}");
    let text = rendered.split_whitespace().collect::<Vec<_>>().join(" ");
    // Each option heads an entry of the OPTIONS section: `-c, --config <FILE>`.
    let options = rendered
        .split("\nOPTIONS\n")
        .nth(1)
        .and_then(|rest| rest.split("\nCOMMANDS\n").next())
        .unwrap_or_else(|| panic!("no OPTIONS section:\n{rendered}"));
    let headings: Vec<&str> = options
        .lines()
        .filter(|l| l.starts_with("       -"))
        .map(str::trim)
        .collect();
    for option in every_option() {
        assert!(
            headings
                .iter()
                .any(|h| h.split([',', ' ']).any(|word| word == option)),
            "the man page has no entry for {option}: {headings:?}"
        );
    }
    for needle in [
        "cuttle check [--config FILE]",
        "EXIT STATUS",
        "SIGHUP",
        "SIGUSR1",
        "/etc/cuttle/cuttle.toml",
        "RUST_LOG",
    ] {
        assert!(
            text.contains(needle),
            "the man page lacks {needle}:\n{text}"
        );
    }
    assert!(
        !text.contains("cuttle-check(1)"),
        "no reference to a page that is not installed"
    );
}

#[test]
fn bash_completion_is_valid_bash_and_completes_every_option() {
    let script = stdout_of(&["completions", "bash"]);
    let (ok, _, errors) = pipe("bash", &["-n"], &script);
    assert!(ok, "bash -n: {errors}");
    for option in every_option() {
        assert!(script.contains(&option), "bash completion lacks {option}");
    }
    assert!(script.contains("check"), "the check subcommand completes");
    // Sourcing it registers the completion function for `cuttle`.
    let (ok, out, errors) = pipe(
        "bash",
        &["-c", "source /dev/stdin && complete -p cuttle"],
        &script,
    );
    assert!(ok && out.contains("cuttle"), "{out}{errors}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        assert!(
            script.contains("log-level") && script.contains("print-default-config"),
            "{shell}: {script}"
        );
    }
    let out = run_cuttle(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_generators_stay_out_of_help() {
    let help = stdout_of(&["--help"]);
    assert!(
        !help.contains("completions") && !help.contains("  man "),
        "{help}"
    );
}

#[test]
fn the_licence_files_cargo_toml_names_are_there() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"MIT OR Apache-2.0\""));
    let mit = std::fs::read_to_string(root.join("LICENSE-MIT")).unwrap();
    assert!(mit.contains("Copyright (c) The cuttle developers"), "{mit}");
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    assert!(mit.contains("THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND"));
    let apache = std::fs::read_to_string(root.join("LICENSE-APACHE")).unwrap();
    for needle in [
        "Apache License",
        "Version 2.0, January 2004",
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
        "Copyright The cuttle developers",
    ] {
        assert!(apache.contains(needle), "LICENSE-APACHE lacks {needle}");
    }
}
