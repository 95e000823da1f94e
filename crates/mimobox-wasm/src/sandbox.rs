//! [`WasmSandbox`]: the Wasmtime implementation of [`Sandbox`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mimobox_cache::ModuleCache;
use mimobox_core::{
    ConfigError, ExecRequest, ModuleSource, Sandbox, SandboxConfig, SandboxError, SandboxResult, keys,
};
use mimobox_tools::{Tool, Toolbox};

use crate::engine::{EngineCore, EngineSettings};
use crate::guest::check::check_config;
use crate::guest::mounts::{OpenMount, open_mounts};
use crate::module::cache::configured_cache;
use crate::module::{CompileEvent, LoadLimits, Loader, ModuleOrigin};
use mimobox_tools::granted_tools;

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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: SandboxConfig,
    pub(crate) core: Arc<EngineCore>,
    pub(crate) loader: Loader,
    pub(crate) mounts: Vec<OpenMount>,
    /// The tools the guest may call: the config's own and the library's.
    pub(crate) tools: std::sync::RwLock<Option<Arc<Toolbox>>>,
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

    pub(crate) fn tools(&self) -> Option<Arc<Toolbox>> {
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
        crate::guest::mounts::read_only_fingerprint(&self.inner.mounts).map_err(|reason| {
            SandboxError::StateNotCarried {
                reason: mimobox_core::text::one_line_bounded(&format!(
                    "the read-only mounts a preload sees cannot be fingerprinted for its key: {reason}"
                )),
            }
        })
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
