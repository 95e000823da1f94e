//! Executions from several threads at once, pooled and not.

use mimobox_core::{ExecRequest, ModuleSource, Outcome};
use mimobox_wasm::WasmSandbox;

use crate::config_in;

fn hammer(pool_size: u32, threads: usize, runs: usize) {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.pool.size = pool_size;
    let sandbox = WasmSandbox::create(config).unwrap();
    let module = ModuleSource::Path(mimobox_fixtures::path("hello"));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let sandbox = sandbox.clone();
            let module = module.clone();
            scope.spawn(move || {
                for _ in 0..runs {
                    let request = ExecRequest { module: Some(module.clone()), ..ExecRequest::default() };
                    let result = sandbox.run(request).unwrap();
                    assert_eq!(
                        (result.outcome, result.stdout),
                        (Outcome::Exited { code: 0 }, b"hello, world\n".to_vec())
                    );
                }
            });
        }
    });
}

#[test]
fn more_threads_than_pool_slots_wait_for_a_slot() {
    hammer(1, 4, 25);
}

#[test]
fn unpooled_sandbox_runs_concurrently() {
    hammer(0, 4, 25);
}

#[test]
fn a_timeout_on_one_thread_does_not_wait_for_another() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.timeout = std::time::Duration::from_millis(500);
    let sandbox = WasmSandbox::create(config).unwrap();
    let run = |name: &str| {
        let request = ExecRequest {
            module: Some(ModuleSource::Path(mimobox_fixtures::path(name))),
            ..ExecRequest::default()
        };
        sandbox.run(request).unwrap()
    };
    std::thread::scope(|scope| {
        let spinning = scope.spawn(|| run("loop"));
        let sleeping = scope.spawn(|| run("sleep"));
        for result in [spinning.join().unwrap(), sleeping.join().unwrap()] {
            assert_eq!(result.outcome, Outcome::TimedOut);
            assert!(result.elapsed < std::time::Duration::from_secs(10), "{:?}", result.elapsed);
        }
    });
}

#[test]
fn run_works_from_inside_an_async_runtime() {
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let result = runtime.block_on(async {
        let request = ExecRequest {
            module: Some(ModuleSource::Path(mimobox_fixtures::path("hello"))),
            ..ExecRequest::default()
        };
        sandbox.run(request).unwrap()
    });
    assert_eq!(result.stdout, b"hello, world\n");
}
