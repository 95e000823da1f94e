//! `host::call`, the door through which a guest asks its host for tools.
//!
//! The guest passes one whole request (`req_ptr`, `req_len`) and two
//! pre-zeroed out-slots for the answer's pointer and length; the host
//! answers 0 with the answer written into memory it got from the guest's
//! `host_alloc`, or a negative code. `docs/sessions.md` has the contract.
//! A sandbox without tools answers every call with [`NO_HOST`], which a
//! guest reports as "no host" (CPython's `from host import tools` raises
//! `ImportError`).

use wasmtime::{Caller, Linker};

use crate::state::GuestState;

/// The answer of a host with no tools.
pub(crate) const NO_HOST: i32 = -1;

/// Adds `host::call` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "host",
        "call",
        |_caller: Caller<'_, GuestState>,
         _request: i32,
         _request_len: i32,
         _out_ptr: i32,
         _out_len: i32|
         -> i32 { NO_HOST },
    )?;
    Ok(())
}
