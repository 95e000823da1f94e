//! The mimobox session host: many sessions, of several profiles and for
//! many owners, held by id in one async process.
//!
//! - Ids are 128 random bits ([`SessionId`]), never reused; an id names a
//!   session for its owner only: to anyone else it is
//!   [`HostError::NotFound`], as an id that never existed is.
//! - Limits per owner and for the host ([`Limits`]): sessions open, turns
//!   running at once, memory of live sessions. Past one, a typed
//!   [`HostError::Limit`]; nothing queues without bound.
//! - One call at a time per session: a second waits (bounded, in time and
//!   in number) or is refused, as the caller chooses ([`WhenBusy`]).
//! - A background sweep closes sessions past their idle timeout or
//!   lifetime, and pauses those idle past [`HostConfig::pause_idle_after`]
//!   to a [`PausedStore`]; their next call resumes them. Under memory
//!   pressure, the least recently used idle sessions are paused first.
//! - [`SessionHost::shutdown`] stops taking calls, lets running turns
//!   finish up to a bound, then pauses (or closes) what is left.
//! - [`Metrics`]: sessions by state, turns by outcome, turn latency,
//!   pauses, resumes, memory, refusals; in the Prometheus text format.
//!
//! The host is backend-neutral ([`Backend`], [`HostedSession`]); with the
//! `wasm` feature (on by default), a `mimobox_wasm::WasmSandbox` is the
//! backend of one profile.
//!
//! ```no_run
//! # async fn demo(python: mimobox_wasm::WasmSandbox) -> Result<(), mimobox_host::HostError> {
//! use mimobox_core::TurnRequest;
//! use mimobox_host::{HostConfig, SessionHost, WhenBusy};
//!
//! let host = SessionHost::new(HostConfig::new(vec![7u8; 32]), [("python".to_string(), python)])?;
//! let id = host.open("alice", "python").await?;
//! let turn = host.turn("alice", id, TurnRequest::new("print(1 + 1)"), WhenBusy::Refuse).await?;
//! assert_eq!(turn.result.stdout, b"2\n");
//! # Ok(()) }
//! ```

mod backend;
mod config;
mod envelope;
mod error;
mod fleet;
mod host;
mod id;
mod metrics;
mod once;
mod storage;
#[cfg(feature = "wasm")]
mod wasm;

pub use backend::{Backend, Binding, HostedSession};
pub use config::{HostConfig, Limits, WhenBusy};
pub use error::{HostError, LimitKind, Scope};
pub use fleet::Fleet;
pub use host::{AdoptReport, MAX_OWNER_NAME, SessionHost, SessionInfo, SessionState, ShutdownReport};
pub use id::{BadSessionId, SessionId};
pub use metrics::{CLOSE_REASONS, Gauges, Metrics, TURN_OUTCOMES, TURN_SECONDS_BUCKETS};
pub use once::{BadTurnKey, MAX_KEPT_ANSWER, MAX_KEYS, MAX_TURN_KEY, TurnKey};
pub use storage::{BoxFuture, LocalDir, PausedStore, StateName, StoreError};
