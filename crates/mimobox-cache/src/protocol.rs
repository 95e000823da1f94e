//! The get-or-compile protocol: how a caller finds a module in the cache
//! or compiles it into the cache, with other processes doing the same.

use std::fs::File;
use std::time::Duration;

use crate::hash::{ContentHash, EngineId};
use crate::lock::{ArtifactPin, LockOutcome};
use crate::store::ModuleCache;

/// A module found in the cache, or compiled into it.
#[derive(Debug)]
pub enum Fetched<M> {
    /// Mapped from an artifact already in the cache (perhaps one that
    /// another process compiled while this one waited for it).
    Cached(M, ArtifactPin),
    /// Compiled by this call. Pinned when its artifact was stored and
    /// mapped; `None` when the cache could not take it and the module was
    /// built from the compiled bytes instead.
    Compiled(M, Option<ArtifactPin>),
}

impl ModuleCache {
    /// The artifact for `key`, mapped by `map`. An artifact that `map`
    /// rejects (truncated, garbage, another engine's) is removed and is a
    /// miss. A hit is counted.
    pub fn get<M>(
        &self,
        engine: &EngineId,
        key: &ContentHash,
        map: impl Fn(File) -> Result<M, String>,
    ) -> Option<(M, ArtifactPin)> {
        let artifact = self.artifact(engine, key)?;
        match map(artifact.file) {
            Ok(module) => {
                self.record_hit();
                Some((module, artifact.pin))
            }
            Err(reason) => {
                tracing::warn!("discarding unusable cache entry {}: {reason}", artifact.path.display());
                drop(artifact.pin);
                self.discard(engine, key);
                None
            }
        }
    }

    /// Compiles `key` into the cache, so that many processes starting on
    /// the same module compile it once:
    ///
    /// 1. take the key's lock, waiting at most `wait` for another writer;
    ///    if the artifact is there now, use it;
    /// 2. `compile`, count a miss, store the artifact, and `map` it;
    /// 3. if storing or mapping fails, `load` builds the module from the
    ///    compiled bytes: a cache failure never fails the compile.
    ///
    /// Errors are the callbacks' own.
    pub fn get_or_compile<M, E>(
        &self,
        engine: &EngineId,
        key: &ContentHash,
        wait: Duration,
        map: impl Fn(File) -> Result<M, String>,
        compile: impl FnOnce() -> Result<Vec<u8>, E>,
        load: impl FnOnce(&[u8]) -> Result<M, E>,
    ) -> Result<Fetched<M>, E> {
        // Look again once the lock is held, waited for or not: another
        // writer may have stored the artifact and let go between the
        // caller's miss and this lock.
        let _writer = match self.lock(engine, key, wait) {
            LockOutcome::AcquiredAfterWait(lock) | LockOutcome::Acquired(lock) => {
                if let Some((module, pin)) = self.get(engine, key, &map) {
                    tracing::debug!("used the artifact another process compiled");
                    return Ok(Fetched::Cached(module, pin));
                }
                Some(lock)
            }
            LockOutcome::Unavailable => None,
        };
        let artifact = compile()?;
        self.record_miss();
        match self.store(engine, key, &artifact) {
            Ok(_) => {
                if let Some(found) = self.artifact(engine, key) {
                    match map(found.file) {
                        Ok(module) => return Ok(Fetched::Compiled(module, Some(found.pin))),
                        Err(reason) => tracing::warn!("cannot map the artifact just stored: {reason}"),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot store compiled module in the cache: {e}"),
        }
        load(&artifact).map(|module| Fetched::Compiled(module, None))
    }
}
