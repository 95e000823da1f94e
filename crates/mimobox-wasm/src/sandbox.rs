//! [`WasmSandbox`]: the Wasmtime implementation of [`Sandbox`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mimobox_cache::ModuleCache;
use mimobox_core::{
    ConfigError, ExecRequest, ModuleSource, Mount, Outcome, Sandbox, SandboxConfig, SandboxError,
    SandboxResult, Stdin,
};
use wasmtime::{Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cache::configured_cache;
use crate::check::check_config;
use crate::engine::{EngineCore, EngineSettings, deadline_ticks};
use crate::limits::GuestLimiter;
use crate::loader::{CompileEvent, EntryPoint, LoadedModule, Loader, ModuleOrigin, one_line};
use crate::output::CappedPipe;
use crate::state::GuestState;

/// A sandbox that runs WebAssembly modules on Wasmtime with WASI preview 1.
///
/// It grants nothing its [`SandboxConfig`] does not: no directories, no
/// environment beyond `env`, no network, no clocks' or randomness' side
/// channels beyond WASI's own, and empty stdin unless a request brings some.
/// Every execution gets a fresh store and WASI context; the engine, linker
/// and compiled modules are shared.
///
/// A `WasmSandbox` is a cheap handle: clones share the engine and the
/// modules, and [`WasmSandbox::run`] takes `&self`, so several threads can
/// execute at once.
///
/// ```no_run
/// use mimobox_core::{Sandbox, SandboxConfig};
/// use mimobox_wasm::WasmSandbox;
///
/// let mut sandbox = WasmSandbox::new(SandboxConfig::default())?;
/// let result = sandbox.execute(&["hello.wasm".to_string()])?;
/// print!("{}", result.stdout_lossy());
/// # Ok::<(), mimobox_core::SandboxError>(())
/// ```
#[derive(Clone)]
pub struct WasmSandbox {
    inner: Arc<Inner>,
}

struct Inner {
    config: SandboxConfig,
    core: Arc<EngineCore>,
    loader: Loader,
}

impl WasmSandbox {
    /// Creates a sandbox, checking that every setting can be honoured and
    /// that every mount can be opened.
    pub fn create(config: SandboxConfig) -> Result<WasmSandbox, SandboxError> {
        check_config(&config)?;
        let config = canonical_mounts(config)?;
        let settings = EngineSettings { fuel: config.fuel.is_some(), pool_size: config.pool.size };
        let core = EngineCore::shared(settings)?;
        let cache = open_cache(&config);
        let loader = Loader::new(core.clone(), cache, config.max_module_size, config.compile_timeout);
        Ok(WasmSandbox { inner: Arc::new(Inner { config, core, loader }) })
    }

    /// The config this sandbox enforces (mount paths canonicalised).
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// The disk cache in use, if the cache is enabled and trusted.
    pub fn cache(&self) -> Option<&ModuleCache> {
        self.inner.loader.cache()
    }

    /// Calls `observer` when a module that is in no cache starts and stops
    /// compiling, so that a front end can show progress on long compiles.
    pub fn on_compile(&self, observer: impl Fn(&CompileEvent) + Send + Sync + 'static) {
        self.inner.loader.set_observer(Arc::new(observer));
    }

    /// Compiles (or finds in the cache) the module of `source` without
    /// running it, so that a later execution starts at once, and says where
    /// its code came from.
    pub fn prepare(&self, source: &ModuleSource) -> Result<ModuleOrigin, SandboxError> {
        self.inner.loader.load(source).map(|(_, origin)| origin)
    }

    /// Runs one request. Guest misbehaviour (a trap, a timeout, running out
    /// of fuel or memory) is an [`Outcome`], not an error; errors are what
    /// kept the guest from starting.
    pub fn run(&self, request: ExecRequest) -> Result<SandboxResult, SandboxError> {
        let inner = &*self.inner;
        let source = match request.module {
            Some(source) => source,
            None => inner.config.module.clone().map(ModuleSource::Path).ok_or(SandboxError::NoModule)?,
        };
        for (name, value) in &request.env {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(ConfigError::new("env", format!("`{name}` is not a valid variable")).into());
            }
        }
        let (module, _) = inner.loader.load(&source)?;

        let stdout = CappedPipe::new(inner.config.max_stdout, request.stdout_sink);
        let stderr = CappedPipe::new(inner.config.max_stderr, request.stderr_sink);
        let mut wasi = WasiCtxBuilder::new();
        match request.stdin {
            Stdin::Bytes(bytes) => wasi.stdin(MemoryInputPipe::new(bytes)),
            // Read by a helper thread as the guest asks; the guest waits on
            // it asynchronously, so the timeout still ends the wait.
            Stdin::Inherit => wasi.stdin(std::io::stdin()),
        };
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .arg(source.display_name());
        for arg in inner.config.args.iter().chain(&request.args) {
            wasi.arg(arg);
        }
        for (name, value) in &inner.config.env {
            if !request.env.iter().any(|(n, _)| n == name) {
                wasi.env(name, value);
            }
        }
        for (name, value) in &request.env {
            wasi.env(name, value);
        }
        // File operations on mounts run on this thread rather than hopping to
        // a blocking pool: each preopen takes the flag as it is when added.
        // It is switched off again before the context is built, because
        // with it on, a guest's single-timer `poll_oneoff` becomes an
        // uninterruptible thread sleep that no timeout could end.
        wasi.allow_blocking_current_thread(true);
        for (mounts, perms) in
            [(&inner.config.fs_readonly, FsPerms::ReadOnly), (&inner.config.fs_readwrite, FsPerms::ReadWrite)]
        {
            for mount in mounts {
                wasi.preopened_dir(&mount.host, &mount.guest, perms).map_err(|e| SandboxError::Mount {
                    host: mount.host.clone(),
                    source: std::io::Error::other(one_line(&e)),
                })?;
            }
        }

        wasi.allow_blocking_current_thread(false);
        let state =
            GuestState { wasi: wasi.build_p1(), limiter: GuestLimiter::new(inner.config.memory_limit) };
        let mut store = Store::new(&inner.core.engine, state);
        store.limiter(|state| &mut state.limiter);
        if let Some(fuel) = inner.config.fuel {
            store.set_fuel(fuel).map_err(|e| SandboxError::Internal(one_line(&e)))?;
        }
        // Wait for a slot before the deadline is set, so that time spent
        // waiting never counts against the guest.
        let _slot = inner.core.slots.acquire();
        let _running = inner.core.running();
        store.set_epoch_deadline(deadline_ticks(inner.config.timeout));
        store.epoch_deadline_trap();
        let started = Instant::now();
        // The epoch deadline stops guest code; this timer also stops a guest
        // blocked in a host call (a sleep, a read), by dropping its future.
        let timeout = inner.config.timeout;
        let ran = block_on(async { tokio::time::timeout(timeout, call_entry(&mut store, &module)).await })?;
        let elapsed = started.elapsed();

        let outcome = match ran {
            Err(_elapsed) => Outcome::TimedOut,
            Ok(result) => classify(result, store.data().limiter.memory_denied()),
        };
        let fuel_consumed =
            inner.config.fuel.map(|budget| budget.saturating_sub(store.get_fuel().unwrap_or(0)));
        let peak_memory = store.data().limiter.peak();
        drop(store);
        let (stdout, stdout_truncated) = stdout.take();
        let (stderr, stderr_truncated) = stderr.take();
        Ok(SandboxResult {
            outcome,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            elapsed,
            fuel_consumed,
            peak_memory,
        })
    }
}

/// Runs `future` to completion on this thread's runtime. Each thread has
/// its own, so that concurrent executions each drive their own timers. A
/// caller that is itself inside a tokio runtime (which cannot block on
/// another) gets the execution run on a helper thread instead.
fn block_on<F>(future: F) -> Result<F::Output, SandboxError>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("mimobox-run".into())
                .spawn_scoped(scope, || block_on_this_thread(future))
                .map_err(|e| SandboxError::Internal(format!("cannot start a run thread: {e}")))?
                .join()
                .map_err(|_| SandboxError::Internal("the run thread panicked".into()))?
        });
    }
    block_on_this_thread(future)
}

fn block_on_this_thread<F: std::future::Future>(future: F) -> Result<F::Output, SandboxError> {
    thread_local! {
        static RUNTIME: std::cell::OnceCell<tokio::runtime::Runtime> = const { std::cell::OnceCell::new() };
    }
    RUNTIME.with(|cell| {
        let runtime = match cell.get() {
            Some(runtime) => runtime,
            None => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(|e| SandboxError::Internal(format!("cannot start the runtime: {e}")))?;
                cell.get_or_init(|| runtime)
            }
        };
        Ok(runtime.block_on(future))
    })
}

/// Instantiates the module and calls its entry point; the `i32` is the exit
/// status the guest returned.
async fn call_entry(store: &mut Store<GuestState>, module: &LoadedModule) -> wasmtime::Result<i32> {
    let instance = module.pre.instantiate_async(&mut *store).await?;
    match module.entry {
        EntryPoint::Start => {
            let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
            start.call_async(&mut *store, ()).await?;
            Ok(0)
        }
        EntryPoint::Main => {
            let main = instance.get_typed_func::<(), i32>(&mut *store, "main")?;
            let code = main.call_async(&mut *store, ()).await?;
            // The same range `proc_exit` allows, so that a status never
            // collides with the ones mimobox reports (124, 134) or wraps.
            if !(0..126).contains(&code) {
                wasmtime::bail!("`main` returned {code}, outside the exit statuses [0, 126)");
            }
            Ok(code)
        }
    }
}

/// Turns the end of a call into an [`Outcome`], by the types of what
/// stopped it and by what the limiter saw, never by error text.
fn classify(result: wasmtime::Result<i32>, memory_denied: bool) -> Outcome {
    let error = match result {
        Ok(code) => return Outcome::Exited { code },
        Err(error) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Outcome::Exited { code: exit.0 };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Outcome::TimedOut,
        Some(Trap::OutOfFuel) => Outcome::OutOfFuel,
        _ if memory_denied => Outcome::MemoryLimit,
        _ => Outcome::Trap { message: one_line(&error) },
    }
}

/// Resolves every mount's host path once, so that the sandbox keeps
/// granting the directory it was created with, and fails early on a mount
/// that is missing or not a directory.
fn canonical_mounts(mut config: SandboxConfig) -> Result<SandboxConfig, SandboxError> {
    let canonical = |mount: &mut Mount| -> Result<(), SandboxError> {
        let resolved = std::fs::canonicalize(&mount.host)
            .map_err(|source| SandboxError::Mount { host: mount.host.clone(), source })?;
        if !resolved.is_dir() {
            return Err(SandboxError::Mount {
                host: mount.host.clone(),
                source: std::io::Error::other("not a directory"),
            });
        }
        mount.host = resolved;
        Ok(())
    };
    config.fs_readonly.iter_mut().try_for_each(canonical)?;
    config.fs_readwrite.iter_mut().try_for_each(canonical)?;
    Ok(config)
}

/// Opens the disk cache the config asks for. An unusable or untrusted
/// cache is a warning (once per process) and a run without it.
fn open_cache(config: &SandboxConfig) -> Option<ModuleCache> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !config.cache.enabled {
        return None;
    }
    match configured_cache(&config.cache) {
        Ok(cache) => Some(cache),
        Err(e) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!("running without the module cache: {e}");
            }
            None
        }
    }
}

impl Sandbox for WasmSandbox {
    fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        WasmSandbox::create(config)
    }

    fn run(&mut self, request: ExecRequest) -> Result<SandboxResult, SandboxError> {
        WasmSandbox::run(self, request)
    }

    fn destroy(self) {
        drop(self);
    }
}
