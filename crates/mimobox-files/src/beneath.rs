//! Directory-handle operations that never leave the directory they start
//! from.
//!
//! Every multi-component lookup goes through `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`: the kernel
//! refuses `..` past the starting directory, absolute symlinks, `/proc`
//! magic links and mount crossings, whatever the guest has planted. The
//! final step of each operation names a single entry of an open directory,
//! so no path is ever resolved from the host root.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// The resolution rules of every lookup below a mount.
const RESOLVE: ResolveFlags =
    ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS).union(ResolveFlags::NO_XDEV);

/// Opens `rel` beneath `dir`. Symlinks that stay beneath `dir` are followed
/// unless `flags` has `O_NOFOLLOW` (which then refuses only a final one).
pub(crate) fn open(dir: BorrowedFd<'_>, rel: &str, flags: OFlags, mode: u32) -> rustix::io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC;
    let mode = Mode::from_bits_truncate(mode);
    // The kernel answers EAGAIN when a concurrent rename means it cannot
    // prove the result is beneath `dir`; it asks the caller to retry.
    let mut retries = 8;
    loop {
        match rustix::fs::openat2(dir, rel, flags, mode, RESOLVE) {
            Err(Errno::AGAIN) if retries > 0 => retries -= 1,
            result => return result,
        }
    }
}

/// The metadata of the entry `name` of `dir` itself, not of what a symlink
/// points to.
pub(crate) fn lstat(dir: BorrowedFd<'_>, name: impl rustix::path::Arg) -> rustix::io::Result<Stat> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

/// Whether the entry `name` of `dir` is still the file open as `fd` (same
/// device and inode). A lock on a file that was unlinked meanwhile protects
/// nothing.
pub(crate) fn still_named(dir: BorrowedFd<'_>, name: &str, fd: BorrowedFd<'_>) -> bool {
    match (lstat(dir, name), rustix::fs::fstat(fd)) {
        (Ok(named), Ok(open)) => named.st_dev == open.st_dev && named.st_ino == open.st_ino,
        _ => false,
    }
}

/// The names in the directory open as `dir`, without `.` and `..`.
pub(crate) fn names(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<CString>> {
    let mut reader = rustix::fs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(entry) = reader.read() {
        let name = entry?.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Removes the entry `name` of `dir` and, if it is a directory, everything
/// in it. A symlink met anywhere is removed itself, never followed. The
/// depth it can handle is bounded by the open-file limit, as for
/// `std::fs::remove_dir_all`, since each level holds one descriptor.
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &CStr) -> std::io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        // Linux reports a directory as EISDIR.
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    // O_NOFOLLOW: if the directory was swapped for a symlink since the
    // unlink, this fails instead of descending into the link's target.
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for child in names(sub.as_fd())? {
        remove_tree(sub.as_fd(), &child)?;
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
