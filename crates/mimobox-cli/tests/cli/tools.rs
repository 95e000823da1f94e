//! Tools a profile grants as host commands (`[tools.NAME]`): JSON in on
//! stdin, JSON out on stdout, an empty environment, a timeout, and every
//! failure a tool error in the guest rather than a crash.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::{Cli, fixture, stderr, stdout};

/// The tool: its behaviour is picked by the `word` argument.
const LOOKUP: &str = r#"#!/bin/sh
read -r input
case "$input" in
  *'"fail"'*) echo "it broke" >&2; exit 3 ;;
  *'"garbage"'*) echo "not json" ;;
  *'"sleep"'*) /bin/sleep 30 ;;
  *'"env"'*) printf '{"env": "%s"}' "$(/usr/bin/env | /usr/bin/tr '\n' ' ')" ;;
  *'"huge"'*) /usr/bin/head -c 20000000 /dev/zero | /usr/bin/tr '\0' 'x' ;;
  *) printf '{"got": %s}' "$input" ;;
esac
"#;

fn setup(cli: &Cli) -> String {
    let script = cli.write("lookup.sh", LOOKUP);
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    cli.write(
        "tools.toml",
        r#"
timeout_secs = 20
[tools.lookup]
description = "Looks a word up."
command = ["./lookup.sh"]
input_schema = { type = "object", properties = { word = { type = "string" } }, required = ["word"] }
timeout = "1s"
env = { GREETING = "hi" }
"#,
    );
    "tools.toml".to_owned()
}

/// Calls `lookup` with `word` through the door; the run's `--json` result.
fn call(cli: &Cli, profile: &str, word: &str) -> serde_json::Value {
    let frame = serde_json::json!({"v": 1, "id": 1, "op": "call", "tool": "lookup", "args": {"word": word}});
    let out = cli
        .command(&["run", "--json", "--profile", profile, &fixture("tool_caller"), &frame.to_string()])
        .env("MIMOBOX_TEST_SECRET", "do not pass this on")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The guest's answer frame, from a `--json` result.
fn answer(result: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(result["stdout"].as_str().unwrap()).unwrap()
}

#[test]
fn a_command_tool_gets_json_on_stdin_and_answers_json() {
    let cli = Cli::new();
    let profile = setup(&cli);
    let result = call(&cli, &profile, "owl");
    let answer = answer(&result);
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["value"], serde_json::json!({"got": {"word": "owl"}}));
    let record = &result["tool_calls"][0];
    assert_eq!((record["tool"].as_str(), record["ok"].as_bool()), (Some("lookup"), Some(true)), "{result}");
}

#[test]
fn a_command_tool_sees_only_the_variables_its_profile_grants() {
    let cli = Cli::new();
    let profile = setup(&cli);
    let env = answer(&call(&cli, &profile, "env"))["value"]["env"].as_str().unwrap().to_owned();
    assert!(env.contains("GREETING=hi"), "{env}");
    for leaked in ["MIMOBOX_TEST_SECRET", "HOME=", "PATH=", "MIMOBOX_CACHE_DIR"] {
        assert!(!env.contains(leaked), "{leaked} reached the tool: {env}");
    }
}

#[test]
fn failures_exit_status_bad_json_and_oversized_answers_are_tool_errors() {
    let cli = Cli::new();
    let profile = setup(&cli);
    for (word, kind, says) in [
        ("fail", "tool_error", "exited with status 3: it broke"),
        ("garbage", "tool_error", "did not answer JSON"),
        ("huge", "too_large", "more than"),
    ] {
        let result = call(&cli, &profile, word);
        let answer = answer(&result);
        assert_eq!(answer["ok"], false, "{answer}");
        assert_eq!(answer["error"]["kind"], kind, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(says), "{answer}");
        assert_eq!(result["tool_calls"][0]["ok"], false);
    }
    // Arguments that do not match the schema never reach the command.
    let frame = r#"{"v":1,"id":1,"op":"call","tool":"lookup","args":{"word":7}}"#;
    let out = cli.run(&["run", "--json", "--profile", &profile, &fixture("tool_caller"), frame]);
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer(&result)["error"]["kind"], "invalid_arguments");
}

#[test]
fn a_command_past_its_timeout_is_killed_and_the_guest_gets_a_timeout() {
    let cli = Cli::new();
    let profile = setup(&cli);
    let started = Instant::now();
    let result = call(&cli, &profile, "sleep");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(answer(&result)["error"]["kind"], "timeout", "{result}");
    // The command's process group is gone: no `sleep 30` of ours is left.
    std::thread::sleep(Duration::from_millis(200));
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).lines().any(|l| l.trim() == "/bin/sleep 30"));
}

#[test]
fn a_tool_whose_command_is_missing_is_a_profile_error() {
    let cli = Cli::new();
    cli.write("bad.toml", "[tools.lookup]\ndescription = \"x\"\ncommand = [\"./nowhere.sh\"]\n");
    let out = cli.run(&["run", "--profile", "bad.toml", &fixture("tool_caller"), "{}"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("tools.lookup.command") && err.contains("nowhere.sh"), "{err}");
    cli.write("bad.toml", "[tools.lookup]\ndescription = \"x\"\ncommand = [\"/bin/true\"]\nshell = true\n");
    let err = stderr(&cli.run(&["run", "--profile", "bad.toml", &fixture("tool_caller"), "{}"]));
    assert!(err.contains("tools.lookup.shell"), "{err}");
}
