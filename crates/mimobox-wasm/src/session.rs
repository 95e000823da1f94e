//! [`WasmSession`]: one live instance that keeps its state between turns.
//!
//! The guest implements the turn interface (`docs/sessions.md`): it exports
//! `memory`, `host_alloc(n) -> ptr` and `turn(ptr, len) -> status`, and may
//! export `_initialize` (called before the first turn) and `shutdown()`
//! (called when the session is closed). Each turn copies the code into
//! memory the guest allocated, and calls `turn` under the turn's deadline,
//! fuel and output caps; the memory limit and open files hold for the
//! whole session.
//!
//! Sessions run the instrumented form of their module (`checkpoint.rs`),
//! so that a live session can be checkpointed or forked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mimobox_cache::ContentHash;
use mimobox_core::{
    ExecRequest, ModuleSource, Outcome, SandboxError, Session, TurnRequest, TurnResult, fill_restore,
};
use wasmtime::{Instance, Store, TypedFunc};

use crate::checkpoint;
use crate::engine::deadline_ticks;
use crate::loader::{CompileEvent, LoadedModule, ModuleOrigin, one_line};
use crate::output::CappedPipe;
use crate::sandbox::{GuestIo, LIVE_FLUSH_GRACE, WasmSandbox, block_on, classify, measured};
use crate::slots::{OwnedSlot, Slots};
use crate::state::GuestState;

/// How long a closing session's `shutdown` may take.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);
/// Bit of `turn`'s status that says the guest asked to exit.
const EXIT_REQUESTED: i32 = 0x100;

/// The guest's functions of the turn interface.
struct TurnCalls {
    initialize: Option<TypedFunc<(), ()>>,
    alloc: TypedFunc<i32, i32>,
    turn: TypedFunc<(i32, i32), i32>,
    shutdown: Option<TypedFunc<(), i32>>,
}

/// A live session on Wasmtime; see [`WasmSandbox::open_session`].
///
/// It is `Send`: a caller may hand it to another thread between turns.
/// Dropping it ends the instance at once; [`Session::close`] first lets the
/// guest finalise when the config sets `session.shutdown`.
pub struct WasmSession {
    sandbox: WasmSandbox,
    store: Store<GuestState>,
    instance: Instance,
    calls: TurnCalls,
    stdout: CappedPipe,
    stderr: CappedPipe,
    turns: u64,
    opened: Instant,
    last_turn: Instant,
    ended: Option<String>,
    /// Whether the guest's `_initialize` has run, here or in the instance
    /// whose state this one took.
    initialized: bool,
    /// What the instance runs, for checkpoints and forks.
    image: Image,
    /// Where the module came from (its name and argv\[0\]).
    source: ModuleSource,
    /// The guest's arguments and environment, for the restore turn.
    command: (Vec<String>, Vec<(String, String)>),
    /// The pool slot this session's instance lives in.
    _slot: OwnedSlot,
    /// Keeps the module (and its cache pin) alive with the instance.
    module: Arc<LoadedModule>,
}

/// What a session's instance runs.
#[derive(Clone)]
enum Image {
    /// The instrumented form of the source module, whose content hash
    /// was this when the session opened.
    Module { hash: ContentHash },
    /// The instrumented form of a checkpoint the caller holds.
    Checkpoint(Checkpoint),
    /// The instrumented form of the profile's preload checkpoint.
    Preload,
    /// The module itself: it cannot be instrumented, for this reason.
    Plain(String),
}

/// A session's state captured as a pre-initialised module: its linear
/// memory as data segments and its mutable globals as initial values
/// (Wizer's snapshot). See [`WasmSession::checkpoint`].
///
/// Sessions opened from it ([`WasmSandbox::open_session_from`]) map its
/// memory copy-on-write from the compiled module, which is compiled once
/// and cached by content like any module. Cloning it is cheap.
#[derive(Clone)]
pub struct Checkpoint {
    module: Arc<[u8]>,
    name: String,
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
    pub fn open_session(&self, mut request: ExecRequest) -> Result<WasmSession, SandboxError> {
        let source = self.source_of(request.module.take())?;
        match self.config().session.preload.clone() {
            Some(preload) => {
                let (module, _) = self.preload_checkpoint(&source, &preload)?;
                let mut session = self.start(&source, module, Image::Preload, request, false)?;
                session.restore()?;
                Ok(session)
            }
            None => {
                let (module, image, _) = self.load_for_session(&source)?;
                self.start(&source, module, image, request, false)
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
        if request.module.is_some() {
            return Err(SandboxError::Checkpoint {
                message:
                    "a session opened from a checkpoint runs the checkpoint's module; leave `module` unset"
                        .into(),
            });
        }
        let source = ModuleSource::Bytes { name: checkpoint.name.clone(), bytes: checkpoint.module.clone() };
        let (loader, _, _) = self.parts();
        let (module, _, _) = loader.load_derived(&source, INSTRUMENTED, instrumented)?;
        let mut session =
            self.start(&source, module, Image::Checkpoint(checkpoint.clone()), request, false)?;
        session.restore()?;
        Ok(session)
    }

    /// Compiles what sessions on `source` run (building the preload
    /// checkpoint if the config has one), so that the first session opens
    /// at full speed, and says where the result came from.
    pub fn prepare_sessions(&self, source: &ModuleSource) -> Result<ModuleOrigin, SandboxError> {
        match self.config().session.preload.clone() {
            Some(preload) => self.preload_checkpoint(source, &preload).map(|(_, origin)| origin),
            None => self.load_for_session(source).map(|(_, _, origin)| origin),
        }
    }

    /// The instrumented module, or the module itself when it cannot be
    /// instrumented (checkpoints and forks then say why).
    fn load_for_session(
        &self,
        source: &ModuleSource,
    ) -> Result<(Arc<LoadedModule>, Image, ModuleOrigin), SandboxError> {
        let (loader, _, _) = self.parts();
        // A module that is no session guest is refused before anything is
        // compiled for it.
        let build = |binary: &[u8]| {
            turn_interface_exported(binary)
                .map_err(|message| SandboxError::Link { module: source.display_name(), message })?;
            instrumented(binary)
        };
        match loader.load_derived(source, INSTRUMENTED, build) {
            Ok((module, origin, hash)) => Ok((module, Image::Module { hash }, origin)),
            Err(SandboxError::Checkpoint { message }) => {
                let (module, origin) = loader.load(source)?;
                Ok((module, Image::Plain(message), origin))
            }
            Err(e) => Err(e),
        }
    }

    /// The compiled preload checkpoint of `source`: from memory or the
    /// cache, else built by running `preload` as the first turn of a fresh
    /// session and capturing its state. Its key covers the module, the
    /// preload, what the preload saw (arguments, environment, mounts) and
    /// the engine.
    fn preload_checkpoint(
        &self,
        source: &ModuleSource,
        preload: &str,
    ) -> Result<(Arc<LoadedModule>, ModuleOrigin), SandboxError> {
        let (loader, _, config) = self.parts();
        let (args, env) = self.guest_command(source, &[], &[]);
        // The preload sees the read-only mounts only (the runtime's
        // libraries, say), and the checkpoint is keyed on them; read-write
        // mounts are each session's own, so sessions with different
        // workspaces share one checkpoint and none sees another's files.
        // The key covers what the read-only mounts hold, not only where
        // they are: a file replaced or rewritten there (another tenant's
        // data, say) makes a new checkpoint rather than serving what the
        // old file produced.
        let mounts: Vec<(String, String)> =
            config.fs_readonly.iter().map(|m| (m.guest.clone(), m.host.display().to_string())).collect();
        let contents = self.read_only_fingerprint()?;
        let recipe = serde_json::json!({
            "checkpoint": "preload v2",
            "preload": preload,
            "args": args,
            "env": env,
            "read_only_mounts": mounts,
            "read_only_contents": contents,
        })
        .to_string();
        let (module, origin, _) = loader.load_derived(source, recipe.as_bytes(), |binary| {
            let (module, image, _) = self.load_for_session(source)?;
            if let Image::Plain(reason) = &image {
                return Err(SandboxError::Checkpoint {
                    message: format!("cannot preload {}: {reason}", source.display_name()),
                });
            }
            let mut session = self.start(source, module, image, ExecRequest::default(), true)?;
            loader.notify(&CompileEvent::Preloading { module: source.display_name() });
            let turn = session.run_turn(TurnRequest::new(preload));
            loader.notify(&CompileEvent::Finished);
            let turn = turn?;
            succeeded("the preload (session.preload)", &turn)?;
            let snapshot = session.snapshot_on(binary)?;
            loader.check_checkpoint_size(&source.display_name(), snapshot.len())?;
            instrumented(&snapshot)
        })?;
        Ok((module, origin))
    }

    /// Instantiates `module` in a new session (in its own pool slot), with
    /// the request's arguments, environment and stdin.
    fn start(
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
        let slot =
            Slots::acquire_owned(core, config.session.open_timeout).ok_or(SandboxError::SessionCapacity {
                slots: core.slots.size(),
                waited: config.session.open_timeout,
            })?;
        let stdout = CappedPipe::new(config.max_stdout, None);
        let stderr = CappedPipe::new(config.max_stderr, None);
        let command = self.guest_command(source, &request.args, &request.env);
        let io = GuestIo {
            writable_mounts: !preloading,
            args: &request.args,
            env: &request.env,
            stdin: request.stdin,
            stdout: &stdout,
            stderr: &stderr,
        };
        let mut store = self.new_store(source, io)?;

        let _running = core.running();
        store.set_epoch_deadline(deadline_ticks(config.timeout));
        let timeout = config.timeout;
        let instance =
            match block_on(async { tokio::time::timeout(timeout, pre.instantiate_async(&mut store)).await })?
            {
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
                Err(_) => {
                    return Err(SandboxError::Link {
                        module: name,
                        message: "instantiation timed out".into(),
                    });
                }
            };
        let calls = TurnCalls::find(&mut store, &instance)
            .map_err(|message| SandboxError::Link { module: name.clone(), message })?;
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
            initialized: false,
            image,
            source: source.clone(),
            command,
            _slot: slot,
            module,
        })
    }
}

/// Checks, from the export section alone, that `binary` exports the turn
/// interface.
fn turn_interface_exported(binary: &[u8]) -> Result<(), String> {
    // A module that does not parse is left to the compiler to report.
    let Ok(exported) = checkpoint::export_names(binary) else { return Ok(()) };
    for name in ["memory", "host_alloc", "turn"] {
        if !exported.iter().any(|e| e == name) {
            return Err(format!("not a session guest: it must export `{name}` (see docs/sessions.md)"));
        }
    }
    Ok(())
}

/// The instrumented form of `binary`; an error says why there is none.
fn instrumented(binary: &[u8]) -> Result<Vec<u8>, SandboxError> {
    checkpoint::instrument(binary).map_err(|reason| SandboxError::Checkpoint {
        message: mimobox_core::text::one_line_bounded(&format!(
            "the module cannot be checkpointed: {reason}"
        )),
    })
}

/// Refuses a hidden turn (preload or restore) that did not exit 0 with the
/// session alive, quoting the end of its stderr.
fn succeeded(what: &str, turn: &TurnResult) -> Result<(), SandboxError> {
    if turn.alive && turn.result.outcome == (Outcome::Exited { code: 0 }) {
        return Ok(());
    }
    let how = match &turn.result.outcome {
        Outcome::Exited { code } => format!("exited with status {code}"),
        Outcome::Trap { message } => format!("trapped: {message}"),
        other => other.name().to_owned(),
    };
    let stderr = String::from_utf8_lossy(&turn.result.stderr);
    let tail = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
    let tail = if tail.is_empty() { String::new() } else { format!(": {tail}") };
    Err(SandboxError::Checkpoint {
        message: mimobox_core::text::one_line_bounded(&format!("{what} did not succeed: {how}{tail}")),
    })
}

impl TurnCalls {
    fn find(store: &mut Store<GuestState>, instance: &Instance) -> Result<TurnCalls, String> {
        let missing =
            |what: &str| format!("not a session guest: it must export {what} (see docs/sessions.md)");
        if instance.get_memory(&mut *store, "memory").is_none() {
            return Err(missing("`memory`"));
        }
        Ok(TurnCalls {
            initialize: instance.get_typed_func(&mut *store, "_initialize").ok(),
            alloc: instance
                .get_typed_func(&mut *store, "host_alloc")
                .map_err(|_| missing("`host_alloc: [i32] -> [i32]`"))?,
            turn: instance
                .get_typed_func(&mut *store, "turn")
                .map_err(|_| missing("`turn: [i32 i32] -> [i32]`"))?,
            shutdown: instance.get_typed_func(&mut *store, "shutdown").ok(),
        })
    }
}

impl WasmSession {
    /// Turns taken so far.
    pub fn turns(&self) -> u64 {
        self.turns
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// When the session is due to close: at its idle timeout after its
    /// last turn (or its opening), or at the end of its lifetime, whichever
    /// comes first. A caller that holds a session between turns closes it
    /// then, whether or not another turn comes; past it, turns, forks and
    /// checkpoints are refused.
    pub fn closes_at(&self) -> Instant {
        let session = &self.sandbox.parts().2.session;
        let idle = self.last_turn.checked_add(session.idle_timeout);
        let life = self.opened.checked_add(session.lifetime);
        // A bound too far to be told apart from none is a year away.
        idle.into_iter().chain(life).min().unwrap_or(self.opened + Duration::from_secs(365 * 24 * 3600))
    }

    /// Why the session is past its idle timeout or lifetime, if it is.
    pub fn expired(&self) -> Option<String> {
        let session = &self.sandbox.parts().2.session;
        if self.last_turn.elapsed() >= session.idle_timeout {
            Some(format!(
                "idle for {}s, its idle timeout (session.idle_timeout_secs)",
                session.idle_timeout.as_secs_f64()
            ))
        } else if self.opened.elapsed() >= session.lifetime {
            Some(format!(
                "open for {}s, its lifetime (session.lifetime_secs)",
                session.lifetime.as_secs_f64()
            ))
        } else {
            None
        }
    }

    fn run_turn(&mut self, request: TurnRequest) -> Result<TurnResult, SandboxError> {
        self.usable()?;
        let (_, core, config) = self.sandbox.parts();
        let (core, config) = (core.clone(), config.clone());
        self.turns += 1;
        self.stdout.start_turn(request.stdout_sink);
        self.stderr.start_turn(request.stderr_sink);
        let state = self.store.data_mut();
        state.limiter.clear_denied();
        state.files.new_turn();
        state.door.new_turn();
        if let Some(fuel) = config.fuel {
            self.store.set_fuel(fuel).map_err(|e| SandboxError::Internal(one_line(&e)))?;
        }
        // A turn never runs past the session's lifetime.
        let left = config.session.lifetime.saturating_sub(self.opened.elapsed());
        let timeout = config.timeout.min(left);
        let _running = core.running();
        self.store.set_epoch_deadline(deadline_ticks(timeout));
        let started = Instant::now();
        let first = !self.initialized;
        self.initialized = true;
        let code = request.code.into_bytes();
        let (store, instance, calls) = (&mut self.store, &self.instance, &self.calls);
        let ran = block_on(async {
            tokio::time::timeout(timeout, async {
                if first && let Some(initialize) = &calls.initialize {
                    initialize.call_async(&mut *store, ()).await?;
                }
                let len = i32::try_from(code.len())
                    .map_err(|_| wasmtime::format_err!("the turn's code is over 2 GiB"))?;
                let ptr = calls.alloc.call_async(&mut *store, len).await?;
                // 0 is the guest's own out-of-memory answer: it gets the
                // turn anyway and reports it (CPython raises MemoryError).
                if ptr != 0 {
                    let memory = instance.get_memory(&mut *store, "memory").expect("checked when opened");
                    memory.write(&mut *store, ptr as u32 as usize, &code).map_err(|e| {
                        wasmtime::format_err!("host_alloc returned {ptr}, which does not fit the code: {e}")
                    })?;
                }
                calls.turn.call_async(&mut *store, (ptr, len)).await
            })
            .await
        })?;
        let flush_by = started + timeout + LIVE_FLUSH_GRACE;
        self.stdout.finish(flush_by);
        self.stderr.finish(flush_by);
        let elapsed = started.elapsed();
        self.last_turn = Instant::now();

        let denied = self.store.data().limiter.memory_denied();
        let (outcome, alive) = match ran {
            Err(_elapsed) => (Outcome::TimedOut, false),
            Ok(Ok(-1)) => {
                (Outcome::Trap { message: "the guest refused the turn (`turn` returned -1)".into() }, false)
            }
            Ok(Ok(status)) if status < 0 => {
                (Outcome::Trap { message: format!("`turn` returned {status}") }, false)
            }
            Ok(Ok(status)) => (Outcome::Exited { code: status & 0xff }, status & EXIT_REQUESTED == 0),
            Ok(Err(error)) => (classify(Err(error), denied), false),
        };
        if !alive {
            self.ended = Some(match &outcome {
                Outcome::Exited { code } => format!("the guest exited with status {code}"),
                Outcome::Trap { message } => format!("the guest trapped: {message}"),
                other => format!("turn {} ended it: {}", self.turns, other.name()),
            });
        }
        let result = measured(outcome, elapsed, config.fuel, &mut self.store, &self.stdout, &self.stderr);
        Ok(TurnResult { turn: self.turns, alive, result })
    }

    /// Captures the session's state as a [`Checkpoint`]: its memory and
    /// mutable globals, as a pre-initialised module. The session goes on.
    ///
    /// Refused, with the reason, when the state cannot be carried into
    /// another instance: the guest holds files open, the module cannot be
    /// instrumented, or its file changed since the session opened. A
    /// session opened from a profile's preload cannot be checkpointed again
    /// (fork it instead).
    pub fn checkpoint(&mut self) -> Result<Checkpoint, SandboxError> {
        self.usable()?;
        // The module the instance runs, before instrumentation.
        let module = match self.image.clone() {
            Image::Module { hash } => {
                let (loader, _, _) = self.sandbox.parts();
                let (now, binary) = loader.binary_of(&self.source)?;
                if now != hash {
                    return Err(SandboxError::Checkpoint {
                        message: format!(
                            "{}: the module changed since the session opened",
                            self.source.display_name()
                        ),
                    });
                }
                self.snapshot_on(&binary)?
            }
            Image::Checkpoint(checkpoint) => self.snapshot_on(&checkpoint.module)?,
            Image::Preload => {
                return Err(SandboxError::Checkpoint {
                    message: "a session opened from a preload (session.preload) cannot be checkpointed again; fork it instead".into(),
                });
            }
            Image::Plain(reason) => return Err(SandboxError::Checkpoint { message: reason }),
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
        self.usable()?;
        if request.module.is_some() {
            return Err(SandboxError::Checkpoint {
                message: "a fork runs its session's module; leave `module` unset".into(),
            });
        }
        if let Image::Plain(reason) = &self.image {
            return Err(SandboxError::Checkpoint { message: reason.clone() });
        }
        self.quiesce()?;
        let mut fork =
            self.sandbox.start(&self.source, self.module.clone(), self.image.clone(), request, false)?;
        checkpoint::copy_state((&mut self.store, &self.instance), (&mut fork.store, &fork.instance))
            .map_err(|message| SandboxError::Checkpoint { message })?;
        fork.initialized = self.initialized;
        fork.restore()?;
        Ok(fork)
    }

    /// Refuses a session that has ended, or that is past its idle timeout
    /// or lifetime (which ends it).
    fn usable(&mut self) -> Result<(), SandboxError> {
        if self.ended.is_none() {
            self.ended = self.expired();
        }
        match &self.ended {
            Some(reason) => Err(SandboxError::SessionEnded { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Readies the live state to be copied (see `checkpoint::quiesce`).
    fn quiesce(&mut self) -> Result<(), SandboxError> {
        let needs_reset = match &*self.module {
            LoadedModule::Ready { pre, .. } => {
                pre.module().imports().any(|import| import.name() == "fd_prestat_get")
            }
            LoadedModule::BeyondLimits { .. } => false,
        };
        let (_, core, config) = self.sandbox.parts();
        let core = core.clone();
        let _running = core.running();
        self.store.set_epoch_deadline(deadline_ticks(config.timeout));
        let (store, instance) = (&mut self.store, &self.instance);
        block_on(checkpoint::quiesce(store, instance, needs_reset))?
            .map_err(|message| SandboxError::Checkpoint { message })
    }

    /// The session's state as a pre-initialised module built on `binary`,
    /// the module its instance runs, before instrumentation.
    fn snapshot_on(&mut self, binary: &[u8]) -> Result<Vec<u8>, SandboxError> {
        self.quiesce()?;
        let (store, instance) = (&mut self.store, self.instance);
        block_on(checkpoint::snapshot(store, instance, binary))?
            .map_err(|message| SandboxError::Checkpoint { message })
    }

    /// Runs the config's `session.restore` code as an unseen turn, with
    /// this session's arguments and environment; the session's turn count
    /// starts after it.
    fn restore(&mut self) -> Result<(), SandboxError> {
        let Some(template) = self.sandbox.config().session.restore.clone() else { return Ok(()) };
        let (argv, env) = &self.command;
        let code = fill_restore(&template, argv, env);
        let turn = self.run_turn(TurnRequest::new(code))?;
        self.turns = 0;
        succeeded("the restore turn (session.restore)", &turn)
    }

    /// Lets the guest finalise (`shutdown`), within a short bound, if the
    /// config asks for it (`session.shutdown`) and the session is alive and
    /// has taken a turn.
    fn shut_down(&mut self) {
        if !self.sandbox.config().session.shutdown || self.ended.is_some() || self.turns == 0 {
            return;
        }
        let Some(shutdown) = self.calls.shutdown.clone() else { return };
        let (_, core, _) = self.sandbox.parts();
        let core = core.clone();
        let _running = core.running();
        self.store.set_epoch_deadline(deadline_ticks(SHUTDOWN_LIMIT));
        let store = &mut self.store;
        let _ = block_on(async {
            tokio::time::timeout(SHUTDOWN_LIMIT, shutdown.call_async(&mut *store, ())).await
        });
        self.ended = Some("closed".into());
    }
}

impl Session for WasmSession {
    fn turn(&mut self, request: TurnRequest) -> Result<TurnResult, SandboxError> {
        self.run_turn(request)
    }

    fn alive(&self) -> bool {
        self.ended.is_none() && self.expired().is_none()
    }

    fn fork(&mut self, request: ExecRequest) -> Result<Self, SandboxError> {
        WasmSession::fork(self, request)
    }

    fn close(mut self) {
        self.shut_down();
    }
}

impl std::fmt::Debug for WasmSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmSession")
            .field("turns", &self.turns)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// Sessions move between threads: this fails to compile if one cannot.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<WasmSession>();
};
