//! Exit statuses, decided in one place.

use std::process::ExitCode;

use mimobox_core::Outcome;

/// mimobox could not run the module: bad flag, bad profile, missing or
/// invalid module.
pub const USAGE: u8 = 2;
/// The guest timed out or ran out of fuel (as `timeout(1)` reports).
pub const TIMED_OUT: u8 = 124;
/// The guest trapped, the memory limit included (as an abort would).
pub const TRAPPED: u8 = 134;

/// The exit status that reports `outcome`.
pub fn for_outcome(outcome: &Outcome) -> ExitCode {
    match outcome {
        // Guests exit within [0, 126) (WASI's range, enforced by the
        // sandbox), so a guest status never reads as one of ours.
        Outcome::Exited { code } => ExitCode::from(u8::try_from(*code).unwrap_or(TRAPPED)),
        Outcome::TimedOut | Outcome::OutOfFuel => ExitCode::from(TIMED_OUT),
        _ => ExitCode::from(TRAPPED),
    }
}

/// An error and its causes on one line, escaped and bounded: paths and
/// names in it may come from a profile or a module.
pub fn one_line(error: &anyhow::Error) -> String {
    let text = error.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ");
    mimobox_core::text::one_line_bounded(&text)
}
