//! [`WasmSandbox`]: the Wasmtime implementation of [`Sandbox`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mimobox_cache::ModuleCache;
use mimobox_core::{
    ConfigError, ExecRequest, ModuleSource, Outcome, Sandbox, SandboxConfig, SandboxError, SandboxResult,
    Stdin, keys,
};
use mimobox_tools::{Tool, Toolbox};
use wasmtime::{InstancePre, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cache::configured_cache;
use crate::check::check_config;
use crate::door::DoorState;
use crate::engine::{EngineCore, EngineSettings, deadline_ticks};
use crate::guard::FileGuard;
use crate::limits::{GuestLimiter, MemoryLimitTrap};
use crate::loader::{
    CompileEvent, EntryPoint, LoadLimits, LoadedModule, Loader, ModuleOrigin, NO_ENTRY_POINT, one_line,
};
use crate::mounts::{OpenMount, open_mounts};
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
    mounts: Vec<OpenMount>,
    /// The tools the guest may call: the config's own and the library's.
    tools: std::sync::RwLock<Option<Arc<Toolbox>>>,
    /// The config's tools (commands, and `http`), granted with any the
    /// library adds.
    granted: Vec<Tool>,
}

impl WasmSandbox {
    /// Creates a sandbox, checking that every setting can be honoured, and
    /// opening every mount once (see the crate's `mounts` rules: no mount
    /// reached through a symlink inside another, none overlapping the
    /// module cache).
    pub fn create(mut config: SandboxConfig) -> Result<WasmSandbox, SandboxError> {
        check_config(&config)?;
        let mounts = open_mounts(&config)?;
        for (mount, opened) in
            config.fs_readonly.iter_mut().chain(config.fs_readwrite.iter_mut()).zip(&mounts)
        {
            mount.host = opened.real.clone();
        }
        let settings = EngineSettings { fuel: config.fuel.is_some(), pool_size: config.pool.size };
        let core = EngineCore::shared(settings)?;
        let cache = open_cache(&config);
        let limits = LoadLimits {
            max_module_size: config.max_module_size,
            compile_timeout: config.compile_timeout,
            max_compile_memory: config.max_compile_memory,
        };
        let loader = Loader::new(core.clone(), cache, limits);
        let granted = granted_tools(&config)?;
        let tools = std::sync::RwLock::new(None);
        let sandbox = WasmSandbox { inner: Arc::new(Inner { config, core, loader, mounts, tools, granted }) };
        sandbox.set_tools(Toolbox::default())?;
        Ok(sandbox)
    }

    /// The config this sandbox enforces (mount paths as the opened
    /// directories are named on the host).
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Grants `tools` to the runs and sessions this sandbox (and its clones)
    /// start from now on, through the `host::call` door, besides the tools
    /// the config grants (`[tools.NAME]`, and `http` for
    /// `allowed_http_domains`), which stay; a name the config uses already
    /// is an error. Without any tool the door answers "no host".
    pub fn set_tools(&self, mut tools: Toolbox) -> Result<(), SandboxError> {
        for tool in &self.inner.granted {
            tools
                .add(tool.clone())
                .map_err(|e| ConfigError::new(format!("{}.{}", keys::TOOLS, tool.name()), e.message))?;
        }
        let tools = (!tools.is_empty()).then(|| Arc::new(tools));
        *self.inner.tools.write().unwrap_or_else(|p| p.into_inner()) = tools;
        Ok(())
    }

    fn tools(&self) -> Option<Arc<Toolbox>> {
        self.inner.tools.read().unwrap_or_else(|p| p.into_inner()).clone()
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
        let source = self.source_of(request.module)?;
        let (module, _) = inner.loader.load(&source)?;
        let (pre, entry) = match &*module {
            LoadedModule::Ready { pre, entry: Some(entry), .. } => (pre, *entry),
            LoadedModule::Ready { entry: None, .. } => {
                return Err(SandboxError::Link {
                    module: source.display_name(),
                    message: NO_ENTRY_POINT.into(),
                });
            }
            LoadedModule::BeyondLimits { reason } => {
                tracing::debug!(module = %source.display_name(), "beyond the sandbox's limits: {reason}");
                return Ok(SandboxResult {
                    outcome: Outcome::MemoryLimit,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    stdout_truncated: false,
                    stderr_truncated: false,
                    elapsed: std::time::Duration::ZERO,
                    fuel_consumed: inner.config.fuel.map(|_| 0),
                    peak_memory: 0,
                    memory_limit_hit: true,
                    disk_written: 0,
                    disk_quota_hit: false,
                    tool_calls: Vec::new(),
                });
            }
        };

        let stdout = CappedPipe::new(inner.config.max_stdout, request.stdout_sink);
        let stderr = CappedPipe::new(inner.config.max_stderr, request.stderr_sink);
        let guest = GuestIo {
            writable_mounts: true,
            args: &request.args,
            env: &request.env,
            stdin: request.stdin,
            stdout: &stdout,
            stderr: &stderr,
        };
        let mut store = self.new_store(&source, guest)?;
        // Wait for a slot before the deadline is set, so that time spent
        // waiting never counts against the guest.
        let _slot = inner.core.slots.acquire();
        let _running = inner.core.running();
        store.set_epoch_deadline(deadline_ticks(inner.config.timeout));
        let started = Instant::now();
        // The epoch deadline stops guest code; this timer also stops a guest
        // blocked in a host call (a sleep, a read), by dropping its future.
        let timeout = inner.config.timeout;
        let ran =
            block_on(async { tokio::time::timeout(timeout, call_entry(&mut store, pre, entry)).await })?;
        // Live output gets until the deadline (and a moment to flush) to
        // reach its sink; what it has not taken by then is dropped.
        let flush_by = started + timeout + LIVE_FLUSH_GRACE;
        stdout.finish(flush_by);
        stderr.finish(flush_by);
        let elapsed = started.elapsed();

        let outcome = match ran {
            Err(_elapsed) => Outcome::TimedOut,
            Ok(result) => classify(result, store.data().limiter.memory_denied()),
        };
        let result = measured(outcome, elapsed, inner.config.fuel, &mut store, &stdout, &stderr);
        // The instance goes back to the pool before the slot is released
        // (locals drop in reverse order, and the slot was taken later).
        drop(store);
        Ok(result)
    }
}

/// The result of an execution (or a session's turn) that ended with
/// `outcome`: the captured output and what the store measured.
pub(crate) fn measured(
    outcome: Outcome,
    elapsed: std::time::Duration,
    fuel_budget: Option<u64>,
    store: &mut Store<GuestState>,
    stdout: &CappedPipe,
    stderr: &CappedPipe,
) -> SandboxResult {
    let tool_calls = std::mem::take(&mut store.data_mut().door.calls);
    let state = store.data();
    let (stdout, stdout_truncated) = stdout.take();
    let (stderr, stderr_truncated) = stderr.take();
    SandboxResult {
        outcome,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        elapsed,
        fuel_consumed: fuel_budget.map(|budget| budget.saturating_sub(store.get_fuel().unwrap_or(0))),
        peak_memory: state.limiter.peak(),
        memory_limit_hit: state.limiter.memory_denied(),
        disk_written: state.files.disk_written(),
        disk_quota_hit: state.files.quota_hit(),
        tool_calls,
    }
}

impl WasmSandbox {
    /// The module of a request: its own, else the config's.
    pub(crate) fn source_of(&self, module: Option<ModuleSource>) -> Result<ModuleSource, SandboxError> {
        match module {
            Some(source) => Ok(source),
            None => self.inner.config.module.clone().map(ModuleSource::Path).ok_or(SandboxError::NoModule),
        }
    }

    /// The loader, engine core and config, for sessions.
    pub(crate) fn parts(&self) -> (&Loader, &Arc<EngineCore>, &SandboxConfig) {
        (&self.inner.loader, &self.inner.core, &self.inner.config)
    }

    /// What the read-only mounts hold now, as a fingerprint (see
    /// `mounts::read_only_fingerprint`), for the key of a preload.
    pub(crate) fn read_only_fingerprint(&self) -> Result<String, SandboxError> {
        crate::mounts::read_only_fingerprint(&self.inner.mounts).map_err(|reason| SandboxError::Checkpoint {
            message: mimobox_core::text::one_line_bounded(&format!(
                "the read-only mounts a preload sees cannot be fingerprinted for its key: {reason}"
            )),
        })
    }

    /// A fresh store for `source`: its WASI context (argv, environment,
    /// stdio, the sandbox's mounts), limiter, file rules and fuel.
    /// The guest's arguments (argv\[0\] first) and environment: the
    /// config's, then the request's (whose variables win).
    pub(crate) fn guest_command(
        &self,
        source: &ModuleSource,
        args: &[String],
        env: &[(String, String)],
    ) -> (Vec<String>, Vec<(String, String)>) {
        let config = &self.inner.config;
        let argv = std::iter::once(argv0(config.argv0.as_deref(), source))
            .chain(config.args.iter().cloned())
            .chain(args.iter().cloned())
            .collect();
        let vars = config
            .env
            .iter()
            .filter(|(name, _)| !env.iter().any(|(n, _)| n == *name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .chain(env.iter().cloned())
            .collect();
        (argv, vars)
    }

    pub(crate) fn new_store(
        &self,
        source: &ModuleSource,
        io: GuestIo<'_>,
    ) -> Result<Store<GuestState>, SandboxError> {
        let inner = &*self.inner;
        for (name, value) in io.env {
            if let Some(problem) = mimobox_core::env_var_problem(name, value) {
                return Err(ConfigError::new(keys::ENV, problem).into());
            }
        }
        let mut wasi = WasiCtxBuilder::new();
        match io.stdin {
            Stdin::Bytes(bytes) => wasi.stdin(MemoryInputPipe::new(bytes)),
            // Read by a helper thread as the guest asks; the guest waits on
            // it asynchronously, so the timeout still ends the wait.
            Stdin::Inherit => wasi.stdin(std::io::stdin()),
            // Read as the guest asks; a regular file never blocks for long.
            Stdin::File(file) => wasi.stdin(wasmtime_wasi::cli::InputFile::new(file)),
        };
        wasi.stdout(io.stdout.clone())
            .stderr(io.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let (args, env) = self.guest_command(source, io.args, io.env);
        for arg in &args {
            wasi.arg(arg);
        }
        for (name, value) in &env {
            wasi.env(name, value);
        }
        // File operations on mounts run on this thread rather than hopping to
        // a blocking pool: each preopen takes the flag as it is when added.
        // It is switched off again before the context is built, because
        // with it on, a guest's single-timer `poll_oneoff` becomes an
        // uninterruptible thread sleep that no timeout could end.
        wasi.allow_blocking_current_thread(true);
        // Each mount is the directory the sandbox opened when it was
        // created, reopened through its descriptor: no path is resolved.
        for mount in inner.mounts.iter().filter(|m| io.writable_mounts || m.perms == FsPerms::ReadOnly) {
            wasi.preopened_dir(mount.handle_path(), &mount.guest, mount.perms).map_err(|e| {
                SandboxError::Mount { host: mount.real.clone(), source: std::io::Error::other(one_line(&e)) }
            })?;
        }
        wasi.allow_blocking_current_thread(false);
        let config = &inner.config;
        let state = GuestState {
            wasi: wasi.build_p1(),
            limiter: GuestLimiter::new(config.memory_limit, config.trap_on_memory_limit),
            files: FileGuard::new(config.max_open_files, config.max_disk_write),
            door: DoorState { tools: self.tools(), ..DoorState::default() },
        };
        let mut store = Store::new(&inner.core.engine, state);
        store.limiter(|state| &mut state.limiter);
        if let Some(fuel) = config.fuel {
            store.set_fuel(fuel).map_err(|e| SandboxError::Internal(one_line(&e)))?;
        }
        store.epoch_deadline_trap();
        Ok(store)
    }
}

/// The tools `config` grants: each `[tools.NAME]` command, checked to be
/// an executable file now rather than at its first call, and `http` when
/// `allowed_http_domains` lists any host.
fn granted_tools(config: &SandboxConfig) -> Result<Vec<Tool>, SandboxError> {
    let mut granted = Vec::new();
    // A command tool runs in a PID namespace of its own, so that nothing
    // it starts outlives its call; a host that refuses one cannot honour
    // the grant.
    if !config.tools.is_empty() {
        mimobox_tools::command_tools_supported()
            .map_err(|reason| SandboxError::Unsupported { key: keys::TOOLS.into(), reason })?;
    }
    for (name, tool) in &config.tools {
        let key = format!("{}.{name}.command", keys::TOOLS);
        let program = tool.program().ok_or_else(|| ConfigError::new(&key, "names no program"))?;
        let executable = std::fs::metadata(&program)
            .map(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0);
        match executable {
            Ok(true) => {}
            Ok(false) => {
                return Err(ConfigError::new(
                    key,
                    format!("{} is not an executable file", program.display()),
                )
                .into());
            }
            Err(e) => return Err(ConfigError::new(key, format!("{}: {e}", program.display())).into()),
        }
        granted.push(mimobox_tools::command_tool(name, tool));
    }
    if !config.allowed_http_domains.is_empty() {
        let http = mimobox_tools::http_tool(&config.allowed_http_domains)
            .map_err(|e| ConfigError::new(keys::ALLOWED_HTTP_DOMAINS, e))?;
        granted.push(http);
    }
    Ok(granted)
}

/// What a guest gets besides its module: its arguments (after the
/// config's), extra environment, stdin, and its output streams.
pub(crate) struct GuestIo<'a> {
    pub(crate) args: &'a [String],
    pub(crate) env: &'a [(String, String)],
    pub(crate) stdin: Stdin,
    pub(crate) stdout: &'a CappedPipe,
    pub(crate) stderr: &'a CappedPipe,
    /// Whether the read-write mounts are given too (a preload sees only
    /// the read-only ones).
    pub(crate) writable_mounts: bool,
}

/// How long past the deadline live output may still take to reach its
/// sink.
pub(crate) const LIVE_FLUSH_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// The guest's `argv[0]`: the configured name, else the module's file name.
/// Never the module's host path, which would tell the guest about the
/// host's layout and user names.
fn argv0(configured: Option<&str>, source: &ModuleSource) -> String {
    if let Some(name) = configured {
        return name.to_owned();
    }
    match source {
        ModuleSource::Path(path) => path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "module.wasm".to_owned()),
        ModuleSource::Bytes { name, .. } => name.clone(),
    }
}

/// Runs `future` to completion on this thread's runtime. Each thread has
/// its own, so that concurrent executions each drive their own timers. A
/// caller that is itself inside a tokio runtime (which cannot block on
/// another) gets the execution run on a helper thread instead.
pub(crate) fn block_on<F>(future: F) -> Result<F::Output, SandboxError>
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
async fn call_entry(
    store: &mut Store<GuestState>,
    pre: &InstancePre<GuestState>,
    entry: EntryPoint,
) -> wasmtime::Result<i32> {
    let instance = pre.instantiate_async(&mut *store).await?;
    match entry {
        EntryPoint::Start => {
            let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
            start.call_async(&mut *store, ()).await?;
            Ok(0)
        }
        EntryPoint::Main | EntryPoint::Reactor { .. } => {
            if let EntryPoint::Reactor { initialize: true } = entry {
                let initialize = instance.get_typed_func::<(), ()>(&mut *store, "_initialize")?;
                initialize.call_async(&mut *store, ()).await?;
            }
            let name = if entry == EntryPoint::Main { "main" } else { "run" };
            let main = instance.get_typed_func::<(), i32>(&mut *store, name)?;
            let code = main.call_async(&mut *store, ()).await?;
            // The same range `proc_exit` allows, so that a status never
            // collides with the ones mimobox reports (124, 134) or wraps.
            if !(0..126).contains(&code) {
                wasmtime::bail!("`{name}` returned {code}, outside the exit statuses [0, 126)");
            }
            Ok(code)
        }
    }
}

/// Turns the end of a call into an [`Outcome`], by the types of what
/// stopped it and by what the limiter saw, never by error text.
pub(crate) fn classify(result: wasmtime::Result<i32>, memory_denied: bool) -> Outcome {
    let error = match result {
        Ok(code) => return Outcome::Exited { code },
        Err(error) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Outcome::Exited { code: exit.0 };
    }
    if error.downcast_ref::<MemoryLimitTrap>().is_some() {
        return Outcome::MemoryLimit;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Outcome::TimedOut,
        Some(Trap::OutOfFuel) => Outcome::OutOfFuel,
        _ if memory_denied => Outcome::MemoryLimit,
        _ => Outcome::Trap { message: one_line(&error) },
    }
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
