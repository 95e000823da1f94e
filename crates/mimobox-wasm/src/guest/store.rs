//! A guest's store: its WASI context (arguments, environment, stdio,
//! mounts), limiter, file rules, host-call door and fuel.

use mimobox_core::{ConfigError, ModuleSource, SandboxError, Stdin, keys};
use wasmtime::Store;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::host_call_door::DoorState;
use super::limits::GuestLimiter;
use super::output::CappedPipe;
use super::state::GuestState;
use super::wasi_rules::FileGuard;
use crate::WasmSandbox;
use crate::module::one_line;

impl WasmSandbox {
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

    /// A fresh store for `source`: its WASI context (argv, environment,
    /// stdio, the sandbox's mounts), limiter, file rules and fuel.
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
        let mut disk_quota = inner.config.max_disk_write;
        if let Some(workspace) = io.workspace {
            for (guest, dir) in [("/workspace", workspace.workspace_dir()), ("/tmp", workspace.tmp_dir())] {
                wasi.preopened_dir(dir, guest, FsPerms::ReadWrite).map_err(|e| SandboxError::Mount {
                    host: dir.to_path_buf(),
                    source: std::io::Error::other(one_line(&e)),
                })?;
            }
            disk_quota = disk_quota.min(inner.config.session.workspace.unwrap_or(u64::MAX));
        }
        wasi.allow_blocking_current_thread(false);
        let config = &inner.config;
        let state = GuestState {
            wasi: wasi.build_p1(),
            limiter: GuestLimiter::new(config.memory_limit, config.trap_on_memory_limit),
            files: FileGuard::new(config.max_open_files, disk_quota),
            door: DoorState { tools: self.tools(), ..DoorState::default() },
            deadline: std::time::Instant::now(),
        };
        let mut store = Store::new(&inner.core.engine, state);
        store.limiter(|state| &mut state.limiter);
        if let Some(fuel) = config.fuel {
            store.set_fuel(fuel).map_err(|e| SandboxError::Internal(one_line(&e)))?;
        }
        store.epoch_deadline_callback(crate::engine::at_tick);
        Ok(store)
    }
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
    /// A session's private workspace, preopened at `/workspace` and
    /// `/tmp`, whose size bounds the disk quota too.
    pub(crate) workspace: Option<&'a mimobox_files::Workspace>,
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
