//! Where paused sessions are kept: the [`PausedStore`] trait, the
//! [`StateName`] of each object, and [`LocalDir`], a directory of this
//! machine (or one that workers share).

use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use crate::SessionId;

/// A boxed future, as the store's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No paused state is stored under this id.
    #[error("no paused state for session {0}")]
    Missing(SessionId),
    /// The stored object is larger than the store accepts.
    #[error("the paused state of session {id} is over {limit} bytes")]
    TooLarge {
        /// The session.
        id: SessionId,
        /// The store's bound.
        limit: u64,
    },
    /// The store's directory (or object) is not one the host can trust.
    #[error("{path}: {problem}")]
    Untrusted {
        /// Where.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// The store's service (object storage) failed or refused the call.
    #[error("{action} {object}: {problem}")]
    Service {
        /// What the store was doing.
        action: &'static str,
        /// The object (or bucket) it was doing it to.
        object: String,
        /// What the service said, on one line and bounded.
        problem: String,
    },
    /// The store's medium failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What the store was doing.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// The name of one paused state: its session, the fencing epoch under
/// which it was written (0 for a host alone), and the number of the pause
/// among the session's pauses. Every pause writes a new name, so a write
/// from a worker that lost the session never overwrites the state of the
/// one that holds it now; which name is current is the host's (or the
/// catalog's) record, and the state's authenticated ticket names it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateName {
    /// The session.
    pub id: SessionId,
    /// The fencing epoch of the writer.
    pub epoch: u64,
    /// The pause's number, from 1.
    pub pause: u64,
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.id, self.epoch, self.pause)
    }
}

impl std::str::FromStr for StateName {
    type Err = ();

    /// `ID.EPOCH.PAUSE`, as [`StateName`] writes itself; nothing else.
    fn from_str(text: &str) -> Result<StateName, ()> {
        let mut parts = text.split('.');
        let (Some(id), Some(epoch), Some(pause), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(());
        };
        let number = |part: &str| {
            // Digits only, written as `u64` writes them (no sign, no
            // leading zero), so that one name has one spelling.
            if part.is_empty()
                || !part.bytes().all(|b| b.is_ascii_digit())
                || (part.len() > 1 && part.starts_with('0'))
            {
                return Err(());
            }
            part.parse::<u64>().map_err(|_| ())
        };
        Ok(StateName { id: id.parse().map_err(|_| ())?, epoch: number(epoch)?, pause: number(pause)? })
    }
}

/// Storage of paused sessions, one object per [`StateName`]. The objects
/// are authenticated by the host (a paused state carries its MAC and
/// binding), so a store need not be trusted with their integrity, only
/// with keeping them.
pub trait PausedStore: Send + Sync + 'static {
    /// Stores `bytes` under `name`, replacing any object of that name whole:
    /// a reader sees the old object or the new, never a part.
    fn put(&self, name: StateName, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The object named `name`.
    fn get(&self, name: StateName) -> BoxFuture<'_, Result<Vec<u8>, StoreError>>;

    /// Removes the object named `name`, if there is one.
    fn delete(&self, name: StateName) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The names of every object held.
    fn list(&self) -> BoxFuture<'_, Result<Vec<StateName>, StoreError>>;
}

/// Paused sessions as files of one directory of this machine, named by
/// session id (so no name a caller chooses reaches the file system).
///
/// The directory is created mode 0700 if missing, and must belong to this
/// user and be writable by no one else; objects are written to a temporary
/// file, synced and renamed into place; symlinks are never followed, and
/// an object larger than the bound is refused before it is read.
#[derive(Clone)]
pub struct LocalDir {
    inner: Arc<LocalInner>,
}

struct LocalInner {
    dir: PathBuf,
    max_object: u64,
}

impl LocalDir {
    /// A store in `dir`, holding objects of at most `max_object` bytes.
    pub fn open(dir: impl Into<PathBuf>, max_object: u64) -> Result<LocalDir, StoreError> {
        let dir = dir.into();
        let io = |action, source| StoreError::Io { action, path: dir.clone(), source };
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating", e)),
        }
        let metadata = std::fs::symlink_metadata(&dir).map_err(|e| io("reading", e))?;
        let untrusted = |problem| StoreError::Untrusted { path: dir.clone(), problem };
        if !metadata.is_dir() {
            return Err(untrusted("not a directory (a symlink is not followed)"));
        }
        if metadata.uid() != rustix::process::geteuid().as_raw() {
            return Err(untrusted("not owned by this user"));
        }
        if metadata.permissions().mode() & 0o022 != 0 {
            return Err(untrusted("writable by other users"));
        }
        Ok(LocalDir { inner: Arc::new(LocalInner { dir, max_object }) })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl LocalInner {
    fn path_of(&self, name: StateName) -> PathBuf {
        self.dir.join(format!("{name}.paused"))
    }

    fn put(&self, name: StateName, bytes: &[u8]) -> Result<(), StoreError> {
        let id = name.id;
        if bytes.len() as u64 > self.max_object {
            return Err(StoreError::TooLarge { id, limit: self.max_object });
        }
        let target = self.path_of(name);
        let temp = self
            .dir
            .join(format!(".{id}.{}.tmp", SessionId::random().map_err(|e| io("naming", &target, e))?));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc_nofollow())
                .open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &target)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io("writing", &target, e));
        }
        // The rename is durable once the directory is synced.
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn get(&self, name: StateName) -> Result<Vec<u8>, StoreError> {
        let (id, path) = (name.id, self.path_of(name));
        let mut file = match std::fs::OpenOptions::new().read(true).custom_flags(libc_nofollow()).open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::Missing(id)),
            Err(e) => return Err(io("opening", &path, e)),
        };
        let metadata = file.metadata().map_err(|e| io("reading", &path, e))?;
        if !metadata.is_file() {
            return Err(StoreError::Untrusted { path, problem: "not a regular file" });
        }
        if metadata.len() > self.max_object {
            return Err(StoreError::TooLarge { id, limit: self.max_object });
        }
        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        // Bounded again while reading: the file may grow after the stat.
        (&mut file).take(self.max_object + 1).read_to_end(&mut bytes).map_err(|e| io("reading", &path, e))?;
        if bytes.len() as u64 > self.max_object {
            return Err(StoreError::TooLarge { id, limit: self.max_object });
        }
        Ok(bytes)
    }

    fn list(&self) -> Result<Vec<StateName>, StoreError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io("listing", &self.dir, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io("listing", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(state) = name.strip_suffix(".paused").and_then(|stem| stem.parse().ok()) {
                ids.push(state);
            } else if name.starts_with('.') && name.ends_with(".tmp") {
                // A write that a crash cut short.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn delete(&self, name: StateName) -> Result<(), StoreError> {
        let path = self.path_of(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &path, e)),
        }
    }
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io { action, path: path.to_path_buf(), source }
}

fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

impl PausedStore for LocalDir {
    fn put(&self, name: StateName, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move { blocking(move || inner.put(name, &bytes)).await })
    }

    fn get(&self, name: StateName) -> BoxFuture<'_, Result<Vec<u8>, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move { blocking(move || inner.get(name)).await })
    }

    fn delete(&self, name: StateName) -> BoxFuture<'_, Result<(), StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move { blocking(move || inner.delete(name)).await })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<StateName>, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move { blocking(move || inner.list()).await })
    }
}

/// Runs file-system work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Io {
            action: "running",
            path: PathBuf::from("the store's worker"),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}
