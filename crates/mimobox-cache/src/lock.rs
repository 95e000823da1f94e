//! Advisory `flock` locks: one writer per key, and pins on artifacts in use.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// An exclusive lock on one cache key, held while its artifact is being
/// compiled and stored; released on drop, and by the kernel if the process
/// dies, so a killed writer never blocks the key.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

/// A shared lock on an artifact that this process has mapped. Eviction
/// skips artifacts that are pinned by any process.
#[derive(Debug)]
pub struct ArtifactPin {
    _file: File,
}

/// Outcome of waiting for a key lock.
#[derive(Debug)]
pub enum LockOutcome {
    /// The lock was free at once.
    Acquired(KeyLock),
    /// The lock was held by another writer, which has since let it go.
    AcquiredAfterWait(KeyLock),
    /// It was still held when the wait ran out, or locking failed.
    Unavailable,
}

fn flock(file: &File, operation: libc::c_int) -> std::io::Result<()> {
    // SAFETY: `file` owns a valid descriptor for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn would_block(error: &std::io::Error) -> bool {
    error.raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// Takes the exclusive lock at `path` (creating the lock file), waiting at
/// most `wait` for another holder to let go.
pub(crate) fn lock_exclusive(path: &Path, wait: Duration) -> LockOutcome {
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) => {
            tracing::debug!("cannot open lock {}: {e}", path.display());
            return LockOutcome::Unavailable;
        }
    };
    let started = Instant::now();
    let mut waited = false;
    loop {
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) if waited => return LockOutcome::AcquiredAfterWait(KeyLock { _file: file }),
            Ok(()) => return LockOutcome::Acquired(KeyLock { _file: file }),
            Err(e) if would_block(&e) && started.elapsed() < wait => {
                waited = true;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::debug!("lock {} not taken: {e}", path.display());
                return LockOutcome::Unavailable;
            }
        }
    }
}

/// Pins an open artifact with a shared lock on a duplicate of its
/// descriptor, so the caller can hand the original to the runtime.
pub(crate) fn pin(file: &File) -> Option<ArtifactPin> {
    let duplicate = file.try_clone().ok()?;
    flock(&duplicate, libc::LOCK_SH | libc::LOCK_NB).ok()?;
    Some(ArtifactPin { _file: duplicate })
}

/// Whether some process holds a lock on `file` (pinned artifact, or a
/// writer's key lock). Takes and drops an exclusive lock to find out.
pub(crate) fn is_locked(file: &File) -> bool {
    match flock(file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {
            let _ = flock(file, libc::LOCK_UN);
            false
        }
        Err(_) => true,
    }
}

/// Opens `path` for a lock probe without following symlinks.
pub(crate) fn open_for_probe(path: &Path) -> Option<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path).ok()
}
