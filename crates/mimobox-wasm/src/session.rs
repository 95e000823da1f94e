//! [`WasmSession`]: one live instance that keeps its state between turns.
//!
//! The guest implements the turn interface (`docs/sessions.md`): it exports
//! `memory`, `host_alloc(n) -> ptr` and `turn(ptr, len) -> status`, and may
//! export `_initialize` (called before the first turn) and `shutdown()`
//! (called when the session is closed). Each turn copies the code into
//! memory the guest allocated, and calls `turn` under the turn's deadline,
//! fuel and output caps; the memory limit and open files hold for the
//! whole session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mimobox_core::{ExecRequest, Outcome, SandboxError, Session, TurnRequest, TurnResult};
use wasmtime::{Instance, Store, TypedFunc};

use crate::engine::deadline_ticks;
use crate::loader::{LoadedModule, one_line};
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
/// guest finalise.
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
    /// The pool slot this session's instance lives in.
    _slot: OwnedSlot,
    /// Keeps the module (and its cache pin) alive with the instance.
    _module: Arc<LoadedModule>,
}

impl WasmSandbox {
    /// Opens a session on the request's module (else the config's), with
    /// its arguments and environment; its stdin is what the request gives,
    /// and its sinks are unused (each turn brings its own).
    ///
    /// Each session holds a pool slot until it is closed; when every slot
    /// is held, opening waits up to `session.open_timeout_secs`, then fails
    /// with [`SandboxError::SessionCapacity`].
    pub fn open_session(&self, request: ExecRequest) -> Result<WasmSession, SandboxError> {
        let (loader, core, config) = self.parts();
        let source = self.source_of(request.module)?;
        let name = source.display_name();
        let (module, _) = loader.load(&source)?;
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
        let io = GuestIo {
            args: &request.args,
            env: &request.env,
            stdin: request.stdin,
            stdout: &stdout,
            stderr: &stderr,
        };
        let mut store = self.new_store(&source, io)?;

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
            .map_err(|message| SandboxError::Link { module: name, message })?;
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
            _slot: slot,
            _module: module,
        })
    }
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

    /// Ends the session if it has been idle or alive too long.
    fn check_age(&mut self) {
        let session = &self.sandbox.parts().2.session;
        if self.last_turn.elapsed() > session.idle_timeout {
            self.ended = Some(format!(
                "idle for more than {}s (session.idle_timeout_secs)",
                session.idle_timeout.as_secs_f64()
            ));
        } else if self.opened.elapsed() >= session.lifetime {
            self.ended = Some(format!(
                "open for {}s, its lifetime (session.lifetime_secs)",
                session.lifetime.as_secs_f64()
            ));
        }
    }

    fn run_turn(&mut self, request: TurnRequest) -> Result<TurnResult, SandboxError> {
        if self.ended.is_none() {
            self.check_age();
        }
        if let Some(reason) = &self.ended {
            return Err(SandboxError::SessionEnded { reason: reason.clone() });
        }
        let (_, core, config) = self.sandbox.parts();
        let (core, config) = (core.clone(), config.clone());
        self.turns += 1;
        self.stdout.start_turn(request.stdout_sink);
        self.stderr.start_turn(request.stderr_sink);
        let state = self.store.data_mut();
        state.limiter.clear_denied();
        state.files.new_turn(config.max_disk_write);
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
        let first = self.turns == 1;
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

    /// Lets the guest finalise (`shutdown`), within a short bound, if it is
    /// alive and has taken a turn.
    fn shut_down(&mut self) {
        if self.ended.is_some() || self.turns == 0 {
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
        self.ended.is_none()
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
