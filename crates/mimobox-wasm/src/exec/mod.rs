//! One-shot runs: instantiate, call the entry point under the limits, and
//! measure what happened.

use std::time::Instant;

use mimobox_core::{ExecRequest, Outcome, SandboxError, SandboxResult};
use wasmtime::{InstancePre, Store};

use crate::WasmSandbox;
use crate::engine::arm_deadline;
use crate::guest::output::{CappedPipe, Delivery, Stream};
use crate::guest::{GuestIo, GuestState, LIVE_FLUSH_GRACE};
use crate::module::{EntryPoint, LoadedModule, NO_ENTRY_POINT};

mod outcome;
mod runtime;

pub(crate) use outcome::classify;
pub(crate) use runtime::{block_on, offload};

impl WasmSandbox {
    /// Runs one request. Guest misbehaviour (a trap, a timeout, running out
    /// of fuel or memory) is an [`Outcome`], not an error; errors are what
    /// kept the guest from starting.
    ///
    /// The synchronous form of [`WasmSandbox::run_async`].
    pub fn run(&self, request: ExecRequest) -> Result<SandboxResult, SandboxError> {
        block_on(self.run_async(request))?
    }

    /// Runs one request, as [`WasmSandbox::run`] does, as a future of any
    /// tokio runtime (with its time driver enabled). A guest waiting in a
    /// host call (a sleep, a tool) holds no thread, and a guest computing
    /// yields to the executor at every epoch tick. Compiling a module the
    /// sandbox has not seen runs in [`tokio::task::block_in_place`] on a
    /// multi-threaded runtime.
    pub async fn run_async(&self, request: ExecRequest) -> Result<SandboxResult, SandboxError> {
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

        let stdout = CappedPipe::new(Stream::Stdout, inner.config.max_stdout);
        let stderr = CappedPipe::new(Stream::Stderr, inner.config.max_stderr);
        let (delivery, _) =
            Delivery::connect(&stdout, &stderr, None, request.stdout_sink, request.stderr_sink);
        let guest = GuestIo {
            writable_mounts: true,
            workspace: None,
            args: &request.args,
            env: &request.env,
            stdin: request.stdin,
            stdout: &stdout,
            stderr: &stderr,
        };
        let mut store = self.new_store(&source, guest)?;
        // Wait for a slot before the deadline is set, so that time spent
        // waiting never counts against the guest.
        let _slot = inner.core.slots.acquire().await;
        let _running = inner.core.running();
        arm_deadline(&mut store, inner.config.timeout);
        let started = Instant::now();
        // The epoch deadline stops guest code; this timer also stops a guest
        // blocked in a host call (a sleep, a read), by dropping its future.
        let timeout = inner.config.timeout;
        let ran = tokio::time::timeout(timeout, call_entry(&mut store, pre, entry)).await;
        // Live output gets until the deadline (and a moment to flush) to
        // reach its sink; what it has not taken by then is dropped.
        let flush_by = started + timeout + LIVE_FLUSH_GRACE;
        delivery.finish(flush_by, &stdout, &stderr);
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
