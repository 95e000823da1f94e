//! [`GuestState`]: the per-execution data of a store.

use wasmtime_wasi::p1::WasiP1Ctx;

use crate::limits::GuestLimiter;

/// What a store holds for one execution: its WASI context and its limiter.
pub(crate) struct GuestState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: GuestLimiter,
}
