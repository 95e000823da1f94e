//! `cargo xtask`: the project's chores, one module per task.
//!
//! - `cargo xtask fixtures`: compile the WAT fixtures to `target/fixtures`.
//! - `cargo xtask runtimes`: fetch CPython and QuickJS (WASI builds) into
//!   `target/runtimes`, checked against a pinned SHA-256.
//! - `cargo xtask bench [--quick]`: run the benchmarks and print one table.
//! - `cargo xtask bench-server [--quick]`: only the front doors' rows (MCP
//!   and HTTP against the release binary) and the fleet's.
//! - `cargo xtask bench-fleet [--quick]`: only the fleet's rows.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod fixtures;
mod fleet_bench;
mod interpreter_bench;
mod runtimes;
mod server_bench;

/// The project's chores.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Compile the WAT fixtures to `target/fixtures`.
    Fixtures,
    /// Fetch the pinned WASI runtimes (CPython, QuickJS) into
    /// `target/runtimes`, checked against their SHA-256.
    Runtimes,
    /// Run the benchmarks and the process-level comparisons, and print one
    /// table.
    Bench {
        /// Shorter measurements, for a quick look (less precise).
        #[arg(long)]
        quick: bool,
    },
    /// Only the front doors' rows: `mimobox mcp` and `mimobox serve`
    /// against the release binary, then the fleet's.
    BenchServer {
        /// Shorter measurements, for a quick look (less precise).
        #[arg(long)]
        quick: bool,
    },
    /// Only the fleet's rows: two workers of the release binary on a real
    /// Redis and S3 service.
    BenchFleet {
        /// Shorter measurements, for a quick look (less precise).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> Result<()> {
    match Xtask::parse().task {
        Task::Fixtures => fixtures::run(),
        Task::Runtimes => runtimes::run(),
        Task::Bench { quick } => bench::run(quick),
        Task::BenchServer { quick } => bench::run_server(quick, true),
        Task::BenchFleet { quick } => bench::run_server(quick, false),
    }
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}
