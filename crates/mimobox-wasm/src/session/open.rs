//! Opening a session: from its module, a preload or a checkpoint, in a
//! pool slot of its own.

use std::sync::Arc;
use std::time::Instant;

use mimobox_core::{ExecRequest, ModuleSource, Outcome, SandboxError};

use super::{Checkpoint, Image, TurnCalls, WasmSession, snapshot};
use crate::WasmSandbox;
use crate::engine::arm_deadline;
use crate::exec::{block_on, classify, offload};
use crate::guest::GuestIo;
use crate::guest::output::{CappedPipe, Stream};
use crate::module::{LoadedModule, ModuleOrigin};

/// The recipe tag of the instrumented form of a module.
const INSTRUMENTED: &[u8] =
    b"instrumented by wasmtime-wizer 48.0.8, with the wasi-libc preopen reset exported";

impl WasmSandbox {
    /// Opens a session on the request's module (else the config's), with
    /// its arguments and environment; its stdin is what the request gives,
    /// and its sinks are unused (each turn brings its own).
    ///
    /// With `session.preload` in the config, the session opens from the
    /// preload's checkpoint (built on first use, then cached) and runs
    /// `session.restore` first, unseen.
    ///
    /// Each session holds a pool slot until it is closed; when every slot
    /// is held, opening waits up to `session.open_timeout_secs`, then fails
    /// with [`SandboxError::SessionCapacity`].
    pub fn open_session(&self, request: ExecRequest) -> Result<WasmSession, SandboxError> {
        block_on(self.open_session_async(request))?
    }

    /// Opens a session, as [`WasmSandbox::open_session`] does, as a future:
    /// waiting for a slot holds no thread. Building a preload checkpoint
    /// or compiling runs in [`tokio::task::block_in_place`] on a
    /// multi-threaded runtime.
    pub async fn open_session_async(&self, mut request: ExecRequest) -> Result<WasmSession, SandboxError> {
        let source = self.source_of(request.module.take())?;
        match self.preload_code()? {
            Some(preload) => {
                let (module, _, identity) = self.preload_checkpoint(&source, &preload)?;
                let mut session =
                    self.start(&source, module, Image::Preload { identity }, request, false).await?;
                session.restore_warm().await?;
                Ok(session)
            }
            None => {
                let (module, image, _) = self.load_for_session(&source)?;
                self.start(&source, module, image, request, false).await
            }
        }
    }

    /// Opens a session from `checkpoint`, with the request's arguments,
    /// environment and stdin (its `module` must be `None`). The config's
    /// `session.restore` code runs first, unseen, so that the guest takes
    /// up this session's arguments, environment and randomness.
    pub fn open_session_from(
        &self,
        checkpoint: &Checkpoint,
        request: ExecRequest,
    ) -> Result<WasmSession, SandboxError> {
        block_on(self.open_session_from_async(checkpoint, request))?
    }

    /// Opens a session from a checkpoint, as
    /// [`WasmSandbox::open_session_from`] does, as a future.
    pub async fn open_session_from_async(
        &self,
        checkpoint: &Checkpoint,
        request: ExecRequest,
    ) -> Result<WasmSession, SandboxError> {
        if request.module.is_some() {
            return Err(SandboxError::ModuleNotExpected { what: "a session opened from a checkpoint" });
        }
        let source =
            ModuleSource::Bytes { name: checkpoint.name().to_owned(), bytes: checkpoint.module().clone() };
        let (loader, _, _) = self.parts();
        let (module, _, _) =
            loader.load_derived(&source, INSTRUMENTED, |binary| instrumented(checkpoint.name(), binary))?;
        let mut session =
            self.start(&source, module, Image::Checkpoint(checkpoint.clone()), request, false).await?;
        session.restore_warm().await?;
        Ok(session)
    }

    /// Compiles what sessions on `source` run (building the preload
    /// checkpoint if the config has one), so that the first session opens
    /// at full speed, and says where the result came from.
    pub fn prepare_sessions(&self, source: &ModuleSource) -> Result<ModuleOrigin, SandboxError> {
        match self.preload_code()? {
            Some(preload) => self.preload_checkpoint(source, &preload).map(|(_, origin, _)| origin),
            None => self.load_for_session(source).map(|(_, _, origin)| origin),
        }
    }

    /// The instrumented module, or the module itself when it cannot be
    /// instrumented (checkpoints and forks then say why).
    pub(super) fn load_for_session(
        &self,
        source: &ModuleSource,
    ) -> Result<(Arc<LoadedModule>, Image, ModuleOrigin), SandboxError> {
        let (loader, _, _) = self.parts();
        // A module that is no session guest is refused before anything is
        // compiled for it.
        let build = |binary: &[u8]| {
            turn_interface_exported(binary).map_err(|missing| SandboxError::NotSessionGuest {
                module: source.display_name(),
                missing,
            })?;
            instrumented(&source.display_name(), binary)
        };
        match loader.load_derived(source, INSTRUMENTED, build) {
            Ok((module, origin, hash)) => Ok((module, Image::Module { hash }, origin)),
            Err(SandboxError::NotCheckpointable { reason, .. }) => {
                let (module, origin) = loader.load(source)?;
                Ok((module, Image::Plain(reason), origin))
            }
            Err(e) => Err(e),
        }
    }

    /// Instantiates `module` in a new session (in its own pool slot), with
    /// the request's arguments, environment and stdin.
    pub(super) async fn start(
        &self,
        source: &ModuleSource,
        module: Arc<LoadedModule>,
        image: Image,
        request: ExecRequest,
        preloading: bool,
    ) -> Result<WasmSession, SandboxError> {
        let (_, core, config) = self.parts();
        let name = source.display_name();
        let LoadedModule::Ready { pre, .. } = &*module else {
            return Err(SandboxError::Link {
                module: name,
                message: "it needs more memories or tables than a sandbox allows".into(),
            });
        };
        let slot = core.slots.acquire_within(config.session.open_timeout).await.ok_or(
            SandboxError::SessionCapacity { slots: core.slots.size(), waited: config.session.open_timeout },
        )?;
        let stdout = CappedPipe::new(Stream::Stdout, config.max_stdout);
        let stderr = CappedPipe::new(Stream::Stderr, config.max_stderr);
        let command = self.guest_command(source, &request.args, &request.env);
        let workspace = offload(|| self.new_workspace())?;
        let io = GuestIo {
            writable_mounts: !preloading,
            workspace: workspace.as_ref(),
            args: &request.args,
            env: &request.env,
            stdin: request.stdin,
            stdout: &stdout,
            stderr: &stderr,
        };
        let mut store = self.new_store(source, io)?;

        let _running = core.running();
        arm_deadline(&mut store, config.timeout);
        let timeout = config.timeout;
        let instance = match tokio::time::timeout(timeout, pre.instantiate_async(&mut store)).await {
            Ok(Ok(instance)) => instance,
            Ok(Err(e)) => {
                let reason = match classify(Err(e), store.data().limiter.memory_denied()) {
                    Outcome::MemoryLimit => "over the memory limit".to_owned(),
                    Outcome::Trap { message } => message,
                    other => other.name().to_owned(),
                };
                return Err(SandboxError::Link {
                    module: name,
                    message: format!("cannot instantiate: {reason}"),
                });
            }
            Err(_) => return Err(SandboxError::InstantiationTimeout { module: name, limit: timeout }),
        };
        let calls = TurnCalls::find(&mut store, &instance)
            .map_err(|missing| SandboxError::NotSessionGuest { module: name.clone(), missing })?;
        let now = Instant::now();
        Ok(WasmSession {
            sandbox: self.clone(),
            store,
            instance,
            calls,
            stdout,
            stderr,
            turns: 0,
            opened: now,
            last_turn: now,
            ended: None,
            in_call: false,
            initialized: false,
            image,
            source: source.clone(),
            command,
            _slot: slot,
            module,
            workspace,
            files: None,
        })
    }
}

impl WasmSession {
    /// Runs the restore turn of a session opened from a checkpoint, with
    /// the pages of its memory that the restore writes made private first
    /// (`module/pages.rs`); the first session opened on the module, which
    /// finds nothing learned, is where they are learned from.
    async fn restore_warm(&mut self) -> Result<(), SandboxError> {
        let module = Arc::clone(&self.module);
        let LoadedModule::Ready { warm, .. } = &*module else { return self.restore().await };
        let memory = self.instance.get_memory(&mut self.store, "memory");
        if let Some(memory) = memory {
            warm.populate(memory.data_mut(&mut self.store));
        }
        self.restore().await?;
        if let Some(memory) = memory {
            warm.learn(memory.data(&self.store));
        }
        Ok(())
    }
}

/// Checks, from the export section alone, that `binary` exports the turn
/// interface; the error names the export it lacks.
fn turn_interface_exported(binary: &[u8]) -> Result<(), String> {
    // A module that does not parse is left to the compiler to report.
    let Ok(exported) = snapshot::export_names(binary) else { return Ok(()) };
    for name in ["memory", "host_alloc", "turn"] {
        if !exported.iter().any(|e| e == name) {
            return Err(format!("`{name}`"));
        }
    }
    Ok(())
}

/// The instrumented form of `binary`; an error says why there is none.
pub(super) fn instrumented(module: &str, binary: &[u8]) -> Result<Vec<u8>, SandboxError> {
    snapshot::instrument(binary).map_err(|reason| SandboxError::NotCheckpointable {
        module: module.to_owned(),
        reason: mimobox_core::text::one_line_bounded(&reason),
    })
}
