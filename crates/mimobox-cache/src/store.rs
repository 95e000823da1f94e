//! [`ModuleCache`]: the directory of compiled artifacts and fingerprints.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rustix::fs::OFlags;

use crate::beneath;
use crate::dir::{check_owner_and_mode, check_private_dir, create_private_dir, private_subdir};
use crate::error::CacheError;
use crate::fingerprint::Fingerprint;
use crate::hash::{ContentHash, EngineId};
use crate::lock::{ArtifactPin, LockOutcome, lock_exclusive, pin};

/// The layout version; bumped when the layout changes so that old and new
/// builds never read each other's files.
const LAYOUT: &str = "v1";
pub(crate) const ARTIFACT_EXT: &str = "cwasm";
/// In each engine directory: the tag of the engine that wrote it.
pub(crate) const TAG_FILE: &str = "ENGINE";
const EVENTS_FILE: &str = "events";
/// Longest engine tag read back; real tags are a few dozen bytes.
pub(crate) const MAX_TAG_LEN: u64 = 256;
/// Longest fingerprint record read back (a hex SHA-256).
const MAX_RECORD_LEN: u64 = 128;
/// Most of the event log read back for `stats`.
const MAX_EVENTS_LEN: u64 = 64 << 20;
/// Default size bound of the cache: 1 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;
/// Artifacts used within this long are not touched again on a hit, which
/// keeps hits free of writes.
const TOUCH_AFTER: Duration = Duration::from_secs(60);
/// How long a file must have been unchanged before its fingerprint alone is
/// trusted to name its content (see [`Fingerprint::is_settled`]), on disk
/// and by callers that remember fingerprints in memory.
pub const FINGERPRINT_SETTLE: Duration = Duration::from_secs(2);

/// A compiled-module cache in one directory.
///
/// Layout under the directory:
/// - `v1/modules/<engine>/<sha256>.cwasm`: artifacts, one directory per
///   [`EngineId`];
/// - `v1/fingerprints/<fingerprint>`: the content hash of a module file
///   with that [`Fingerprint`].
#[derive(Debug, Clone)]
pub struct ModuleCache {
    root: PathBuf,
    layout: PathBuf,
    /// The cache directory, opened once; everything inside is reached
    /// through it (see `beneath.rs`).
    root_fd: Arc<OwnedFd>,
    settle: Duration,
    engine_tag: Option<String>,
    max_size: u64,
}

/// An artifact found in the cache, opened and vetted: a regular file (not
/// a symlink), owned by the current user, writable by no one else.
#[derive(Debug)]
pub struct Artifact {
    /// Where it lives, for messages and for discarding it.
    pub path: PathBuf,
    /// The open file, ready to be mapped.
    pub file: File,
    /// Keeps eviction away from the artifact; hold it as long as the
    /// artifact is mapped.
    pub pin: ArtifactPin,
}

impl ModuleCache {
    /// Opens the cache at `dir`, creating it with mode 0700 if needed.
    ///
    /// Refuses ([`CacheError::Insecure`]) a directory that is not owned by
    /// the current user or that group or others can write to, and any
    /// subdirectory of it that is a symlink.
    pub fn open(dir: &Path) -> Result<ModuleCache, CacheError> {
        create_private_dir(dir)?;
        let root_fd = beneath::open_root(dir).map_err(|e| CacheError::io(dir, e))?;
        let metadata = beneath::metadata(&root_fd).map_err(|e| CacheError::io(dir, e))?;
        check_private_dir(dir, &metadata)?;
        for sub in [LAYOUT.to_owned(), format!("{LAYOUT}/modules"), format!("{LAYOUT}/fingerprints")] {
            private_subdir(root_fd.as_fd(), &dir.join(&sub), &sub)?;
        }
        Ok(ModuleCache {
            root: dir.to_owned(),
            layout: dir.join(LAYOUT),
            root_fd: Arc::new(root_fd),
            settle: FINGERPRINT_SETTLE,
            engine_tag: None,
            max_size: DEFAULT_MAX_SIZE,
        })
    }

    /// Opens the cache at [`default_dir`](crate::default_dir).
    pub fn open_default() -> Result<ModuleCache, CacheError> {
        ModuleCache::open(&crate::default_dir().ok_or(CacheError::NoDirectory)?)
    }

    /// The directory the cache lives in.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// How long a module file must be unchanged before its fingerprint is
    /// trusted (2 s by default). Tests shorten it; zero is only safe on file
    /// systems with fine-grained timestamps.
    pub fn set_fingerprint_settle_time(&mut self, settle: Duration) {
        self.settle = settle;
    }

    /// Names the engine build that uses this cache (runtime and mimobox
    /// versions). Engine directories written under another tag are stale:
    /// pruning removes them first.
    pub fn set_engine_tag(&mut self, tag: impl Into<String>) {
        self.engine_tag = Some(tag.into());
    }

    /// The engine tag, if one was set.
    pub fn engine_tag(&self) -> Option<&str> {
        self.engine_tag.as_deref()
    }

    /// Bounds the cache to `bytes`; a store that takes it past the bound
    /// prunes it. Defaults to [`DEFAULT_MAX_SIZE`].
    pub fn set_max_size(&mut self, bytes: u64) {
        self.max_size = bytes;
    }

    /// The size bound.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Waits at most `wait` to become the one writer of `key`, so that
    /// processes starting on the same uncached module compile it once.
    /// After a wait, look for the artifact again before compiling.
    pub fn lock(&self, engine: &EngineId, key: &ContentHash, wait: Duration) -> LockOutcome {
        let dir = match self.engine_dir(engine) {
            Ok(dir) => dir,
            Err(e) => {
                tracing::debug!("no lock: {e}");
                return LockOutcome::Unavailable;
            }
        };
        lock_exclusive(dir.as_fd(), &format!("{key}.lock"), wait)
    }

    /// Counts a hit (an artifact loaded) for `stats`.
    pub fn record_hit(&self) {
        self.record(b"h");
    }

    /// Counts a miss (a module compiled) for `stats`.
    pub fn record_miss(&self) {
        self.record(b"m");
    }

    fn record(&self, event: &[u8]) {
        // One byte appended per event: appends this small are atomic, so
        // processes never need to coordinate.
        let appended = self.open_subdir(LAYOUT).and_then(|dir| {
            let mut file = beneath::open_file(
                dir.as_fd(),
                EVENTS_FILE,
                OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE,
                0o600,
            )?;
            if !file.metadata()?.is_file() {
                return Err(std::io::Error::other("not a regular file"));
            }
            file.write_all(event)
        });
        if let Err(e) = appended {
            tracing::debug!("cannot record a cache event: {e}");
        }
    }

    /// Hits and misses recorded so far.
    pub(crate) fn events(&self) -> (u64, u64) {
        let read = self.open_subdir(LAYOUT).and_then(|dir| {
            let file = beneath::open_regular(dir.as_fd(), EVENTS_FILE)?;
            check_owner_and_mode(&file.metadata()?).map_err(std::io::Error::other)?;
            beneath::read_bounded(file, MAX_EVENTS_LEN)
        });
        let Ok(bytes) = read else { return (0, 0) };
        let hits = bytes.iter().filter(|&&b| b == b'h').count() as u64;
        (hits, bytes.iter().filter(|&&b| b == b'm').count() as u64)
    }

    /// Opens the directory `rel` of the cache (`v1/modules`, ...) without
    /// following a symlink.
    pub(crate) fn open_subdir(&self, rel: &str) -> std::io::Result<OwnedFd> {
        beneath::open_dir(self.root_fd.as_fd(), rel)
    }

    /// The directory of artifacts, and where it is, for messages.
    pub(crate) fn modules_dir(&self) -> (std::io::Result<OwnedFd>, PathBuf) {
        (self.open_subdir(&format!("{LAYOUT}/modules")), self.layout.join("modules"))
    }

    /// The directory of fingerprint records.
    pub(crate) fn fingerprints_dir(&self) -> std::io::Result<OwnedFd> {
        self.open_subdir(&format!("{LAYOUT}/fingerprints"))
    }

    /// Removes the event log.
    pub(crate) fn remove_events(&self) {
        if let Ok(dir) = self.open_subdir(LAYOUT) {
            let _ = beneath::unlink(dir.as_fd(), EVENTS_FILE);
        }
    }

    /// Opens an engine's directory, if it exists and is safe to use.
    fn existing_engine_dir(&self, engine: &EngineId) -> std::io::Result<OwnedFd> {
        let rel = format!("{LAYOUT}/modules/{}", engine.dir_name());
        let dir = self.open_subdir(&rel)?;
        check_private_dir(&self.root.join(&rel), &beneath::metadata(&dir)?).map_err(std::io::Error::other)?;
        Ok(dir)
    }

    /// Creates (or vets) an engine directory and records its tag.
    fn engine_dir(&self, engine: &EngineId) -> Result<OwnedFd, CacheError> {
        let (modules, modules_path) = self.modules_dir();
        let modules = modules.map_err(|e| CacheError::io(&modules_path, e))?;
        let name = engine.dir_name();
        let path = modules_path.join(&name);
        beneath::make_dir(modules.as_fd(), &name).map_err(|e| CacheError::io(&path, e))?;
        let dir = self
            .existing_engine_dir(engine)
            .map_err(|e| CacheError::Insecure { path: path.clone(), reason: e.to_string() })?;
        if let Some(tag) = &self.engine_tag
            && beneath::stat(dir.as_fd(), TAG_FILE).is_err()
        {
            write_atomically(dir.as_fd(), &path, TAG_FILE, tag.as_bytes(), false, 0o600)?;
        }
        Ok(dir)
    }

    /// The content hash recorded for a file with this fingerprint, if any.
    pub fn hash_for(&self, fingerprint: &Fingerprint) -> Option<ContentHash> {
        let dir = self.fingerprints_dir().ok()?;
        let file = open_vetted(dir.as_fd(), &fingerprint.file_name(), Some(SEALED_MODE)).ok()??;
        let bytes = beneath::read_bounded(file, MAX_RECORD_LEN).ok()?;
        ContentHash::from_hex(std::str::from_utf8(&bytes).ok()?)
    }

    /// Records that a file with `fingerprint` has content `hash`, once the
    /// file has settled. Failures are logged and otherwise ignored: the
    /// next run simply hashes the file again.
    pub fn remember(&self, fingerprint: &Fingerprint, hash: &ContentHash) {
        if !fingerprint.is_settled(SystemTime::now(), self.settle) {
            tracing::debug!("module file changed too recently to record its fingerprint");
            return;
        }
        let path = self.fingerprint_path(fingerprint);
        let written = self.fingerprints_dir().map_err(|e| CacheError::io(&path, e)).and_then(|dir| {
            write_atomically(
                dir.as_fd(),
                &path,
                &fingerprint.file_name(),
                hash.to_string().as_bytes(),
                false,
                SEALED_MODE,
            )
        });
        if let Err(e) = written {
            tracing::debug!("cannot record fingerprint: {e}");
        }
    }

    /// Opens the artifact for `key` compiled by `engine`, if there is a
    /// trustworthy one. An entry that is a symlink or has unsafe ownership
    /// or permissions is removed and reported as absent.
    pub fn artifact(&self, engine: &EngineId, key: &ContentHash) -> Option<Artifact> {
        let path = self.artifact_path(engine, key);
        let dir = match self.existing_engine_dir(engine) {
            Ok(dir) => dir,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(
                    "not reading cache directory {}: {e}",
                    path.parent().unwrap_or(&path).display()
                );
                return None;
            }
        };
        let name = artifact_name(key);
        let file = match open_vetted(dir.as_fd(), &name, Some(SEALED_MODE)) {
            Ok(Some(file)) => file,
            Ok(None) => return None,
            Err(reason) => {
                tracing::warn!("removing untrusted cache entry {}: {reason}", path.display());
                let _ = beneath::unlink(dir.as_fd(), &name);
                return None;
            }
        };
        // Pin it, then make sure an eviction did not unlink it between the
        // open and the pin: if so, it is a miss.
        let pin = pin(&file)?;
        let still_there = match (beneath::stat(dir.as_fd(), &name), file.metadata()) {
            (Ok(at_path), Ok(opened)) => at_path.st_ino == opened.ino() && at_path.st_dev == opened.dev(),
            _ => false,
        };
        if !still_there {
            return None;
        }
        // Keep the modification time as the last use, for LRU eviction.
        if file
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > TOUCH_AFTER)
        {
            let _ = file.set_modified(SystemTime::now());
        }
        Some(Artifact { path, file, pin })
    }

    /// Stores an artifact atomically: the bytes go to a temp file of this
    /// writer's own, which is synced and then renamed over the final name.
    /// Concurrent writers of the same key each succeed; one whole artifact
    /// remains.
    pub fn store(&self, engine: &EngineId, key: &ContentHash, bytes: &[u8]) -> Result<PathBuf, CacheError> {
        let dir = self.engine_dir(engine)?;
        let path = self.artifact_path(engine, key);
        write_atomically(dir.as_fd(), &path, &artifact_name(key), bytes, true, SEALED_MODE)?;
        self.prune_if_over(self.max_size);
        Ok(path)
    }

    /// Removes the artifact for `key` (for example because it failed to
    /// load). Readers that already mapped it keep their mapping.
    pub fn discard(&self, engine: &EngineId, key: &ContentHash) {
        let path = self.artifact_path(engine, key);
        let removed = self
            .existing_engine_dir(engine)
            .and_then(|dir| beneath::unlink(dir.as_fd(), &artifact_name(key)));
        match removed {
            Ok(()) => tracing::debug!("discarded cache entry {}", path.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove cache entry {}: {e}", path.display()),
        }
    }

    /// The path of the artifact for `key` compiled by `engine`.
    pub fn artifact_path(&self, engine: &EngineId, key: &ContentHash) -> PathBuf {
        self.layout.join("modules").join(engine.dir_name()).join(artifact_name(key))
    }

    fn fingerprint_path(&self, fingerprint: &Fingerprint) -> PathBuf {
        self.layout.join("fingerprints").join(fingerprint.file_name())
    }
}

/// The mode of artifacts and fingerprint records: read-only for the owner.
/// A guest that can write into the cache directory through a mount (which
/// sandboxes refuse) still cannot make a file with this mode, as WASI
/// preview 1 has no `chmod`; a file with any other mode is not trusted.
const SEALED_MODE: u32 = 0o400;

/// The file name of the artifact for `key`.
fn artifact_name(key: &ContentHash) -> String {
    format!("{key}.{ARTIFACT_EXT}")
}

/// Opens the entry `name` of `dir` read-only (never following a symlink,
/// never blocking), and checks through the handle that it is a regular
/// file that only the current user can write, and, with `mode`, that it has
/// exactly that mode. `Ok(None)` when it does not exist; `Err` with the
/// reason when it exists but is not to be trusted.
fn open_vetted(dir: BorrowedFd<'_>, name: &str, mode: Option<u32>) -> Result<Option<File>, String> {
    let file = match beneath::open_file(dir, name, OFlags::RDONLY, 0) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW on a symlink fails with ELOOP.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err("is a symlink".into()),
        Err(e) => return Err(e.to_string()),
    };
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    check_owner_and_mode(&metadata)?;
    if let Some(mode) = mode
        && metadata.mode() & 0o7777 != mode
    {
        return Err(format!("mode {:o}, not the {mode:o} mimobox writes", metadata.mode() & 0o7777));
    }
    Ok(Some(file))
}

/// Writes `bytes` to a fresh temp file in `dir`, created exclusively, then
/// renames it to `name`. The temp file is removed on failure. `path` names
/// the final file, for messages.
fn write_atomically(
    dir: BorrowedFd<'_>,
    path: &Path,
    name: &str,
    bytes: &[u8],
    sync: bool,
    mode: u32,
) -> Result<(), CacheError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (temp, mut file) = loop {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let temp =
            format!(".{name}.{}.{nanos}.{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        match beneath::open_file(dir, &temp, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, mode) {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(CacheError::io(path, e)),
        }
    };
    let result = file
        .write_all(bytes)
        .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
        .and_then(|()| beneath::rename(dir, &temp, name));
    if let Err(e) = result {
        let _ = beneath::unlink(dir, &temp);
        return Err(CacheError::io(path, e));
    }
    Ok(())
}
