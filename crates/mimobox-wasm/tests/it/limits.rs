//! Time, fuel, memory and output limits against hostile guests, each
//! through the synchronous API and the async one (`run_with` below runs
//! both and requires the same answer).

use std::time::Duration;

use mimobox_core::{Outcome, SandboxConfig, SandboxResult};
use mimobox_wasm::WasmSandbox;

use crate::{config_in, request};

/// Runs fixture `name` under `adjust(default config)` with a private cache,
/// once with [`WasmSandbox::run`] and once with [`WasmSandbox::run_async`]
/// on a multi-threaded tokio runtime; the two must agree on everything
/// but timing. Returns the synchronous result.
fn run_with(name: &str, args: &[&str], adjust: impl FnOnce(&mut SandboxConfig)) -> SandboxResult {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    adjust(&mut config);
    let sandbox = WasmSandbox::create(config).unwrap();
    let module = mimobox_fixtures::path(name);
    let sync = sandbox.run(request(&module, args)).unwrap();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let asynced = runtime.block_on(sandbox.run_async(request(&module, args))).unwrap();
    let observed = |r: &SandboxResult| {
        (
            r.outcome.clone(),
            r.stdout.clone(),
            r.stderr.clone(),
            r.stdout_truncated,
            r.stderr_truncated,
            r.memory_limit_hit,
            r.fuel_consumed,
        )
    };
    assert_eq!(observed(&asynced), observed(&sync), "{name}: the async API answered otherwise");
    sync
}

#[test]
fn hello_prints_and_exits_zero() {
    let result = run_with("hello", &[], |_| {});
    assert_eq!(result.outcome, Outcome::Exited { code: 0 });
    assert_eq!(result.stdout, b"hello, world\n");
    assert!(result.stderr.is_empty());
    assert!(!result.stdout_truncated);
    assert_eq!(result.fuel_consumed, None);
}

#[test]
fn proc_exit_code_is_the_exit_code() {
    let result = run_with("exit42", &[], |_| {});
    assert_eq!(result.outcome, Outcome::Exited { code: 42 });
    assert_eq!(result.exit_code(), Some(42));
}

#[test]
fn main_export_is_a_fallback_entry_point() {
    assert_eq!(run_with("main_export", &[], |_| {}).outcome, Outcome::Exited { code: 7 });
}

#[test]
fn main_status_outside_the_wasi_range_is_a_trap() {
    let result = run_with("main_bad_status", &[], |_| {});
    assert!(
        matches!(&result.outcome, Outcome::Trap { message } if message.contains("256")),
        "{:?}",
        result.outcome
    );
}

#[test]
fn infinite_loop_times_out() {
    let result = run_with("loop", &[], |c| c.timeout = Duration::from_millis(500));
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert!(result.elapsed >= Duration::from_millis(500), "{:?}", result.elapsed);
    assert!(result.elapsed < Duration::from_secs(10), "{:?}", result.elapsed);
}

#[test]
fn blocking_host_sleep_times_out() {
    let result = run_with("sleep", &[], |c| c.timeout = Duration::from_secs(1));
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert!(result.elapsed >= Duration::from_secs(1), "{:?}", result.elapsed);
    assert!(result.elapsed < Duration::from_secs(10), "a 60 s sleep must end near 1 s: {:?}", result.elapsed);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let result = run_with("membomb", &[], |c| c.memory_limit = 32 << 20);
    assert_eq!(result.outcome, Outcome::MemoryLimit);
    assert!(result.peak_memory <= 32 << 20, "{}", result.peak_memory);
    assert!(result.peak_memory > 16 << 20, "it grew up to the limit: {}", result.peak_memory);
}

#[test]
fn oversized_initial_memory_hits_the_memory_limit() {
    let result = run_with("bigmem", &[], |c| c.memory_limit = 64 << 20);
    assert_eq!(result.outcome, Outcome::MemoryLimit);
    let result = run_with("bigmem", &[], |c| c.memory_limit = 256 << 20);
    assert_eq!(result.outcome, Outcome::Exited { code: 0 }, "it fits under a larger limit");
}

#[test]
fn output_flood_is_truncated_and_the_guest_finishes() {
    let result = run_with("flood", &[], |c| {
        c.max_stdout = 100_000;
        c.max_stderr = 1000;
    });
    assert_eq!(result.outcome, Outcome::Exited { code: 0 }, "the guest is not killed for writing");
    assert_eq!(result.stdout.len(), 100_000);
    assert_eq!(result.stderr.len(), 1000);
    assert!(result.stdout_truncated && result.stderr_truncated);
    assert!(result.stdout.iter().all(|&b| b == b'x'));
}

#[test]
fn output_under_the_cap_is_not_flagged() {
    let result = run_with("hello", &[], |c| c.max_stdout = 13);
    assert_eq!(result.stdout, b"hello, world\n");
    assert!(!result.stdout_truncated);
}

#[test]
fn fuel_exhaustion_is_its_own_outcome() {
    let result = run_with("loop", &[], |c| {
        c.fuel = Some(1_000_000);
        c.timeout = Duration::from_secs(30);
    });
    assert_eq!(result.outcome, Outcome::OutOfFuel);
    assert_eq!(result.fuel_consumed, Some(1_000_000));
    assert!(result.elapsed < Duration::from_secs(10), "fuel, not the timeout, ended it");
}

#[test]
fn fuel_consumed_is_reported_when_the_guest_finishes() {
    let result = run_with("count", &[], |c| c.fuel = Some(10_000_000));
    assert_eq!(result.outcome, Outcome::Exited { code: 0 });
    let used = result.fuel_consumed.expect("fuel is on");
    assert!(used > 10_000 && used < 10_000_000, "{used}");
}
