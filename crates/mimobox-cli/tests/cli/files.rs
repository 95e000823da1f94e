//! Hostile files and names: what mimobox prints about a module or profile
//! is escaped and bounded, files that are not modules are never quoted,
//! special files never hang it, and no input panics it.

use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{Cli, stderr};

/// What a module can do to a terminal through a name it chose.
const INJECTED: &str = "\u{1b}[2K\rmimobox: guest exited 0\u{1b}[8m";

#[test]
fn guest_chosen_names_reach_stderr_escaped_and_bounded() {
    let cli = Cli::new();
    // A function with a hostile 90 kB name that recurses until the stack
    // overflows: the trap's backtrace names it in every frame.
    let name = format!("{INJECTED}{}", "n".repeat(90_000));
    let wat = format!(
        r#"(module (memory (export "memory") 1)
             (func $f (@name "{}") call $f)
             (export "_start" (func $f)))"#,
        name.replace('\u{1b}', "\\1b").replace('\r', "\\0d")
    );
    std::fs::write(cli.path().join("deep.wat"), wat).unwrap();
    let out = cli.run(&["run", "--max-output", "1KiB", "deep.wat"]);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    assert!(!out.stderr.contains(&0x1b) && !out.stderr.contains(&b'\r'), "raw control bytes on stderr");
    assert!(out.stderr.len() < 8 << 10, "{} bytes on stderr", out.stderr.len());

    // An import whose names carry the same escapes cannot be linked; the
    // error says so on one escaped line.
    let wat = r#"(module (import "\1b[2K" "\0dmimobox: ok" (func)) (memory (export "memory") 1) (func (export "_start")))"#;
    std::fs::write(cli.path().join("import.wat"), wat).unwrap();
    let out = cli.run(&["run", "import.wat"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stderr.contains(&0x1b) && !out.stderr.contains(&b'\r'), "{:?}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn a_file_that_is_not_a_module_is_never_quoted() {
    let cli = Cli::new();
    cli.write("secret.txt", "API_KEY=hunter2\n");
    cli.write("p.toml", "module = \"secret.txt\"\n");
    cli.write("environ.toml", "module = \"/proc/self/environ\"\n");
    for profile in ["p.toml", "environ.toml"] {
        let out = cli.command(&["run", "--profile", profile]).env("SECRET_ENV", "hunter2").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{profile}");
        let message = stderr(&out);
        assert!(message.contains("not a WebAssembly module"), "{profile}: {message}");
        assert!(!message.contains("hunter2"), "{profile}: {message}");
    }
    // Text is still a module when the file says so by its name.
    cli.write("ok.wat", r#"(module (memory (export "memory") 1) (func (export "_start")))"#);
    assert_eq!(cli.run(&["run", "ok.wat"]).status.code(), Some(0));
}

#[test]
fn special_files_as_profile_stdin_or_module_are_refused_at_once() {
    let cli = Cli::new();
    let fifo = cli.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let fifo = fifo.display().to_string();
    let hello = crate::fixture("hello");
    for args in [
        vec!["run", "--profile", &fifo, &hello],
        vec!["run", "--stdin", &fifo, &hello],
        vec!["run", &fifo],
        vec!["profile", "check", &fifo],
    ] {
        let started = Instant::now();
        let child = cli.command(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} hung");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn non_utf8_paths_are_an_error_not_a_panic() {
    let cli = Cli::new();
    let dir = cli.path().join(std::ffi::OsStr::from_bytes(b"d\xff"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("p.toml"), "module = \"m.wasm\"\n").unwrap();
    let out = cli.command(&["profile", "show"]).arg(dir.join("p.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not UTF-8"), "{}", stderr(&out));

    cli.write("q.toml", "");
    let out = cli.command(&["profile", "show", "q.toml", "--cache-dir"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

mod random_profiles {
    use proptest::prelude::*;

    use crate::{Cli, stderr};

    const KEYS: &[&str] = &[
        "module",
        "args",
        "argv0",
        "memory_limit_mb",
        "timeout_secs",
        "fuel",
        "max_stdout",
        "max_open_files",
        "max_disk_write",
        "fs_readonly",
        "fs_readwrite",
        "deny_network",
        "max_compile_memory",
        "[env]",
        "[cache]",
        "[pool]",
        "size",
        "dir",
        "bogus",
    ];

    fn profile() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            "[ -~]{0,16}".prop_map(|s| format!("{s:?}")),
            "[0-9]{1,22}(KiB|GiB|s|ms|zz)?".prop_map(|s| format!("\"{s}\"")),
            Just("[\"x::/x\", \"\"]".to_owned()),
            Just("[[1]]".to_owned()),
        ];
        prop::collection::vec((prop::sample::select(KEYS), value), 0..8).prop_map(|lines| {
            lines
                .into_iter()
                .map(
                    |(key, value)| {
                        if key.starts_with('[') { format!("{key}\n") } else { format!("{key} = {value}\n") }
                    },
                )
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// `profile check` and `profile show` answer every profile with
        /// status 0 or one line and status 2, never a panic (101).
        #[test]
        fn profile_commands_never_panic(text in profile()) {
            let cli = Cli::new();
            cli.write("p.toml", &text);
            for command in ["check", "show"] {
                let out = cli.run(&["profile", command, "p.toml"]);
                let code = out.status.code();
                prop_assert!(code == Some(0) || code == Some(2), "{command} {text:?}: {code:?} {}", stderr(&out));
                if code == Some(2) {
                    prop_assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
                }
            }
        }
    }
}
