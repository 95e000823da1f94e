//! `cargo xtask`: the project's chores, one module per task.
//!
//! - `cargo xtask fixtures`: compile the WAT fixtures to `target/fixtures`.
//! - `cargo xtask runtimes`: fetch CPython and QuickJS (WASI builds) into
//!   `target/runtimes`, checked against a pinned SHA-256.
//! - `cargo xtask bench [--quick]`: run the benchmarks and print one table.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

mod bench;
mod fixtures;
mod runtimes;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = args.split_first().map(|(t, r)| (t.as_str(), r)).unwrap_or(("help", &[]));
    match task {
        "fixtures" => fixtures::run(),
        "runtimes" => runtimes::run(),
        "bench" => bench::run(rest),
        "help" | "--help" | "-h" => {
            println!("usage: cargo xtask <fixtures | runtimes | bench [--quick]>");
            Ok(())
        }
        other => bail!("unknown task `{other}`; try `cargo xtask help`"),
    }
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}
