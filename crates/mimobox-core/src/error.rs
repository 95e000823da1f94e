//! [`SandboxError`]: what prevented an execution from starting.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;

/// What prevented a sandbox from being created or a module from running.
///
/// A guest that misbehaves is not an error: its end is an
/// [`Outcome`](crate::Outcome) in the [`SandboxResult`](crate::SandboxResult).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The module file does not exist.
    #[error("module {}: no such file", path.display())]
    ModuleNotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The module file exists but cannot be read.
    #[error("module {}: cannot read: {source}", path.display())]
    ModuleUnreadable {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The module file is larger than `max_module_size`.
    #[error("module {}: {size} bytes is over the limit of {limit} bytes (max_module_size)", path.display())]
    ModuleTooLarge {
        /// The path as given.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A module built from the guest's state (a preload's checkpoint, or
    /// the module of a checkpoint a session is opened from) is larger than
    /// `max_module_size`; it is refused before it is compiled or stored.
    #[error(
        "module {module}: its checkpoint is {size} bytes, over the limit of {limit} bytes (max_module_size)"
    )]
    CheckpointTooLarge {
        /// The name of the module the checkpoint was taken of.
        module: String,
        /// The checkpoint's size in bytes.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The bytes are not a valid module for this backend.
    #[error("module {module}: invalid: {message}")]
    InvalidModule {
        /// The module's name or path.
        module: String,
        /// What the backend found wrong.
        message: String,
    },
    /// The module needs something the sandbox does not provide (an import
    /// that is not WASI preview 1, or no entry point).
    #[error("module {module}: cannot be linked: {message}")]
    Link {
        /// The module's name or path.
        module: String,
        /// What is missing.
        message: String,
    },
    /// Compiling the module took longer than `compile_timeout_secs`.
    #[error("module {module}: compilation did not finish within {}s (compile_timeout_secs); the guest never started", limit.as_secs_f64())]
    CompileTimeout {
        /// The module's name or path.
        module: String,
        /// The configured bound.
        limit: Duration,
    },
    /// Compiling the module would take more host memory than its budget.
    #[error(
        "module {module}: compiling it would take about {} of memory ({functions} functions), over its budget of {} (max_compile_memory)",
        crate::units::format_size(*estimate),
        crate::units::format_size(*budget)
    )]
    CompileMemory {
        /// The module's name or path.
        module: String,
        /// The estimated memory, in bytes.
        estimate: u64,
        /// The budget, in bytes.
        budget: u64,
        /// How many functions the module has.
        functions: u64,
    },
    /// A config value that can never work.
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// A config value this backend cannot honour. It is refused rather
    /// than weakened.
    #[error("unsupported setting `{key}`: {reason}")]
    Unsupported {
        /// The profile key at fault.
        key: String,
        /// Why the backend cannot honour it.
        reason: String,
    },
    /// A directory to mount cannot be opened.
    #[error("mount {}: cannot open: {source}", host.display())]
    Mount {
        /// The host directory.
        host: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Every pool slot was held by other sessions and executions for as
    /// long as `session.open_timeout_secs` allowed.
    #[error("no room for another session: all {slots} pool slots stayed busy for {}s (pool.size, session.open_timeout_secs)", waited.as_secs_f64())]
    SessionCapacity {
        /// The pool's size.
        slots: u32,
        /// How long the open waited.
        waited: Duration,
    },
    /// The session has ended and takes no more turns.
    #[error("the session has ended: {reason}")]
    SessionEnded {
        /// Why it ended.
        reason: String,
    },
    /// The session's state cannot be carried into another instance now
    /// (for a checkpoint, a fork or a pause): the guest holds a file open,
    /// say, or the session was opened from a preload. The session goes on.
    #[error("checkpoint: {reason}")]
    StateNotCarried {
        /// Why, on one line.
        reason: String,
    },
    /// A hidden turn (the preload, or the restore turn) did not exit 0
    /// with the session alive.
    #[error("checkpoint: {what} did not succeed: {how}")]
    HiddenTurnFailed {
        /// Which turn, with its key (`the preload (session.preload)`).
        what: &'static str,
        /// How it ended, with the end of its stderr, on one line.
        how: String,
    },
    /// The module file changed since the session opened, so the state
    /// cannot be checkpointed against it.
    #[error("checkpoint: {module}: the module changed since the session opened")]
    ModuleChanged {
        /// The module's path.
        module: String,
    },
    /// A request named a module where a checkpoint's or a session's own
    /// runs.
    #[error("{what} runs its own module; leave `module` unset")]
    ModuleNotExpected {
        /// What runs its own (`a session opened from a checkpoint`, `a fork`).
        what: &'static str,
    },
    /// The module cannot be instrumented for checkpoints (Wizer refuses
    /// it). Sessions still run it; checkpoints and forks of them are
    /// refused with this reason.
    #[error("checkpoint: {module}: the module cannot be checkpointed: {reason}")]
    NotCheckpointable {
        /// The module's name or path.
        module: String,
        /// Why it cannot be instrumented, on one line.
        reason: String,
    },
    /// The module does not implement the turn interface a session needs.
    #[error("module {module}: not a session guest: it must export {missing} (see docs/sessions.md)")]
    NotSessionGuest {
        /// The module's name or path.
        module: String,
        /// The export it lacks, with its type.
        missing: String,
    },
    /// Instantiating the module (running its data and element segments,
    /// its start function) took longer than `timeout_secs`.
    #[error("module {module}: instantiation did not finish within {}s (timeout_secs)", limit.as_secs_f64())]
    InstantiationTimeout {
        /// The module's name or path.
        module: String,
        /// The bound it ran into.
        limit: std::time::Duration,
    },
    /// A session's private workspace (`session.workspace`) cannot be made.
    #[error("session.workspace: {message}")]
    Workspace {
        /// What went wrong, on one line.
        message: String,
    },
    /// A session cannot be paused (it was opened from a caller's
    /// checkpoint, say); it goes on as it was.
    #[error("pause: {reason}")]
    NotPausable {
        /// Why, on one line.
        reason: String,
    },
    /// A paused state was refused: nothing of it was used.
    #[error("pause: {0}")]
    Resume(#[from] ResumeError),
    /// The command was empty: there is no module to run.
    #[error("no module given")]
    NoModule,
    /// The backend failed in a way the guest did not cause.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SandboxError {
    /// The config key this error is about, if any, so that a caller holding
    /// a [`Profile`](crate::Profile) can point at its line.
    pub fn config_key(&self) -> Option<&str> {
        match self {
            SandboxError::Config(e) => Some(&e.key),
            SandboxError::Unsupported { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Why a paused state was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeError {
    /// Not a paused session, or one cut short.
    #[error("not a paused mimobox session (or a truncated one)")]
    Malformed,
    /// Its MAC does not match: altered, or written under another key.
    #[error("the paused state was altered or written under another key")]
    Unauthenticated,
    /// Written by another version of the paused form.
    #[error("the paused state is format {found}; this mimobox reads format {expected}")]
    Format {
        /// The format found.
        found: u32,
        /// The format this build reads.
        expected: u32,
    },
    /// Made for another module, preload or engine.
    #[error("the paused state was made for another {what} ({found}); this sandbox has {expected}")]
    Mismatch {
        /// `module` or `engine`.
        what: &'static str,
        /// What the state names.
        found: String,
        /// What this sandbox has.
        expected: String,
    },
    /// Presented for another session or owner.
    #[error("the paused state belongs to another session or owner")]
    Binding,
    /// A genuine but older state of the session: not the one its last
    /// pause wrote.
    #[error("the paused state is of the session's pause {found}, but its last pause was pause {expected}")]
    Stale {
        /// The pause that wrote the state (1 for the first).
        found: u64,
        /// The session's last pause.
        expected: u64,
    },
    /// It holds more than the resuming profile's session may, or a path
    /// or link that would leave the workspace.
    #[error("the paused state is refused: {0}")]
    Beyond(String),
}
