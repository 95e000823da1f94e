//! [`SessionHost`]: sessions by id, for many owners, in one process.
//!
//! The table (ids, owners, usage) sits behind one short-held lock that is
//! never held across an await. Each session has its own async lock, held
//! for the whole of a call on it (a turn, a file operation, a pause), which
//! is what makes it one call at a time per session. A lock order holds
//! throughout: a session's lock, then the table's.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use mimobox_core::{ResumeError, SandboxError, TurnRequest, TurnResult};
use mimobox_files::Listing;
use tokio::sync::{Mutex as AsyncMutex, MutexGuard as AsyncGuard, Notify};

use crate::SessionId;
use crate::backend::{Backend, Binding, HostedSession};
use crate::config::{HostConfig, WhenBusy};
use crate::envelope::{self, Ticket};
use crate::error::{HostError, LimitKind, Scope};
use crate::metrics::{Gauges, Metrics};
use crate::once::{self, Keyed, TurnKey};
use crate::storage::{StateName, StoreError};

/// Most bytes of an owner's name.
pub const MAX_OWNER_NAME: usize = 128;

/// Many sessions of several profiles, held by id for their owners; see
/// the crate's documentation. A cheap handle: clones share the host.
pub struct SessionHost<B: Backend> {
    inner: Arc<Inner<B>>,
}

impl<B: Backend> Clone for SessionHost<B> {
    fn clone(&self) -> Self {
        SessionHost { inner: self.inner.clone() }
    }
}

struct Inner<B: Backend> {
    config: HostConfig,
    profiles: HashMap<String, Arc<B>>,
    /// Each profile's sessions opened ahead of demand
    /// ([`HostConfig::ready_sessions`]); empty when none are kept.
    ready: HashMap<String, Ready<B::Session>>,
    table: Mutex<Table<B>>,
    metrics: Metrics,
    draining: AtomicBool,
    /// Told when the last running turn ends.
    quiet: Notify,
}

struct Table<B: Backend> {
    sessions: HashMap<SessionId, Arc<Entry<B>>>,
    owners: HashMap<Arc<str>, Usage>,
    total: Usage,
}

/// Sessions of one profile opened ahead of demand, oldest first. Their
/// memory counts in the host's total (not any owner's) until one is taken.
struct Ready<S> {
    sessions: Mutex<VecDeque<Opened<S>>>,
    /// Set while a task opens sessions for this pool.
    filling: AtomicBool,
    /// The memory the last session opened for it held: another is opened
    /// only while one as large fits in the host's memory limit.
    each: AtomicU64,
}

impl<S> Default for Ready<S> {
    fn default() -> Self {
        Ready {
            sessions: Mutex::new(VecDeque::new()),
            filling: AtomicBool::new(false),
            each: AtomicU64::new(0),
        }
    }
}

/// A session opened ahead, and when.
struct Opened<S> {
    session: S,
    at: Instant,
    memory: u64,
}

/// What an owner (or the host) holds now.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    sessions: u64,
    running: u64,
    memory: u64,
}

struct Entry<B: Backend> {
    id: SessionId,
    owner: Arc<str>,
    profile: Arc<str>,
    backend: Arc<B>,
    opened: Instant,
    cell: AsyncMutex<Cell<B::Session>>,
    waiting: AtomicU32,
    meta: Mutex<Meta>,
    /// A paused state already read from the store (by a take-up), for
    /// its resume not to read it again.
    prefetched: Mutex<Option<Vec<u8>>>,
    /// The session's last turns sent under an idempotency key.
    keyed: Mutex<Keyed>,
}

enum Cell<S> {
    Live(S),
    Paused,
    Gone,
}

/// What the table knows of a session without taking its lock.
#[derive(Debug, Clone, Copy)]
struct Meta {
    last_used: Instant,
    turns: u64,
    /// How many times the session was paused: each paused state names its
    /// own, so that a store cannot hand back an earlier one.
    pauses: u64,
    /// The fencing epoch this host holds the session under (0 alone).
    epoch: u64,
    /// The session's current state in the store, if it has one.
    stored: Option<StateName>,
    /// The last turn that stored state holds, and when it was stored.
    stored_turn: u64,
    stored_at: Instant,
    /// Set by a take-up after the session's worker was lost: the last turn
    /// its state holds, told in the next turn's answer.
    resumed_from: Option<u64>,
    /// Set with `closed` when the session left this host for another
    /// worker of the fleet (not closed): a call that was waiting for it is
    /// told it moved.
    moved: bool,
    /// Memory counted against the usage; 0 when paused.
    memory: u64,
    state: SessionState,
    /// Set (under the table's lock) when the session leaves the table:
    /// nothing is counted for it after that, and a call that was waiting
    /// for its lock finds it gone.
    closed: bool,
    /// When the sweep may try again to pause it, after a pause failed.
    pause_retry_after: Option<Instant>,
}

impl Meta {
    fn new(now: Instant, memory: u64, state: SessionState, epoch: u64) -> Meta {
        Meta {
            last_used: now,
            turns: 0,
            pauses: 0,
            epoch,
            stored: None,
            stored_turn: 0,
            stored_at: now,
            resumed_from: None,
            moved: false,
            memory,
            state,
            closed: false,
            pause_retry_after: None,
        }
    }
}

/// What a stored session is afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Paused: its instance freed; in a fleet, given up for any worker.
    Paused,
    /// Live: its state stored as a checkpoint, the session going on.
    Live,
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Its instance is live in this process.
    Live,
    /// It is paused to the store, and resumes on its next call.
    Paused,
}

/// What the host says of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Its id.
    pub id: SessionId,
    /// The profile it runs.
    pub profile: String,
    /// Live or paused.
    pub state: SessionState,
    /// Turns it has taken.
    pub turns: u64,
    /// Bytes of memory it holds live (0 when paused).
    pub memory: u64,
    /// Time since its last call.
    pub idle: Duration,
    /// Time since it opened.
    pub age: Duration,
}

/// How long after an open took a session opened ahead the next is opened
/// behind it: the caller's first turn (which usually follows at once) then
/// runs without a new session's page copies in the same process beside it,
/// whose TLB flushes slow its own page faults.
const REFILL_AFTER: Duration = Duration::from_millis(20);

/// How many sessions a shutdown pauses at once.
const SHUTDOWN_LANES: usize = 2;

/// What [`SessionHost::shutdown`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sessions paused to the store.
    pub paused: u64,
    /// Sessions closed (no store, or a state that could not be paused).
    pub closed: u64,
    /// Sessions whose turn was still running past the grace; each ends
    /// at its turn's own timeout, and is then closed.
    pub still_running: u64,
    /// Sessions another worker of the fleet held by the time they were to
    /// be paused (this host's lease had ended): theirs now, not closed.
    pub moved: u64,
    /// Pauses tried again after the store or the catalog failed.
    pub pause_retries: u64,
    /// Sessions of a fleet whose pause failed until the grace ran out: left
    /// with their last stored state, for another worker to take up once
    /// this one's lease ends (and to say from which turn they go on).
    pub unstored: u64,
}

impl ShutdownReport {
    fn add(&mut self, other: &ShutdownReport) {
        self.paused += other.paused;
        self.closed += other.closed;
        self.still_running += other.still_running;
        self.moved += other.moved;
        self.pause_retries += other.pause_retries;
        self.unstored += other.unstored;
    }
}

/// What [`SessionHost::adopt_paused`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdoptReport {
    /// Paused sessions taken up.
    pub adopted: u64,
    /// Objects left alone: unreadable, or a record that does not check out.
    pub refused: u64,
}

/// A running turn counted in the usage until drop.
struct Running<'a, B: Backend> {
    inner: &'a Inner<B>,
    owner: Arc<str>,
}

impl<B: Backend> Drop for Running<'_, B> {
    fn drop(&mut self) {
        let mut table = self.inner.lock_table();
        table.total.running -= 1;
        if let Some(usage) = table.owners.get_mut(&self.owner) {
            usage.running -= 1;
        }
        if table.total.running == 0 {
            self.inner.quiet.notify_waiters();
        }
    }
}

impl<B: Backend> SessionHost<B> {
    /// A host serving `profiles` (name, backend). It must be created inside
    /// a tokio runtime with its time driver: its background sweep runs
    /// there, for as long as the host has a handle.
    pub fn new(
        config: HostConfig,
        profiles: impl IntoIterator<Item = (String, B)>,
    ) -> Result<Self, HostError> {
        if config.state_key.len() < 32 {
            return Err(HostError::Config("the state key must be at least 32 bytes".into()));
        }
        if config.sweep_interval.is_zero() {
            return Err(HostError::Config("the sweep interval must be above zero".into()));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| HostError::NoRuntime)?;
        let profiles: HashMap<String, Arc<B>> =
            profiles.into_iter().map(|(name, backend)| (name, Arc::new(backend))).collect();
        let ready = match config.ready_sessions {
            0 => HashMap::new(),
            _ => profiles.keys().map(|name| (name.clone(), Ready::default())).collect(),
        };
        let inner = Arc::new(Inner {
            config,
            profiles,
            ready,
            table: Mutex::new(Table {
                sessions: HashMap::new(),
                owners: HashMap::new(),
                total: Usage::default(),
            }),
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
            quiet: Notify::new(),
        });
        for profile in inner.ready.keys() {
            Inner::fill(&inner, profile, Duration::ZERO);
        }
        runtime.spawn(sweep_forever(Arc::downgrade(&inner)));
        Ok(SessionHost { inner })
    }

    /// The names of the profiles this host serves, sorted.
    pub fn profiles(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.inner.profiles.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Opens a session of `profile` for `owner`, and names it.
    pub async fn open(&self, owner: &str, profile: &str) -> Result<SessionId, HostError> {
        let inner = &*self.inner;
        inner.accepting()?;
        check_owner(owner)?;
        let (profile_name, backend) = inner
            .profiles
            .get_key_value(profile)
            .map(|(name, backend)| (Arc::<str>::from(name.as_str()), backend.clone()))
            .ok_or_else(|| HostError::UnknownProfile { name: bounded(profile) })?;
        let owner: Arc<str> = Arc::from(owner);
        // The session is counted before it opens, so that callers racing
        // to open never pass the limit together.
        inner.reserve_session(&owner)?;
        let reservation = Reservation { inner, owner: owner.clone(), kept: false };
        if inner.over_memory(&owner).is_some() {
            inner.relieve(&owner, None).await?;
        }
        // One opened ahead if there is one (and another opened behind it),
        // else opened now.
        let session = match inner.take_ready(&profile_name) {
            Some(session) => session,
            None => backend.open().await?,
        };
        Inner::fill(&self.inner, &profile_name, REFILL_AFTER);
        let id = loop {
            let id =
                SessionId::random().map_err(|e| HostError::Config(format!("no randomness for ids: {e}")))?;
            if !inner.lock_table().sessions.contains_key(&id) {
                break id;
            }
        };
        let epoch = match &inner.config.fleet {
            Some(fleet) => match fleet.opened(id, &owner, profile).await {
                Ok(epoch) => epoch,
                Err(e) => {
                    session.close().await;
                    return Err(e);
                }
            },
            None => 0,
        };
        let memory = session.memory_in_use();
        let now = Instant::now();
        let entry = Arc::new(Entry {
            id,
            owner: owner.clone(),
            profile: profile_name,
            backend,
            opened: now,
            cell: AsyncMutex::new(Cell::Live(session)),
            waiting: AtomicU32::new(0),
            meta: Mutex::new(Meta::new(now, memory, SessionState::Live, epoch)),
            prefetched: Mutex::new(None),
            keyed: Mutex::new(Keyed::default()),
        });
        {
            let mut table = inner.lock_table();
            table.sessions.insert(id, entry.clone());
            table.add_memory(&owner, memory);
        }
        let mut reservation = reservation;
        reservation.kept = true;
        inner.metrics.opened.fetch_add(1, Ordering::Relaxed);
        // Past a memory limit now: make room from others, else give up
        // this one.
        if let Some((scope, limit)) = inner.over_memory(&owner)
            && inner.relieve(&owner, Some(id)).await.is_err()
        {
            inner.remove(&entry);
            if let Cell::Live(session) = std::mem::replace(&mut *entry.cell.lock().await, Cell::Gone) {
                session.close().await;
            }
            inner.metrics.close("failed");
            inner.metrics.refuse("memory");
            return Err(HostError::Limit { kind: LimitKind::Memory, scope, limit });
        }
        Ok(id)
    }

    /// Runs a turn in `owner`'s session `id`. A paused session is resumed
    /// first. A turn that ends the session (its guest exited, a limit
    /// stopped it) closes it; the answer says so (`alive: false`).
    pub async fn turn(
        &self,
        owner: &str,
        id: SessionId,
        request: TurnRequest,
        when_busy: WhenBusy,
    ) -> Result<TurnResult, HostError> {
        self.turn_once(owner, id, None, request, when_busy).await
    }

    /// Runs a turn as [`SessionHost::turn`] does, under a caller's `key`
    /// for it: the same turn sent again under the same key (its answer
    /// lost on the way) gets the answer of the turn that ran, marked
    /// `replayed`, and is not run again. The session keeps its last
    /// [`crate::MAX_KEYS`] keyed turns and the answer of the newest; a key
    /// sent again with another request is refused
    /// ([`HostError::KeyReused`]), and one whose answer is not kept (an
    /// earlier key, a large answer, a session that moved) is too
    /// ([`HostError::AlreadyRan`]).
    pub async fn turn_once(
        &self,
        owner: &str,
        id: SessionId,
        key: Option<TurnKey>,
        request: TurnRequest,
        when_busy: WhenBusy,
    ) -> Result<TurnResult, HostError> {
        let inner = &*self.inner;
        inner.accepting()?;
        let entry = inner.find(owner, id)?;
        let mut cell = inner.lock_cell(&entry, when_busy).await?;
        // Under the session's lock: a turn sent again while the first
        // still runs waits for it, then finds its answer.
        let keyed = key.map(|key| (key, once::digest(&request)));
        if let Some((key, digest)) = &keyed
            && let Some(known) = lock(&entry.keyed).answer_for(key, digest)
        {
            inner.metrics.replayed.fetch_add(1, Ordering::Relaxed);
            return known;
        }
        let _running = inner.start_turn(&entry.owner)?;
        // The lifetime counts from the session's opening, paused time and
        // resumes included: a turn never runs past it.
        let left = inner.lifetime_left(&entry, &mut cell).await?;
        inner.fence(&entry, &mut cell).await?;
        inner.make_live(&entry, &mut cell).await?;
        let Cell::Live(session) = &mut *cell else { return Err(HostError::NotFound) };
        let mut request = request;
        request.timeout = Some(request.timeout.map_or(left, |t| t.min(left)));
        let started = Instant::now();
        // In a fleet, a turn stops when this host's lease on the session
        // ends unrenewed: by then another worker may take the session up.
        let ran = match &inner.config.fleet {
            None => session.turn(request).await,
            Some(fleet) => {
                tokio::select! {
                    ran = session.turn(request) => ran,
                    () = fleet.lease_ends(entry.id) => {
                        inner.metrics.turn("error", started.elapsed());
                        tracing::warn!(session = %entry.id, "a turn was stopped: the lease on its session ended");
                        inner.evict(&entry, &mut cell);
                        return Err(HostError::Moved);
                    }
                }
            }
        };
        let took = started.elapsed();
        match ran {
            Ok(mut result) => {
                inner.metrics.turn(result.result.outcome.name(), took);
                result.resumed_from_turn = lock(&entry.meta).resumed_from.take();
                if let Some((key, digest)) = keyed {
                    lock(&entry.keyed).ran(key, digest, &result);
                }
                if result.alive {
                    let memory = session.memory_in_use();
                    inner.touch(&entry, Some(result.turn), memory);
                } else {
                    inner.end(&entry, &mut cell, "ended").await;
                }
                drop(cell);
                if inner.over_memory(&entry.owner).is_some() {
                    let _ = inner.relieve(&entry.owner, None).await;
                }
                Ok(result)
            }
            Err(error) => {
                inner.metrics.turn("error", took);
                if matches!(error, SandboxError::SessionEnded { .. }) {
                    inner.end(&entry, &mut cell, "ended").await;
                }
                Err(error.into())
            }
        }
    }

    /// Closes `owner`'s session `id` (waiting for a running call on it to
    /// end); a paused one's state is deleted.
    pub async fn close(&self, owner: &str, id: SessionId) -> Result<(), HostError> {
        let inner = &*self.inner;
        let entry = inner.find(owner, id)?;
        // Gone from the table at once: no new call finds it, and calls
        // waiting for it find it gone.
        if !inner.remove(&entry) {
            return Err(HostError::NotFound);
        }
        inner.metrics.close("client");
        let mut cell = entry.cell.lock().await;
        inner.finish(&entry, &mut cell).await;
        Ok(())
    }

    /// Pauses `owner`'s session `id` to the store now.
    pub async fn pause(&self, owner: &str, id: SessionId) -> Result<(), HostError> {
        let inner = &*self.inner;
        let entry = inner.find(owner, id)?;
        let mut cell = inner.lock_cell(&entry, WhenBusy::Refuse).await?;
        inner.fence(&entry, &mut cell).await?;
        inner.store_state(&entry, &mut cell, Keep::Paused).await
    }

    /// Writes `owner`'s session `id` to the store now and keeps it live:
    /// what the background checkpoint does.
    pub async fn checkpoint(&self, owner: &str, id: SessionId) -> Result<(), HostError> {
        let inner = &*self.inner;
        let entry = inner.find(owner, id)?;
        let mut cell = inner.lock_cell(&entry, WhenBusy::Refuse).await?;
        inner.fence(&entry, &mut cell).await?;
        inner.store_state(&entry, &mut cell, Keep::Live).await
    }

    /// Whether this host holds `owner`'s session `id` (live or paused).
    pub fn holds(&self, owner: &str, id: SessionId) -> bool {
        self.inner.find(owner, id).is_ok()
    }

    /// Takes up a session of the fleet that this host has just claimed:
    /// its paused state `state` is read from the store and checked (under
    /// the state key, for this session, owner and name), and the session
    /// becomes this host's, held under `epoch`, resumed on its next call.
    /// `resumed_from` is set when the session's last worker was lost: the
    /// next turn's answer then says from which turn it went on.
    pub async fn take_up(
        &self,
        owner: &str,
        state: StateName,
        epoch: u64,
        resumed_from: Option<u64>,
    ) -> Result<(), HostError> {
        let inner = &*self.inner;
        inner.accepting()?;
        check_owner(owner)?;
        let store = inner.config.store.as_ref().ok_or(HostError::NotFound)?;
        if inner.lock_table().sessions.contains_key(&state.id) {
            return Ok(());
        }
        let sealed = store.get(state).await?;
        let refused = |why| HostError::Sandbox(SandboxError::Resume(why));
        let (ticket, _) =
            envelope::open(&inner.config.state_key, &sealed).ok_or(refused(ResumeError::Unauthenticated))?;
        if ticket.session != state.id.to_string() || ticket.owner != owner {
            return Err(refused(ResumeError::Binding));
        }
        if ticket.pauses != state.pause || ticket.epoch != state.epoch {
            return Err(refused(ResumeError::Stale { found: ticket.pauses, expected: state.pause }));
        }
        let (profile, backend) = inner
            .profiles
            .get_key_value(ticket.profile.as_str())
            .map(|(name, backend)| (Arc::<str>::from(name.as_str()), backend.clone()))
            .ok_or_else(|| HostError::UnknownProfile { name: bounded(&ticket.profile) })?;
        let owner: Arc<str> = Arc::from(owner);
        inner.reserve_session(&owner)?;
        let now = Instant::now();
        let mut meta = Meta::new(now, 0, SessionState::Paused, epoch);
        meta.turns = ticket.turns;
        meta.pauses = ticket.pauses;
        meta.stored = Some(state);
        meta.stored_turn = ticket.turns;
        // A loss an earlier holder took up but never reported is reported
        // here.
        meta.resumed_from = resumed_from.or(ticket.resumed_from);
        let entry = Arc::new(Entry {
            id: state.id,
            owner,
            profile,
            backend,
            opened: now.checked_sub(ticket.age()).unwrap_or(now),
            cell: AsyncMutex::new(Cell::Paused),
            waiting: AtomicU32::new(0),
            meta: Mutex::new(meta),
            prefetched: Mutex::new(Some(sealed)),
            keyed: Mutex::new(Keyed::from_records(&ticket.keys)),
        });
        let mut table = inner.lock_table();
        if table.sessions.contains_key(&state.id) {
            table.release_session(&entry.owner);
            return Ok(());
        }
        table.sessions.insert(state.id, entry);
        Ok(())
    }

    /// What the host says of `owner`'s session `id`.
    pub fn info(&self, owner: &str, id: SessionId) -> Result<SessionInfo, HostError> {
        let entry = self.inner.find(owner, id)?;
        Ok(entry.info())
    }

    /// `owner`'s sessions, oldest first.
    pub fn list(&self, owner: &str) -> Vec<SessionInfo> {
        let entries: Vec<Arc<Entry<B>>> = {
            let table = self.inner.lock_table();
            table.sessions.values().filter(|e| &*e.owner == owner).cloned().collect()
        };
        let mut infos: Vec<SessionInfo> = entries.iter().map(|e| e.info()).collect();
        infos.sort_by_key(|info| std::cmp::Reverse(info.age));
        infos
    }

    /// Writes a file into the session's workspace; the bytes written.
    pub async fn write_file(
        &self,
        owner: &str,
        id: SessionId,
        path: &str,
        data: &[u8],
        when_busy: WhenBusy,
    ) -> Result<u64, HostError> {
        self.with_live(owner, id, when_busy, |session| session.write_file(path, data)).await
    }

    /// Reads a file of the session.
    pub async fn read_file(
        &self,
        owner: &str,
        id: SessionId,
        path: &str,
        when_busy: WhenBusy,
    ) -> Result<Vec<u8>, HostError> {
        self.with_live(owner, id, when_busy, |session| session.read_file(path)).await
    }

    /// Lists a directory of the session.
    pub async fn list_files(
        &self,
        owner: &str,
        id: SessionId,
        path: &str,
        when_busy: WhenBusy,
    ) -> Result<Listing, HostError> {
        self.with_live(owner, id, when_busy, |session| session.list_files(path)).await
    }

    async fn with_live<T>(
        &self,
        owner: &str,
        id: SessionId,
        when_busy: WhenBusy,
        work: impl FnOnce(&mut B::Session) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let inner = &*self.inner;
        inner.accepting()?;
        let entry = inner.find(owner, id)?;
        let mut cell = inner.lock_cell(&entry, when_busy).await?;
        // A file call counts as a running call: it may resume the session
        // and it holds a thread while it reads or writes.
        let _running = inner.start_turn(&entry.owner)?;
        inner.lifetime_left(&entry, &mut cell).await?;
        inner.fence(&entry, &mut cell).await?;
        inner.make_live(&entry, &mut cell).await?;
        let Cell::Live(session) = &mut *cell else { return Err(HostError::NotFound) };
        let result = offload(|| work(session));
        let memory = session.memory_in_use();
        inner.touch(&entry, None, memory);
        result
    }

    /// Stops taking new sessions and calls, lets running turns finish for
    /// up to `grace`, then pauses what is left to the store (or closes it,
    /// without one). The background sweep stops.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let inner = &*self.inner;
        inner.draining.store(true, Ordering::SeqCst);
        inner.close_ready(|_, _| true).await;
        let now = Instant::now();
        let deadline = now.checked_add(grace).unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        loop {
            let quiet = inner.quiet.notified();
            if inner.lock_table().total.running == 0 {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, quiet).await.is_err() {
                break;
            }
        }
        let entries: Vec<Arc<Entry<B>>> = inner.lock_table().sessions.values().cloned().collect();
        let mut report = ShutdownReport::default();
        // Paused in lanes of their own (a pause's work is the CPU's), each
        // lane one task; sessions whose pause failed for a reason that may
        // pass (the store or the catalog failing for a moment) are tried
        // again in rounds.
        let per_lane = entries.len().div_ceil(SHUTDOWN_LANES).max(1);
        let tasks: Vec<_> = entries
            .chunks(per_lane)
            .map(|lane| tokio::spawn(Inner::pause_lane(self.inner.clone(), lane.to_vec(), deadline)))
            .collect();
        let mut again: Vec<Arc<Entry<B>>> = Vec::new();
        for task in tasks {
            match task.await {
                Ok((lane, failed)) => {
                    report.add(&lane);
                    again.extend(failed);
                }
                Err(e) => tracing::warn!("a lane of the shutdown's pauses failed: {e}"),
            }
        }
        // Each round waits longer than the last, while the grace lasts; the
        // last round gives up on what still fails.
        let mut wait = Duration::from_millis(50);
        while !again.is_empty() {
            let last = Instant::now() + wait >= deadline;
            if !last {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            for entry in std::mem::take(&mut again) {
                let mut cell = entry.cell.lock().await;
                if !matches!(&*cell, Cell::Live(_)) {
                    continue;
                }
                if last {
                    inner.give_up_on_shutdown(&entry, &mut cell, &mut report).await;
                    continue;
                }
                report.pause_retries += 1;
                if inner.pause_on_shutdown(&entry, &mut cell, &mut report).await {
                    again.push(entry.clone());
                }
            }
        }
        // A fill in the middle of opening a session closes it once its
        // open returns (it sees the shutdown); that is waited for too,
        // within the grace.
        while inner.ready.values().any(|pool| pool.filling.load(Ordering::SeqCst))
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        report
    }

    /// The host's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// What the host holds now.
    pub fn gauges(&self) -> Gauges {
        let table = self.inner.lock_table();
        let paused =
            table.sessions.values().filter(|e| e.meta().state == SessionState::Paused).count() as u64;
        let ready = self.inner.ready.values().map(|pool| lock(&pool.sessions).len() as u64).sum();
        Gauges {
            live: table.total.sessions - paused,
            paused,
            ready,
            running_turns: table.total.running,
            memory: table.total.memory,
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render(self.gauges())
    }

    /// Takes up the sessions paused in the store (by an earlier host that
    /// drained, say): each becomes a paused session of its owner, resumed
    /// on its next call, its lifetime counted from its first opening. An
    /// object whose host record does not check out under the state key,
    /// or that names a profile this host does not serve, is left alone
    /// and counted as refused.
    pub async fn adopt_paused(&self) -> Result<AdoptReport, HostError> {
        let inner = &*self.inner;
        let Some(store) = &inner.config.store else { return Ok(AdoptReport::default()) };
        let mut report = AdoptReport::default();
        // The newest state of each session; an older one left by a pause
        // whose resume could not delete it is stale.
        let mut newest: HashMap<SessionId, StateName> = HashMap::new();
        for state in store.list().await? {
            let kept = newest.entry(state.id).or_insert(state);
            if (state.epoch, state.pause) > (kept.epoch, kept.pause) {
                *kept = state;
            }
        }
        let mut states: Vec<StateName> = newest.into_values().collect();
        states.sort();
        for state in states {
            let id = state.id;
            if inner.lock_table().sessions.contains_key(&id) {
                continue;
            }
            let sealed = match store.get(state).await {
                Ok(sealed) => sealed,
                Err(e) => {
                    tracing::warn!(session = %id, "a paused session cannot be read: {e}");
                    report.refused += 1;
                    continue;
                }
            };
            let ticket = envelope::open(&inner.config.state_key, &sealed).map(|(ticket, _)| ticket);
            let usable = ticket.filter(|t| {
                t.session == id.to_string()
                    && check_owner(&t.owner).is_ok()
                    && (t.epoch, t.pauses) == (state.epoch, state.pause)
            });
            let Some((ticket, (profile, backend))) = usable.and_then(|t| {
                let found = inner.profiles.get_key_value(t.profile.as_str());
                found.map(|(name, backend)| (t, (Arc::<str>::from(name.as_str()), backend.clone())))
            }) else {
                tracing::warn!(session = %id, "a paused session's record does not check out; left alone");
                report.refused += 1;
                continue;
            };
            let now = Instant::now();
            let opened = now.checked_sub(ticket.age()).unwrap_or(now);
            let owner: Arc<str> = Arc::from(ticket.owner.as_str());
            let mut meta = Meta::new(now, 0, SessionState::Paused, state.epoch);
            meta.turns = ticket.turns;
            meta.pauses = ticket.pauses;
            meta.stored = Some(state);
            meta.stored_turn = ticket.turns;
            meta.resumed_from = ticket.resumed_from;
            let entry = Arc::new(Entry {
                id,
                owner: owner.clone(),
                profile,
                backend,
                opened,
                cell: AsyncMutex::new(Cell::Paused),
                waiting: AtomicU32::new(0),
                meta: Mutex::new(meta),
                prefetched: Mutex::new(None),
                keyed: Mutex::new(Keyed::from_records(&ticket.keys)),
            });
            let mut table = inner.lock_table();
            table.sessions.insert(id, entry);
            table.total.sessions += 1;
            table.usage(&owner).sessions += 1;
            report.adopted += 1;
        }
        Ok(report)
    }

    /// Runs one background sweep now: what [`HostConfig::sweep_interval`]
    /// runs on its own.
    pub async fn sweep(&self) {
        self.inner.sweep().await;
    }
}

/// A session counted in the usage that is uncounted unless kept.
struct Reservation<'a, B: Backend> {
    inner: &'a Inner<B>,
    owner: Arc<str>,
    kept: bool,
}

impl<B: Backend> Drop for Reservation<'_, B> {
    fn drop(&mut self) {
        if !self.kept {
            self.inner.lock_table().release_session(&self.owner);
        }
    }
}

impl<B: Backend> Table<B> {
    fn usage(&mut self, owner: &Arc<str>) -> &mut Usage {
        self.owners.entry(owner.clone()).or_default()
    }

    fn add_memory(&mut self, owner: &Arc<str>, memory: u64) {
        self.usage(owner).memory += memory;
        self.total.memory += memory;
    }

    fn sub_memory(&mut self, owner: &Arc<str>, memory: u64) {
        self.usage(owner).memory -= memory;
        self.total.memory -= memory;
    }

    fn release_session(&mut self, owner: &Arc<str>) {
        self.total.sessions -= 1;
        let usage = self.usage(owner);
        usage.sessions -= 1;
        if usage.sessions == 0 && usage.running == 0 {
            self.owners.remove(owner);
        }
    }
}

impl<B: Backend> Entry<B> {
    fn meta(&self) -> Meta {
        *self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn info(&self) -> SessionInfo {
        let meta = self.meta();
        SessionInfo {
            id: self.id,
            profile: self.profile.to_string(),
            state: meta.state,
            turns: meta.turns,
            memory: meta.memory,
            idle: meta.last_used.elapsed(),
            age: self.opened.elapsed(),
        }
    }

    fn binding(&self) -> Binding {
        Binding { session: self.id.to_string(), owner: self.owner.to_string() }
    }
}

impl<B: Backend> Inner<B> {
    /// Takes the oldest session `profile` has opened ahead that is still
    /// young enough to hand out; its memory leaves the host's total (the
    /// caller counts it for its owner). Older ones are closed.
    fn take_ready(&self, profile: &str) -> Option<B::Session> {
        let pool = self.ready.get(profile)?;
        loop {
            let opened = lock(&pool.sessions).pop_front()?;
            self.lock_table().total.memory -= opened.memory;
            if opened.at.elapsed() < self.ready_age_limit(profile) {
                return Some(opened.session);
            }
            tokio::spawn(opened.session.close());
        }
    }

    /// How long a session of `profile` may wait ahead: `ready_max_age`, and
    /// at most a quarter of its idle timeout and a tenth of its lifetime
    /// (its own clocks run from its opening), so that one handed out has
    /// most of both left.
    fn ready_age_limit(&self, profile: &str) -> Duration {
        let (idle, lifetime) = self.profiles.get(profile).map(|b| b.timeouts()).unwrap_or_default();
        let idle = self.config.close_idle_after.map_or(idle, |host| host.min(idle));
        self.config.ready_max_age.min(idle / 4).min(lifetime / 10)
    }

    /// Whether a session opened ahead holding `memory` fits beside the
    /// host's `total` under its memory limit.
    fn room_for(&self, total: u64, memory: u64) -> bool {
        total.saturating_add(memory) <= self.config.limits.memory
    }

    /// Opens sessions of `profile` in the background until it has
    /// [`HostConfig::ready_sessions`] ready, unless a task is at it
    /// already, starting `after` from now. It stops at a shutdown, at a
    /// failure to open (tried again at the next sweep), and before the
    /// host's memory limit.
    fn fill(inner: &Arc<Inner<B>>, profile: &str, after: Duration) {
        let Some(pool) = inner.ready.get(profile) else { return };
        if inner.draining.load(Ordering::SeqCst) || pool.filling.swap(true, Ordering::SeqCst) {
            return;
        }
        let (Some(backend), inner) = (inner.profiles.get(profile).cloned(), Arc::clone(inner)) else {
            return;
        };
        let profile = profile.to_owned();
        tokio::spawn(async move {
            let Some(pool) = inner.ready.get(&profile) else { return };
            // Let go of the pool's fill however this task ends.
            struct Filling<'a>(&'a AtomicBool);
            impl Drop for Filling<'_> {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::SeqCst);
                }
            }
            let _filling = Filling(&pool.filling);
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            while lock(&pool.sessions).len() < inner.config.ready_sessions
                && !inner.draining.load(Ordering::SeqCst)
            {
                let each = pool.each.load(Ordering::Relaxed);
                if !inner.room_for(inner.lock_table().total.memory, each) {
                    break;
                }
                let session = match backend.open().await {
                    Ok(session) => session,
                    Err(e) => {
                        tracing::warn!(profile = %profile, "a session opened ahead failed: {e}");
                        break;
                    }
                };
                let memory = session.memory_in_use();
                pool.each.store(memory, Ordering::Relaxed);
                let kept = {
                    let mut table = inner.lock_table();
                    // Checked under the table's lock, as `shutdown` sets it
                    // before it empties the pool.
                    if inner.room_for(table.total.memory, memory) && !inner.draining.load(Ordering::SeqCst) {
                        table.total.memory += memory;
                        lock(&pool.sessions).push_back(Opened { session, at: Instant::now(), memory });
                        None
                    } else {
                        Some(session)
                    }
                };
                if let Some(session) = kept {
                    session.close().await;
                    break;
                }
            }
        });
    }

    /// Closes the sessions opened ahead that `which` picks (given each
    /// one's profile), in every pool. They are taken out under the table's
    /// lock, which a session opened ahead is put in under (after its check
    /// for a shutdown): none is put in after a shutdown's call to this.
    async fn close_ready(&self, which: impl Fn(&str, &Opened<B::Session>) -> bool) {
        let closing = {
            let mut table = self.lock_table();
            let mut closing = Vec::new();
            for (profile, pool) in &self.ready {
                let mut sessions = lock(&pool.sessions);
                let (gone, kept): (VecDeque<_>, VecDeque<_>) =
                    sessions.drain(..).partition(|o| which(profile, o));
                *sessions = kept;
                closing.extend(gone);
            }
            for opened in &closing {
                table.total.memory -= opened.memory;
            }
            closing
        };
        for opened in closing {
            opened.session.close().await;
        }
    }

    /// Closes one session opened ahead, the newest of any pool; whether
    /// there was one.
    async fn close_one_ready(&self) -> bool {
        let newest = self.ready.values().find_map(|pool| lock(&pool.sessions).pop_back());
        let Some(opened) = newest else { return false };
        self.lock_table().total.memory -= opened.memory;
        opened.session.close().await;
        true
    }

    fn lock_table(&self) -> MutexGuard<'_, Table<B>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn accepting(&self) -> Result<(), HostError> {
        if self.draining.load(Ordering::SeqCst) {
            self.metrics.refuse("shutting_down");
            return Err(HostError::ShuttingDown);
        }
        Ok(())
    }

    /// The session `id` if `owner` owns it; another owner's is as absent
    /// as one that never was.
    fn find(&self, owner: &str, id: SessionId) -> Result<Arc<Entry<B>>, HostError> {
        let table = self.lock_table();
        match table.sessions.get(&id) {
            Some(entry) if &*entry.owner == owner => Ok(entry.clone()),
            _ => Err(HostError::NotFound),
        }
    }

    fn reserve_session(&self, owner: &Arc<str>) -> Result<(), HostError> {
        let own = self.config.limits_of(owner);
        let mut table = self.lock_table();
        let refused = |scope, limit| {
            self.metrics.refuse("sessions");
            Err(HostError::Limit { kind: LimitKind::Sessions, scope, limit })
        };
        if table.total.sessions >= self.config.limits.sessions {
            return refused(Scope::Host, self.config.limits.sessions);
        }
        if table.owners.get(owner).is_some_and(|u| u.sessions >= own.sessions) || own.sessions == 0 {
            return refused(Scope::Owner, own.sessions);
        }
        table.total.sessions += 1;
        table.usage(owner).sessions += 1;
        Ok(())
    }

    fn start_turn(&self, owner: &Arc<str>) -> Result<Running<'_, B>, HostError> {
        let own = self.config.limits_of(owner);
        let mut table = self.lock_table();
        let (scope, limit) = if table.total.running >= self.config.limits.running_turns {
            (Scope::Host, self.config.limits.running_turns)
        } else if table.usage(owner).running >= own.running_turns {
            (Scope::Owner, own.running_turns)
        } else {
            table.total.running += 1;
            table.usage(owner).running += 1;
            return Ok(Running { inner: self, owner: owner.clone() });
        };
        self.metrics.refuse("running_turns");
        Err(HostError::Limit { kind: LimitKind::RunningTurns, scope, limit })
    }

    /// The limit `owner` or the host is past, in memory, if any.
    fn over_memory(&self, owner: &Arc<str>) -> Option<(Scope, u64)> {
        let own = self.config.limits_of(owner);
        let table = self.lock_table();
        if table.total.memory > self.config.limits.memory {
            Some((Scope::Host, self.config.limits.memory))
        } else if table.owners.get(owner).is_some_and(|u| u.memory > own.memory) {
            Some((Scope::Owner, own.memory))
        } else {
            None
        }
    }

    /// Pauses the least recently used idle sessions (of `owner` when it is
    /// the owner's limit that is passed, else of anyone) until memory is
    /// within the limits; `spare` is never paused. Without a store, or
    /// with nothing idle left, the limit stands and this says so.
    async fn relieve(&self, owner: &Arc<str>, spare: Option<SessionId>) -> Result<(), HostError> {
        loop {
            let Some((scope, limit)) = self.over_memory(owner) else { return Ok(()) };
            // Sessions opened ahead go first: nobody is using them.
            if scope == Scope::Host && self.close_one_ready().await {
                continue;
            }
            let refused = || {
                self.metrics.refuse("memory");
                Err(HostError::Limit { kind: LimitKind::Memory, scope, limit })
            };
            if self.config.store.is_none() {
                return refused();
            }
            let mut candidates: Vec<(Instant, Arc<Entry<B>>)> = {
                let table = self.lock_table();
                table
                    .sessions
                    .values()
                    .filter(|e| Some(e.id) != spare && (scope == Scope::Host || e.owner == *owner))
                    .filter_map(|e| {
                        let meta = e.meta();
                        (meta.state == SessionState::Live).then(|| (meta.last_used, e.clone()))
                    })
                    .collect()
            };
            candidates.sort_by_key(|(used, _)| *used);
            let mut paused = false;
            for (_, entry) in candidates {
                let Ok(mut cell) = entry.cell.try_lock() else { continue };
                if self.store_state(&entry, &mut cell, Keep::Paused).await.is_ok() {
                    paused = true;
                    break;
                }
            }
            if !paused {
                return refused();
            }
        }
    }

    async fn lock_cell<'e>(
        &self,
        entry: &'e Entry<B>,
        when_busy: WhenBusy,
    ) -> Result<AsyncGuard<'e, Cell<B::Session>>, HostError> {
        let cell = match entry.cell.try_lock() {
            Ok(cell) => cell,
            Err(_) => {
                let busy = |waited| {
                    self.metrics.refuse("busy");
                    Err(HostError::Busy { waited })
                };
                let WhenBusy::Wait(wait) = when_busy else { return busy(None) };
                // Counted while it waits, uncounted however the wait ends
                // (a caller that drops this future included).
                struct Waiting<'w>(&'w AtomicU32);
                impl Drop for Waiting<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                if entry.waiting.fetch_add(1, Ordering::SeqCst) >= self.config.max_waiting {
                    entry.waiting.fetch_sub(1, Ordering::SeqCst);
                    return busy(None);
                }
                let _waiting = Waiting(&entry.waiting);
                match tokio::time::timeout(wait, entry.cell.lock()).await {
                    Ok(cell) => cell,
                    Err(_) => return busy(Some(wait)),
                }
            }
        };
        // What changed while this call waited: the session was closed, or
        // the host began to shut down.
        let meta = entry.meta();
        if meta.moved {
            return Err(HostError::Moved);
        }
        if meta.closed || matches!(*cell, Cell::Gone) {
            return Err(HostError::NotFound);
        }
        self.accepting()?;
        Ok(cell)
    }

    /// What is left of the session's lifetime; past it, the session is
    /// closed and this says it is gone.
    async fn lifetime_left(
        &self,
        entry: &Entry<B>,
        cell: &mut Cell<B::Session>,
    ) -> Result<Duration, HostError> {
        let (_, lifetime) = entry.backend.timeouts();
        let left = lifetime.saturating_sub(entry.opened.elapsed());
        if left.is_zero() {
            self.end(entry, cell, "lifetime").await;
            return Err(HostError::NotFound);
        }
        Ok(left)
    }

    /// In a fleet, how long this host may still serve the session; a
    /// session whose lease was lost leaves this host (nothing stored,
    /// nothing deleted: it is another worker's) and the call is told it
    /// moved. Alone, no bound.
    async fn fence(
        &self,
        entry: &Entry<B>,
        cell: &mut Cell<B::Session>,
    ) -> Result<Option<Duration>, HostError> {
        let Some(fleet) = &self.config.fleet else { return Ok(None) };
        match fleet.serve_for(entry.id).await? {
            Some(left) => Ok(Some(left)),
            None => {
                tracing::warn!(session = %entry.id, "the lease on a session was lost; it is left to its new worker");
                self.evict(entry, cell);
                Err(HostError::Moved)
            }
        }
    }

    /// Pauses (or closes, or hands back) each of `entries` on shutdown;
    /// what became of them, and those whose pause is to be tried again.
    async fn pause_lane(
        inner: Arc<Inner<B>>,
        entries: Vec<Arc<Entry<B>>>,
        deadline: Instant,
    ) -> (ShutdownReport, Vec<Arc<Entry<B>>>) {
        let mut report = ShutdownReport::default();
        let mut again = Vec::new();
        for entry in entries {
            // What holds a session's lock now is a turn past the grace, a
            // call that will find the host shutting down, or a checkpoint
            // of the sweep: each is waited for, within the grace.
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(mut cell) =
                tokio::time::timeout(left.max(Duration::from_millis(1)), entry.cell.lock()).await
            else {
                report.still_running += 1;
                continue;
            };
            match &*cell {
                Cell::Live(_) if inner.config.store.is_some() => {
                    if inner.pause_on_shutdown(&entry, &mut cell, &mut report).await {
                        again.push(entry.clone());
                    }
                }
                Cell::Live(_) => {
                    inner.end(&entry, &mut cell, "shutdown").await;
                    report.closed += 1;
                }
                Cell::Paused => {
                    report.paused += 1;
                    // Taken up but never resumed: its recorded state is still
                    // the current one; the session is handed back.
                    if let Some(fleet) = &inner.config.fleet {
                        fleet.release(entry.id).await;
                        inner.evict(&entry, &mut cell);
                    }
                }
                Cell::Gone => {}
            }
        }
        (report, again)
    }

    /// Pauses a live session on shutdown, counting what became of it in
    /// `report`; `true` when its pause failed for a reason that may pass
    /// (the store or the catalog), for it to be tried again.
    async fn pause_on_shutdown(
        &self,
        entry: &Entry<B>,
        cell: &mut Cell<B::Session>,
        report: &mut ShutdownReport,
    ) -> bool {
        match self.store_state(entry, cell, Keep::Paused).await {
            Ok(()) => report.paused += 1,
            Err(HostError::Moved) => report.moved += 1,
            Err(
                HostError::Store(StoreError::Service { .. } | StoreError::Io { .. }) | HostError::Catalog(_),
            ) if matches!(&*cell, Cell::Live(_)) => {
                return true;
            }
            Err(e) => {
                tracing::warn!(
                    session = %entry.id,
                    "a session could not be paused on shutdown: {}",
                    bounded(&e.to_string())
                );
                self.give_up_on_shutdown(entry, cell, report).await;
            }
        }
        false
    }

    /// A session that could not be paused on shutdown: in a fleet it is
    /// left with its last stored state (the worker that takes it up next
    /// says from which turn it goes on), alone it is closed.
    async fn give_up_on_shutdown(
        &self,
        entry: &Entry<B>,
        cell: &mut Cell<B::Session>,
        report: &mut ShutdownReport,
    ) {
        match cell {
            Cell::Gone => {}
            _ if self.config.fleet.is_some() => {
                self.evict(entry, cell);
                report.unstored += 1;
            }
            _ => {
                self.end(entry, cell, "shutdown").await;
                report.closed += 1;
            }
        }
    }

    /// Lets a session go from this host without storing or deleting
    /// anything: another worker of the fleet holds it (or will).
    fn evict(&self, entry: &Entry<B>, cell: &mut Cell<B::Session>) {
        {
            let mut meta = entry.meta.lock().unwrap_or_else(|p| p.into_inner());
            meta.moved = true;
        }
        self.remove(entry);
        // The instance is freed without its guest's finalisers: they could
        // act for a session that is another worker's now.
        *cell = Cell::Gone;
        if let Some(fleet) = &self.config.fleet {
            fleet.dropped(entry.id);
        }
    }

    /// Resumes a paused session from the store.
    async fn make_live(&self, entry: &Entry<B>, cell: &mut Cell<B::Session>) -> Result<(), HostError> {
        match cell {
            Cell::Live(_) => return Ok(()),
            Cell::Gone => return Err(HostError::NotFound),
            Cell::Paused => {}
        }
        let store = self.config.store.as_ref().ok_or(HostError::NotFound)?;
        let expected = entry.meta().stored.ok_or(HostError::NotFound)?;
        // Room is made (or refused) before the session comes back.
        if self.over_memory(&entry.owner).is_some() {
            self.relieve(&entry.owner, Some(entry.id)).await?;
        }
        let resumed = async {
            let prefetched = entry.prefetched.lock().unwrap_or_else(|p| p.into_inner()).take();
            let sealed = match prefetched {
                Some(sealed) => sealed,
                None => store.get(expected).await?,
            };
            let refused = |why| HostError::Sandbox(SandboxError::Resume(why));
            let (ticket, paused) = envelope::open(&self.config.state_key, &sealed)
                .ok_or_else(|| refused(ResumeError::Unauthenticated))?;
            if ticket.session != entry.id.to_string()
                || *ticket.owner != *entry.owner
                || *ticket.profile != *entry.profile
            {
                return Err(refused(ResumeError::Binding));
            }
            // The host (or the fleet's catalog) knows which state is the
            // session's current one: a store handing back an earlier,
            // genuine state of the session, under any name, is refused.
            if ticket.pauses != expected.pause || ticket.epoch != expected.epoch {
                return Err(refused(ResumeError::Stale { found: ticket.pauses, expected: expected.pause }));
            }
            let session = entry.backend.resume(paused, &self.config.state_key, &entry.binding()).await?;
            Ok::<_, HostError>(session)
        }
        .await;
        let session = match resumed {
            Ok(session) => session,
            Err(e) => {
                self.metrics.resume_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        self.metrics.resumes.fetch_add(1, Ordering::Relaxed);
        let memory = accounted(entry, session.memory_in_use());
        *cell = Cell::Live(session);
        {
            let mut table = self.lock_table();
            let mut meta = entry.meta.lock().unwrap_or_else(|p| p.into_inner());
            if !meta.closed {
                table.add_memory(&entry.owner, memory);
                meta.memory = memory;
            }
            meta.state = SessionState::Live;
            if self.config.fleet.is_none() {
                meta.stored = None;
            }
        }
        // Alone, the state is in the live session now; a stale copy left
        // behind would only ever be refused or overwritten. In a fleet it
        // stays, the catalog's record of the session until the next one:
        // a crash of this host resumes the session from it.
        if self.config.fleet.is_none()
            && let Err(e) = store.delete(expected).await
        {
            tracing::warn!(session = %entry.id, "cannot delete a resumed session's paused state: {e}");
        }
        Ok(())
    }

    /// Writes a live session whose lock the caller holds to the store, as
    /// a new [`StateName`], and then frees it (`Keep::Paused`; in a fleet
    /// it is given up, and leaves this host) or resumes it from the bytes
    /// in hand (`Keep::Live`, a checkpoint).
    async fn store_state(
        &self,
        entry: &Entry<B>,
        cell: &mut Cell<B::Session>,
        keep: Keep,
    ) -> Result<(), HostError> {
        let Some(store) = &self.config.store else {
            return Err(HostError::Config("no store for paused sessions is configured".into()));
        };
        let Cell::Live(session) = cell else { return Ok(()) };
        let binding = entry.binding();
        let paused = match session.pause(&self.config.state_key, &binding).await {
            Ok(paused) => paused,
            Err(e) => {
                // Refused before anything was taken: the session goes on.
                self.metrics.pause_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let meta = entry.meta();
        let name = StateName { id: entry.id, epoch: meta.epoch, pause: meta.pauses + 1 };
        let ticket = Ticket {
            session: entry.id.to_string(),
            owner: entry.owner.to_string(),
            profile: entry.profile.to_string(),
            opened_ms: Ticket::opened_ms(entry.opened.elapsed()),
            turns: meta.turns,
            pauses: name.pause,
            epoch: name.epoch,
            keys: lock(&entry.keyed).records(),
            resumed_from: meta.resumed_from,
        };
        let sealed = envelope::seal(&self.config.state_key, &ticket, &paused);
        // The old instance is freed before a new one may be made from the
        // bytes, so that its slot is free for it.
        *cell = Cell::Paused;
        let recorded = match store.put(name, sealed).await {
            Err(e) => Err(HostError::from(e)),
            Ok(()) => match &self.config.fleet {
                None => Ok(true),
                Some(fleet) => fleet.stored(name, meta.turns, keep == Keep::Paused).await,
            },
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                // Another worker holds the session now: what was written is
                // nobody's, and the session is that worker's.
                let _ = store.delete(name).await;
                self.metrics.pause_failures.fetch_add(1, Ordering::Relaxed);
                self.evict(entry, cell);
                return Err(HostError::Moved);
            }
            Err(e) => {
                // Not stored, or stored but not recorded: the session goes
                // on from the bytes in hand rather than be lost.
                if self.config.fleet.is_some() {
                    let _ = store.delete(name).await;
                }
                self.metrics.pause_failures.fetch_add(1, Ordering::Relaxed);
                match entry.backend.resume(&paused, &self.config.state_key, &binding).await {
                    Ok(session) => *cell = Cell::Live(session),
                    Err(resume) => {
                        tracing::warn!(session = %entry.id, "a session whose state could not be stored is lost: {resume}");
                        self.end(entry, cell, "failed").await;
                    }
                }
                return Err(e);
            }
        }
        // The new state is the current one: the one before it goes.
        if let Some(old) = meta.stored.filter(|old| *old != name)
            && let Err(e) = store.delete(old).await
        {
            tracing::warn!(session = %entry.id, "cannot delete a session's older state: {e}");
        }
        {
            let mut meta = entry.meta.lock().unwrap_or_else(|p| p.into_inner());
            meta.pauses = name.pause;
            meta.stored = Some(name);
            meta.stored_turn = ticket.turns;
            meta.stored_at = Instant::now();
        }
        self.metrics.pauses.fetch_add(1, Ordering::Relaxed);
        match keep {
            Keep::Live => match entry.backend.resume(&paused, &self.config.state_key, &binding).await {
                Ok(session) => {
                    let memory = accounted(entry, session.memory_in_use());
                    *cell = Cell::Live(session);
                    let mut table = self.lock_table();
                    let mut meta = entry.meta.lock().unwrap_or_else(|p| p.into_inner());
                    if !meta.closed {
                        table.sub_memory(&entry.owner, meta.memory);
                        table.add_memory(&entry.owner, memory);
                        meta.memory = memory;
                    }
                }
                // Stored, so not lost: it resumes from the store on its next
                // call.
                Err(e) => {
                    tracing::warn!(session = %entry.id, "a checkpointed session did not go on live: {e}");
                    self.mark_paused(entry);
                }
            },
            Keep::Paused if self.config.fleet.is_some() => {
                // Given up in the catalog: any worker may resume it now, so
                // this one must not.
                let mut meta = entry.meta.lock().unwrap_or_else(|p| p.into_inner());
                meta.moved = true;
                drop(meta);
                self.remove(entry);
                *cell = Cell::Gone;
            }
            Keep::Paused => self.mark_paused(entry),
        }
        Ok(())
    }

    /// Counts a session whose instance was freed as paused.
    fn mark_paused(&self, entry: &Entry<B>) {
        lock(&entry.keyed).forget_answer();
        let mut table = self.lock_table();
        let mut meta = entry.meta.lock().unwrap_or_else(|p| p.into_inner());
        if !meta.closed {
            table.sub_memory(&entry.owner, meta.memory);
        }
        meta.memory = 0;
        meta.state = SessionState::Paused;
    }

    /// Marks the session used, and counts as its memory `memory` (its
    /// instance's) and the answer it keeps for a turn sent again.
    fn touch(&self, entry: &Entry<B>, turn: Option<u64>, memory: u64) {
        let memory = accounted(entry, memory);
        let mut table = self.lock_table();
        let mut meta = entry.meta.lock().unwrap_or_else(|p| p.into_inner());
        meta.last_used = Instant::now();
        meta.pause_retry_after = None;
        if let Some(turn) = turn {
            meta.turns = turn;
        }
        // An entry closed meanwhile is no longer counted.
        if !meta.closed {
            table.sub_memory(&entry.owner, meta.memory);
            table.add_memory(&entry.owner, memory);
            meta.memory = memory;
        }
    }

    /// Takes the entry out of the table and its usage (once).
    fn remove(&self, entry: &Entry<B>) -> bool {
        let mut table = self.lock_table();
        let mut meta = entry.meta.lock().unwrap_or_else(|p| p.into_inner());
        if meta.closed {
            return false;
        }
        meta.closed = true;
        let memory = std::mem::take(&mut meta.memory);
        drop(meta);
        table.sessions.remove(&entry.id);
        table.sub_memory(&entry.owner, memory);
        table.release_session(&entry.owner);
        true
    }

    /// Ends a session whose lock the caller holds: out of the table,
    /// its instance closed, its paused state deleted.
    async fn end(&self, entry: &Entry<B>, cell: &mut Cell<B::Session>, reason: &str) {
        let counted = self.remove(entry);
        self.finish(entry, cell).await;
        if counted {
            self.metrics.close(reason);
        }
    }

    async fn finish(&self, entry: &Entry<B>, cell: &mut Cell<B::Session>) {
        if let Cell::Live(session) = std::mem::replace(cell, Cell::Gone) {
            session.close().await;
        }
        // Every state the session left in the store goes too, or a later
        // host would take the closed session up again: its own, and the one
        // the fleet's catalog named.
        let meta = entry.meta();
        let mut states: Vec<StateName> = meta.stored.into_iter().collect();
        // Alone, a resumed session's state was deleted; a copy that came
        // back (a delete that failed, say) goes now.
        if meta.stored.is_none() && meta.pauses > 0 {
            states.push(StateName { id: entry.id, epoch: meta.epoch, pause: meta.pauses });
        }
        if let Some(fleet) = &self.config.fleet
            && let Some(named) = fleet.closed(entry.id, meta.epoch).await
            && !states.contains(&named)
        {
            states.push(named);
        }
        if let Some(store) = &self.config.store {
            for state in states {
                if let Err(e) = store.delete(state).await {
                    tracing::warn!(session = %entry.id, "cannot delete a closed session's paused state: {e}");
                }
            }
        }
    }

    /// Closes sessions past their idle timeout or lifetime, pauses those
    /// idle past `pause_idle_after`, checkpoints those whose last stored
    /// state is older than `checkpoint_after`, and, in a fleet, lets go of
    /// those whose lease was lost; a session busy with a call is left for
    /// the next sweep.
    async fn sweep(&self) {
        let entries: Vec<Arc<Entry<B>>> = self.lock_table().sessions.values().cloned().collect();
        for entry in entries {
            // A shutdown takes over from here.
            if self.draining.load(Ordering::SeqCst) {
                return;
            }
            let meta = entry.meta();
            let (idle_timeout, lifetime) = entry.backend.timeouts();
            let idle_timeout = self.config.close_idle_after.unwrap_or(idle_timeout);
            let idle = meta.last_used.elapsed();
            let reason = if entry.opened.elapsed() >= lifetime {
                Some("lifetime")
            } else if idle >= idle_timeout {
                Some("idle")
            } else {
                None
            };
            let live = meta.state == SessionState::Live && self.config.store.is_some();
            let retry = meta.pause_retry_after.is_none_or(|at| Instant::now() >= at);
            let pause = live && retry && self.config.pause_idle_after.is_some_and(|after| idle >= after);
            // A session never stored is checkpointed at the first sweep
            // after its first turn: until then a crash loses it whole.
            let checkpoint = live
                && retry
                && meta.turns > meta.stored_turn
                && self
                    .config
                    .checkpoint_after
                    .is_some_and(|after| meta.stored.is_none() || meta.stored_at.elapsed() >= after);
            let fenced = self.config.fleet.is_some();
            if reason.is_none() && !pause && !checkpoint && !fenced {
                continue;
            }
            let Ok(mut cell) = entry.cell.try_lock() else { continue };
            if entry.meta().closed {
                continue;
            }
            // Taken up in a fleet and left unused as long as a live one
            // would be paused: handed back, for whichever worker it is
            // next asked of.
            if reason.is_none()
                && let Some(fleet) = &self.config.fleet
                && matches!(*cell, Cell::Paused)
                && self.config.pause_idle_after.is_some_and(|after| idle >= after)
            {
                fleet.release(entry.id).await;
                self.evict(&entry, &mut cell);
                continue;
            }
            if reason.is_none() && fenced && self.fence(&entry, &mut cell).await.is_err() {
                continue;
            }
            let keep = match reason {
                Some(reason) => {
                    self.end(&entry, &mut cell, reason).await;
                    continue;
                }
                None if pause => Keep::Paused,
                None if checkpoint => Keep::Live,
                None => continue,
            };
            if let Err(e) = self.store_state(&entry, &mut cell, keep).await {
                tracing::warn!(session = %entry.id, "session not stored: {e}");
                // Tried again after as long again, or once it has been
                // used; its idle timeout still counts.
                let after = self
                    .config
                    .pause_idle_after
                    .or(self.config.checkpoint_after)
                    .unwrap_or(Duration::from_secs(60));
                entry.meta.lock().unwrap_or_else(|p| p.into_inner()).pause_retry_after =
                    Instant::now().checked_add(after);
            }
        }
    }
}

/// The background sweep, until the host is dropped or shut down.
async fn sweep_forever<B: Backend>(host: Weak<Inner<B>>) {
    let every = match host.upgrade() {
        Some(inner) => inner.config.sweep_interval,
        None => return,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = host.upgrade() else { return };
        if inner.draining.load(Ordering::SeqCst) {
            return;
        }
        inner.sweep().await;
        inner.close_ready(|profile, opened| opened.at.elapsed() >= inner.ready_age_limit(profile)).await;
        for profile in inner.ready.keys() {
            Inner::fill(&inner, profile, Duration::ZERO);
        }
    }
}

/// The memory a live session is counted for: its instance's, `instance`,
/// and the answer it keeps for a turn sent again.
fn accounted<B: Backend>(entry: &Entry<B>, instance: u64) -> u64 {
    instance.saturating_add(lock(&entry.keyed).kept_bytes())
}

/// Refuses an owner name that is empty, too long, or not printable.
fn check_owner(owner: &str) -> Result<(), HostError> {
    let problem = if owner.is_empty() {
        "empty"
    } else if owner.len() > MAX_OWNER_NAME {
        "over 128 bytes"
    } else if owner.chars().any(|c| c.is_control()) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(HostError::BadOwner { name: bounded(owner), problem })
}

/// A caller's string, cut for a message.
fn bounded(text: &str) -> String {
    mimobox_core::text::one_line_bounded(text)
}

/// Runs blocking work (a file operation) off a multi-threaded runtime's
/// executor.
fn offload<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// `mutex`'s guard, whether or not a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
