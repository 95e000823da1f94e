//! How the end of a call becomes an [`Outcome`].

use mimobox_core::Outcome;
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

use crate::guest::limits::MemoryLimitTrap;
use crate::module::one_line;

/// Turns the end of a call into an [`Outcome`], by the types of what
/// stopped it and by what the limiter saw, never by error text.
pub(crate) fn classify(result: wasmtime::Result<i32>, memory_denied: bool) -> Outcome {
    let error = match result {
        Ok(code) => return Outcome::Exited { code },
        Err(error) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Outcome::Exited { code: exit.0 };
    }
    if error.downcast_ref::<MemoryLimitTrap>().is_some() {
        return Outcome::MemoryLimit;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Outcome::TimedOut,
        Some(Trap::OutOfFuel) => Outcome::OutOfFuel,
        _ if memory_denied => Outcome::MemoryLimit,
        _ => Outcome::Trap { message: one_line(&error) },
    }
}
