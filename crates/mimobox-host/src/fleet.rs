//! What a host asks of the fleet it belongs to: the [`Fleet`] trait, which
//! records where each session lives and whether this host still holds it.
//! `mimobox-fleet` implements it over a routing catalog; a host alone has
//! none.

use std::time::Duration;

use crate::SessionId;
use crate::error::HostError;
use crate::storage::{BoxFuture, StateName};

/// A host's view of the fleet: the catalog of sessions with this host's
/// leases on them.
///
/// The host calls it at each step that changes who holds a session or
/// which paused state is current, and before every call it runs on a live
/// session, so that a host that lost a session's lease never serves it.
pub trait Fleet: Send + Sync + 'static {
    /// Records a new session of `owner` running `profile`, opened here;
    /// the fencing epoch the host holds it under.
    fn opened(&self, id: SessionId, owner: &str, profile: &str) -> BoxFuture<'_, Result<u64, HostError>>;

    /// How long this host may still serve `id`, renewing its lease first
    /// when little of it is left; `None` when the lease is lost (another
    /// worker may hold the session now).
    fn serve_for(&self, id: SessionId) -> BoxFuture<'_, Result<Option<Duration>, HostError>>;

    /// Records `state`, holding the session's turns up to `turn`, as its
    /// current paused state; with `release`, the host gives the session up
    /// too, for any worker to resume. `false` when the session is no longer
    /// this host's (nothing was recorded).
    fn stored(&self, state: StateName, turn: u64, release: bool) -> BoxFuture<'_, Result<bool, HostError>>;

    /// Resolves once this host's lease on `id` has ended unrenewed (at
    /// once if it holds none): a turn running then is stopped.
    fn lease_ends(&self, id: SessionId) -> BoxFuture<'_, ()>;

    /// Gives the session up without recording a new state (one taken up
    /// and never resumed, whose recorded state is still current).
    fn release(&self, id: SessionId) -> BoxFuture<'_, ()>;

    /// Forgets a session closed here (held under `epoch`); the paused
    /// state the catalog named, for the host to delete.
    fn closed(&self, id: SessionId, epoch: u64) -> BoxFuture<'_, Option<StateName>>;

    /// The host let `id` go without recording anything: its lease was
    /// lost, or it failed.
    fn dropped(&self, id: SessionId);
}
