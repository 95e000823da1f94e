//! `mimobox session` against a hostile or silent client, with the counter
//! fixture serving the turns: an endless request line, a client that goes
//! quiet with stdin open, a session ended by a trap that nobody closes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use crate::{Cli, fixture, wait_bounded};

/// A profile serving the counter fixture, with `session` keys added.
fn profile(cli: &Cli, session: &str) -> String {
    cli.write("counter.toml", &format!("module = {:?}\n[session]\n{session}\n", fixture("counter")));
    "counter.toml".to_owned()
}

struct Client {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Client {
    fn open(cli: &Cli, args: &[&str]) -> Client {
        let mut child = cli
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().unwrap());
        Client { child, input, output }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.input.as_mut().unwrap().write_all(bytes).unwrap();
    }

    fn answer(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn turn(&mut self, code: &str) -> serde_json::Value {
        self.write(format!("{}\n", serde_json::json!({ "code": code })).as_bytes());
        self.answer()
    }

    /// Waits (bounded) for the process to exit on its own, stdin still
    /// open; its status, peak RSS in KiB and stderr.
    fn exits_by_itself(mut self, limit: Duration) -> (Option<i32>, i64, String) {
        let mut stderr = self.child.stderr.take().unwrap();
        let (code, peak) = wait_bounded(self.child, limit);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        drop(self.input);
        (code, peak, text)
    }
}

#[test]
fn an_overlong_request_line_costs_a_fixed_amount_of_memory() {
    let cli = Cli::new();
    let mut client = Client::open(&cli, &["session", &fixture("counter")]);
    // 512 MiB of one line, then a real request: the process reads and
    // drops the line in pieces, answers the error and goes on.
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..512 {
        client.write(&chunk);
    }
    client.write(b"\n");
    let refused = client.answer();
    assert!(refused["error"].as_str().unwrap().contains("longer than"), "{refused}");
    assert_eq!(client.turn("i")["stdout"], "1\n", "the session goes on");
    drop(client.input.take());
    let (code, peak_kib, stderr) = client.exits_by_itself(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    // The bound on a line is 16 MiB; without a bound the rest of the line
    // (496 MiB) was read to skip it.
    assert!(peak_kib < 160 * 1024, "peak RSS {} MiB", peak_kib / 1024);
}

#[test]
fn a_silent_client_is_closed_at_the_idle_timeout() {
    let cli = Cli::new();
    let profile = profile(&cli, "idle_timeout_secs = 1");
    let mut client = Client::open(&cli, &["session", "--profile", &profile]);
    let started = Instant::now();
    assert_eq!(client.turn("i")["stdout"], "1\n");
    // Stdin stays open, and nothing more is sent.
    let (code, _, stderr) = client.exits_by_itself(Duration::from_secs(30));
    assert_eq!(code, Some(124), "{stderr}");
    assert!(stderr.contains("session.idle_timeout_secs"), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(1), "not before its time");
}

#[test]
fn a_session_is_closed_at_its_lifetime_though_its_client_was_busy() {
    let cli = Cli::new();
    let profile = profile(&cli, "lifetime_secs = 2");
    let mut client = Client::open(&cli, &["session", "--profile", &profile]);
    let started = Instant::now();
    // Turns until shortly before the lifetime; the idle timeout (15
    // minutes) is far away.
    while started.elapsed() < Duration::from_millis(1200) {
        assert_eq!(client.turn("i")["alive"], true);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _, stderr) = client.exits_by_itself(Duration::from_secs(30));
    assert_eq!(code, Some(124), "{stderr}");
    assert!(stderr.contains("session.lifetime_secs"), "{stderr}");
    assert!(started.elapsed() >= Duration::from_millis(1900), "not before its time");
}

#[test]
fn an_ended_session_whose_client_goes_silent_is_closed_too() {
    let cli = Cli::new();
    let profile = profile(&cli, "idle_timeout_secs = 1");
    let mut client = Client::open(&cli, &["session", "--profile", &profile]);
    let trapped = client.turn("t");
    assert_eq!((trapped["outcome"].as_str(), trapped["alive"].as_bool()), (Some("trap"), Some(false)));
    let refused = client.turn("i");
    assert!(refused["error"].as_str().unwrap().contains("trapped"), "the reason it ended: {refused}");
    // The instance is gone already; the process winds down at the idle
    // timeout as it would at end of input.
    let (code, _, stderr) = client.exits_by_itself(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
}

/// What `mimobox session ARGS` shows on a pseudo-terminal (from
/// `script`) given `input` as typed lines.
fn on_a_terminal(cli: &Cli, args: &str, input: &[u8]) -> Vec<u8> {
    // Compiled first, so that no progress line (which a slow compile would
    // show on the terminal) is mixed into what the test reads.
    assert_eq!(cli.run(&["compile", &fixture("counter")]).status.code(), Some(0));
    let command = format!(
        "MIMOBOX_CACHE_DIR='{}' '{}' session {args} '{}'",
        cli.cache().display(),
        env!("CARGO_BIN_EXE_mimobox"),
        fixture("counter")
    );
    let mut child = std::process::Command::new("timeout")
        .args(["30", "script", "-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script(1) runs");
    child.stdin.as_mut().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", String::from_utf8_lossy(&out.stdout));
    out.stdout
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_repl_does_not_let_a_guest_drive_the_terminal() {
    let cli = Cli::new();
    let shown = on_a_terminal(&cli, "", b"h\n");
    for attack in [&b"\x1b]0;pwned"[..], b"\x1b[2J", b"\x1b]52;", b"\xff", b"\r\x1b", b"\rmimobox"] {
        assert!(
            !holds(&shown, attack),
            "{attack:?} reached the terminal: {:?}",
            String::from_utf8_lossy(&shown)
        );
    }
    let text = String::from_utf8_lossy(&shown);
    assert!(text.contains("\\u{1b}]0;pwned\\u{7}"), "escaped, not dropped: {text:?}");
    assert!(text.contains('\u{fffd}'), "invalid UTF-8 replaced: {text:?}");
    // The guest's fake line is plain text; mimobox's own prompt is drawn
    // in a way the guest's cleaned output cannot be.
    assert!(text.contains("\\u{d}mimobox: the session has ended (exited)"), "{text:?}");
    assert!(text.contains("\x1b[1m>>> \x1b[0m"), "{text:?}");
}

#[test]
fn raw_output_passes_the_guests_bytes_to_the_terminal() {
    let cli = Cli::new();
    let shown = on_a_terminal(&cli, "--raw-output", b"h\n");
    assert!(holds(&shown, b"\x1b]0;pwned\x07"), "{:?}", String::from_utf8_lossy(&shown));
}
