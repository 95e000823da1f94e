//! What a guest runs inside: its store and WASI context, the limits on its
//! memory and output, its mounts, the WASI rules mimobox adds on top of
//! WASI's own (open files, disk writes, no FIFOs or devices), and the
//! host-call door through which it reaches tools.

pub(crate) mod check;
pub(crate) mod host_call_door;
pub(crate) mod limits;
pub(crate) mod mounts;
pub(crate) mod output;
pub(crate) mod results;
pub(crate) mod state;
mod store;
pub(crate) mod wasi_rules;

pub(crate) use state::GuestState;
pub(crate) use store::{GuestIo, LIVE_FLUSH_GRACE};
