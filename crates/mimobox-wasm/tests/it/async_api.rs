//! The async API: sessions' limits through `turn_async`, guests waiting in
//! a host call that hold no thread, and computing guests that yield.

use std::time::{Duration, Instant};

use mimobox_core::{ExecRequest, ModuleSource, Outcome, TurnRequest};
use mimobox_wasm::WasmSandbox;

use crate::{config_in, request};

fn one_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}

fn counter() -> ExecRequest {
    ExecRequest {
        module: Some(ModuleSource::Path(mimobox_fixtures::path("counter"))),
        ..ExecRequest::default()
    }
}

#[test]
fn a_sessions_limits_hold_through_turn_async() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.timeout = Duration::from_millis(500);
    config.memory_limit = 8 << 20;
    config.max_stdout = 100 << 10;
    let sandbox = WasmSandbox::create(config).unwrap();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    runtime.block_on(async {
        let mut session = sandbox.open_session_async(counter()).await.unwrap();
        for expected in 1..=2 {
            let turn = session.turn_async(TurnRequest::new("i")).await.unwrap();
            assert_eq!(turn.result.stdout, format!("{expected}\n").into_bytes());
        }
        // Output past the cap is cut and flagged; the session goes on.
        let flood = session.turn_async(TurnRequest::new("f")).await.unwrap();
        assert!(flood.result.stdout_truncated);
        assert_eq!(flood.result.stdout.len(), 100 << 10);
        // Memory past the limit is refused (the guest says so: status 1).
        let grow = session.turn_async(TurnRequest::new("g")).await.unwrap();
        assert!(grow.result.memory_limit_hit, "{:?}", grow.result);
        // A loop is stopped at the timeout, and ends the session.
        let started = Instant::now();
        let looped = session.turn_async(TurnRequest::new("l")).await.unwrap();
        assert_eq!(looped.result.outcome, Outcome::TimedOut);
        assert!(!looped.alive);
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(session.turn_async(TurnRequest::new("i")).await.is_err());
    });
}

#[test]
fn guests_sleeping_in_a_host_call_share_one_thread() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.pool.size = 256;
    let sandbox = WasmSandbox::create(config).unwrap();
    let nap = mimobox_fixtures::path("nap");
    // Compiled before the clock starts.
    sandbox.run(request(&nap, &[])).unwrap();
    let runtime = one_thread();
    let started = Instant::now();
    let results = runtime.block_on(async {
        let mut runs = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let (sandbox, nap) = (sandbox.clone(), nap.clone());
            runs.spawn(async move { sandbox.run_async(request(&nap, &[])).await });
        }
        runs.join_all().await
    });
    let took = started.elapsed();
    assert_eq!(results.len(), 200);
    for result in results {
        let result = result.unwrap();
        assert_eq!(result.outcome, Outcome::Exited { code: 0 });
        assert_eq!(result.stdout, b"awake\n");
    }
    // One after another they would take 20 s; at once, on one thread,
    // about one nap.
    assert!(took < Duration::from_secs(5), "200 naps of 100 ms on one thread took {took:?}");
}

#[test]
fn a_computing_guest_yields_so_others_on_its_thread_go_on() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.timeout = Duration::from_secs(2);
    let sandbox = WasmSandbox::create(config).unwrap();
    let (looping, nap) = (mimobox_fixtures::path("loop"), mimobox_fixtures::path("nap"));
    sandbox.run(request(&nap, &[])).unwrap();
    let runtime = one_thread();
    runtime.block_on(async {
        let spinner = {
            let (sandbox, looping) = (sandbox.clone(), looping.clone());
            tokio::spawn(async move { sandbox.run_async(request(&looping, &[])).await })
        };
        // Let the loop take the thread first.
        tokio::task::yield_now().await;
        let started = Instant::now();
        let napped = sandbox.run_async(request(&nap, &[])).await.unwrap();
        let took = started.elapsed();
        assert_eq!(napped.stdout, b"awake\n");
        // The loop runs for 2 s; the nap, on the same thread, is done
        // long before.
        assert!(took < Duration::from_millis(1500), "the nap took {took:?} beside a spinning guest");
        assert!(!spinner.is_finished(), "the loop should still be running");
        assert_eq!(spinner.await.unwrap().unwrap().outcome, Outcome::TimedOut);
    });
}
