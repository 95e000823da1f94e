//! Checkpoints and forks of a live session.

use std::sync::Arc;

use mimobox_core::{ExecRequest, SandboxError};

use super::{Image, WasmSession, snapshot};
use crate::engine::arm_deadline;
use crate::exec::block_on;
use crate::module::LoadedModule;

/// A session's state captured as a pre-initialised module: its linear
/// memory as data segments and its mutable globals as initial values
/// (Wizer's snapshot). See [`WasmSession::checkpoint`].
///
/// Sessions opened from it ([`WasmSandbox::open_session_from`]) map its
/// memory copy-on-write from the compiled module, which is compiled once
/// and cached by content like any module. Cloning it is cheap.
#[derive(Clone)]
pub struct Checkpoint {
    pub(super) module: Arc<[u8]>,
    pub(super) name: String,
}

impl Checkpoint {
    /// A checkpoint from a module that [`Checkpoint::module`] gave earlier
    /// (kept on disk between processes, say). Any module is accepted: it
    /// is compiled, instrumented and checked like any other when a session
    /// is opened from it.
    pub fn from_module(name: impl Into<String>, module: Arc<[u8]>) -> Checkpoint {
        Checkpoint { module, name: name.into() }
    }

    /// The pre-initialised module, a valid WebAssembly binary.
    pub fn module(&self) -> &Arc<[u8]> {
        &self.module
    }

    /// A name for messages: the checkpointed module's.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("name", &self.name).field("bytes", &self.module.len()).finish()
    }
}

impl WasmSession {
    /// Captures the session's state as a [`Checkpoint`]: its memory and
    /// mutable globals, as a pre-initialised module. The session goes on.
    ///
    /// Refused, with the reason, when the state cannot be carried into
    /// another instance: the guest holds files open, the module cannot be
    /// instrumented, or its file changed since the session opened. A
    /// session opened from a profile's preload cannot be checkpointed again
    /// (fork it instead).
    pub fn checkpoint(&mut self) -> Result<Checkpoint, SandboxError> {
        block_on(self.checkpoint_async())?
    }

    /// Captures a checkpoint, as [`WasmSession::checkpoint`] does, as a
    /// future.
    pub async fn checkpoint_async(&mut self) -> Result<Checkpoint, SandboxError> {
        self.usable()?;
        // The module the instance runs, before instrumentation.
        let module = match self.image.clone() {
            Image::Module { hash } => {
                let (loader, _, _) = self.sandbox.parts();
                let (now, binary) = loader.binary_of(&self.source)?;
                if now != hash {
                    return Err(SandboxError::ModuleChanged { module: self.source.display_name() });
                }
                self.snapshot_on(&binary).await?
            }
            Image::Checkpoint(checkpoint) => self.snapshot_on(&checkpoint.module).await?,
            Image::Preload { .. } => {
                return Err(SandboxError::StateNotCarried {
                    reason: "a session opened from a preload (session.preload) cannot be checkpointed again; fork it instead".into(),
                });
            }
            Image::Plain(reason) => {
                return Err(SandboxError::NotCheckpointable { module: self.source.display_name(), reason });
            }
        };
        Ok(Checkpoint { module: module.into(), name: self.source.display_name() })
    }

    /// Opens a second session that starts from this one's current state,
    /// with the request's arguments, environment and stdin (its `module`
    /// must be `None`); the config's `session.restore` code runs in it
    /// first, unseen. Both sessions go on independently.
    ///
    /// The state is copied, not mapped: a fork costs a copy of the guest's
    /// memory. Refused, with the reason, as [`WasmSession::checkpoint`] is.
    pub fn fork(&mut self, request: ExecRequest) -> Result<WasmSession, SandboxError> {
        block_on(self.fork_async(request))?
    }

    /// Forks the session, as [`WasmSession::fork`] does, as a future.
    pub async fn fork_async(&mut self, request: ExecRequest) -> Result<WasmSession, SandboxError> {
        self.usable()?;
        if request.module.is_some() {
            return Err(SandboxError::ModuleNotExpected { what: "a fork" });
        }
        if let Image::Plain(reason) = &self.image {
            return Err(SandboxError::NotCheckpointable {
                module: self.source.display_name(),
                reason: reason.clone(),
            });
        }
        self.quiesce().await?;
        let mut fork =
            self.sandbox.start(&self.source, self.module.clone(), self.image.clone(), request, false).await?;
        snapshot::copy_state((&mut self.store, &self.instance), (&mut fork.store, &fork.instance))
            .map_err(|message| SandboxError::StateNotCarried { reason: message })?;
        fork.initialized = self.initialized;
        fork.restore().await?;
        Ok(fork)
    }

    /// Readies the live state to be copied (see `checkpoint::quiesce`).
    pub(super) async fn quiesce(&mut self) -> Result<(), SandboxError> {
        let needs_reset = match &*self.module {
            LoadedModule::Ready { pre, .. } => {
                pre.module().imports().any(|import| import.name() == "fd_prestat_get")
            }
            LoadedModule::BeyondLimits { .. } => false,
        };
        let (_, core, config) = self.sandbox.parts();
        let core = core.clone();
        let _running = core.running();
        arm_deadline(&mut self.store, config.timeout);
        let (store, instance) = (&mut self.store, &self.instance);
        snapshot::quiesce(store, instance, needs_reset)
            .await
            .map_err(|message| SandboxError::StateNotCarried { reason: message })
    }

    /// The session's state as a pre-initialised module built on `binary`,
    /// the module its instance runs, before instrumentation.
    pub(super) async fn snapshot_on(&mut self, binary: &[u8]) -> Result<Vec<u8>, SandboxError> {
        self.quiesce().await?;
        let (store, instance) = (&mut self.store, self.instance);
        snapshot::snapshot(store, instance, binary)
            .await
            .map_err(|message| SandboxError::StateNotCarried { reason: message })
    }
}
