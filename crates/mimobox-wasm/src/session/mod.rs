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
//! Sessions run the instrumented form of their module (`snapshot.rs`),
//! so that a live session can be checkpointed or forked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mimobox_cache::ContentHash;
use mimobox_core::{ExecRequest, ModuleSource, Outcome, SandboxError, Session, TurnRequest, TurnResult};
use wasmtime::{Instance, Store, TypedFunc};

mod checkpoint;
mod files;
mod open;
mod pause;
mod preload;
mod snapshot;

pub use checkpoint::Checkpoint;
pub use files::FileOpError;
pub use pause::PauseBinding;

use crate::WasmSandbox;
use crate::engine::arm_deadline;
use crate::engine::slots::SlotGuard;
use crate::exec::{block_on, classify, measured};
use crate::guest::output::{CappedPipe, Delivery};
use crate::guest::results::TurnResults;
use crate::guest::{GuestState, LIVE_FLUSH_GRACE};
use crate::module::{LoadedModule, one_line};

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
    /// Set while a turn's guest call runs: still set when that turn's
    /// future was dropped mid-call, which ends the session.
    in_call: bool,
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
    _slot: SlotGuard,
    /// Keeps the module (and its cache pin) alive with the instance.
    module: Arc<LoadedModule>,
    /// The session's private `/workspace` and `/tmp`, removed with it.
    workspace: Option<mimobox_files::Workspace>,
    /// The guest's file view for file operations, opened on first use.
    files: Option<mimobox_files::GuestFiles>,
}

/// What a session's instance runs.
#[derive(Clone)]
enum Image {
    /// The instrumented form of the source module, whose content hash
    /// was this when the session opened.
    Module { hash: ContentHash },
    /// The instrumented form of a checkpoint the caller holds.
    Checkpoint(Checkpoint),
    /// The instrumented form of the profile's preload checkpoint, which
    /// this names (its module and recipe).
    Preload { identity: ContentHash },
    /// The module itself: it cannot be instrumented, for this reason.
    Plain(String),
}

impl TurnCalls {
    fn find(store: &mut Store<GuestState>, instance: &Instance) -> Result<TurnCalls, String> {
        let missing = |what: &str| what.to_owned();
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

    /// Bytes of linear memory (and tables) the guest holds now: what its
    /// instance costs besides the engine's shared parts.
    pub fn memory_in_use(&self) -> u64 {
        self.store.data().limiter.in_use()
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

    /// Runs one turn, as [`Session::turn`] does, as a future of any tokio
    /// runtime (with its time driver): a guest waiting in a host call holds
    /// no thread, and one computing yields at every epoch tick. The turn's
    /// timeout, fuel, memory and output limits hold as they do for the
    /// synchronous call, which is this one run to completion.
    pub async fn turn_async(&mut self, request: TurnRequest) -> Result<TurnResult, SandboxError> {
        self.usable()?;
        // A handle (one reference count), not a copy of the config.
        let sandbox = self.sandbox.clone();
        let (_, core, config) = sandbox.parts();
        self.turns += 1;
        self.stdout.start_turn();
        self.stderr.start_turn();
        let (delivery, live_results) = Delivery::connect(
            &self.stdout,
            &self.stderr,
            request.events,
            request.stdout_sink,
            request.stderr_sink,
        );
        let state = self.store.data_mut();
        state.limiter.clear_denied();
        state.files.new_turn();
        state.door.new_turn();
        state.door.results = Some(TurnResults::with_formats(
            config.session.max_result_bytes,
            config.session.max_results,
            live_results,
            &request.figure_formats,
        ));
        if let Some(fuel) = config.fuel {
            self.store.set_fuel(fuel).map_err(|e| SandboxError::Internal(one_line(&e)))?;
        }
        // A turn never runs past the session's lifetime.
        let left = config.session.lifetime.saturating_sub(self.opened.elapsed());
        let timeout = config.timeout.min(left).min(request.timeout.unwrap_or(config.timeout));
        let _running = core.running();
        arm_deadline(&mut self.store, timeout);
        let started = Instant::now();
        let first = !self.initialized;
        self.initialized = true;
        let code = request.code.into_bytes();
        // Stands if this future is dropped mid-call (a caller that gave up
        // on the turn): the instance stopped at an arbitrary point is never
        // given another turn.
        self.in_call = true;
        let (store, instance, calls) = (&mut self.store, &self.instance, &self.calls);
        let ran = tokio::time::timeout(timeout, async {
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
        .await;
        self.in_call = false;
        let elapsed = started.elapsed();
        let results = self.store.data_mut().door.results.take().expect("set for the turn");
        let TurnResults { bundles, truncated, error, live, .. } = results;
        let flush_by = started + timeout + LIVE_FLUSH_GRACE;

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
        // The exception stands only beside a turn that exited with a
        // failure status: a guest cannot make a turn that succeeded look
        // as if it raised, nor name a cause for a stop the host decided.
        let error = error.filter(|_| matches!(outcome, Outcome::Exited { code } if code != 0));
        // Delivered live last, once it is known to stand.
        if let (Some(mut live), Some(error)) = (live, &error) {
            let wait = flush_by.saturating_duration_since(Instant::now());
            let _ =
                tokio::time::timeout(wait, live.send(mimobox_core::TurnEvent::Error(error.clone()))).await;
        }
        delivery.finish(flush_by, &self.stdout, &self.stderr);
        self.last_turn = Instant::now();
        let result = measured(outcome, elapsed, config.fuel, &mut self.store, &self.stdout, &self.stderr);
        Ok(TurnResult {
            turn: self.turns,
            alive,
            result,
            results: bundles,
            results_truncated: truncated,
            error,
            resumed_from_turn: None,
            replayed: false,
        })
    }

    /// Refuses a session that has ended, or that is past its idle timeout
    /// or lifetime (which ends it).
    fn usable(&mut self) -> Result<(), SandboxError> {
        if self.in_call {
            self.ended = Some("its last turn was abandoned before it finished".into());
            self.in_call = false;
        }
        if self.ended.is_none() {
            self.ended = self.expired();
        }
        match &self.ended {
            Some(reason) => Err(SandboxError::SessionEnded { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Closes the session, as [`Session::close`] does, as a future.
    pub async fn close_async(mut self) {
        self.shut_down().await;
    }

    /// Lets the guest finalise (`shutdown`), within a short bound, if the
    /// config asks for it (`session.shutdown`) and the session is alive and
    /// has taken a turn.
    async fn shut_down(&mut self) {
        if !self.sandbox.config().session.shutdown || self.ended.is_some() || self.turns == 0 {
            return;
        }
        let Some(shutdown) = self.calls.shutdown.clone() else { return };
        let (_, core, _) = self.sandbox.parts();
        let core = core.clone();
        let _running = core.running();
        arm_deadline(&mut self.store, SHUTDOWN_LIMIT);
        let _ = tokio::time::timeout(SHUTDOWN_LIMIT, shutdown.call_async(&mut self.store, ())).await;
        self.ended = Some("closed".into());
    }
}

impl Session for WasmSession {
    fn turn(&mut self, request: TurnRequest) -> Result<TurnResult, SandboxError> {
        block_on(self.turn_async(request))?
    }

    fn alive(&self) -> bool {
        !self.in_call && self.ended.is_none() && self.expired().is_none()
    }

    fn fork(&mut self, request: ExecRequest) -> Result<Self, SandboxError> {
        WasmSession::fork(self, request)
    }

    fn close(mut self) {
        let _ = block_on(self.shut_down());
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
