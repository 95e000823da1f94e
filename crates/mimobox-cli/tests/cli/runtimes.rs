//! Real interpreters under mimobox, driven through the shipped profiles:
//! CPython and QuickJS (WASI builds, fetched by `cargo xtask runtimes` or on
//! first use), each against hostile code.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::{Cli, json, shipped_profile, stderr, stdout};

/// A CLI whose cache is shared by these tests and warmed once, so that
/// CPython is compiled once per test run rather than once per test.
fn cli() -> Cli {
    static WARM: Once = Once::new();
    let mut cli = Cli::new();
    cli.cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("runtime-cache");
    WARM.call_once(|| {
        mimobox_fixtures::runtimes::path("python");
        for (name, code) in [("python", ["-c", "pass"]), ("quickjs", ["-e", ""])] {
            let out = cli.run(&["run", "--profile", &shipped_profile(name), "--", code[0], code[1]]);
            assert_eq!(out.status.code(), Some(0), "warming {name}: {}", stderr(&out));
        }
    });
    cli
}

impl Cli {
    /// Runs `code` through the shipped profile `name`, whose interpreter
    /// takes code after `code_flag`.
    fn interpret(&self, name: &str, code_flag: &str, extra: &[&str], code: &str) -> Output {
        let profile = shipped_profile(name);
        let mut args = vec!["run", "--profile", &profile];
        args.extend_from_slice(extra);
        args.extend(["--", code_flag, code]);
        self.run(&args)
    }

    fn python(&self, extra: &[&str], code: &str) -> Output {
        self.interpret("python", "-c", extra, code)
    }

    fn js(&self, extra: &[&str], code: &str) -> Output {
        self.interpret("quickjs", "-e", extra, code)
    }
}

#[test]
fn python_prints() {
    let cli = cli();
    let out = cli.python(&[], "print(1+1)");
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "2\n"), "{}", stderr(&out));
}

#[test]
fn quickjs_prints() {
    let cli = cli();
    let out = cli.js(&[], "console.log(6*7)");
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "42\n"), "{}", stderr(&out));
}

#[test]
fn python_reads_its_program_from_stdin() {
    let cli = cli();
    let profile = shipped_profile("python");
    let mut child = cli
        .command(&["run", "--profile", &profile, "--", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"print(6*7)\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "42\n");
}

/// A 1 s timeout ended the run: status 124, and the whole process (start,
/// load the runtime, run, exit) well short of what an unbounded run would
/// take. The bound leaves room for a machine whose both cores are busy.
fn assert_times_out_quickly(out: Output, started: Instant) {
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[test]
fn python_busy_loop_times_out() {
    let cli = cli();
    let started = Instant::now();
    assert_times_out_quickly(cli.python(&["--timeout", "1s"], "while True: pass"), started);
}

#[test]
fn python_sleep_times_out() {
    let cli = cli();
    let started = Instant::now();
    assert_times_out_quickly(cli.python(&["--timeout", "1s"], "import time; time.sleep(60)"), started);
}

#[test]
fn js_busy_loop_times_out() {
    let cli = cli();
    let started = Instant::now();
    assert_times_out_quickly(cli.js(&["--timeout", "1s"], "while (true) {}"), started);
}

#[test]
fn python_huge_allocation_fails_cleanly() {
    let cli = cli();
    // 1 GiB under a 128 MiB limit: the growth is denied and CPython raises.
    let out = cli.python(&["--memory", "128MiB"], "bytearray(1024**3)");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("MemoryError"), "{}", stderr(&out));
    // 2 GiB does not even fit a wasm32 index; CPython refuses it before
    // allocating. Either way the host is unharmed and the error is clear.
    let out = cli.python(&["--memory", "128MiB"], "bytearray(2*1024**3)");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Error"), "{}", stderr(&out));
}

#[test]
fn python_output_flood_is_truncated() {
    let cli = cli();
    let out = cli.python(&["--json"], "print('x'*10**8)");
    let value = json(&out);
    assert_eq!(value["outcome"], "exited", "{value}");
    assert_eq!(value["stdout_truncated"], true);
    assert_eq!(value["stdout"].as_str().unwrap().len(), 1 << 20);
}

#[test]
fn js_output_flood_is_truncated() {
    let cli = cli();
    let out = cli.js(&["--json"], "for (let i = 0; i < 100000; i++) console.log('x'.repeat(100))");
    let value = json(&out);
    assert_eq!(value["outcome"], "exited", "{value}");
    assert_eq!(value["stdout_truncated"], true);
    assert_eq!(value["stdout"].as_str().unwrap().len(), 1 << 20);
}

#[test]
fn python_files_obey_the_mounts() {
    let cli = cli();
    std::fs::create_dir(cli.path().join("ro")).unwrap();
    std::fs::create_dir(cli.path().join("rw")).unwrap();
    cli.write("ro/in.txt", "mounted data\n");
    let code = r#"
print(open('/ro/in.txt').read().strip())
try:
    open('/ro/new.txt', 'w')
except PermissionError as e:
    print('ro write refused')
open('/rw/out.txt', 'w').write('from python')
try:
    open('/etc/passwd')
except OSError:
    print('no /etc/passwd')
"#;
    let out = cli.python(&["--ro-dir", "ro::/ro", "--dir", "rw::/rw"], code);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "mounted data\nro write refused\nno /etc/passwd\n");
    assert!(!cli.path().join("ro/new.txt").exists());
    assert_eq!(std::fs::read_to_string(cli.path().join("rw/out.txt")).unwrap(), "from python");
}

#[test]
fn python_cannot_plant_a_symlink_that_a_later_mount_follows() {
    let cli = cli();
    std::fs::create_dir_all(cli.path().join("ws/out")).unwrap();
    let code = r#"
import os
os.rename('/ws/out', '/ws/out_old')
for target in ['../../../../..', '/']:
    try:
        os.symlink(target, '/ws/out')
        print('created', target)
    except PermissionError:
        print('refused', target)
os.symlink('out_old/x', '/ws/inside')
print('inside ok')
"#;
    let out = cli.python(&["--dir", "ws::/ws"], code);
    assert_eq!(stdout(&out), "refused ../../../../..\nrefused /\ninside ok\n", "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(cli.path().join("ws/out")).is_err(), "no symlink left behind");

    // Had one been planted, the next run's inner mount would not follow it.
    std::os::unix::fs::symlink("../../../../../../../..", cli.path().join("ws/out")).unwrap();
    let out =
        cli.python(&["--dir", "ws::/ws", "--dir", "ws/out::/out"], "print(open('/out/etc/hostname').read())");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
}

#[test]
fn python_opening_a_fifo_or_a_device_fails_instead_of_hanging() {
    let cli = cli();
    std::fs::create_dir(cli.path().join("d")).unwrap();
    let fifo = cli.path().join("d/p");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let code = r#"
import os
for path in ['/d/p', '/dev/zero', '/dev/tty', '/dev/null']:
    try:
        os.open(path, os.O_RDONLY)
        print('opened', path)
    except PermissionError:
        print('refused', path)
    except OSError as e:
        print('error', path, e.errno)
"#;
    let started = Instant::now();
    let out = cli.python(&["--timeout", "5s", "--dir", "d::/d", "--ro-dir", "/dev::/dev"], code);
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = stdout(&out);
    for path in ["/d/p", "/dev/zero", "/dev/null"] {
        assert!(lines.contains(&format!("refused {path}\n")), "{lines}");
    }
    assert!(!lines.contains("opened"), "{lines}");
}

#[test]
fn python_cannot_hold_more_files_open_than_max_open_files() {
    let cli = cli();
    std::fs::create_dir(cli.path().join("d")).unwrap();
    cli.write("d/f", "x");
    let code = r#"
import errno
held = []
try:
    for _ in range(20000):
        held.append(open('/d/f'))
except OSError as e:
    print(len(held), e.errno == errno.EMFILE)
"#;
    let out = cli.python(&["--ro-dir", "d::/d", "--max-open-files", "100"], code);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line = stdout(&out);
    let (count, emfile) = line.trim().split_once(' ').unwrap();
    let count: usize = count.parse().unwrap();
    assert!((90..=100).contains(&count), "{line}");
    assert_eq!(emfile, "True");
}

#[test]
fn python_disk_writes_stop_at_the_quota_without_killing_the_guest() {
    let cli = cli();
    std::fs::create_dir(cli.path().join("out")).unwrap();
    let code = r#"
import errno
written = 0
try:
    with open('/out/big', 'wb') as f:
        while written < 64 * 1024 * 1024:
            written += f.write(b'x' * 65536)
            f.flush()
except OSError as e:
    print('stopped', e.errno == errno.ENOSPC)
print('still running')
"#;
    let out = cli.python(&["--json", "--dir", "out::/out", "--max-disk-write", "1MiB"], code);
    let value = json(&out);
    assert_eq!(value["outcome"], "exited", "{value}");
    assert_eq!(value["stdout"], "stopped True\nstill running\n", "{value}");
    assert_eq!(value["disk_quota_hit"], true);
    let size = std::fs::metadata(cli.path().join("out/big")).unwrap().len();
    assert!(size <= 1 << 20, "{size} bytes on disk");
}

/// Wasmtime's 2026 WASI file-system advisories, carried out against this
/// build: truncating a read-only file (GHSA-2r75-cxrj-cmph), reaching one
/// through a hard link or rename into a writable mount
/// (GHSA-4ch3-9j33-3pmj), and trailing-slash paths through a symlink that
/// points out of the mount (RUSTSEC-2026-0269).
#[test]
fn python_cannot_write_a_read_only_file_by_any_route() {
    let cli = cli();
    std::fs::create_dir_all(cli.path().join("ro")).unwrap();
    std::fs::create_dir_all(cli.path().join("rw")).unwrap();
    cli.write("ro/keep.txt", "original\n");
    cli.write("outside.txt", "host secret\n");
    std::os::unix::fs::symlink("../outside.txt", cli.path().join("rw/out")).unwrap();
    let code = r#"
import os
def attempt(name, action):
    try:
        action()
        print(name, 'succeeded')
    except OSError:
        print(name, 'refused')
attempt('truncate', lambda: os.open('/ro/keep.txt', os.O_WRONLY | os.O_TRUNC))
attempt('append', lambda: open('/ro/keep.txt', 'a').write('x'))
attempt('link', lambda: os.link('/ro/keep.txt', '/rw/linked'))
attempt('rename', lambda: os.rename('/ro/keep.txt', '/rw/moved'))
attempt('slash', lambda: open('/rw/out/', 'r').read())
attempt('follow', lambda: open('/rw/out', 'r').read())
"#;
    let out = cli.python(&["--ro-dir", "ro::/ro", "--dir", "rw::/rw"], code);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for line in stdout(&out).lines() {
        assert!(line.ends_with("refused"), "{}", stdout(&out));
    }
    assert_eq!(stdout(&out).lines().count(), 6, "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(cli.path().join("ro/keep.txt")).unwrap(), "original\n");
    assert!(!cli.path().join("rw/linked").exists() && !cli.path().join("rw/moved").exists());
}
