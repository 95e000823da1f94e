//! Random valid modules from `wasm-smith`, run under small limits: none may
//! panic the host, outlive its timeout by more than a second, or take the
//! host past its limits. The seeds are fixed, so a failure reproduces: run
//! `MIMOBOX_SMITH_SEEDS=N..M cargo test -p mimobox-wasm --test robustness`
//! for other ones.
//!
//! A test binary of its own, because it measures this process's memory.

use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use mimobox_core::{ExecRequest, ModuleSource, Mount, SandboxConfig};
use mimobox_wasm::WasmSandbox;

const TIMEOUT: Duration = Duration::from_millis(200);
const MEMORY_LIMIT: u64 = 16 << 20;
/// What the host may grow by, on top of the guest's memory limit.
const HOST_SLACK: u64 = 64 << 20;

/// The WASI functions random modules may import: the ones mimobox guards
/// and a few that hand the guest data.
const IMPORTS: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_shutdown" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))"#;

/// What every module exports: a memory for WASI, and `_start`.
const EXPORTS: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

fn seeds() -> std::ops::Range<u64> {
    let Ok(text) = std::env::var("MIMOBOX_SMITH_SEEDS") else { return 0..300 };
    let (start, end) = text.split_once("..").expect("MIMOBOX_SMITH_SEEDS=START..END");
    start.parse().unwrap()..end.parse().unwrap()
}

/// Bytes for `arbitrary`, from a seed (splitmix64).
fn entropy(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

fn module(seed: u64) -> Option<Vec<u8>> {
    let config = wasm_smith::Config {
        available_imports: Some(wat::parse_str(IMPORTS).unwrap()),
        exports: Some(wat::parse_str(EXPORTS).unwrap()),
        max_memories: 2,
        max_tables: 2,
        max_memory32_bytes: 64 << 20,
        max_table_elements: 100_000,
        memory64_enabled: false,
        gc_enabled: false,
        threads_enabled: false,
        exceptions_enabled: false,
        wide_arithmetic_enabled: false,
        custom_page_sizes_enabled: false,
        ..wasm_smith::Config::default()
    };
    let data = entropy(seed, 16 << 10);
    let mut input = Unstructured::new(&data);
    wasm_smith::Module::new(config, &mut input).ok().map(|m| m.to_bytes())
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn random_modules_never_break_the_host() {
    let scratch = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::default();
    config.cache.enabled = false;
    config.timeout = TIMEOUT;
    config.memory_limit = MEMORY_LIMIT;
    config.max_stdout = 4 << 10;
    config.max_stderr = 4 << 10;
    config.max_disk_write = 1 << 20;
    config.max_open_files = 16;
    config.pool.size = 2;
    config.fs_readwrite = vec![Mount { host: scratch.path().to_owned(), guest: "/".into() }];
    let sandbox = WasmSandbox::create(config).unwrap();

    // The engine and the pool are built; from here on the host may grow by
    // the guest's memory and the slack, no more.
    let baseline = rss();
    let (mut ran, mut refused) = (0, 0);
    let mut peak = baseline;
    for seed in seeds() {
        let Some(bytes) = module(seed) else { continue };
        let started = Instant::now();
        let request = ExecRequest {
            module: Some(ModuleSource::Bytes { name: format!("smith-{seed}"), bytes: bytes.into() }),
            ..ExecRequest::default()
        };
        // The time bound is on the run: the compile before it takes what
        // the machine gives it.
        match sandbox.run(request) {
            Ok(result) => {
                ran += 1;
                assert!(
                    result.elapsed < TIMEOUT + Duration::from_secs(2),
                    "seed {seed}: ran for {:?}",
                    result.elapsed
                );
            }
            Err(_) => refused += 1,
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(60), "seed {seed}: compiled and ran for {took:?}");
        peak = peak.max(rss());
        assert!(
            peak < baseline + MEMORY_LIMIT + HOST_SLACK,
            "seed {seed}: host RSS {} MiB over a baseline of {} MiB",
            peak >> 20,
            baseline >> 20
        );
    }
    eprintln!("{ran} ran, {refused} refused; peak RSS growth {} MiB", (peak - baseline) >> 20);
    assert!(ran > seeds().count() / 2, "most random modules run: {ran} of {}", seeds().count());
}
