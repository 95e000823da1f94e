//! Looking at the cache and keeping it bounded: [`CacheStats`], pruning
//! and clearing.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustix::fs::FileType;

use crate::beneath;
use crate::error::CacheError;
use crate::lock::{flock, is_locked, open_for_probe};
use crate::store::{ARTIFACT_EXT, MAX_TAG_LEN, ModuleCache, TAG_FILE};

/// Temp files and lock files older than this belong to writers that died.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);
/// Fingerprint records unused for this long are dropped by a prune.
const FINGERPRINT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the cache holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Compiled artifacts.
    pub entries: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Artifacts of other engine versions or configurations (evicted
    /// first), included in `entries`.
    pub stale_entries: u64,
    /// Their size, included in `bytes`.
    pub stale_bytes: u64,
    /// Artifacts loaded from the cache since the counts were last reset.
    pub hits: u64,
    /// Modules compiled for the cache since the counts were last reset.
    pub misses: u64,
}

/// What a prune or a clear did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Artifacts removed.
    pub removed: u64,
    /// Bytes they took.
    pub freed: u64,
    /// Artifacts kept.
    pub kept: u64,
    /// Bytes they take.
    pub kept_bytes: u64,
    /// Artifacts that would have gone but were in use by a process.
    pub in_use: u64,
}

struct Entry {
    /// The engine directory that holds it, open.
    dir: Arc<OwnedFd>,
    name: String,
    path: PathBuf,
    size: u64,
    used: SystemTime,
    stale: bool,
}

impl ModuleCache {
    /// Counts the artifacts, their size, the stale ones, and the hits and
    /// misses recorded.
    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        let entries = self.entries()?;
        let (hits, misses) = self.events();
        let mut stats = CacheStats { hits, misses, ..CacheStats::default() };
        for entry in entries {
            stats.entries += 1;
            stats.bytes += entry.size;
            if entry.stale {
                stats.stale_entries += 1;
                stats.stale_bytes += entry.size;
            }
        }
        Ok(stats)
    }

    /// Evicts artifacts until the cache holds at most `max_size` bytes:
    /// stale ones first, then the least recently used. Artifacts in use by
    /// any process are never removed. Also removes files left by writers
    /// that died and fingerprint records unused for 30 days.
    pub fn prune(&self, max_size: u64) -> Result<PruneReport, CacheError> {
        let mut entries = self.entries()?;
        // Stale first; within each group, least recently used first.
        entries.sort_by_key(|e| (!e.stale, e.used));
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let mut report = PruneReport::default();
        for entry in entries {
            if total > max_size || entry.stale {
                match remove_unless_in_use(entry.dir.as_fd(), &entry.name) {
                    Ok(true) => {
                        report.removed += 1;
                        report.freed += entry.size;
                        total -= entry.size;
                        continue;
                    }
                    Ok(false) => report.in_use += 1,
                    Err(e) => tracing::warn!("cannot evict {}: {e}", entry.path.display()),
                }
            }
            report.kept += 1;
            report.kept_bytes += entry.size;
        }
        self.remove_abandoned();
        self.expire_fingerprints(FINGERPRINT_TTL);
        Ok(report)
    }

    /// Removes every artifact not in use, every fingerprint record, and the
    /// hit and miss counts.
    pub fn clear(&self) -> Result<PruneReport, CacheError> {
        let mut report = PruneReport::default();
        for entry in self.entries()? {
            match remove_unless_in_use(entry.dir.as_fd(), &entry.name) {
                Ok(true) => {
                    report.removed += 1;
                    report.freed += entry.size;
                }
                _ => {
                    report.in_use += 1;
                    report.kept += 1;
                    report.kept_bytes += entry.size;
                }
            }
        }
        self.remove_abandoned();
        self.expire_fingerprints(Duration::ZERO);
        self.remove_events();
        Ok(report)
    }

    /// Prunes to `max_size` if the cache has grown past it. Called after a
    /// store, on the compiling thread, never on the hot path.
    pub(crate) fn prune_if_over(&self, max_size: u64) {
        let total: u64 = match self.entries() {
            Ok(entries) => entries.iter().map(|e| e.size).sum(),
            Err(_) => return,
        };
        if total > max_size {
            match self.prune(max_size) {
                Ok(report) => tracing::debug!(?report, "pruned the module cache"),
                Err(e) => tracing::warn!("cannot prune the module cache: {e}"),
            }
        }
    }

    fn entries(&self) -> Result<Vec<Entry>, CacheError> {
        let mut entries = Vec::new();
        for (engine, engine_path) in self.engine_dirs()? {
            let tag = beneath::open_regular(engine.as_fd(), TAG_FILE)
                .and_then(|file| beneath::read_bounded(file, MAX_TAG_LEN))
                .ok();
            let stale = self.engine_tag().is_some_and(|current| tag.as_deref() != Some(current.as_bytes()));
            let engine = Arc::new(engine);
            for name in files(engine.as_fd()) {
                if name.rsplit_once('.').is_none_or(|(_, ext)| ext != ARTIFACT_EXT) {
                    continue;
                }
                let Ok(stat) = beneath::stat(engine.as_fd(), &name) else { continue };
                if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                    continue;
                }
                entries.push(Entry {
                    dir: engine.clone(),
                    path: engine_path.join(&name),
                    name,
                    size: stat.st_size as u64,
                    used: mtime(&stat),
                    stale,
                });
            }
        }
        Ok(entries)
    }

    /// The engine directories, opened without following symlinks: an
    /// entry of `v1/modules` that is a symlink or anything but a directory
    /// is passed over.
    fn engine_dirs(&self) -> Result<Vec<(OwnedFd, PathBuf)>, CacheError> {
        let (modules, modules_path) = self.modules_dir();
        let modules = match modules {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CacheError::io(&modules_path, e)),
        };
        let listed = beneath::list(modules.as_fd()).map_err(|e| CacheError::io(&modules_path, e))?;
        Ok(listed
            .into_iter()
            .filter(|(_, kind)| *kind == FileType::Directory || *kind == FileType::Unknown)
            .filter_map(|(name, _)| {
                let name = name.to_str()?.to_owned();
                let dir = beneath::open_dir(modules.as_fd(), &name).ok()?;
                Some((dir, modules_path.join(name)))
            })
            .collect())
    }

    /// Temp files and unlocked lock files that writers left behind.
    fn remove_abandoned(&self) {
        let Ok(engines) = self.engine_dirs() else { return };
        for (engine, _) in engines {
            for name in files(engine.as_fd()) {
                let abandoned = beneath::stat(engine.as_fd(), &name).is_ok_and(|stat| {
                    FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
                        && mtime(&stat).elapsed().unwrap_or_default() > ABANDONED_AFTER
                });
                if !abandoned {
                    continue;
                }
                if name.ends_with(".tmp")
                    || (name.ends_with(".lock")
                        && !open_for_probe(engine.as_fd(), &name).is_some_and(|f| is_locked(&f)))
                {
                    let _ = beneath::unlink(engine.as_fd(), &name);
                }
            }
        }
    }

    fn expire_fingerprints(&self, ttl: Duration) {
        let Ok(records) = self.fingerprints_dir() else { return };
        for name in files(records.as_fd()) {
            if beneath::stat(records.as_fd(), &name)
                .is_ok_and(|stat| mtime(&stat).elapsed().unwrap_or_default() >= ttl)
            {
                let _ = beneath::unlink(records.as_fd(), &name);
            }
        }
    }
}

/// Removes the entry `name` of `dir` unless a process holds a lock on it (a
/// pin of a mapped artifact). Holds the exclusive lock while unlinking, so
/// a reader that opens it meanwhile sees it was evicted and treats it as a
/// miss.
fn remove_unless_in_use(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<bool> {
    let Some(file) = open_for_probe(dir, name) else { return Ok(true) };
    if flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(false);
    }
    match beneath::unlink(dir, name) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// The names of the entries of `dir` that are not directories (files,
/// symlinks and the like; callers check what they need).
fn files(dir: BorrowedFd<'_>) -> Vec<String> {
    beneath::list(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, kind)| *kind != FileType::Directory)
        .filter_map(|(name, _)| name.into_string().ok())
        .collect()
}

fn mtime(stat: &rustix::fs::Stat) -> SystemTime {
    let secs = u64::try_from(stat.st_mtime).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::new(secs, stat.st_mtime_nsec as u32)
}
