//! [`ModuleCache`]: the directory of compiled artifacts and fingerprints.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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
/// Default size bound of the cache: 1 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;
/// Artifacts used within this long are not touched again on a hit, which
/// keeps hits free of writes.
const TOUCH_AFTER: Duration = Duration::from_secs(60);
/// How long a file must have been unchanged before its fingerprint is
/// recorded (see [`Fingerprint::is_settled`]).
const DEFAULT_SETTLE: Duration = Duration::from_secs(2);

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
        let metadata = std::fs::metadata(dir).map_err(|e| CacheError::io(dir, e))?;
        check_private_dir(dir, &metadata)?;
        let layout = dir.join(LAYOUT);
        private_subdir(&layout)?;
        private_subdir(&layout.join("modules"))?;
        private_subdir(&layout.join("fingerprints"))?;
        Ok(ModuleCache {
            root: dir.to_owned(),
            layout,
            settle: DEFAULT_SETTLE,
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
        let dir = self.layout.join("modules").join(engine.dir_name());
        if let Err(e) = self.engine_dir(&dir) {
            tracing::debug!("no lock: {e}");
            return LockOutcome::Unavailable;
        }
        lock_exclusive(&dir.join(format!("{key}.lock")), wait)
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
        let appended = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.events_path())
            .and_then(|mut f| f.write_all(event));
        if let Err(e) = appended {
            tracing::debug!("cannot record a cache event: {e}");
        }
    }

    /// Hits and misses recorded so far.
    pub(crate) fn events(&self) -> (u64, u64) {
        let Ok(Some(file)) = open_vetted(&self.events_path(), None) else { return (0, 0) };
        let mut bytes = Vec::new();
        if std::io::Read::read_to_end(&mut std::io::Read::take(file, 64 << 20), &mut bytes).is_err() {
            return (0, 0);
        }
        let hits = bytes.iter().filter(|&&b| b == b'h').count() as u64;
        (hits, bytes.iter().filter(|&&b| b == b'm').count() as u64)
    }

    pub(crate) fn modules_dir(&self) -> PathBuf {
        self.layout.join("modules")
    }

    pub(crate) fn fingerprints_dir(&self) -> PathBuf {
        self.layout.join("fingerprints")
    }

    pub(crate) fn events_path(&self) -> PathBuf {
        self.layout.join(EVENTS_FILE)
    }

    /// Creates (or vets) an engine directory and records its tag.
    fn engine_dir(&self, dir: &Path) -> Result<(), CacheError> {
        private_subdir(dir)?;
        if let Some(tag) = &self.engine_tag {
            let tag_path = dir.join(TAG_FILE);
            if std::fs::symlink_metadata(&tag_path).is_err() {
                write_atomically(&tag_path, tag.as_bytes(), false, 0o600)?;
            }
        }
        Ok(())
    }

    /// The content hash recorded for a file with this fingerprint, if any.
    pub fn hash_for(&self, fingerprint: &Fingerprint) -> Option<ContentHash> {
        let path = self.fingerprint_path(fingerprint);
        let file = open_vetted(&path, Some(SEALED_MODE)).ok()??;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, 128), &mut text).ok()?;
        ContentHash::from_hex(&text)
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
        if let Err(e) = write_atomically(&path, hash.to_string().as_bytes(), false, SEALED_MODE) {
            tracing::debug!("cannot record fingerprint: {e}");
        }
    }

    /// Opens the artifact for `key` compiled by `engine`, if there is a
    /// trustworthy one. An entry that is a symlink or has unsafe ownership
    /// or permissions is removed and reported as absent.
    pub fn artifact(&self, engine: &EngineId, key: &ContentHash) -> Option<Artifact> {
        let path = self.artifact_path(engine, key);
        let file = match open_vetted(&path, Some(SEALED_MODE)) {
            Ok(Some(file)) => file,
            Ok(None) => return None,
            Err(reason) => {
                tracing::warn!("removing untrusted cache entry {}: {reason}", path.display());
                let _ = std::fs::remove_file(&path);
                return None;
            }
        };
        // Pin it, then make sure an eviction did not unlink it between the
        // open and the pin: if so, it is a miss.
        let pin = pin(&file)?;
        let still_there = match (std::fs::symlink_metadata(&path), file.metadata()) {
            (Ok(at_path), Ok(opened)) => at_path.ino() == opened.ino() && at_path.dev() == opened.dev(),
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
        let dir = self.layout.join("modules").join(engine.dir_name());
        self.engine_dir(&dir)?;
        let path = self.artifact_path(engine, key);
        write_atomically(&path, bytes, true, SEALED_MODE)?;
        self.prune_if_over(self.max_size);
        Ok(path)
    }

    /// Removes the artifact for `key` (for example because it failed to
    /// load). Readers that already mapped it keep their mapping.
    pub fn discard(&self, engine: &EngineId, key: &ContentHash) {
        let path = self.artifact_path(engine, key);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::debug!("discarded cache entry {}", path.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove cache entry {}: {e}", path.display()),
        }
    }

    /// The path of the artifact for `key` compiled by `engine`.
    pub fn artifact_path(&self, engine: &EngineId, key: &ContentHash) -> PathBuf {
        self.layout.join("modules").join(engine.dir_name()).join(format!("{key}.{ARTIFACT_EXT}"))
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

/// Opens `path` read-only without following a symlink, and checks that it
/// is a regular file that only the current user can write, and, with
/// `mode`, that it has exactly that mode. `Ok(None)` when it does not
/// exist; `Err` with the reason when it exists but is not to be trusted.
fn open_vetted(path: &Path, mode: Option<u32>) -> Result<Option<File>, String> {
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
    {
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

/// Writes `bytes` to a fresh temp file beside `path`, created exclusively,
/// then renames it into place. The temp file is removed on failure.
fn write_atomically(path: &Path, bytes: &[u8], sync: bool, mode: u32) -> Result<(), CacheError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("cache paths have a parent");
    let name = path.file_name().expect("cache paths have a file name").to_string_lossy();
    let (temp, mut file) = loop {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let temp = dir.join(format!(
            ".{name}.{}.{nanos}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
        {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(CacheError::io(&temp, e)),
        }
    };
    let result = file
        .write_all(bytes)
        .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(CacheError::io(path, e));
    }
    Ok(())
}
