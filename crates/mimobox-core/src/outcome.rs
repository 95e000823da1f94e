//! What an execution produced: [`SandboxResult`] and its typed [`Outcome`].

use std::time::Duration;

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The guest returned from its entry point or called `proc_exit`.
    Exited {
        /// The guest's exit status (0 when its entry point returned).
        code: i32,
    },
    /// The wall-clock limit passed before the guest ended.
    TimedOut,
    /// The guest used up its fuel budget.
    OutOfFuel,
    /// The guest needed more memory than its limit allowed, and trapped or
    /// could not be instantiated as a result.
    MemoryLimit,
    /// The guest trapped (unreachable, out-of-bounds access, stack
    /// overflow, ...).
    Trap {
        /// The trap's description.
        message: String,
    },
}

impl Outcome {
    /// A short, stable name: `exited`, `timed_out`, `out_of_fuel`,
    /// `memory_limit` or `trap`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Exited { .. } => "exited",
            Outcome::TimedOut => "timed_out",
            Outcome::OutOfFuel => "out_of_fuel",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Trap { .. } => "trap",
        }
    }
}

/// Everything an execution produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxResult {
    /// How the execution ended.
    pub outcome: Outcome,
    /// Captured stdout, at most the configured cap.
    pub stdout: Vec<u8>,
    /// Captured stderr, at most the configured cap.
    pub stderr: Vec<u8>,
    /// Whether the guest wrote more stdout than the cap (the rest was
    /// dropped).
    pub stdout_truncated: bool,
    /// Whether the guest wrote more stderr than the cap.
    pub stderr_truncated: bool,
    /// Wall-clock time of the execution, instantiation included and
    /// compilation excluded.
    pub elapsed: Duration,
    /// Fuel used, when a fuel budget was set.
    pub fuel_consumed: Option<u64>,
    /// The largest linear memory the guest reached, in bytes.
    pub peak_memory: u64,
    /// Whether the memory limit denied the guest memory at some point,
    /// even if the guest carried on (a failed `memory.grow` returns -1).
    pub memory_limit_hit: bool,
    /// Bytes the guest wrote to read-write mounts.
    pub disk_written: u64,
    /// Whether the guest reached `max_disk_write` (its later writes failed).
    pub disk_quota_hit: bool,
    /// The host tools the guest called, in order: what sandboxed code asked
    /// the host to do.
    pub tool_calls: Vec<ToolCall>,
}

/// One call of a host tool, as the record of a run or turn keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The tool's name as the guest gave it.
    pub tool: String,
    /// How long the call took, the tool's own work included.
    pub duration: Duration,
    /// Whether the tool answered with a value (not an error).
    pub ok: bool,
    /// The error's kind when it did not (`invalid_arguments`, `timeout`, ...).
    pub error: Option<String>,
}

impl SandboxResult {
    /// The guest's exit code, if it exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self.outcome {
            Outcome::Exited { code } => Some(code),
            _ => None,
        }
    }

    /// Captured stdout as text, with invalid UTF-8 replaced.
    pub fn stdout_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// Captured stderr as text, with invalid UTF-8 replaced.
    pub fn stderr_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}
