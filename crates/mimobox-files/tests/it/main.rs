//! Integration tests of mimobox-files. Every attack is performed for real
//! in a fresh temp directory.

mod files;
mod workspace;

use std::path::Path;
use std::process::{Command, Stdio};

/// A command that runs only the test `name` of this binary again, in a
/// child process, with `var` set to `value`. Such helper tests do nothing
/// unless `var` is set; they exist for what one process cannot do to
/// itself (die while holding a lock, or run under a file-size limit).
fn child_test(name: &str, var: &str, value: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([name, "--exact", "--nocapture", "--test-threads=1"]).env(var, value).stdin(Stdio::null());
    command
}
