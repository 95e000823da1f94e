//! [`ModuleCache`]: the directory of compiled artifacts and fingerprints.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::dir::{check_owner_and_mode, check_private_dir, create_private_dir, private_subdir};
use crate::error::CacheError;
use crate::fingerprint::Fingerprint;
use crate::hash::{ContentHash, EngineId};

/// The layout version; bumped when the layout changes so that old and new
/// builds never read each other's files.
const LAYOUT: &str = "v1";
const ARTIFACT_EXT: &str = "cwasm";
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
}

/// An artifact found in the cache, opened and vetted: a regular file (not
/// a symlink), owned by the current user, writable by no one else.
#[derive(Debug)]
pub struct Artifact {
    /// Where it lives, for messages and for discarding it.
    pub path: PathBuf,
    /// The open file, ready to be mapped.
    pub file: File,
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
        Ok(ModuleCache { root: dir.to_owned(), layout, settle: DEFAULT_SETTLE })
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

    /// The content hash recorded for a file with this fingerprint, if any.
    pub fn hash_for(&self, fingerprint: &Fingerprint) -> Option<ContentHash> {
        let path = self.fingerprint_path(fingerprint);
        let file = open_vetted(&path).ok()??;
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
        if let Err(e) = write_atomically(&path, hash.to_string().as_bytes(), false) {
            tracing::debug!("cannot record fingerprint: {e}");
        }
    }

    /// Opens the artifact for `key` compiled by `engine`, if there is a
    /// trustworthy one. An entry that is a symlink or has unsafe ownership
    /// or permissions is removed and reported as absent.
    pub fn artifact(&self, engine: &EngineId, key: &ContentHash) -> Option<Artifact> {
        let path = self.artifact_path(engine, key);
        match open_vetted(&path) {
            Ok(Some(file)) => Some(Artifact { path, file }),
            Ok(None) => None,
            Err(reason) => {
                tracing::warn!("removing untrusted cache entry {}: {reason}", path.display());
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores an artifact atomically: the bytes go to a temp file of this
    /// writer's own, which is synced and then renamed over the final name.
    /// Concurrent writers of the same key each succeed; one whole artifact
    /// remains.
    pub fn store(&self, engine: &EngineId, key: &ContentHash, bytes: &[u8]) -> Result<PathBuf, CacheError> {
        let dir = self.layout.join("modules").join(engine.dir_name());
        private_subdir(&dir)?;
        let path = self.artifact_path(engine, key);
        write_atomically(&path, bytes, true)?;
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

/// Opens `path` read-only without following a symlink, and checks that it
/// is a regular file that only the current user can write. `Ok(None)` when
/// it does not exist; `Err` with the reason when it exists but is not to
/// be trusted.
fn open_vetted(path: &Path) -> Result<Option<File>, String> {
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
    Ok(Some(file))
}

/// Writes `bytes` to a fresh temp file beside `path`, created exclusively,
/// then renames it into place. The temp file is removed on failure.
fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> Result<(), CacheError> {
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
            .mode(0o600)
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
