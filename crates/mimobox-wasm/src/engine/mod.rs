//! The Wasmtime [`Engine`] of a sandbox, its cache identity and its epoch
//! clock.

pub(crate) mod slots;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mimobox_cache::EngineId;
use mimobox_core::SandboxError;
use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig};

use crate::engine::slots::Slots;
use crate::guest::limits::{MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};
use crate::guest::state::GuestState;

/// How often the epoch advances. Wall-clock limits are enforced to within
/// one tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The settings an engine is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct EngineSettings {
    /// Compile fuel metering in. It slows every loop, so it is on only when
    /// a fuel budget is configured; such artifacts are cached apart.
    pub(crate) fuel: bool,
    /// Pooled instance slots; 0 allocates per execution.
    pub(crate) pool_size: u32,
}

impl EngineSettings {
    /// Builds the engine. If the pool's address space cannot be reserved
    /// (a `ulimit -v`, say), it warns and allocates per execution instead:
    /// slower, with the same limits.
    pub(crate) fn build(self) -> Result<(Engine, EngineId), SandboxError> {
        if self.pool_size > 0 {
            match Engine::new(&self.wasmtime_config(true)) {
                Ok(engine) => return Ok(self.identify(engine)),
                Err(e) => tracing::warn!("instance pool unavailable, allocating per execution: {e}"),
            }
        }
        let engine = Engine::new(&self.wasmtime_config(false))
            .map_err(|e| SandboxError::Internal(format!("cannot create engine: {e}")))?;
        Ok(self.identify(engine))
    }

    fn identify(self, engine: Engine) -> (Engine, EngineId) {
        let id = engine_id(&engine, self.fuel);
        (engine, id)
    }

    fn wasmtime_config(self, pooled: bool) -> Config {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .consume_fuel(self.fuel)
            // A sandbox runs core modules under WASI preview 1. Proposals that
            // bring memory the limiter does not see (shared memories, GC
            // types) or other execution models stay off. Exceptions stay on
            // (Wasmtime's default): language runtimes compiled with them
            // need them.
            .wasm_threads(false)
            .wasm_gc(false)
            .wasm_stack_switching(false)
            .wasm_component_model(false)
            .wasm_memory64(false)
            .wasm_exceptions(true)
            .parallel_compilation(true);
        if pooled {
            let slots = self.pool_size;
            let mut pool = PoolingAllocationConfig::new();
            // Every slot can hold a module at the limits the limiter and the
            // loader enforce, so the pool never refuses a module they accept.
            pool.total_core_instances(slots)
                .total_memories(slots.saturating_mul(MAX_MEMORIES as u32))
                .total_tables(slots.saturating_mul(MAX_TABLES as u32))
                // Two stacks a slot: the guest's own, and one for the
                // guest's `host_alloc` that the door calls re-entrantly to
                // place a tool's answer.
                .total_stacks(slots.saturating_mul(2))
                // Exception objects (CPython builds use exceptions) live in
                // a GC heap: one per slot.
                .total_gc_heaps(slots)
                .max_memories_per_module(MAX_MEMORIES as u32)
                .max_tables_per_module(MAX_TABLES as u32)
                .table_elements(MAX_TABLE_ELEMENTS)
                .max_core_instance_size(MAX_INSTANCE_METADATA)
                // A slot spans the whole wasm32 range (it reserves that much
                // address space anyway), so the pool never refuses a module:
                // the limiter enforces the configured limit, and reports it.
                .max_memory_size(
                    usize::try_from(crate::guest::limits::MAX_MEMORY_LIMIT).unwrap_or(usize::MAX),
                )
                // Keep a little of each slot's memory resident between runs
                // instead of returning it to the kernel every time.
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT)
                // And the top of each stack: a tool call's answer is placed
                // by a re-entrant call on a stack of its own, which would
                // otherwise fault its pages in again on every call.
                .async_stack_keep_resident(STACK_KEEP_RESIDENT);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        config
    }
}

/// Most bytes of instance metadata (vmctx) a module may need in a pooled
/// slot; CPython needs well under this.
const MAX_INSTANCE_METADATA: usize = 4 << 20;
const KEEP_RESIDENT: usize = 1 << 20;
const STACK_KEEP_RESIDENT: usize = 64 << 10;

/// Hashes Wasmtime's own compatibility hash (its version, compiler and
/// settings) together with ours.
fn engine_id(engine: &Engine, fuel: bool) -> EngineId {
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the digest of this hasher is used")
        }
    }
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    fuel.hash(&mut hasher);
    hasher.write(crate::module::cache::ENGINE_TAG.as_bytes());
    EngineId::from_digest(hasher.0.finalize().into())
}

/// What sandboxes with the same [`EngineSettings`] share in one process:
/// the engine (and its instance pool), the WASI linker, the epoch clock and
/// the slots of the pool. Building these is most of the cost of a first
/// sandbox, so a core, once built, lives for the rest of the process, as
/// Wasmtime intends for engines; its clock only ticks while a guest runs.
pub(crate) struct EngineCore {
    pub(crate) engine: Engine,
    pub(crate) id: EngineId,
    pub(crate) linker: Linker<GuestState>,
    pub(crate) slots: Slots,
    clock: Arc<EpochClock>,
}

impl EngineCore {
    /// The core for `settings`, built on first use.
    pub(crate) fn shared(settings: EngineSettings) -> Result<Arc<EngineCore>, SandboxError> {
        static CORES: Mutex<Vec<(EngineSettings, Arc<EngineCore>)>> = Mutex::new(Vec::new());
        let mut cores = CORES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, core)) = cores.iter().find(|(s, _)| *s == settings) {
            return Ok(core.clone());
        }
        let core = Arc::new(EngineCore::new(settings)?);
        cores.push((settings, core.clone()));
        Ok(core)
    }

    fn new(settings: EngineSettings) -> Result<EngineCore, SandboxError> {
        let (engine, id) = settings.build()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut GuestState| &mut state.wasi)
            .map_err(|e| SandboxError::Internal(format!("cannot link WASI: {e}")))?;
        crate::guest::wasi_rules::add_to_linker(&mut linker)
            .map_err(|e| SandboxError::Internal(format!("cannot link WASI: {e}")))?;
        crate::guest::host_call_door::add_to_linker(&mut linker)
            .map_err(|e| SandboxError::Internal(format!("cannot link the host door: {e}")))?;
        let clock = EpochClock::start(&engine)?;
        Ok(EngineCore { engine, id, linker, slots: Slots::new(settings.pool_size), clock })
    }

    /// Keeps the epoch clock ticking until the returned guard drops; hold
    /// it for the whole of an execution.
    pub(crate) fn running(&self) -> Running<'_> {
        self.clock.enter();
        Running(&self.clock)
    }
}

/// A thread that advances an engine's epoch every [`EPOCH_TICK`] while
/// executions run, and parks after [`CLOCK_LINGER`] without any. Entering
/// and leaving an execution costs two atomic operations; only waking a
/// parked clock costs a system call.
struct EpochClock {
    running: AtomicUsize,
    parked: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    /// When the clock started, the base of `entered`.
    base: std::time::Instant,
    /// When the latest execution started (nanoseconds after `base`): the
    /// ticks the clock adds to catch up never count time before it, so no
    /// deadline set at that start fires early.
    entered: std::sync::atomic::AtomicU64,
}

/// How long the clock keeps ticking after the last execution ends, so that
/// back-to-back executions never wait for it to wake.
const CLOCK_LINGER: Duration = Duration::from_secs(1);

/// An execution in progress; see [`EngineCore::running`].
pub(crate) struct Running<'a>(&'a EpochClock);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochClock {
    fn start(engine: &Engine) -> Result<Arc<EpochClock>, SandboxError> {
        let clock = Arc::new(EpochClock {
            running: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
            base: std::time::Instant::now(),
            entered: std::sync::atomic::AtomicU64::new(0),
        });
        let ticking = clock.clone();
        let engine = engine.weak();
        let handle = std::thread::Builder::new()
            .name("mimobox-epoch".into())
            .spawn(move || ticking.tick(engine))
            .map_err(|e| SandboxError::Internal(format!("cannot start the epoch thread: {e}")))?;
        let _ = clock.thread.set(handle.thread().clone());
        Ok(clock)
    }

    fn tick(&self, engine: wasmtime::EngineWeak) {
        let mut idle_since: Option<std::time::Instant> = None;
        // The epoch follows the wall clock, not the count of wake-ups: on a
        // busy machine this thread may wake late, and each tick it missed
        // is added then, so a deadline in ticks is one in time.
        let mut counted = std::time::Instant::now();
        loop {
            std::thread::sleep(EPOCH_TICK);
            let Some(engine) = engine.upgrade() else { return };
            // An execution that started during a late wake-up set its
            // deadline from the epoch as it stood: the time before its start
            // is not its to pay (an earlier one's deadline only comes later).
            let entered = self.base + Duration::from_nanos(self.entered.load(Ordering::SeqCst));
            counted = counted.max(entered);
            let due = (counted.elapsed().as_nanos() / EPOCH_TICK.as_nanos()).max(1);
            for _ in 0..due {
                engine.increment_epoch();
            }
            counted += EPOCH_TICK * u32::try_from(due).unwrap_or(u32::MAX);
            drop(engine);
            if self.running.load(Ordering::SeqCst) > 0 {
                idle_since = None;
                continue;
            }
            if idle_since.get_or_insert_with(std::time::Instant::now).elapsed() < CLOCK_LINGER {
                continue;
            }
            // Announce the park before the last look at `running`: an
            // execution that starts after that look sees `parked` and
            // unparks us (an unpark before the park is not lost).
            self.parked.store(true, Ordering::SeqCst);
            if self.running.load(Ordering::SeqCst) == 0 {
                std::thread::park();
            }
            self.parked.store(false, Ordering::SeqCst);
            idle_since = None;
            // Time spent parked is no tick: executions started since count
            // from the epoch as it stands.
            counted = std::time::Instant::now();
        }
    }

    fn enter(&self) {
        let since = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.entered.fetch_max(since, Ordering::SeqCst);
        if self.running.fetch_add(1, Ordering::SeqCst) == 0
            && self.parked.load(Ordering::SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
    }
}

/// Arms `store`'s deadline `timeout` from now. The guest is interrupted
/// (a [`wasmtime::Trap::Interrupt`], reported as a timeout) at the first
/// epoch tick past it; before that, it yields to the async executor at every
/// tick, so that a guest computing for its whole timeout holds no executor
/// thread for longer than a tick.
pub(crate) fn arm_deadline(store: &mut wasmtime::Store<GuestState>, timeout: Duration) {
    let now = std::time::Instant::now();
    // A bound too far to be represented is as good as none: a year away.
    store.data_mut().deadline =
        now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
    store.set_epoch_deadline(1);
}

/// What a store does at each epoch tick: interrupt the guest past its
/// deadline ([`arm_deadline`]), else yield to the executor.
pub(crate) fn at_tick(
    ctx: wasmtime::StoreContextMut<'_, GuestState>,
) -> wasmtime::Result<wasmtime::UpdateDeadline> {
    if std::time::Instant::now() >= ctx.data().deadline {
        Ok(wasmtime::UpdateDeadline::Interrupt)
    } else {
        Ok(wasmtime::UpdateDeadline::Yield(1))
    }
}
