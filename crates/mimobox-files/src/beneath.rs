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
/// in it. A symlink met anywhere is removed itself, never followed.
///
/// The walk is a loop, not a recursion, and holds two descriptors at a
/// time whatever the depth: it descends into one subdirectory at a time,
/// and climbs back through `..`, checking each time (device and inode)
/// that it came back to the directory it left, so a tree a guest made as
/// deep as its quota allows neither overflows the stack nor runs out of
/// descriptors. It is meant for trees nobody else writes to (a session's,
/// once its guest is gone); a directory swapped meanwhile stops it with an
/// error rather than leading it elsewhere.
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &CStr) -> std::io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        // Linux reports a directory as EISDIR.
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let open_dir = |parent: BorrowedFd<'_>, name: &CStr| {
        // O_NOFOLLOW: a directory swapped for a symlink is not entered.
        rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let top = rustix::fs::fstat(dir)?;
    // The path from `dir` down to the current directory: each step's name
    // and the identity of the directory it was entered from.
    let mut path: Vec<(CString, (u64, u64))> = vec![(name.to_owned(), (top.st_dev, top.st_ino))];
    let mut current = open_dir(dir, name)?;
    loop {
        // The first entry left here: a subdirectory is entered, anything
        // else removed; an empty directory is left for its parent to remove.
        let mut entered = false;
        let mut reader = rustix::fs::Dir::read_from(current.as_fd())?;
        while let Some(entry) = reader.read() {
            let entry = entry?;
            let child = entry.file_name();
            if child.to_bytes() == b"." || child.to_bytes() == b".." {
                continue;
            }
            match rustix::fs::unlinkat(current.as_fd(), child, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => continue,
                Err(Errno::ISDIR) => {}
                Err(e) => return Err(e.into()),
            }
            let here = rustix::fs::fstat(current.as_fd())?;
            let child = child.to_owned();
            let next = open_dir(current.as_fd(), &child)?;
            path.push((child, (here.st_dev, here.st_ino)));
            current = next;
            entered = true;
            break;
        }
        if entered {
            continue;
        }
        // Empty: climb to the parent and remove it from there.
        let (name, parent_id) = path.pop().expect("the path holds the top entry");
        let parent = if path.is_empty() {
            None
        } else {
            let parent = open_dir(current.as_fd(), c"..")?;
            let seen = rustix::fs::fstat(parent.as_fd())?;
            if (seen.st_dev, seen.st_ino) != parent_id {
                return Err(std::io::Error::other("a directory being removed was moved"));
            }
            Some(parent)
        };
        let from = parent.as_ref().map_or(dir, |p| p.as_fd());
        match rustix::fs::unlinkat(from, &name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        match parent {
            Some(parent) => current = parent,
            None => return Ok(()),
        }
    }
}
