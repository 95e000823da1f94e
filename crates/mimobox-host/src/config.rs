//! What a host is configured with: its limits, per owner and in total,
//! idle pausing, the sweep, and where paused sessions go.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::fleet::Fleet;
use crate::storage::PausedStore;

/// Bounds on what sessions hold: for one owner, or for the whole host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions open at once, live or paused.
    pub sessions: u64,
    /// Turns running at once.
    pub running_turns: u64,
    /// Bytes of memory live sessions hold. Past it, the host pauses the
    /// least recently used idle sessions (with a store), else refuses.
    pub memory: u64,
}

impl Limits {
    /// No bound on anything.
    pub const UNLIMITED: Limits = Limits { sessions: u64::MAX, running_turns: u64::MAX, memory: u64::MAX };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::UNLIMITED
    }
}

/// What a call does when the session is running another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBusy {
    /// Refuse at once with [`crate::HostError::Busy`].
    Refuse,
    /// Wait up to this long for the running call to end, then refuse.
    /// At most [`HostConfig::max_waiting`] calls wait on one session.
    Wait(Duration),
}

/// How a [`crate::SessionHost`] runs.
pub struct HostConfig {
    /// The whole host's limits.
    pub limits: Limits,
    /// Each owner's limits, unless `owners` names it.
    pub owner_limits: Limits,
    /// Limits of particular owners.
    pub owners: HashMap<String, Limits>,
    /// Pause a live session idle this long to the store (with a store);
    /// `None` keeps idle sessions live until they expire.
    pub pause_idle_after: Option<Duration>,
    /// Close a session idle this long, live or paused, in place of its
    /// profile's idle timeout; `None` keeps the profile's.
    pub close_idle_after: Option<Duration>,
    /// How often the background sweep looks for sessions to close or
    /// pause.
    pub sweep_interval: Duration,
    /// Most calls that may wait on one busy session.
    pub max_waiting: u32,
    /// The key that authenticates paused states (at least 32 bytes).
    pub state_key: Arc<[u8]>,
    /// Where paused sessions are kept; without one, nothing is paused and
    /// memory pressure refuses instead.
    pub store: Option<Arc<dyn PausedStore>>,
    /// Write a live session's state to the store in the background this
    /// long after its last stored state, when it has taken turns since
    /// (with a store): what a crash of this process loses is then at most
    /// that long of turns. The session stays live.
    pub checkpoint_after: Option<Duration>,
    /// The fleet this host is a worker of; `None` for a host alone.
    pub fleet: Option<Arc<dyn Fleet>>,
    /// Sessions of each profile kept opened ahead of demand: an open takes
    /// the oldest (and another is opened behind it in the background)
    /// instead of waiting for its own. They are nobody's until taken,
    /// their memory counts in the host's total, and the host's memory
    /// limit closes them before it pauses anyone's session. 0 opens each
    /// session when it is asked for.
    pub ready_sessions: usize,
    /// How long a session opened ahead may wait to be taken before it is
    /// closed and replaced: its clocks run from its own opening, so it is
    /// held also to a quarter of its profile's idle timeout and a tenth of
    /// its lifetime, whichever is shortest. Each one holds a pool slot of
    /// its backend (size the pool for the sessions and these).
    pub ready_max_age: Duration,
}

impl HostConfig {
    /// A config with no limits, no store, a sweep every second, and
    /// `state_key` for paused states.
    pub fn new(state_key: impl Into<Arc<[u8]>>) -> HostConfig {
        HostConfig {
            limits: Limits::UNLIMITED,
            owner_limits: Limits::UNLIMITED,
            owners: HashMap::new(),
            pause_idle_after: None,
            close_idle_after: None,
            sweep_interval: Duration::from_secs(1),
            max_waiting: 8,
            state_key: state_key.into(),
            store: None,
            checkpoint_after: None,
            fleet: None,
            ready_sessions: 0,
            ready_max_age: Duration::from_secs(60),
        }
    }

    pub(crate) fn limits_of(&self, owner: &str) -> Limits {
        self.owners.get(owner).copied().unwrap_or(self.owner_limits)
    }
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("limits", &self.limits)
            .field("owner_limits", &self.owner_limits)
            .field("owners", &self.owners)
            .field("pause_idle_after", &self.pause_idle_after)
            .field("close_idle_after", &self.close_idle_after)
            .field("sweep_interval", &self.sweep_interval)
            .field("max_waiting", &self.max_waiting)
            .field("store", &self.store.is_some())
            .field("checkpoint_after", &self.checkpoint_after)
            .field("fleet", &self.fleet.is_some())
            .field("ready_sessions", &self.ready_sessions)
            .field("ready_max_age", &self.ready_max_age)
            .finish_non_exhaustive()
    }
}
