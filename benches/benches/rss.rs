//! Resident memory across 100,000 hot executions in one process: prints
//! `rss_before_kib`, `rss_after_kib` and `rss_growth_kib` for `cargo xtask
//! bench` to read.

use mimobox_core::{ExecRequest, ModuleSource, SandboxConfig};
use mimobox_wasm::WasmSandbox;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; a count may follow for quick runs.
    let runs: usize = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(100_000);
    let cache = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::default();
    config.cache.dir = Some(cache.path().to_owned());
    let sandbox = WasmSandbox::create(config).unwrap();
    let module = ModuleSource::Path(mimobox_fixtures::path("hello"));
    let run = || {
        let result =
            sandbox.run(ExecRequest { module: Some(module.clone()), ..ExecRequest::default() }).unwrap();
        assert_eq!(result.stdout, b"hello, world\n");
    };
    // Warm up: first uses of the pool slots, allocator arenas, runtime.
    for _ in 0..1000 {
        run();
    }
    let before = rss_kib();
    for _ in 0..runs {
        run();
    }
    let after = rss_kib();
    println!("runs {runs}");
    println!("rss_before_kib {before}");
    println!("rss_after_kib {after}");
    println!("rss_growth_kib {}", after as i64 - before as i64);
}
