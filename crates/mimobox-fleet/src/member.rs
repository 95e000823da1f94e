//! [`Member`]: a session host's place in the fleet. It keeps this worker's
//! leases, renews them in the background, answers the host's
//! [`mimobox_host::Fleet`] questions from them, and says where a session
//! this worker does not hold is ([`Member::locate`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mimobox_host::{BoxFuture, Fleet, HostError, SessionId, StateName};

use crate::catalog::{Catalog, CatalogError, Claim, Lease, PausedRef, Record};

/// Where a session that this worker does not hold is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// Live on another worker, at this internal address, under a current
    /// lease: requests for it go there.
    Elsewhere {
        /// The worker's address, as it advertised it.
        worker: String,
    },
    /// Claimed by this worker now: its current paused state is `state`,
    /// to be taken up by the host under `epoch`.
    Claimed {
        /// The paused state to resume.
        state: StateName,
        /// The epoch this worker holds the session under.
        epoch: u64,
        /// When the worker that held it was lost: the last turn `state`
        /// holds (turns after it are gone).
        resumed_from: Option<u64>,
    },
    /// Its worker was lost before any state of it was stored: the session
    /// is gone, and the catalog forgets it.
    Lost,
    /// No session of this owner has the id.
    NotFound,
}

/// This worker's membership of the fleet; cheap to clone.
pub struct Member<C: Catalog> {
    inner: Arc<Inner<C>>,
}

impl<C: Catalog> Clone for Member<C> {
    fn clone(&self) -> Self {
        Member { inner: self.inner.clone() }
    }
}

struct Inner<C> {
    catalog: C,
    worker: String,
    lease: Duration,
    leases: Mutex<HashMap<SessionId, Lease>>,
}

impl<C: Catalog> Member<C> {
    /// A member named `worker` (its internal address, `HOST:PORT`) taking
    /// leases of `lease` from `catalog`. Must be made inside a tokio
    /// runtime: the leases are renewed there, every third of a lease, for
    /// as long as the member has a handle.
    pub fn new(catalog: C, worker: impl Into<String>, lease: Duration) -> Member<C> {
        let lease = lease.max(Duration::from_millis(300));
        let inner =
            Arc::new(Inner { catalog, worker: worker.into(), lease, leases: Mutex::new(HashMap::new()) });
        tokio::spawn(renew_forever(Arc::downgrade(&inner)));
        Member { inner }
    }

    /// This worker's name in the catalog.
    pub fn worker(&self) -> &str {
        &self.inner.worker
    }

    /// The catalog.
    pub fn catalog(&self) -> &C {
        &self.inner.catalog
    }

    /// How many sessions this worker holds leases on.
    pub fn leases(&self) -> usize {
        self.inner.leases().len()
    }

    /// Where `owner`'s session `id` is, for a worker that does not hold it:
    /// on another worker, or claimed by this one now (to be taken up), or
    /// nowhere. A session the catalog still names this worker for is one
    /// it let go of (its deadline passed): claimed again under a new
    /// epoch, and reported lost. Callers locate one session one request
    /// at a time, so that a take-up under way is not claimed over.
    pub async fn locate(&self, owner: &str, id: SessionId) -> Result<Located, CatalogError> {
        let inner = &*self.inner;
        let key = id.to_string();
        let lease = match inner.catalog.claim(&key, owner, &inner.worker, inner.lease).await? {
            Claim::NotFound => return Ok(Located::NotFound),
            Claim::HeldBy { worker, .. } if worker != inner.worker => {
                return Ok(Located::Elsewhere { worker });
            }
            Claim::HeldBy { .. } => {
                return Err(CatalogError::Malformed("held by this worker, yet refused".into()));
            }
            Claim::Granted(lease) => lease,
        };
        inner.leases().insert(id, lease);
        let record = match inner.catalog.lookup(&key).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                inner.leases().remove(&id);
                return Ok(Located::NotFound);
            }
            Err(e) => {
                let _ = inner.catalog.release(&key, &inner.worker, lease.epoch).await;
                inner.leases().remove(&id);
                return Err(e);
            }
        };
        match record.paused.as_ref().map(|paused| state_of(id, paused)) {
            Some(Some(state)) => Ok(Located::Claimed {
                state,
                epoch: lease.epoch,
                resumed_from: record.last_holder_lost.then(|| record.paused.as_ref().map_or(0, |p| p.turn)),
            }),
            Some(None) => {
                let _ = inner.catalog.release(&key, &inner.worker, lease.epoch).await;
                inner.leases().remove(&id);
                Err(CatalogError::Malformed(format!("session {id} names a paused state that is not its own")))
            }
            None => {
                let _ = inner.catalog.remove(&key, &inner.worker, lease.epoch).await;
                inner.leases().remove(&id);
                Ok(Located::Lost)
            }
        }
    }

    /// `owner`'s sessions anywhere in the fleet, as the catalog records
    /// them (at most `limit`).
    pub async fn sessions_of(
        &self,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<(SessionId, Record)>, CatalogError> {
        let listed = self.inner.catalog.sessions_of(owner, limit).await?;
        // An id that is not one, or a record of another owner's, is not
        // this owner's session, whatever the catalog's set says.
        Ok(listed
            .into_iter()
            .filter(|(_, record)| record.owner == owner)
            .filter_map(|(id, record)| Some((id.parse().ok()?, record)))
            .collect())
    }

    /// Gives up the lease on `id` without recording anything (a take-up
    /// that failed).
    pub async fn release(&self, id: SessionId) {
        let lease = self.inner.leases().remove(&id);
        if let Some(lease) = lease {
            let _ = self.inner.catalog.release(&id.to_string(), &self.inner.worker, lease.epoch).await;
        }
    }
}

/// The state a catalog's pointer names, if it is one of this session's.
fn state_of(id: SessionId, paused: &PausedRef) -> Option<StateName> {
    let state: StateName = paused.key.parse().ok()?;
    (state.id == id && state.epoch == paused.epoch).then_some(state)
}

impl<C> Inner<C> {
    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Lease>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<C: Catalog> Inner<C> {
    /// Renews the lease on `id` if less than `below` of it is left; the
    /// time left after.
    async fn renew_if(&self, id: SessionId, below: Duration) -> Result<Option<Duration>, CatalogError> {
        let Some(lease) = self.leases().get(&id).copied() else { return Ok(None) };
        let left = lease.serve_until.saturating_duration_since(Instant::now());
        if left > below {
            return Ok(Some(left));
        }
        match self.catalog.renew(&id.to_string(), &self.worker, lease.epoch, self.lease).await {
            Ok(Some(renewed)) => {
                let mut leases = self.leases();
                // Unless the session left meanwhile.
                if let Some(held) = leases.get_mut(&id)
                    && held.epoch == renewed.epoch
                {
                    *held = renewed;
                }
                Ok(Some(renewed.serve_until.saturating_duration_since(Instant::now())))
            }
            Ok(None) => {
                self.leases().remove(&id);
                Ok(None)
            }
            // The catalog is out of reach: the lease serves for what is
            // left of it, and no longer.
            Err(e) if left.is_zero() => Err(e),
            Err(_) => Ok(Some(left)),
        }
    }
}

/// Renews every lease with two thirds of it or less left, every third of
/// a lease, until the member is dropped.
async fn renew_forever<C: Catalog>(member: Weak<Inner<C>>) {
    let every = match member.upgrade() {
        Some(inner) => inner.lease / 3,
        None => return,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = member.upgrade() else { return };
        let ids: Vec<SessionId> = inner.leases().keys().copied().collect();
        for id in ids {
            if let Err(e) = inner.renew_if(id, inner.lease * 2 / 3).await {
                tracing::warn!(session = %id, "a lease could not be renewed: {e}");
            }
        }
    }
}

fn catalog_error(e: CatalogError) -> HostError {
    HostError::Catalog(Box::new(e))
}

impl<C: Catalog> Fleet for Member<C> {
    fn opened(&self, id: SessionId, owner: &str, profile: &str) -> BoxFuture<'_, Result<u64, HostError>> {
        let (owner, profile) = (owner.to_owned(), profile.to_owned());
        Box::pin(async move {
            let inner = &*self.inner;
            match inner.catalog.create(&id.to_string(), &owner, &profile, &inner.worker, inner.lease).await {
                Ok(Some(lease)) => {
                    inner.leases().insert(id, lease);
                    Ok(lease.epoch)
                }
                Ok(None) => Err(HostError::Catalog(format!("session id {id} is taken").into())),
                Err(e) => Err(catalog_error(e)),
            }
        })
    }

    fn serve_for(&self, id: SessionId) -> BoxFuture<'_, Result<Option<Duration>, HostError>> {
        Box::pin(async move { self.inner.renew_if(id, self.inner.lease / 2).await.map_err(catalog_error) })
    }

    fn stored(&self, state: StateName, turn: u64, release: bool) -> BoxFuture<'_, Result<bool, HostError>> {
        Box::pin(async move {
            let inner = &*self.inner;
            let Some(lease) = inner.leases().get(&state.id).copied() else { return Ok(false) };
            if lease.epoch != state.epoch {
                return Ok(false);
            }
            let key = state.id.to_string();
            let paused = PausedRef { epoch: state.epoch, turn, key: state.to_string() };
            if !inner.catalog.record_paused(&key, &inner.worker, &paused).await.map_err(catalog_error)? {
                inner.leases().remove(&state.id);
                return Ok(false);
            }
            if release {
                inner.leases().remove(&state.id);
                // Recorded, so not lost if this fails: the lease runs out
                // and the next worker claims the session then.
                if let Err(e) = inner.catalog.release(&key, &inner.worker, lease.epoch).await {
                    tracing::warn!(session = %state.id, "a paused session could not be released: {e}");
                }
            }
            Ok(true)
        })
    }

    fn lease_ends(&self, id: SessionId) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let until = self.inner.leases().get(&id).map(|lease| lease.serve_until);
                match until {
                    Some(until) if until > Instant::now() => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
                    }
                    _ => return,
                }
            }
        })
    }

    fn release(&self, id: SessionId) -> BoxFuture<'_, ()> {
        Box::pin(Member::release(self, id))
    }

    fn closed(&self, id: SessionId, epoch: u64) -> BoxFuture<'_, Option<StateName>> {
        Box::pin(async move {
            let inner = &*self.inner;
            inner.leases().remove(&id);
            match inner.catalog.remove(&id.to_string(), &inner.worker, epoch).await {
                Ok(Some(Some(paused))) => state_of(id, &paused),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(session = %id, "a closed session could not be removed from the catalog: {e}");
                    None
                }
            }
        })
    }

    fn dropped(&self, id: SessionId) {
        self.inner.leases().remove(&id);
    }
}
