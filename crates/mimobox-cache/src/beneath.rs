//! File operations that stay inside the cache directory whatever its
//! contents are.
//!
//! Anything under the cache directory may have been planted by another
//! process of the same user: a symlink where a directory should be, a FIFO
//! where a file should be, a file that never ends. So every operation
//! works from an open directory handle, never from a path:
//!
//! - directories are opened with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS)`, so no symlink on the way is followed;
//! - files are opened by a single name relative to their directory, with
//!   `O_NOFOLLOW | O_NONBLOCK`, then checked through the handle to be
//!   regular files, and read with a bound;
//! - removals and renames name one entry of one open directory, so nothing
//!   outside the cache can be touched.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// Opens the directory `rel` beneath `base` without following any symlink.
pub(crate) fn open_dir(base: BorrowedFd<'_>, rel: impl AsRef<Path>) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat2(
        base,
        rel.as_ref(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Opens the entry `name` of `dir`: never a symlink, never blocking (a FIFO
/// opens at once instead of waiting for a writer).
pub(crate) fn open_file(dir: BorrowedFd<'_>, name: &str, flags: OFlags, mode: u32) -> std::io::Result<File> {
    single(name)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::from_bits_truncate(mode),
    )?;
    Ok(File::from(fd))
}

/// Opens the entry `name` of `dir` for reading, and checks through the
/// handle that it is a regular file.
pub(crate) fn open_regular(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<File> {
    let file = open_file(dir, name, OFlags::RDONLY, 0)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Reads at most `limit` bytes of `file`.
pub(crate) fn read_bounded(file: File, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The entries of `dir` (without `.` and `..`), each with its type as the
/// directory reports it, never following a symlink.
pub(crate) fn list(dir: BorrowedFd<'_>) -> std::io::Result<Vec<(OsString, FileType)>> {
    let mut reader = rustix::fs::Dir::read_from(dir)?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        entries.push((name.to_owned(), entry.file_type()));
    }
    Ok(entries)
}

/// The metadata of the entry `name` of `dir` itself (a symlink is not
/// followed).
pub(crate) fn stat(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<rustix::fs::Stat> {
    single(name)?;
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// Removes the entry `name` of `dir` (a file or a symlink, never what a
/// symlink points to).
pub(crate) fn unlink(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<()> {
    single(name)?;
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Renames the entry `from` of `dir` to `to` in the same directory.
pub(crate) fn rename(dir: BorrowedFd<'_>, from: &str, to: &str) -> std::io::Result<()> {
    single(from)?;
    single(to)?;
    Ok(rustix::fs::renameat(dir, from, dir, to)?)
}

/// Creates the directory `name` in `dir` with mode 0700, if it is missing.
pub(crate) fn make_dir(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<()> {
    single(name)?;
    match rustix::fs::mkdirat(dir, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Opens `path` (the cache directory itself, as the caller named it).
pub(crate) fn open_root(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// The metadata of an open directory or file.
pub(crate) fn metadata(fd: impl AsFd) -> std::io::Result<std::fs::Metadata> {
    File::from(fd.as_fd().try_clone_to_owned()?).metadata()
}

/// Refuses a name that is not one path component.
fn single(name: &str) -> std::io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(std::io::Error::other(format!("`{name}` is not a file name")));
    }
    Ok(())
}
