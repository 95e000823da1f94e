//! [`CacheError`].

use std::path::PathBuf;

/// Why the cache, or one operation on it, cannot be used. Callers treat
/// every cache error as a miss: a run never fails because of the cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The directory could be planted with code by someone else.
    #[error("cache directory {} is not trusted: {reason}", path.display())]
    Insecure {
        /// The directory or file at fault.
        path: PathBuf,
        /// Why it is not trusted.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("cache {}: {source}", path.display())]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No cache directory could be chosen (no `HOME`, for example).
    #[error("no cache directory: set MIMOBOX_CACHE_DIR, XDG_CACHE_HOME or HOME")]
    NoDirectory,
}

impl CacheError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CacheError::Io { path: path.into(), source }
    }
}
