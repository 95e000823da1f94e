//! Opening a sandbox's mounts once, as directory handles that later runs
//! reuse without resolving any path again.
//!
//! A path is resolved when the sandbox is created, never per run, so that
//! a symlink planted later (by a guest, in a read-write mount) cannot
//! redirect it. A mount whose host path lies inside another mount's is
//! opened beneath the outer mount's handle with `openat2` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: nothing a guest could have put
//! inside the outer mount can lead it elsewhere. No mount may contain the
//! compiled-module cache or lie inside it, since a guest that can write
//! there could plant native code that later runs in the host.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use mimobox_core::{Mount, SandboxConfig, SandboxError};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use wasmtime_wasi::FsPerms;

/// A mount, opened.
#[derive(Debug)]
pub(crate) struct OpenMount {
    /// The directory, held open for the life of the sandbox.
    dir: OwnedFd,
    /// The directory's path on the host, as the kernel names the open
    /// handle (for messages).
    pub(crate) real: PathBuf,
    /// Where the guest sees it.
    pub(crate) guest: String,
    pub(crate) perms: FsPerms,
}

impl OpenMount {
    /// A path that opens exactly this directory again: the process's own
    /// descriptor of it, so no file-system path is resolved.
    pub(crate) fn handle_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd()))
    }
}

/// Opens every mount of `config` (read-only ones first, each kind in its
/// order, as the guest's descriptors are numbered), refusing one that
/// cannot be opened, is not a directory, reaches another mount's inside
/// through a symlink, or overlaps the module cache.
pub(crate) fn open_mounts(config: &SandboxConfig) -> Result<Vec<OpenMount>, SandboxError> {
    let listed: Vec<(&Mount, FsPerms)> = config
        .fs_readonly
        .iter()
        .map(|m| (m, FsPerms::ReadOnly))
        .chain(config.fs_readwrite.iter().map(|m| (m, FsPerms::ReadWrite)))
        .collect();
    let lexical: Vec<PathBuf> = listed.iter().map(|(m, _)| lexical_absolute(&m.host)).collect();
    let cache = cache_dir(config);

    // Outer mounts are opened before the mounts inside them.
    let mut order: Vec<usize> = (0..listed.len()).collect();
    order.sort_by_key(|&i| lexical[i].components().count());
    let mut opened: Vec<Option<(OwnedFd, PathBuf)>> = (0..listed.len()).map(|_| None).collect();
    for &i in &order {
        let (mount, _) = listed[i];
        let fail = |reason: String| SandboxError::Mount {
            host: mount.host.clone(),
            source: std::io::Error::other(reason),
        };
        // The innermost other mount that contains this one lexically.
        let outer = (0..listed.len())
            .filter(|&j| j != i && lexical[i].starts_with(&lexical[j]) && lexical[i] != lexical[j])
            .max_by_key(|&j| lexical[j].components().count());
        let dir = match outer {
            Some(j) => {
                let (base, _) = opened[j].as_ref().expect("outer mounts are opened first");
                let inside = lexical[i].strip_prefix(&lexical[j]).expect("checked by starts_with");
                rustix::fs::openat2(
                    base,
                    inside,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
                )
                .map_err(|e| {
                    let why = if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::XDEV {
                        "a symlink lies on its path inside another mount".to_owned()
                    } else {
                        std::io::Error::from(e).to_string()
                    };
                    fail(format!("{why} ({})", listed[j].0.host.display()))
                })?
            }
            None => rustix::fs::open(
                &mount.host,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| match e {
                rustix::io::Errno::NOTDIR => fail("not a directory".into()),
                e => SandboxError::Mount { host: mount.host.clone(), source: e.into() },
            })?,
        };
        let real = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .map_err(|e| SandboxError::Mount { host: mount.host.clone(), source: e })?;
        if let Some(cache) = &cache
            && (cache.starts_with(&real) || real.starts_with(cache))
        {
            return Err(fail(format!(
                "overlaps the compiled-module cache {}; a guest could plant code there",
                cache.display()
            )));
        }
        opened[i] = Some((dir, real));
    }
    Ok(listed
        .into_iter()
        .zip(opened)
        .map(|((mount, perms), opened)| {
            let (dir, real) = opened.expect("every mount was opened");
            OpenMount { dir, real, guest: mount.guest.clone(), perms }
        })
        .collect())
}

/// The cache directory runs of this config would use, resolved as far as
/// it exists. Checked even when this sandbox runs without the cache: other
/// runs will use it.
fn cache_dir(config: &SandboxConfig) -> Option<PathBuf> {
    let dir = config.cache.dir.clone().or_else(mimobox_cache::default_dir)?;
    let dir = lexical_absolute(&dir);
    // Resolve the longest existing ancestor, and keep the rest as written.
    let mut missing = Vec::new();
    let mut probe = dir.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(probe) {
            return Some(missing.iter().rev().fold(real, |path: PathBuf, part| path.join(part)));
        }
        missing.push(probe.file_name()?.to_owned());
        probe = probe.parent()?;
    }
}

/// `path` made absolute against the working directory, with `.` and `..`
/// folded without consulting the file system.
fn lexical_absolute(path: &Path) -> PathBuf {
    let joined = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_owned(),
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_paths_fold_dots() {
        assert_eq!(lexical_absolute(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert!(lexical_absolute(Path::new("x")).is_absolute());
    }
}
