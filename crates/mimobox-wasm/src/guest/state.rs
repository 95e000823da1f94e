//! [`GuestState`]: the per-execution data of a store.

use wasmtime_wasi::p1::WasiP1Ctx;

use crate::guest::host_call_door::DoorState;
use crate::guest::limits::GuestLimiter;
use crate::guest::wasi_rules::FileGuard;

/// What a store holds for one execution: its WASI context, its limiter and
/// the state of mimobox's own file rules.
pub(crate) struct GuestState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: GuestLimiter,
    pub(crate) files: FileGuard,
    pub(crate) door: DoorState,
    /// When the running call is interrupted (see `engine::arm_deadline`).
    pub(crate) deadline: std::time::Instant,
}
