//! [`HostError`]: why the host refused a call, each reason its own variant.

use std::time::Duration;

use mimobox_core::SandboxError;
use mimobox_files::FileError;

use crate::storage::StoreError;

/// Which of the host's limits a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Sessions open (live or paused).
    Sessions,
    /// Turns running at once.
    RunningTurns,
    /// Memory of live sessions, in bytes.
    Memory,
}

impl LimitKind {
    /// The limit's name in messages and metrics.
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Sessions => "sessions",
            LimitKind::RunningTurns => "running_turns",
            LimitKind::Memory => "memory",
        }
    }
}

/// Whose limit it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The owner's own.
    Owner,
    /// The whole host's.
    Host,
}

/// Why the host refused a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// No session has this id for this owner: it never existed, it has
    /// closed, or it is another owner's (the same answer for all three).
    #[error("no such session")]
    NotFound,
    /// The host serves no profile of this name.
    #[error("no profile named {name:?}")]
    UnknownProfile {
        /// The name asked for (bounded).
        name: String,
    },
    /// An owner's name the host does not accept.
    #[error("owner name {name:?}: {problem}")]
    BadOwner {
        /// The name (bounded).
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A limit would be passed.
    #[error("{} limit reached ({}): {limit}", kind.name(), match scope { Scope::Owner => "this owner's", Scope::Host => "the host's" })]
    Limit {
        /// Which limit.
        kind: LimitKind,
        /// Whose.
        scope: Scope,
        /// Its value.
        limit: u64,
    },
    /// The session is running a turn and the caller chose not to wait, or
    /// waited as long as it allowed, or too many calls wait already.
    #[error("the session is busy with another call{}", waited.map(|w| format!(" (waited {}s)", w.as_secs_f64())).unwrap_or_default())]
    Busy {
        /// How long this call waited, if it did.
        waited: Option<Duration>,
    },
    /// The host is shutting down and takes no new sessions or turns.
    #[error("the host is shutting down")]
    ShuttingDown,
    /// The backend refused or failed (the session's module, its limits, a
    /// paused state that does not check out).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// A file operation broke a rule, or the file system said no.
    #[error(transparent)]
    File(#[from] FileError),
    /// The storage of paused sessions failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The session is held by another worker of the fleet now (this one's
    /// lease on it ended); the request is to be sent again, and goes there.
    #[error("the session moved to another worker; send the request again")]
    Moved,
    /// A turn was sent under an idempotency key that the session's last
    /// keyed turn used for another request.
    #[error("this idempotency key was used for another request (turn {turn})")]
    KeyReused {
        /// The turn that used it.
        turn: u64,
    },
    /// A turn sent again under its idempotency key ran already, but its
    /// answer did not come along when the session moved between hosts: it
    /// is not run twice.
    #[error(
        "the turn with this idempotency key ran already (turn {turn}); its answer stayed with the worker that ran it"
    )]
    AlreadyRan {
        /// The turn it ran as.
        turn: u64,
    },
    /// The fleet's catalog of sessions could not answer.
    #[error("the session catalog: {0}")]
    Catalog(Box<dyn std::error::Error + Send + Sync>),
    /// The host needs a tokio runtime (with its time driver) to run in.
    #[error("the session host must be created inside a tokio runtime with time enabled")]
    NoRuntime,
    /// The host's config cannot be honoured.
    #[error("session host config: {0}")]
    Config(String),
}
