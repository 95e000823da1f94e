//! What the host needs of a backend: open and resume sessions of one
//! profile, and, of a session, turns, pauses, files and its memory.

use std::future::Future;
use std::time::Duration;

use mimobox_core::{SandboxError, TurnRequest, TurnResult};
use mimobox_files::Listing;

use crate::error::HostError;

/// What a paused state is bound to: the session it belongs to and its
/// owner. A state presented for another session or owner is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The session's id, as [`crate::SessionId`] writes it.
    pub session: String,
    /// The owner's name.
    pub owner: String,
}

/// A profile's sessions: one configured sandbox that opens and resumes
/// them. The host holds one per profile it serves.
pub trait Backend: Send + Sync + 'static {
    /// A live session of this backend.
    type Session: HostedSession;

    /// Opens a new session.
    fn open(&self) -> impl Future<Output = Result<Self::Session, SandboxError>> + Send;

    /// Resumes a session from its paused state, checked under `key` and
    /// against `binding`; a state that fails any check is refused whole.
    fn resume(
        &self,
        paused: &[u8],
        key: &[u8],
        binding: &Binding,
    ) -> impl Future<Output = Result<Self::Session, SandboxError>> + Send;

    /// How long a session may sit idle between turns, and how long it may
    /// live in all, paused time included (the profile's
    /// `session.idle_timeout_secs` and `session.lifetime_secs`).
    fn timeouts(&self) -> (Duration, Duration);
}

/// A live session, as the host drives it.
pub trait HostedSession: Send + 'static {
    /// Runs one turn under the profile's limits.
    fn turn(&mut self, request: TurnRequest)
    -> impl Future<Output = Result<TurnResult, SandboxError>> + Send;

    /// Writes the session out, bound to `binding` and authenticated with
    /// `key`, and ends it; refused, with the reason, when its state cannot
    /// be carried (a file held open, say), and the session then goes on.
    fn pause(
        &mut self,
        key: &[u8],
        binding: &Binding,
    ) -> impl Future<Output = Result<Vec<u8>, SandboxError>> + Send;

    /// Ends the session, letting the guest finalise if its profile asks.
    fn close(self) -> impl Future<Output = ()> + Send;

    /// Bytes of memory the guest holds now.
    fn memory_in_use(&self) -> u64;

    /// Writes a file into the session's workspace; the bytes written.
    fn write_file(&mut self, path: &str, data: &[u8]) -> Result<u64, HostError>;

    /// Reads a file of the session's workspace or mounts.
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, HostError>;

    /// Lists a directory of the session's workspace or mounts.
    fn list_files(&mut self, path: &str) -> Result<Listing, HostError>;
}
