//! Looking at the cache and keeping it bounded: [`CacheStats`], pruning
//! and clearing.

use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::CacheError;
use crate::lock::{is_locked, open_for_probe};
use crate::store::{ARTIFACT_EXT, ModuleCache, TAG_FILE};

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
                match remove_unless_in_use(&entry.path) {
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
            match remove_unless_in_use(&entry.path) {
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
        let _ = fs::remove_file(self.events_path());
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
        let modules = self.modules_dir();
        let mut entries = Vec::new();
        for engine in read_dir(&modules)? {
            let Ok(meta) = fs::symlink_metadata(&engine) else { continue };
            if !meta.is_dir() {
                continue;
            }
            let tag = fs::read_to_string(engine.join(TAG_FILE)).ok();
            let stale = self.engine_tag().is_some_and(|current| tag.as_deref() != Some(current));
            for path in read_dir(&engine)? {
                if path.extension().is_none_or(|ext| ext != ARTIFACT_EXT) {
                    continue;
                }
                let Ok(meta) = fs::symlink_metadata(&path) else { continue };
                if meta.is_file() {
                    entries.push(Entry { path, size: meta.len(), used: modified(&meta), stale });
                }
            }
        }
        Ok(entries)
    }

    /// Temp files and unlocked lock files that writers left behind.
    fn remove_abandoned(&self) {
        let Ok(engines) = read_dir(&self.modules_dir()) else { return };
        for engine in engines {
            let Ok(files) = read_dir(&engine) else { continue };
            for path in files {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let abandoned = fs::symlink_metadata(&path).is_ok_and(|m| {
                    m.is_file() && modified(&m).elapsed().unwrap_or_default() > ABANDONED_AFTER
                });
                if !abandoned {
                    continue;
                }
                if name.ends_with(".tmp")
                    || (name.ends_with(".lock") && !open_for_probe(&path).is_some_and(|f| is_locked(&f)))
                {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    fn expire_fingerprints(&self, ttl: Duration) {
        let Ok(records) = read_dir(&self.fingerprints_dir()) else { return };
        for path in records {
            if fs::symlink_metadata(&path).is_ok_and(|m| modified(&m).elapsed().unwrap_or_default() >= ttl) {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// Removes `path` unless a process holds a lock on it (a pin of a mapped
/// artifact). Holds the exclusive lock while unlinking, so a reader that
/// opens it meanwhile sees it was evicted and treats it as a miss.
fn remove_unless_in_use(path: &Path) -> std::io::Result<bool> {
    let Some(file) = open_for_probe(path) else { return Ok(true) };
    // SAFETY: `file` owns a valid descriptor for the duration of the call.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(false);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CacheError::io(dir, e)),
    }
}

fn modified(meta: &Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}
