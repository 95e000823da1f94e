//! `mimobox mcp` driven by the official MCP Python SDK (PyPI `mcp`, which
//! `.ci/run` installs) over stdio: tools, a new session and the same one
//! again, a figure, files in and out, an error turn, a refused path, close;
//! once at MCP 2026-07-28 and once at 2025-11-25 (the initialize handshake).

use std::path::PathBuf;
use std::process::Command;

use crate::scientific::{cli, relocated_profile};
use crate::{stderr, stdout};

/// Runs the client script `tests/clients/NAME` with `args`, in `cli`'s
/// directory and cache when given, and requires it to exit 0 having
/// printed `ok CHECK` for every one of `checks`.
pub(crate) fn run_client(name: &str, args: &[&str], cli: Option<&crate::Cli>, checks: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(name);
    let mut command = Command::new("python3");
    command.arg(&script).args(args);
    if let Some(cli) = cli {
        command
            .current_dir(cli.path())
            .env("MIMOBOX_CACHE_DIR", cli.cache())
            .env("TMPDIR", cli.path())
            .env_remove("XDG_RUNTIME_DIR");
    }
    let output = command.output().expect("python3 runs");
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}\n{}", stderr(&output));
    for check in checks {
        assert!(out.contains(&format!("ok {check}\n")), "{check} did not hold:\n{out}");
    }
}

#[test]
fn the_official_mcp_client_runs_code_keeps_state_and_moves_files_over_stdio() {
    let cli = cli();
    let profile = cli.write("python-sci.toml", &relocated_profile());
    run_client(
        "mcp_stdio.py",
        &[env!("CARGO_BIN_EXE_mimobox"), profile.to_str().unwrap()],
        Some(&cli),
        &[
            "protocol 2026-07-28",
            "protocol 2025-11-25",
            "tools",
            "new session",
            "state kept",
            "figure",
            "files",
            "error turn",
            "path refused",
            "extra arguments refused",
            "close",
        ],
    );
}

#[test]
fn a_profile_flag_that_names_nothing_usable_is_one_line_status_2() {
    let cli = crate::Cli::new();
    for (args, problem) in [
        (&["mcp", "--profile", "missing.toml"][..], "missing.toml"),
        (&["mcp", "--profile", "a=x.toml", "--profile", "a=y.toml"], "named twice"),
        (&["mcp", "--profile", "bad name=x.toml"], "a profile name is"),
    ] {
        let output = cli.run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        let err = stderr(&output);
        assert!(err.contains(problem) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
}
