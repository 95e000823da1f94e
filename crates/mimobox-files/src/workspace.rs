//! Private per-session directories, cleaned up even after a crash.
//!
//! Layout under a base directory that belongs to this user alone:
//!
//! ```text
//! <base>/<id>.lock      flock'ed exclusively while the session lives
//! <base>/<id>/workspace
//! <base>/<id>/tmp
//! ```
//!
//! The kernel drops a `flock` when its holder dies, however it dies. So a
//! lock file that can be locked without waiting marks a dead session, and
//! [`Workspace::sweep`] removes its tree and then the lock file. The lock
//! file is created before the tree and removed after it, so there is never
//! a tree without a lock file to find it by.

use std::ffi::{OsStr, OsString};
use std::fs::DirBuilder;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::beneath;
use crate::random;

/// Random bytes in a session id (128 bits, 32 hex characters).
const ID_BYTES: usize = 16;
/// How many fresh ids [`Workspace::create`] tries before giving up.
const ID_TRIES: usize = 8;

/// Why a [`Workspace`] could not be made, or a base could not be swept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    /// The base is a symbolic link; it must be a real directory.
    #[error("{}: is a symbolic link; the session base must be a real directory", .path.display())]
    Symlink {
        /// The base directory.
        path: PathBuf,
    },
    /// The base exists but is not a directory.
    #[error("{}: is not a directory", .path.display())]
    NotADirectory {
        /// The base directory.
        path: PathBuf,
    },
    /// The base belongs to another user.
    #[error("{}: belongs to uid {owner}, not to this user (uid {euid})", .path.display())]
    NotOurs {
        /// The base directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The current effective user.
        euid: u32,
    },
    /// The base grants some permission to its group or to others.
    #[error("{}: has mode {mode:04o}; the session base must give no permission to group or others", .path.display())]
    OpenToOthers {
        /// The base directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory above the base could let another user replace it: it
    /// belongs to someone other than this user or root, or others may
    /// write to it and it is not sticky.
    #[error("{}: above the session base, belongs to another user or is writable by others without the sticky bit", .path.display())]
    UnsafeParent {
        /// The directory above the base.
        path: PathBuf,
    },
    /// A file-system call failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// What it was working on.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl From<WorkspaceError> for io::Error {
    /// Keeps the kind of an underlying I/O error; the rest are
    /// [`io::ErrorKind::PermissionDenied`], since they refuse an unsafe base.
    fn from(error: WorkspaceError) -> io::Error {
        let kind = match &error {
            WorkspaceError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, error)
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Io { path: path.to_owned(), source }
}

fn errno_at(path: &Path) -> impl FnOnce(Errno) -> WorkspaceError + '_ {
    move |errno| WorkspaceError::Io { path: path.to_owned(), source: errno.into() }
}

/// A session's private directories, `workspace/` and `tmp/`, removed when
/// it is dropped; if the process dies first, [`Workspace::sweep`] removes
/// them later.
#[derive(Debug)]
pub struct Workspace {
    id: String,
    base: OwnedFd,
    workspace: PathBuf,
    tmp: PathBuf,
    /// Held with an exclusive `flock` for the life of the workspace.
    lock: OwnedFd,
}

impl Workspace {
    /// Creates a new workspace under `base`.
    ///
    /// `base` (and any missing parent) is created with mode 0700 if
    /// missing. It must be a real directory, not a symlink, owned by the
    /// current effective user, with no group or other permission bits; and
    /// each directory above it must belong to this user or root and be
    /// unwritable by others unless sticky (as `/tmp` is), so that no other
    /// user can swap the base for their own. Inside, it makes `<id>/` with
    /// `workspace/` and `tmp/`, all empty with mode 0700, where `<id>` is 32
    /// lowercase hex characters from 128 random bits; and it holds an
    /// exclusive `flock` on `<base>/<id>.lock` (created exclusively, 0600)
    /// until the workspace is dropped.
    pub fn create(base: &Path) -> Result<Workspace, WorkspaceError> {
        let (base_path, base) = prepare_base(base)?;
        for _ in 0..ID_TRIES {
            let id = random::hex::<ID_BYTES>().map_err(io_at(&base_path))?;
            let lock_name = format!("{id}.lock");
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let lock =
                match rustix::fs::openat(&base, lock_name.as_str(), flags, Mode::from_bits_truncate(0o600)) {
                    Ok(lock) => lock,
                    Err(Errno::EXIST) => continue,
                    Err(e) => return Err(errno_at(&base_path)(e)),
                };
            // A concurrent sweep may have locked the new file before us (it
            // then unlinks it), or locked and unlinked it already: either
            // way this id is lost, so try another.
            if rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err()
                || !beneath::still_named(base.as_fd(), &lock_name, lock.as_fd())
            {
                continue;
            }
            match rustix::fs::mkdirat(&base, id.as_str(), Mode::from_bits_truncate(0o700)) {
                Ok(()) => {}
                // A tree without a lock file is not ours to reuse or remove.
                Err(Errno::EXIST) => {
                    let _ = rustix::fs::unlinkat(&base, lock_name.as_str(), AtFlags::empty());
                    continue;
                }
                Err(e) => {
                    let _ = rustix::fs::unlinkat(&base, lock_name.as_str(), AtFlags::empty());
                    return Err(errno_at(&base_path)(e));
                }
            }
            let root = base_path.join(&id);
            let workspace =
                Workspace { id, base, workspace: root.join("workspace"), tmp: root.join("tmp"), lock };
            // From here on, dropping `workspace` cleans up after a failure.
            workspace.make_subdirs().map_err(errno_at(&root))?;
            return Ok(workspace);
        }
        Err(WorkspaceError::Io {
            path: base_path,
            source: io::Error::new(io::ErrorKind::AlreadyExists, "found no unused session id"),
        })
    }

    /// The session id: 32 lowercase hex characters.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The session's `workspace/` directory, `<base>/<id>/workspace`.
    pub fn workspace_dir(&self) -> &Path {
        &self.workspace
    }

    /// The session's `tmp/` directory, `<base>/<id>/tmp`.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Removes the leftovers of dead processes under `base`, and returns how
    /// many sessions were removed.
    ///
    /// Each `<id>.lock` that can be locked without waiting (its holder is
    /// gone) has its `<id>` removed (a tree, never followed through a
    /// symlink; a symlink is just unlinked), then the lock file itself.
    /// Entries whose names are not 32 lowercase hex characters followed by
    /// `.lock` are left alone, and so is an `<id>/` without a lock file. A
    /// missing base is nothing to sweep; an unsafe one (see
    /// [`Workspace::create`]) is an error. Failures on single entries are
    /// skipped, leaving them for a later sweep.
    pub fn sweep(base: &Path) -> io::Result<usize> {
        let base = match open_existing_base(base) {
            Ok(base) => base,
            Err(WorkspaceError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        };
        let mut removed = 0;
        for name in beneath::names(base.as_fd())? {
            let Some(id) = name.to_str().ok().and_then(|n| n.strip_suffix(".lock")) else { continue };
            if random::is_hex(id, 2 * ID_BYTES) && sweep_one(base.as_fd(), id).unwrap_or(false) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn make_subdirs(&self) -> rustix::io::Result<()> {
        let root = rustix::fs::openat(
            &self.base,
            self.id.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for name in ["workspace", "tmp"] {
            rustix::fs::mkdirat(&root, name, Mode::from_bits_truncate(0o700))?;
        }
        Ok(())
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        // The lock file goes only once the tree is gone. If removal failed,
        // the lock file (unlocked as soon as this handle closes) lets a
        // later sweep finish the job.
        let Ok(id) = std::ffi::CString::new(self.id.as_str()) else { return };
        if beneath::remove_tree(self.base.as_fd(), &id).is_ok()
            && beneath::still_named(self.base.as_fd(), &format!("{}.lock", self.id), self.lock.as_fd())
        {
            let _ = rustix::fs::unlinkat(&self.base, format!("{}.lock", self.id), AtFlags::empty());
        }
    }
}

/// Removes the session `id` under `base` if its lock is free. Returns
/// whether it did.
fn sweep_one(base: BorrowedFd<'_>, id: &str) -> io::Result<bool> {
    let lock_name = format!("{id}.lock");
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let lock = rustix::fs::openat(base, lock_name.as_str(), flags, Mode::empty())?;
    if FileType::from_raw_mode(rustix::fs::fstat(&lock)?.st_mode) != FileType::RegularFile {
        return Ok(false);
    }
    if rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(false); // Its session is alive.
    }
    // Another sweeper may have removed this session and its lock file
    // between our open and our lock.
    if !beneath::still_named(base, &lock_name, lock.as_fd()) {
        return Ok(false);
    }
    beneath::remove_tree(base, &std::ffi::CString::new(id)?)?;
    rustix::fs::unlinkat(base, lock_name.as_str(), AtFlags::empty())?;
    Ok(true)
}

/// Makes `base` (and its parents) if missing, checks it and the
/// directories above it, and opens it. Returns its absolute path (with
/// symlinks above it resolved) and its handle.
fn prepare_base(base: &Path) -> Result<(PathBuf, OwnedFd), WorkspaceError> {
    let (parent, name) = split_base(base)?;
    DirBuilder::new().recursive(true).mode(0o700).create(&parent).map_err(io_at(&parent))?;
    // A symlink on the way that another user planted (in a shared,
    // sticky temp directory, say) would move the base where they chose:
    // only links of this user's or root's are followed.
    check_links(&parent)?;
    let parent = std::fs::canonicalize(&parent).map_err(io_at(&parent))?;
    check_ancestors(&parent)?;
    let parent_fd = open_path_dir(&parent)?;
    let path = parent.join(&name);
    match rustix::fs::mkdirat(&parent_fd, name.as_os_str(), Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(errno_at(&path)(e)),
    }
    let fd = open_checked(parent_fd.as_fd(), &name, &path)?;
    Ok((path, fd))
}

/// Checks and opens an existing base, creating nothing.
fn open_existing_base(base: &Path) -> Result<OwnedFd, WorkspaceError> {
    let (parent, name) = split_base(base)?;
    let parent_fd = open_path_dir(&parent)?;
    open_checked(parent_fd.as_fd(), &name, &parent.join(&name))
}

/// `base` made absolute, as its parent and its final name.
fn split_base(base: &Path) -> Result<(PathBuf, OsString), WorkspaceError> {
    let absolute: PathBuf = std::path::absolute(base).map_err(io_at(base))?.components().collect();
    match (absolute.parent(), absolute.components().next_back()) {
        (Some(parent), Some(Component::Normal(name))) => Ok((parent.to_owned(), name.to_owned())),
        _ => Err(WorkspaceError::Io {
            path: base.to_owned(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the session base must end in a directory name",
            ),
        }),
    }
}

fn open_path_dir(path: &Path) -> Result<OwnedFd, WorkspaceError> {
    rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(errno_at(path))
}

/// Opens the base `name` of `parent` and checks, through the handle that
/// will be used, that it is a directory of ours closed to everyone else.
fn open_checked(parent: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<OwnedFd, WorkspaceError> {
    let stat = beneath::lstat(parent, name).map_err(errno_at(path))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => {}
        FileType::Symlink => return Err(WorkspaceError::Symlink { path: path.to_owned() }),
        _ => return Err(WorkspaceError::NotADirectory { path: path.to_owned() }),
    }
    // O_NOFOLLOW: if the directory was swapped for a symlink since the
    // lstat, this fails rather than opening the link's target.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(parent, name, flags, Mode::empty()).map_err(errno_at(path))?;
    let stat = rustix::fs::fstat(&fd).map_err(errno_at(path))?;
    let euid = rustix::process::geteuid().as_raw();
    if stat.st_uid != euid {
        return Err(WorkspaceError::NotOurs { path: path.to_owned(), owner: stat.st_uid, euid });
    }
    if stat.st_mode & 0o077 != 0 {
        return Err(WorkspaceError::OpenToOthers { path: path.to_owned(), mode: stat.st_mode & 0o7777 });
    }
    Ok(fd)
}

/// Refuses a path on which a symlink belongs to another user.
fn check_links(dir: &Path) -> Result<(), WorkspaceError> {
    let euid = rustix::process::geteuid().as_raw();
    for ancestor in dir.ancestors() {
        let meta = std::fs::symlink_metadata(ancestor).map_err(io_at(ancestor))?;
        if meta.file_type().is_symlink() && meta.uid() != euid && meta.uid() != 0 {
            return Err(WorkspaceError::UnsafeParent { path: ancestor.to_owned() });
        }
    }
    Ok(())
}

/// Checks that no directory from `dir` up to the root lets another user
/// replace what is below it.
fn check_ancestors(dir: &Path) -> Result<(), WorkspaceError> {
    let euid = rustix::process::geteuid().as_raw();
    for ancestor in dir.ancestors() {
        let meta = std::fs::metadata(ancestor).map_err(io_at(ancestor))?;
        let owner_ok = meta.uid() == euid || meta.uid() == 0;
        let others_write = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        if !owner_ok || (others_write && !sticky) {
            return Err(WorkspaceError::UnsafeParent { path: ancestor.to_owned() });
        }
    }
    Ok(())
}

/// The default base for workspaces: `$XDG_RUNTIME_DIR/mimobox/sessions`
/// when `XDG_RUNTIME_DIR` is set, absolute and a directory (it is private
/// to the user and cleared at logout); else
/// `<temp dir>/mimobox-<euid>/sessions`.
///
/// The directory above `sessions` is created with mode 0700 if missing
/// (errors are left for [`Workspace::create`] to report); `sessions` itself
/// is created by [`Workspace::create`].
pub fn default_base() -> PathBuf {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    let runtime = runtime.filter(|dir| dir.is_absolute() && dir.is_dir());
    let euid = rustix::process::geteuid().as_raw();
    let (parent, base) = choose_base(runtime.as_deref(), &std::env::temp_dir(), euid);
    let _ = DirBuilder::new().recursive(true).mode(0o700).create(parent);
    base
}

/// The parent to create and the base, given a usable runtime directory (if
/// any), the temp directory and the effective user.
fn choose_base(runtime: Option<&Path>, temp: &Path, euid: u32) -> (PathBuf, PathBuf) {
    let parent = match runtime {
        Some(runtime) => runtime.join("mimobox"),
        None => temp.join(format!("mimobox-{euid}")),
    };
    let base = parent.join("sessions");
    (parent, base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_base_prefers_the_runtime_dir() {
        let (parent, base) = choose_base(Some(Path::new("/run/user/1000")), Path::new("/tmp"), 1000);
        assert_eq!(parent, Path::new("/run/user/1000/mimobox"));
        assert_eq!(base, Path::new("/run/user/1000/mimobox/sessions"));
    }

    #[test]
    fn default_base_falls_back_to_a_per_user_temp_dir() {
        let (parent, base) = choose_base(None, Path::new("/tmp"), 1000);
        assert_eq!(parent, Path::new("/tmp/mimobox-1000"));
        assert_eq!(base, Path::new("/tmp/mimobox-1000/sessions"));
    }

    #[test]
    fn split_base_refuses_a_base_without_a_name() {
        assert!(split_base(Path::new("/")).is_err());
        assert!(split_base(Path::new("/tmp/x/..")).is_err());
        let (parent, name) = split_base(Path::new("/tmp/x/./")).unwrap();
        assert_eq!((parent.as_path(), name.as_os_str()), (Path::new("/tmp"), OsStr::new("x")));
    }
}
