//! Tools a profile grants as host commands (`[tools.NAME]`): JSON in on
//! stdin, JSON out on stdout, an empty environment, a timeout, and every
//! failure a tool error in the guest rather than a crash.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
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
timeout = "5s"
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
    assert!(started.elapsed() >= Duration::from_secs(5), "not before its timeout");
    assert!(started.elapsed() < Duration::from_secs(25), "took {:?}", started.elapsed());
    assert_eq!(answer(&result)["error"]["kind"], "timeout", "{result}");
    // Everything the call started is gone when it returns (its namespace
    // is empty): no `sleep 30` of ours is left.
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

/// A guest that sends its first argument as one request frame, prints the
/// answer (its first 64 and last 32 bytes when it is longer than 96) and a
/// newline, then sleeps for as many seconds as the digit in its second
/// argument says. Its `host_alloc` grows memory, so it can take answers of
/// any size up to its memory limit.
const CALLER: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "host" "call" (func $call (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (global $next (mut i32) (i32.const 131072))
  (func (export "host_alloc") (param $n i32) (result i32) (local $at i32) (local $more i32)
    (local.set $at (global.get $next))
    (global.set $next (i32.add (local.get $at) (local.get $n)))
    (local.set $more (i32.sub (i32.div_u (i32.add (global.get $next) (i32.const 65535)) (i32.const 65536))
                              (memory.size)))
    (if (i32.gt_s (local.get $more) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $more)) (i32.const -1)) (then (return (i32.const 0))))))
    (local.get $at))
  ;; Writes one buffer to stdout (one per call: WASI may write only the
  ;; first of several).
  (func $print (param $at i32) (param $n i32)
    (i32.store (i32.const 608) (local.get $at))
    (i32.store (i32.const 612) (local.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 608) (i32.const 1) (i32.const 640))))
  (func (export "_start") (local $arg i32) (local $len i32) (local $rc i32) (local $at i32) (local $n i32)
    ;; argv pointers at 0, their strings at 1024.
    (drop (call $args_sizes_get (i32.const 512) (i32.const 516)))
    (drop (call $args_get (i32.const 0) (i32.const 1024)))
    (local.set $arg (i32.load (i32.const 4)))
    (block $end (loop $scan
      (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $arg) (local.get $len)))))
      (local.set $len (i32.add (local.get $len) (i32.const 1)))
      (br $scan)))
    (local.set $rc (call $call (local.get $arg) (local.get $len) (i32.const 600) (i32.const 604)))
    (if (local.get $rc) (then (call $exit (i32.sub (i32.const 10) (local.get $rc)))))
    (local.set $at (i32.load (i32.const 600)))
    (local.set $n (i32.load (i32.const 604)))
    ;; The answer (or its head and tail), then a newline.
    (if (i32.le_u (local.get $n) (i32.const 96))
      (then (call $print (local.get $at) (local.get $n)))
      (else (call $print (local.get $at) (i32.const 64))
            (call $print (i32.sub (i32.add (local.get $at) (local.get $n)) (i32.const 32)) (i32.const 32))))
    (i32.store8 (i32.const 700) (i32.const 10))
    (call $print (i32.const 700) (i32.const 1))
    ;; Sleep for argv[2]'s digit in seconds, if there is an argv[2].
    (if (i32.gt_u (i32.load (i32.const 512)) (i32.const 2))
      (then
        (i64.store (i32.const 800) (i64.const 0))
        (i32.store8 (i32.const 808) (i32.const 0))
        (i32.store (i32.const 816) (i32.const 1))
        (i64.store (i32.const 824)
          (i64.mul (i64.extend_i32_u (i32.sub (i32.load8_u (i32.load (i32.const 8))) (i32.const 48)))
                   (i64.const 1000000000)))
        (i64.store (i32.const 832) (i64.const 0))
        (i32.store16 (i32.const 840) (i32.const 0))
        (drop (call $poll (i32.const 800) (i32.const 900) (i32.const 1) (i32.const 960)))))
    (call $exit (i32.const 0))))
"#;

/// The frame that calls `lookup` with no arguments.
const CALL_FRAME: &str = r#"{"v":1,"id":1,"op":"call","tool":"lookup","args":{}}"#;

/// A temp dir with the `CALLER` guest, and a profile `tools.toml` whose
/// tool `lookup` runs the shell script `script` (as `sh -c`, so that no
/// descriptor of the shell's own reaches what it starts), with the variable
/// `MIMOBOX_TEST_MARK` set to a marker unique to this test, by which its
/// processes are found. The tool runs in the temp dir.
struct Scene {
    cli: Cli,
    marker: String,
}

impl Scene {
    fn new(script: &str, turn_timeout_secs: u32, tool_timeout: &str) -> Scene {
        let cli = Cli::new();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let marker = format!("mark-{}-{nanos}", std::process::id());
        cli.write("caller.wat", CALLER);
        // A JSON string is a TOML basic string.
        let script = serde_json::to_string(script).unwrap();
        cli.write(
            "tools.toml",
            &format!(
                r#"
timeout_secs = {turn_timeout_secs}
[tools.lookup]
description = "Runs a script."
command = ["/bin/sh", "-c", {script}]
timeout = "{tool_timeout}"
env = {{ MIMOBOX_TEST_MARK = "{marker}" }}
"#
            ),
        );
        Scene { cli, marker }
    }

    /// `mimobox run` of the caller guest through the profile; `sleep` is
    /// the guest's second argument, if any.
    fn command(&self, json: bool, sleep: Option<&str>) -> std::process::Command {
        let mut args = vec!["run", "--profile", "tools.toml"];
        if json {
            args.push("--json");
        }
        args.extend(["caller.wat", CALL_FRAME]);
        args.extend(sleep);
        self.cli.command(&args)
    }

    /// The host PIDs and command lines of the live processes whose
    /// environment holds this scene's marker.
    fn processes(&self) -> Vec<(i32, String)> {
        let needle = format!("MIMOBOX_TEST_MARK={}", self.marker);
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
            if environ.split(|&b| b == 0).any(|var| var == needle.as_bytes()) {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
            }
        }
        found
    }

    /// Asserts that within `within` no process of the tool is left; kills
    /// any that are, so that a failure leaves nothing behind.
    fn assert_none_left(&self, within: Duration, what: &str) {
        let until = Instant::now() + within;
        let mut left = self.processes();
        while !left.is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            left = self.processes();
        }
        for (pid, _) in &left {
            // SAFETY: kill has no memory effects; the PID was just seen
            // with this test's marker.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        assert!(left.is_empty(), "{what}: processes of the tool are still running: {left:?}");
    }
}

#[test]
fn no_tool_process_outlives_mimobox_when_the_turns_deadline_comes_first() {
    // The tool's own timeout (20 s) is far away; the turn's (1 s) ends the
    // run, and mimobox exits with the tool still running.
    let scene = Scene::new("read -r input\n/bin/sleep 41\n/bin/sleep 42\n", 1, "20s");
    let started = Instant::now();
    let out = scene.command(true, None).output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outcome"], "timed_out", "{result}");
    scene.assert_none_left(Duration::from_secs(2), "after mimobox exited");
}

#[test]
fn children_that_leave_the_process_group_or_session_end_with_the_call() {
    // One child moves to a session (and group) of its own; another is
    // double-forked, so that it is nobody's child. The tool then answers.
    let scene = Scene::new(
        r#"read -r input
/usr/bin/setsid /bin/sh -c ': > setsid.started; exec /bin/sleep 43' </dev/null >/dev/null 2>&1 &
/bin/sh -c '/bin/sh -c ": > forked.started; exec /bin/sleep 44" &' </dev/null >/dev/null 2>&1
# Answer only once both have moved out of reach of a group kill.
while [ ! -e setsid.started ] || [ ! -e forked.started ]; do /bin/sleep 0.01; done
printf '{"started": true}'
"#,
        20,
        "5s",
    );
    // The guest sleeps 5 s after the call, so mimobox is still running
    // while the test looks: the children must end with the call, not with
    // mimobox.
    let mut child = scene.command(false, Some("5")).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["value"], serde_json::json!({"started": true}), "{answer}");
    scene.assert_none_left(Duration::from_secs(1), "after the call");
    assert!(child.try_wait().unwrap().is_none(), "mimobox exited before the check");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_child_holding_the_tools_stdout_open_cannot_hold_the_call() {
    // The child keeps the tool's stdout and stderr open for 45 s, and has
    // left the tool's process group; the tool itself answers at once.
    let scene = Scene::new(
        r#"read -r input
/usr/bin/setsid /bin/sh -c ': > setsid.started; exec /bin/sleep 45' &
while [ ! -e setsid.started ]; do /bin/sleep 0.01; done
printf '{"answered": true}'
"#,
        20,
        "2s",
    );
    let started = Instant::now();
    let out = scene.command(true, None).output().unwrap();
    let took = started.elapsed();
    // Without the fix the call lasted to the turn's deadline (20 s).
    assert!(took < Duration::from_secs(12), "the call took {took:?}, far past the tool's 2 s timeout");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer(&result)["value"], serde_json::json!({"answered": true}), "{result}");
    scene.assert_none_left(Duration::from_secs(2), "after the call");

    // A tool that does not exit, with such a child, ends at its timeout.
    let scene = Scene::new("read -r input\n/usr/bin/setsid /bin/sleep 46 &\n/bin/sleep 47\n", 20, "1s");
    let started = Instant::now();
    let out = scene.command(true, None).output().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "the call took {took:?}, far past the tool's 1 s timeout");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer(&result)["error"]["kind"], "timeout", "{result}");
    scene.assert_none_left(Duration::from_secs(2), "after the timeout");
}

#[test]
fn a_tool_starts_with_only_stdin_stdout_and_stderr() {
    let scene = Scene::new(
        r#"read -r input
secret=$(/bin/cat <&7 2>/dev/null)
fds=$(/bin/ls /proc/self/fd | /usr/bin/tr '\n' ' ')
printf '{"secret": "%s", "fds": "%s"}' "$secret" "$fds"
"#,
        20,
        "5s",
    );
    let secret = scene.cli.write("secret.txt", "hunter2");
    let secret = std::fs::File::open(secret).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&secret);
    let mut command = scene.command(true, None);
    // SAFETY: dup2 is async-signal-safe and touches only the child's
    // descriptor table; `fd` stays open in the parent until the spawn.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if libc::dup2(fd, 7) == 7 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
    let out = command.output().unwrap();
    drop(secret);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let value = &answer(&result)["value"];
    assert_eq!(value["secret"], "", "the tool read mimobox's fd 7: {result}");
    // `ls` sees its stdio and the directory it is listing, nothing more.
    assert_eq!(value["fds"], "0 1 2 3 ", "{result}");
}

#[test]
fn a_sixteen_mebibyte_answer_costs_bounded_host_memory() {
    // `[0,0,...,0]` of `count` values, run through mimobox: what the guest
    // printed and mimobox's peak RSS in KiB.
    let answer_of = |count: u32| {
        let scene = Scene::new(
            &format!(
                "read -r input\nprintf '['\n/usr/bin/yes '0,' | /usr/bin/head -n {} | /usr/bin/tr -d '\\n'\nprintf '0]'\n",
                count - 1
            ),
            60,
            "30s",
        );
        let mut child = scene.command(false, None).stdout(std::process::Stdio::piped()).spawn().unwrap();
        // What the guest prints is at most about 100 bytes: it fits the pipe.
        let mut pipe = child.stdout.take().unwrap();
        let (code, peak_kib) = crate::wait_bounded(child, Duration::from_secs(60));
        let mut printed = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut printed).unwrap();
        assert_eq!(code, Some(0), "{printed}");
        (printed, peak_kib)
    };
    let (small, baseline_kib) = answer_of(2);
    assert_eq!(small, "{\"id\":1,\"ok\":true,\"v\":1,\"value\":[0,0]}\n");
    // 16,776,193 bytes: just under the 16 MiB answer cap with the frame
    // around it, and about 8 million values (once half a gigabyte as a
    // tree of values).
    let (big, peak_kib) = answer_of(8_388_096);
    assert!(big.starts_with(r#"{"id":1,"ok":true,"v":1,"value":[0,0,0,0"#), "{big}");
    assert!(big.ends_with(",0,0,0]}\n"), "{big}");
    // The answer is read, framed and copied into the guest's memory: a few
    // times its size, never a multiple of its number of values.
    let cost_mib = (peak_kib - baseline_kib) / 1024;
    assert!(cost_mib < 4 * 16, "one 16 MiB answer cost mimobox {cost_mib} MiB ({baseline_kib} KiB before)");
    assert!(peak_kib < 200 * 1024, "mimobox peaked at {} MiB", peak_kib / 1024);
}

/// Waits at most `limit` for `child`, the leader of a process group of its
/// own, and returns its output. Past that, it wakes and kills the whole
/// group (mimobox may be stopped, with its keeper) and fails, so that a
/// frozen mimobox cannot hang the test suite.
fn output_within(mut child: std::process::Child, limit: Duration, what: &str) -> std::process::Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let group = child.id() as i32;
            // SAFETY: kill has no memory effects; the group is our child's
            // own, and the child is not reaped yet.
            unsafe {
                libc::kill(-group, libc::SIGCONT);
                libc::kill(-group, libc::SIGKILL);
            }
            let _ = child.wait();
            panic!("{what}: mimobox was still running after {limit:?} (stopped or frozen)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `mimobox run --json` of `scene`, in a process group of its own (so that
/// where the attack works, it hits mimobox and not the test harness), with
/// its output bounded to `limit`: the run's `--json` result.
fn run_in_own_group(scene: &Scene, limit: Duration, what: &str) -> serde_json::Value {
    let child = scene
        .command(true, None)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = output_within(child, limit, what);
    assert_eq!(out.status.code(), Some(0), "{what}: mimobox ended with {}: {}", out.status, stderr(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outcome"], "exited", "{what}: {result}");
    result
}

#[test]
fn a_tool_that_stops_its_process_group_cannot_freeze_mimobox() {
    // `kill -STOP 0` stops every process of the caller's group. That was
    // once mimobox's own group, keeper included: neither ran again, not
    // even to the tool's timeout.
    let scene = Scene::new("read -r input\nkill -STOP 0\nprintf '{\"stopped\": false}'\n", 20, "2s");
    let result = run_in_own_group(&scene, Duration::from_secs(15), "after `kill -STOP 0`");
    // The tool stopped only itself, and was ended at its timeout.
    let answer = answer(&result);
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"]["kind"], "timeout", "{answer}");
    scene.assert_none_left(Duration::from_secs(2), "after the call");
}

#[test]
fn a_tool_that_kills_its_process_group_cannot_kill_mimobox() {
    // `kill -KILL 0`, and the common `trap 'kill 0' EXIT` (SIGTERM), once
    // killed mimobox and everything else in its process group.
    // (The guest prints a long answer's head and tail only: the message's
    // middle is cut, its end is the tool's status, 128 + the signal.)
    for (script, status) in [
        ("read -r input\nkill -KILL 0\nprintf '{}'\n", " 137"),
        ("read -r input\ntrap 'kill 0' EXIT\nprintf '{\"answered\": true}'\n", " 143"),
    ] {
        let scene = Scene::new(script, 20, "5s");
        let result = run_in_own_group(&scene, Duration::from_secs(15), script);
        // The tool killed only itself: a tool error, like any other death.
        let answer = answer(&result);
        assert_eq!(answer["error"]["kind"], "tool_error", "{script}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().ends_with(status), "{script}: {answer}");
        scene.assert_none_left(Duration::from_secs(2), script);
    }
}

#[test]
fn a_tool_that_clears_its_parent_death_signal_still_dies_with_mimobox() {
    // The tool clears its own PR_SET_PDEATHSIG (prctl option 1), as a
    // setuid program's exec would. When it was PID 1 of its namespace, that
    // was the last link of the chain: with mimobox killed, it lived on.
    let python = ["/usr/local/bin/python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("this test needs python3 in /usr/local/bin or /usr/bin");
    let script = format!(
        "read -r input\nexec {python} -c 'import ctypes, time; ctypes.CDLL(None).prctl(1, 0, 0, 0, 0); \
         open(\"cleared\", \"w\").close(); time.sleep(48)'\n"
    );
    let scene = Scene::new(&script, 60, "50s");
    let mut child = scene.command(true, None).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    while !scene.cli.path().join("cleared").exists() {
        if Instant::now() > until || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            scene.assert_none_left(Duration::ZERO, "cleaning up");
            panic!("the tool did not start, or did not clear its parent-death signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // mimobox dies mid-call, without a chance to end it.
    child.kill().unwrap();
    child.wait().unwrap();
    scene.assert_none_left(Duration::from_secs(2), "after mimobox was killed");
}
