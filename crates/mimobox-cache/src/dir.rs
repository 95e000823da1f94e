//! Choosing, creating and vetting the cache directory.

use std::fs::{DirBuilder, Metadata};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::CacheError;

/// The cache directory to use when the config names none:
/// `MIMOBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/mimobox`, else
/// `$HOME/.cache/mimobox`.
pub fn default_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty("MIMOBOX_CACHE_DIR") {
        return Some(dir);
    }
    if let Some(xdg) = non_empty("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("mimobox"));
    }
    non_empty("HOME").map(|home| home.join(".cache").join("mimobox"))
}

/// Creates `path` (mode 0700) and its parents if missing.
pub(crate) fn create_private_dir(path: &Path) -> Result<(), CacheError> {
    DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| CacheError::io(path, e))
}

/// Refuses a directory that someone else could write into: it must be a
/// directory, owned by the effective user, and not writable by group or
/// others.
pub(crate) fn check_private_dir(path: &Path, metadata: &Metadata) -> Result<(), CacheError> {
    let insecure = |reason: String| CacheError::Insecure { path: path.to_owned(), reason };
    if !metadata.is_dir() {
        return Err(insecure("not a directory".into()));
    }
    check_owner_and_mode(metadata).map_err(insecure)
}

/// The ownership and permission rule shared by directories and artifacts.
pub(crate) fn check_owner_and_mode(metadata: &Metadata) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if metadata.uid() != uid {
        return Err(format!("owned by uid {}, not by the current user (uid {uid})", metadata.uid()));
    }
    let mode = metadata.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!("writable by group or others (mode {:o})", mode & 0o7777));
    }
    Ok(())
}

/// Opens (creating if needed) a subdirectory of the cache, refusing a
/// symlink or a directory that fails [`check_private_dir`].
pub(crate) fn private_subdir(path: &Path) -> Result<(), CacheError> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) => {
            if metadata.file_type().is_symlink() {
                return Err(CacheError::Insecure { path: path.to_owned(), reason: "is a symlink".into() });
            }
            check_private_dir(path, &metadata)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => Ok(()),
                // Another process created it first; vet what is there.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => private_subdir(path),
                Err(e) => Err(CacheError::io(path, e)),
            }
        }
        Err(e) => Err(CacheError::io(path, e)),
    }
}
