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

/// Most entries [`read_only_fingerprint`] walks; past it, the build of a
/// preload checkpoint is refused rather than keyed on part of its inputs.
pub(crate) const MAX_FINGERPRINT_ENTRIES: usize = 200_000;

/// A fingerprint of everything in the read-only mounts, as seen through
/// their held handles: each entry's path, type, size, inode, modification
/// and change times (the change time moves on every write, rename or
/// `chmod`, and cannot be set back). A preload's checkpoint is keyed on it,
/// so a file the preload could have read that is replaced or rewritten
/// makes a new checkpoint. Symlinks are not followed (their target is
/// read, and the guest cannot follow one out of its mount anyway).
pub(crate) fn read_only_fingerprint(mounts: &[OpenMount]) -> Result<String, String> {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    let mut left = MAX_FINGERPRINT_ENTRIES;
    for mount in mounts.iter().filter(|m| m.perms == FsPerms::ReadOnly) {
        hash.update(mount.guest.as_bytes());
        hash.update([0]);
        let dir = rustix::fs::openat(
            &mount.dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("{}: {e}", mount.real.display()))?;
        walk(dir, &mut Vec::new(), &mut hash, &mut left, 0)
            .map_err(|e| format!("{}: {e}", mount.real.display()))?;
    }
    Ok(format!("{:x}", hash.finalize()))
}

/// Deepest directory [`read_only_fingerprint`] walks into; deeper, the
/// build is refused (each level holds a descriptor while it is walked).
pub(crate) const MAX_FINGERPRINT_DEPTH: usize = 128;

fn walk(
    dir: OwnedFd,
    path: &mut Vec<u8>,
    hash: &mut sha2::Sha256,
    left: &mut usize,
    depth: usize,
) -> Result<(), String> {
    use sha2::Digest;
    if depth > MAX_FINGERPRINT_DEPTH {
        return Err(format!("directories nested deeper than {MAX_FINGERPRINT_DEPTH}"));
    }
    let too_many = || format!("more than {MAX_FINGERPRINT_ENTRIES} entries");
    let mut names = Vec::new();
    // An entry that cannot be read is keyed by its error: the guest cannot
    // read it either, and a later change to what can be read still shows.
    match rustix::fs::Dir::read_from(&dir) {
        Ok(entries) => {
            for entry in entries {
                match entry {
                    Ok(entry) => {
                        let name = entry.file_name().to_bytes();
                        if name != b"." && name != b".." {
                            if names.len() >= *left {
                                return Err(too_many());
                            }
                            names.push(name.to_vec());
                        }
                    }
                    Err(e) => {
                        hash.update(format!("{}: {e}\0", String::from_utf8_lossy(path)).as_bytes());
                        break;
                    }
                }
            }
        }
        Err(e) => hash.update(format!("{}: {e}\0", String::from_utf8_lossy(path)).as_bytes()),
    }
    // The directory's own order is the file system's: sort for one answer.
    names.sort();
    for name in names {
        if *left == 0 {
            return Err(too_many());
        }
        *left -= 1;
        let end = path.len();
        path.extend_from_slice(&name);
        hash.update(&*path);
        hash.update([0]);
        match rustix::fs::statat(&dir, name.as_slice(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => {
                for field in [
                    u64::from(stat.st_mode),
                    stat.st_size as u64,
                    stat.st_ino,
                    stat.st_mtime as u64,
                    stat.st_mtime_nsec,
                    stat.st_ctime as u64,
                    stat.st_ctime_nsec,
                ] {
                    hash.update(field.to_le_bytes());
                }
                if rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory {
                    match rustix::fs::openat(
                        &dir,
                        name.as_slice(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(inner) => {
                            path.push(b'/');
                            walk(inner, path, hash, left, depth + 1)?;
                        }
                        Err(e) => hash.update(format!(": {e}\0").as_bytes()),
                    }
                }
            }
            // Gone since it was listed, or unreadable: its error is its key.
            Err(e) => hash.update(format!(": {e}\0").as_bytes()),
        }
        path.truncate(end);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_paths_fold_dots() {
        assert_eq!(lexical_absolute(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert!(lexical_absolute(Path::new("x")).is_absolute());
    }

    fn fingerprint_of(dir: &Path) -> Result<String, String> {
        let config = SandboxConfig {
            fs_readonly: vec![Mount::parse(&format!("{}::/data", dir.display())).unwrap()],
            ..SandboxConfig::default()
        };
        read_only_fingerprint(&open_mounts(&config).unwrap())
    }

    #[test]
    fn the_fingerprint_follows_what_the_mount_holds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), "one").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let first = fingerprint_of(dir.path()).unwrap();
        assert_eq!(fingerprint_of(dir.path()).unwrap(), first, "the same tree, the same key");
        std::fs::write(dir.path().join("sub/a.txt"), "two!").unwrap();
        assert_ne!(fingerprint_of(dir.path()).unwrap(), first, "a file deep inside changed");
    }

    #[test]
    fn a_tree_too_deep_is_refused_not_walked_without_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_owned();
        for _ in 0..=MAX_FINGERPRINT_DEPTH + 1 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        let error = fingerprint_of(dir.path()).unwrap_err();
        assert!(error.contains("deeper than"), "{error}");
    }
}
