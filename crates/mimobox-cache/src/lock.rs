//! Advisory `flock` locks: one writer per key, and pins on artifacts in use.

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::fs::OFlags;

use crate::beneath;

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

pub(crate) fn flock(file: &File, operation: rustix::fs::FlockOperation) -> std::io::Result<()> {
    rustix::fs::flock(file, operation).map_err(std::io::Error::from)
}

fn would_block(error: &std::io::Error) -> bool {
    error.raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// Takes the exclusive lock `name` in `dir` (creating the lock file),
/// waiting at most `wait` for another holder to let go.
pub(crate) fn lock_exclusive(dir: BorrowedFd<'_>, name: &str, wait: Duration) -> LockOutcome {
    let opened = beneath::open_file(dir, name, OFlags::RDWR | OFlags::CREATE, 0o600).and_then(|file| {
        if file.metadata()?.is_file() { Ok(file) } else { Err(std::io::Error::other("not a regular file")) }
    });
    let file = match opened {
        Ok(file) => file,
        Err(e) => {
            tracing::debug!("cannot open lock {name}: {e}");
            return LockOutcome::Unavailable;
        }
    };
    let path = name;
    let started = Instant::now();
    let mut waited = false;
    loop {
        match flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) if waited => return LockOutcome::AcquiredAfterWait(KeyLock { _file: file }),
            Ok(()) => return LockOutcome::Acquired(KeyLock { _file: file }),
            Err(e) if would_block(&e) && started.elapsed() < wait => {
                waited = true;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::debug!("lock {path} not taken: {e}");
                return LockOutcome::Unavailable;
            }
        }
    }
}

/// Pins an open artifact with a shared lock on a duplicate of its
/// descriptor, so the caller can hand the original to the runtime.
pub(crate) fn pin(file: &File) -> Option<ArtifactPin> {
    let duplicate = file.try_clone().ok()?;
    flock(&duplicate, rustix::fs::FlockOperation::NonBlockingLockShared).ok()?;
    Some(ArtifactPin { _file: duplicate })
}

/// Whether some process holds a lock on `file` (pinned artifact, or a
/// writer's key lock). Takes and drops an exclusive lock to find out.
pub(crate) fn is_locked(file: &File) -> bool {
    match flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            let _ = flock(file, rustix::fs::FlockOperation::Unlock);
            false
        }
        Err(_) => true,
    }
}

/// Opens the regular file `name` of `dir` for a lock probe.
pub(crate) fn open_for_probe(dir: BorrowedFd<'_>, name: &str) -> Option<File> {
    beneath::open_regular(dir, name).ok()
}
