//! Choosing, creating and vetting the cache directory.

use std::fs::{DirBuilder, Metadata};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::os::fd::{AsFd, BorrowedFd};

use crate::beneath;
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
    let uid = rustix::process::geteuid().as_raw();
    if metadata.uid() != uid {
        return Err(format!("owned by uid {}, not by the current user (uid {uid})", metadata.uid()));
    }
    let mode = metadata.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!("writable by group or others (mode {:o})", mode & 0o7777));
    }
    Ok(())
}

/// Creates (if needed) the subdirectory `rel` of the cache directory open
/// at `root`, and vets it: it must be reached without any symlink, and pass
/// [`check_private_dir`]. `path` names it, for messages.
pub(crate) fn private_subdir(root: BorrowedFd<'_>, path: &Path, rel: &str) -> Result<(), CacheError> {
    let (parent, name) = match rel.rsplit_once('/') {
        Some((parent, name)) => (Some(parent), name),
        None => (None, rel),
    };
    let parent_fd = match parent {
        Some(parent) => Some(beneath::open_dir(root, parent).map_err(|e| CacheError::io(path, e))?),
        None => None,
    };
    let parent_fd = parent_fd.as_ref().map_or(root, |fd| fd.as_fd());
    beneath::make_dir(parent_fd, name).map_err(|e| CacheError::io(path, e))?;
    let dir = beneath::open_dir(parent_fd, name).map_err(|e| {
        let insecure = |reason: &str| CacheError::Insecure { path: path.to_owned(), reason: reason.into() };
        match beneath::stat(parent_fd, name).map(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode)) {
            Ok(rustix::fs::FileType::Symlink) => insecure("is a symlink"),
            Ok(rustix::fs::FileType::Directory) => CacheError::io(path, e),
            Ok(_) => insecure("not a directory"),
            Err(_) => CacheError::io(path, e),
        }
    })?;
    let metadata = beneath::metadata(&dir).map_err(|e| CacheError::io(path, e))?;
    check_private_dir(path, &metadata)
}
