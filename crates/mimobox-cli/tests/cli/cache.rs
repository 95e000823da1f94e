//! The module cache in production, through real processes: many at once,
//! bounded size, eviction rules, the cache commands, compile limits.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use crate::{Cli, fixture, json, stderr, stdout};

fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_with(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

fn artifacts(cli: &Cli) -> Vec<PathBuf> {
    files_with(&cli.cache(), ".cwasm")
}

fn quickjs() -> String {
    mimobox_fixtures::runtimes::path("quickjs").display().to_string()
}

#[test]
fn eight_processes_on_one_uncached_module_compile_it_once() {
    let cli = Cli::new();
    let module = quickjs();
    let children: Vec<_> = (0..8)
        .map(|_| {
            cli.command(&["run", &module, "-e", "console.log(6*7)"])
                .env("MIMOBOX_LOG", "mimobox_wasm=debug")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let mut compiles = 0;
    for out in &outputs {
        assert_eq!((out.status.code(), stdout(out).as_str()), (Some(0), "42\n"), "{}", stderr(out));
        compiles +=
            stderr(out).lines().filter(|l| l.trim_start().starts_with("DEBUG compiled module=")).count();
    }
    assert_eq!(compiles, 1, "one process compiles, the others wait for its artifact");
    assert_eq!(artifacts(&cli).len(), 1);
    assert!(files_with(&cli.cache(), ".tmp").is_empty(), "no temp files left");
}

#[test]
fn a_killed_compile_leaves_nothing_trusted_and_blocks_nothing() {
    let cli = Cli::new();
    let module = quickjs();
    let mut child = cli.command(&["run", &module, "-e", ""]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(artifacts(&cli).iter().all(|a| std::fs::metadata(a).unwrap().len() > 0));
    let started = Instant::now();
    let out = cli.run(&["run", &module, "-e", "console.log('after')"]);
    assert_eq!(stdout(&out), "after\n", "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30), "the dead writer's lock did not hold the key");
    assert_eq!(artifacts(&cli).len(), 1);
}

#[test]
fn size_limit_evicts_least_recently_used() {
    let cli = Cli::new();
    // Each small fixture compiles to about 18 KiB: the limit holds two.
    let limit = "40KiB";
    for name in ["hello", "exit42", "count"] {
        let out =
            cli.command(&["run", &fixture(name)]).env("MIMOBOX_CACHE_MAX_SIZE", limit).output().unwrap();
        assert_ne!(out.status.code(), Some(2), "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = artifacts(&cli);
    assert_eq!(left.len(), 2, "{left:?}");
    let total: u64 = left.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(total <= 40 << 10);
    // The oldest (hello) went: running it again is a compile.
    let out = cli
        .command(&["run", "--json", &fixture("hello")])
        .env("MIMOBOX_LOG", "mimobox_wasm=debug")
        .output()
        .unwrap();
    assert!(stderr(&out).contains(" compiled module="), "{}", stderr(&out));
}

#[test]
fn stale_engine_artifacts_are_evicted_first() {
    let cli = Cli::new();
    assert_eq!(cli.run(&["run", &fixture("hello")]).status.code(), Some(0));
    let current = artifacts(&cli).remove(0);
    // An artifact left by another mimobox version, used more recently.
    let stale_dir = cli.cache().join("v1").join("modules").join("00000000deadbeef");
    std::fs::create_dir_all(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("ENGINE"), "mimobox-wasm 0.0.1").unwrap();
    let stale = stale_dir.join(format!("{}.cwasm", "ab".repeat(32)));
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&current).unwrap().set_modified(old).unwrap();

    let out = cli.run(&["cache", "stats", "--json"]);
    assert_eq!(json(&out)["stale_entries"], 1);
    let out = cli.run(&["cache", "prune"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stale.exists(), "stale artifact evicted although under the limit");
    assert!(current.exists(), "current artifact kept");
}

#[test]
fn artifacts_in_use_are_never_removed() {
    let cli = Cli::new();
    let mut sleeper = cli
        .command(&["run", "--timeout", "60s", &fixture("sleep")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the sleeper has compiled its module and pinned the
    // artifact (a shared lock on it, which an exclusive probe cannot take).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pinned = artifacts(&cli).first().is_some_and(|artifact| {
            let file = std::fs::File::open(artifact).unwrap();
            // SAFETY: flock on a descriptor this test holds open.
            let free =
                unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) }
                    == 0;
            !free
        });
        if pinned {
            break;
        }
        assert!(Instant::now() < deadline, "the sleeper never pinned its artifact");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = cli.run(&["cache", "clear"]);
    assert!(stdout(&out).contains("1 in use"), "{}", stdout(&out));
    assert_eq!(artifacts(&cli).len(), 1, "the mapped artifact stays");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let out = cli.run(&["cache", "clear"]);
    assert!(stdout(&out).starts_with("removed 1 modules"), "{}", stdout(&out));
    assert!(artifacts(&cli).is_empty());
}

#[test]
fn prune_removes_what_dead_writers_left() {
    let cli = Cli::new();
    assert_eq!(cli.run(&["run", &fixture("hello")]).status.code(), Some(0));
    let engine_dir = artifacts(&cli)[0].parent().unwrap().to_owned();
    let temp = engine_dir.join(".abandoned.cwasm.1.2.3.tmp");
    std::fs::write(&temp, b"half written").unwrap();
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::options().write(true).open(&temp).unwrap().set_modified(old).unwrap();
    assert_eq!(cli.run(&["cache", "prune"]).status.code(), Some(0));
    assert!(!temp.exists());
    assert_eq!(artifacts(&cli).len(), 1);
}

#[test]
fn cache_commands_report_and_clear() {
    let cli = Cli::new();
    let out = cli.run(&["cache", "dir"]);
    assert_eq!(stdout(&out).trim(), cli.cache().display().to_string());
    let out = cli.run(&["compile", &fixture("hello"), &fixture("count")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).matches("compiled in").count(), 2, "{}", stdout(&out));
    let out = cli.run(&["compile", &fixture("hello")]);
    assert!(stdout(&out).contains("already cached"), "{}", stdout(&out));
    assert_eq!(cli.run(&["run", &fixture("count")]).status.code(), Some(0));

    let stats = json(&cli.run(&["cache", "stats", "--json"]));
    assert_eq!(stats["entries"], 2);
    assert_eq!((stats["misses"].as_u64(), stats["hits"].as_u64()), (Some(2), Some(2)));
    assert_eq!(stats["max_size"], 1u64 << 30);
    let text = stdout(&cli.run(&["cache", "stats"]));
    assert!(text.contains("entries:       2"), "{text}");

    let out = cli.run(&["cache", "prune", "--max-size", "0"]);
    assert!(stdout(&out).starts_with("removed 2 modules"), "{}", stdout(&out));
    let out = cli.run(&["cache", "clear"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&cli.run(&["cache", "stats", "--json"]))["misses"], 0);
}

#[test]
fn compile_limit_names_compilation() {
    let cli = Cli::new();
    let out = cli.run(&["run", "--compile-timeout", "1ms", &quickjs(), "-e", ""]);
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(
        text.contains("compilation did not finish") && text.contains("the guest never started"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);
}

#[test]
fn untrusted_cache_is_an_error_for_cache_commands() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    std::fs::create_dir(cli.cache()).unwrap();
    std::fs::set_permissions(cli.cache(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = cli.run(&["cache", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not trusted"), "{}", stderr(&out));
}

#[test]
fn long_compile_is_silent_when_stderr_is_not_a_terminal() {
    let cli = Cli::new();
    let out = cli.run(&["run", &quickjs(), "-e", "console.log(1)"]);
    assert_eq!(stdout(&out), "1\n");
    assert_eq!(stderr(&out), "", "no progress line into a pipe");
}

#[test]
fn long_compile_shows_progress_on_a_terminal() {
    // `script` (util-linux, essential on Debian) gives the command a
    // pseudo-terminal. CPython takes seconds to compile on any machine, well
    // past the half second before the line appears.
    let cli = Cli::new();
    let command = format!(
        "MIMOBOX_CACHE_DIR='{}' '{}' run '{}' -c 'print(1)'",
        cli.cache().display(),
        env!("CARGO_BIN_EXE_mimobox"),
        mimobox_fixtures::runtimes::path("python").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) runs");
    let text = stdout(&out);
    assert!(text.contains("compiling python.wasm ("), "{text:?}");
    assert!(text.contains("\u{1b}[K"), "the line is erased when the compile ends: {text:?}");
    assert!(text.contains("1\r\n"), "{text:?}");
}
