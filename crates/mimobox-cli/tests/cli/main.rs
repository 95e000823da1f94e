//! The `mimobox` binary as a real process, in a fresh temp directory, with
//! a private cache. One test binary; modules by topic.

mod attacks;
mod cache;
mod errors;
mod files;
mod fleet;
mod help;
mod http;
mod interpreter;
mod limits;
mod mcp;
mod pause;
mod run;
mod runtimes;
mod scientific;
mod serve;
mod sessions;
mod tools;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `mimobox` invocation in its own temp directory and cache.
struct Cli {
    dir: tempfile::TempDir,
    cache: PathBuf,
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(".cache");
        Cli { dir, cache }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cache(&self) -> PathBuf {
        self.cache.clone()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mimobox"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("MIMOBOX_CACHE_DIR", self.cache())
            // Sessions' private workspaces go under the test's own directory.
            .env("TMPDIR", self.dir.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("MIMOBOX_LOG")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("spawn mimobox")
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// The absolute path of the shipped profile `profiles/NAME.toml`.
fn shipped_profile(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../profiles").join(format!("{name}.toml"));
    path.canonicalize().unwrap().display().to_string()
}

fn fixture(name: &str) -> String {
    mimobox_fixtures::path(name).display().to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

/// Waits for `child` at most `limit`, killing it past that; returns its
/// status code (None if killed or signalled) and its peak RSS in KiB.
fn wait_bounded(mut child: Child, limit: Duration) -> (Option<i32>, i64) {
    let started = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the pid is our child's; status and usage are valid
        // pointers for the call.
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, libc::WNOHANG, &mut usage) };
        if pid > 0 {
            let status = std::process::ExitStatus::from_raw(status);
            return (status.code(), usage.ru_maxrss);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mimobox was still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
