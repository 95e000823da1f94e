//! The Wasmtime [`Engine`] of a sandbox, its cache identity and its epoch
//! clock.

use std::hash::{Hash, Hasher};
use std::sync::mpsc;
use std::time::Duration;

use mimobox_cache::EngineId;
use mimobox_core::SandboxError;
use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine};

/// How often the epoch advances. Wall-clock limits are enforced to within
/// one tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The settings that decide the code an engine generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct EngineSettings {
    /// Compile fuel metering in. It slows every loop, so it is on only when
    /// a fuel budget is configured; such artifacts are cached apart.
    pub(crate) fuel: bool,
}

impl EngineSettings {
    pub(crate) fn build(self) -> Result<(Engine, EngineId), SandboxError> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .consume_fuel(self.fuel)
            // A sandbox runs core modules under WASI preview 1. Proposals that
            // bring memory the limiter does not see (shared memories, GC
            // heaps) or other execution models stay off.
            .wasm_threads(false)
            .wasm_gc(false)
            .wasm_stack_switching(false)
            .wasm_component_model(false)
            .wasm_memory64(false)
            .parallel_compilation(true);
        let engine =
            Engine::new(&config).map_err(|e| SandboxError::Internal(format!("cannot create engine: {e}")))?;
        let id = engine_id(&engine, self);
        Ok((engine, id))
    }
}

/// Hashes Wasmtime's own compatibility hash (its version, compiler and
/// settings) together with ours.
fn engine_id(engine: &Engine, settings: EngineSettings) -> EngineId {
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
    settings.hash(&mut hasher);
    hasher.write(concat!("mimobox-wasm ", env!("CARGO_PKG_VERSION")).as_bytes());
    EngineId::from_digest(hasher.0.finalize().into())
}

/// A thread that advances an engine's epoch every [`EPOCH_TICK`] for as long
/// as this value lives.
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> Result<EpochTicker, SandboxError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine = engine.weak();
        let thread = std::thread::Builder::new()
            .name("mimobox-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| SandboxError::Internal(format!("cannot start the epoch thread: {e}")))?;
        Ok(EpochTicker { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The epoch deadline, in ticks from now, that enforces `timeout`.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX - 1).saturating_add(1)
}
