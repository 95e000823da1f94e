//! What the catalog records of a session, and what it can be asked.

use std::future::Future;
use std::time::{Duration, Instant};

/// Why the catalog could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The catalog's server could not be reached, or refused the request.
    #[error("the session catalog is unavailable: {0}")]
    Unavailable(String),
    /// The catalog answered something this worker does not understand
    /// (another version's record, or a hand-edited one).
    #[error("the session catalog holds a record this worker cannot read: {0}")]
    Malformed(String),
}

/// The last paused state of a session that the catalog knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedRef {
    /// The epoch under which it was written.
    pub epoch: u64,
    /// The number of the last turn it holds.
    pub turn: u64,
    /// Its key in the object store.
    pub key: String,
}

/// A session's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner that opened it.
    pub owner: String,
    /// The profile it runs.
    pub profile: String,
    /// How long ago it was opened, by the catalog's clock.
    pub age: Duration,
    /// How long ago its last paused state was recorded, by the catalog's
    /// clock, if one was.
    pub paused_ago: Option<Duration>,
    /// The worker holding it live, if any lease is current.
    pub worker: Option<String>,
    /// Its fencing epoch: raised by every claim that changes hands.
    pub epoch: u64,
    /// What is left of the holder's lease (zero when none is current).
    pub lease_left: Duration,
    /// Whether the last claim that changed hands took the session from a
    /// worker whose lease ran out without releasing it (a crash, a lost
    /// node), rather than from one that paused and released it.
    pub last_holder_lost: bool,
    /// Its last recorded paused state.
    pub paused: Option<PausedRef>,
}

/// A lease this worker holds on a session: serve it only before
/// [`Lease::serve_until`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The session's epoch under this lease.
    pub epoch: u64,
    /// This worker's own deadline: counted from before the request that
    /// won or renewed the lease, so it falls before the catalog's.
    pub serve_until: Instant,
}

impl Lease {
    /// Whether the session may still be served under this lease.
    pub fn is_current(&self) -> bool {
        Instant::now() < self.serve_until
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker holds the session now.
    Granted(Lease),
    /// Another worker holds it live, under a current lease.
    HeldBy {
        /// That worker's internal address.
        worker: String,
        /// The epoch it holds.
        epoch: u64,
    },
    /// The id names no session of this owner (another owner's id is
    /// answered the same as one nobody knows).
    NotFound,
}

/// The routing catalog workers share.
pub trait Catalog: Send + Sync + 'static {
    /// Records a new session of `owner` running `profile`, held by
    /// `worker` under a lease of `lease`; `None` when the id is taken
    /// (never, for 128 random bits, but never overwritten either).
    fn create(
        &self,
        id: &str,
        owner: &str,
        profile: &str,
        worker: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, CatalogError>> + Send;

    /// Claims the session of `owner` for `worker`: granted when no lease is
    /// current (the epoch is raised) or `worker` already holds it (its lease
    /// is extended).
    fn claim(
        &self,
        id: &str,
        owner: &str,
        worker: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, CatalogError>> + Send;

    /// Extends `worker`'s lease of `epoch`; `None` when the session was
    /// claimed by another since (or closed): stop serving it.
    fn renew(
        &self,
        id: &str,
        worker: &str,
        epoch: u64,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, CatalogError>> + Send;

    /// Records `paused` as the session's last state, if `worker` holds the
    /// current epoch and the turn is not older than the one recorded;
    /// `false` otherwise (and nothing changes).
    fn record_paused(
        &self,
        id: &str,
        worker: &str,
        paused: &PausedRef,
    ) -> impl Future<Output = Result<bool, CatalogError>> + Send;

    /// Ends `worker`'s lease of `epoch` (the session stays, paused, for any
    /// worker to claim); `false` if it was not that worker's.
    fn release(
        &self,
        id: &str,
        worker: &str,
        epoch: u64,
    ) -> impl Future<Output = Result<bool, CatalogError>> + Send;

    /// Forgets a closed session, if `worker` holds `epoch`; returns the
    /// paused state it had, for its object to be deleted.
    fn remove(
        &self,
        id: &str,
        worker: &str,
        epoch: u64,
    ) -> impl Future<Output = Result<Option<Option<PausedRef>>, CatalogError>> + Send;

    /// The session's record, if there is one.
    fn lookup(&self, id: &str) -> impl Future<Output = Result<Option<Record>, CatalogError>> + Send;

    /// The sessions of `owner`, with their records: at most `limit` of
    /// them, in no particular order.
    fn sessions_of(
        &self,
        owner: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(String, Record)>, CatalogError>> + Send;
}
