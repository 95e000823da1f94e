//! What mimobox refuses: status 2 and one line that names the problem.

use crate::{Cli, fixture, stderr};

/// Asserts status 2 and a single stderr line containing every `needle`.
fn assert_refused(out: &std::process::Output, needles: &[&str]) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_module() {
    let cli = Cli::new();
    assert_refused(&cli.run(&["run", "missing.wasm"]), &["missing.wasm", "no such file"]);
}

#[test]
fn invalid_module() {
    let cli = Cli::new();
    let junk = cli.write("junk.wasm", "this is not wasm");
    assert_refused(&cli.run(&["run", junk.to_str().unwrap()]), &["junk.wasm", "invalid"]);
}

#[test]
fn bad_flag_and_bad_value() {
    let cli = Cli::new();
    assert_refused(&cli.run(&["run", "--no-such-flag", &fixture("hello")]), &["--no-such-flag"]);
    assert_refused(&cli.run(&["run", "--timeout", "soon", &fixture("hello")]), &["--timeout", "soon"]);
    assert_refused(&cli.run(&["run", "--memory", "16GiB", &fixture("hello")]), &["--memory", "4GiB"]);
    assert_refused(&cli.run(&["run", "--env", "NOEQUALS", &fixture("hello")]), &["--env", "NOEQUALS"]);
}

#[test]
fn a_bad_value_of_any_flag_is_one_line_that_names_the_flag_once() {
    let cli = Cli::new();
    let profile = cli.write("p.toml", "timeout_secs = 1\n");
    let profile = format!("p={}", profile.display());
    let token = format!("alice={}", "ab".repeat(32));
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--check", "--profile", &profile, "--token-sha256", &token];
        args.extend(extra);
        cli.run(&args)
    };
    let cases: Vec<(std::process::Output, &str, &str)> = vec![
        (cli.run(&["run", "--max-output", "lots", &fixture("hello")]), "--max-output", "lots"),
        (cli.run(&["run", "--ro-dir", "::/x", &fixture("hello")]), "--ro-dir", "empty host path"),
        (cli.run(&["cache", "prune", "--max-size", "1.5.5GiB"]), "--max-size", "1.5.5GiB"),
        (serve(&["--lease", "500ms"]), "--lease", "at least 1 second"),
        (serve(&["--read-timeout", "2h"]), "--read-timeout", "at most"),
        (serve(&["--max-sessions", "0"]), "--max-sessions", "0"),
        (serve(&["--token-sha256", "bob=12"]), "--token-sha256", "64 hex digits"),
        (serve(&["--token-sha256", "b\x1b]0;title\x07ob=12"]), "--token-sha256", "an owner is"),
        (serve(&["--profile", "a/b=p.toml"]), "--profile", "a/b"),
        (serve(&["--pause-after", "5m"]), "--pause-dir", "--store"),
        (serve(&["--catalog", "http://r", "--store", "file:///s"]), "--catalog", "http://r"),
        (serve(&["--metrics-owner", "carol"]), "--metrics-owner", "carol"),
    ];
    for (out, flag, needle) in &cases {
        assert_refused(out, &[flag, needle]);
        assert!(!stderr(out).contains(['\x1b', '\x07']), "control characters reach the terminal");
    }
    assert_eq!(serve(&[]).status.code(), Some(0), "{}", stderr(&serve(&[])));
}

#[test]
fn bad_profiles_name_file_key_and_line() {
    let cli = Cli::new();
    let cases = [
        ("unknown.toml", "timeout_secs = 1\ntimeuot = 2\n", ["unknown.toml:2:1", "timeuot"]),
        ("type.toml", "timeout_secs = 1\n\ndeny_network = \"no\"\n", ["type.toml:3:", "deny_network"]),
        ("zero.toml", "# limits\ntimeout_secs = 0\n", ["zero.toml:2:1", "timeout_secs"]),
        ("net.toml", "deny_network = false\n", ["net.toml:1:1", "deny_network"]),
        ("backend.toml", "backend = \"docker\"\n", ["backend.toml:1:", "docker"]),
        ("syntax.toml", "timeout_secs = [\n", ["syntax.toml:1:17", "unclosed array"]),
    ];
    for (name, text, needles) in cases {
        let path = cli.write(name, text);
        let out = cli.run(&["run", "--profile", path.to_str().unwrap(), &fixture("hello")]);
        assert_refused(&out, &needles);
        let check = cli.run(&["profile", "check", path.to_str().unwrap()]);
        assert_refused(&check, &needles);
    }
}

#[test]
fn missing_profile() {
    let cli = Cli::new();
    assert_refused(&cli.run(&["run", "--profile", "nope.toml", &fixture("hello")]), &["nope.toml"]);
}

#[test]
fn missing_mount() {
    let cli = Cli::new();
    assert_refused(&cli.run(&["run", "--dir", "absent::/x", &fixture("hello")]), &["absent"]);
}

#[test]
fn untrusted_cache_warns_and_runs() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    std::fs::create_dir(cli.cache()).unwrap();
    std::fs::set_permissions(cli.cache(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = cli.run(&["run", &fixture("hello")]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(crate::stdout(&out), "hello, world\n");
    assert!(stderr(&out).contains("not trusted"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(cli.cache()).unwrap().count(), 0, "nothing written into it");
}
