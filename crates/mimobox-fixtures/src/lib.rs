//! The WAT fixtures of mimobox's tests and benches, compiled to `.wasm` at
//! build time so that `cargo test` on a fresh clone needs no manual step.
//!
//! Each fixture is a small, hostile or probing guest in `wat/`: an infinite
//! loop, a memory bomb, an output flood, a blocking sleep, a file tool.
//! `cargo xtask fixtures` writes the same files to `target/fixtures`.
//!
//! [`runtimes`] fetches the real WASI programs (CPython, QuickJS) that the
//! tests of real workloads run.
//!
//! [`redis`] and [`s3`] start the real servers a fleet's tests need: a
//! `redis-server`, and an S3 service (s3s's file-system implementation) on
//! a loopback port.

use std::path::{Path, PathBuf};

mod compile;
pub mod redis;
pub mod runtimes;
pub mod s3;

pub use compile::compile_dir;

/// The folder holding the `.wat` sources.
pub fn wat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wat")
}

/// The compiled `.wasm` of fixture `name` (without extension).
///
/// # Panics
/// Panics if there is no such fixture: a test naming a missing fixture is a
/// bug in the test.
pub fn path(name: &str) -> PathBuf {
    let path = Path::new(env!("OUT_DIR")).join("wasm").join(format!("{name}.wasm"));
    assert!(path.is_file(), "no fixture named {name}: {} does not exist", path.display());
    path
}

/// The `.wat` source of fixture `name`.
pub fn wat_path(name: &str) -> PathBuf {
    wat_dir().join(format!("{name}.wat"))
}

/// Every file below `dir`, recursively (symlinks are listed, not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}
