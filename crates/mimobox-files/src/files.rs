//! Host-side reads, writes and listings of guest paths, confined as the
//! guest is.
//!
//! Each operation splits the guest path into its mount, the directories on
//! the way and a final name. The directories are opened beneath the
//! mount's handle (symlinks that stay inside are followed); the final name
//! is then used relative to that directory handle with `O_NOFOLLOW`, so a
//! final symlink is never followed, and a FIFO or device is recognised
//! before any byte is read from it.

use std::collections::BinaryHeap;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::beneath;
use crate::error::FileError;
use crate::guest_path;
use crate::listing::{Entry, EntryKind, Listing};
use crate::mount::GuestMount;
use crate::random;

/// The guest's view of its files, for the host: reads, atomic writes and
/// listings of guest paths such as `/workspace/out.csv`.
///
/// Paths are refused, never repaired: they must be absolute, at most
/// [`MAX_PATH_BYTES`](crate::MAX_PATH_BYTES) long, without NUL and without
/// any `..`. A path belongs to the mount whose guest path is its longest
/// component-wise prefix (`/workspacex` is not under `/workspace`); among
/// mounts with the same guest path, the first one given wins. Nothing
/// outside the mounts is ever opened, created or changed, and a final
/// symlink is never followed.
#[derive(Debug)]
pub struct GuestFiles {
    mounts: Vec<GuestMount>,
}

/// A guest path split against its mount: the directories on the way, and
/// the final name (`None` for the mount's root).
struct Resolved<'a> {
    mount: &'a GuestMount,
    parents: Vec<&'a str>,
    name: Option<&'a str>,
}

impl GuestFiles {
    /// The view made of `mounts`.
    pub fn new(mounts: Vec<GuestMount>) -> GuestFiles {
        GuestFiles { mounts }
    }

    /// The mounts, in the order given.
    pub fn mounts(&self) -> &[GuestMount] {
        &self.mounts
    }

    /// Reads the regular file at `guest_path`, at most `max` bytes.
    ///
    /// A file bigger than `max` is [`FileError::TooLarge`] and nothing is
    /// returned; the bound also holds for a file that grows while it is
    /// read. A symlink, directory, FIFO, socket or device is
    /// [`FileError::NotRegular`]; opening never blocks.
    pub fn read(&self, guest_path: &str, max: u64) -> Result<Vec<u8>, FileError> {
        let target = self.resolve(guest_path)?;
        file_path(guest_path)?;
        let parent = open_parent(&target, guest_path)?;
        let Some(name) = target.name else {
            return Err(FileError::NotRegular { path: guest_path.to_owned(), kind: EntryKind::Dir });
        };
        // O_NONBLOCK: a FIFO opens at once instead of waiting for a writer.
        // O_NOCTTY: a terminal never becomes ours. The guest cannot make
        // device nodes, and the type is checked before any read.
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::NOFOLLOW;
        let fd = match beneath::open(parent.as_fd(), name, flags, 0) {
            Ok(fd) => fd,
            // With O_NOFOLLOW on a single name, ELOOP means a final symlink;
            // ENXIO is what opening a socket gives.
            Err(Errno::LOOP) => return Err(not_regular(guest_path, EntryKind::Symlink)),
            Err(Errno::NXIO) => return Err(not_regular(guest_path, EntryKind::Other)),
            Err(e) => return Err(FileError::from_errno(guest_path, e)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| FileError::from_errno(guest_path, e))?;
        let kind = EntryKind::from_mode(stat.st_mode);
        if kind != EntryKind::File {
            return Err(not_regular(guest_path, kind));
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > max {
            return Err(FileError::TooLarge { path: guest_path.to_owned(), size, limit: max });
        }
        // Read one byte past the limit to notice a file that grew since the
        // fstat, without ever holding more than `max + 1` bytes.
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        File::from(fd)
            .take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| FileError::io(guest_path, e))?;
        let read = bytes.len() as u64;
        if read > max {
            return Err(FileError::TooLarge { path: guest_path.to_owned(), size: read, limit: max });
        }
        Ok(bytes)
    }

    /// Replaces the whole content of the file at `guest_path` with `data`,
    /// atomically, and returns the bytes written.
    ///
    /// `data` goes into a fresh temp file (created exclusively with mode
    /// 0600, named `.mimobox-` and random hex, in the same directory), which
    /// is then renamed over the target: readers see the old content or the
    /// new, never a mix. `budget` is what the session may still write;
    /// `data.len() > budget` is [`FileError::OverQuota`] and nothing is
    /// touched. The mount must be writable and the parent directory must
    /// exist. An existing target that is not a regular file (a directory,
    /// FIFO, socket, device, or a symlink, which is never written through)
    /// is [`FileError::NotRegular`]. On any failure the temp file is removed
    /// and the old file, if any, is unchanged.
    pub fn write(&self, guest_path: &str, data: &[u8], budget: u64) -> Result<u64, FileError> {
        let target = self.resolve(guest_path)?;
        file_path(guest_path)?;
        if !target.mount.is_writable() {
            return Err(FileError::ReadOnly { path: guest_path.to_owned() });
        }
        let bytes = data.len() as u64;
        if bytes > budget {
            return Err(FileError::OverQuota { path: guest_path.to_owned(), bytes, budget });
        }
        let Some(name) = target.name else {
            return Err(not_regular(guest_path, EntryKind::Dir));
        };
        let parent = open_parent(&target, guest_path)?;
        match beneath::lstat(parent.as_fd(), name) {
            Ok(stat) => match EntryKind::from_mode(stat.st_mode) {
                EntryKind::File => {}
                kind => return Err(not_regular(guest_path, kind)),
            },
            Err(Errno::NOENT) => {}
            Err(e) => return Err(FileError::from_errno(guest_path, e)),
        }
        // If the guest swaps the target between that check and the rename,
        // confinement still holds: rename replaces the entry itself (never
        // what a symlink points to, never a hard link's other names), and
        // fails on a directory, which removes the temp file.
        let mut temp = TempFile::create(parent.as_fd(), guest_path)?;
        temp.file.write_all(data).map_err(|e| FileError::io(guest_path, e))?;
        // No fsync: a session's files do not outlive a host crash (the
        // workspace is swept), and rename alone makes the switch atomic for
        // readers.
        rustix::fs::renameat(parent.as_fd(), temp.name.as_str(), parent.as_fd(), name).map_err(
            |e| match e {
                Errno::ISDIR => not_regular(guest_path, EntryKind::Dir),
                e => FileError::from_errno(guest_path, e),
            },
        )?;
        temp.renamed = true;
        Ok(bytes)
    }

    /// Lists the directory at `guest_path` (a mount's root too), with at
    /// most `max_entries` entries.
    ///
    /// Entries are sorted by the bytes of their names and exclude `.` and
    /// `..`; each has its kind from `lstat` and, for a regular file, its
    /// size. A directory with more entries gives the first `max_entries` of
    /// them in that order, with [`Listing::truncated`] set; memory stays
    /// bounded by `max_entries` however big the directory is. An entry
    /// removed while the listing is made is left out. A final symlink is
    /// not followed: it is [`FileError::NotADirectory`].
    pub fn list(&self, guest_path: &str, max_entries: usize) -> Result<Listing, FileError> {
        let target = self.resolve(guest_path)?;
        let parent = open_parent(&target, guest_path)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
        let dir = match target.name {
            None => beneath::open(parent.as_fd(), ".", flags, 0)
                .map_err(|e| FileError::from_errno(guest_path, e))?,
            Some(name) => match beneath::open(parent.as_fd(), name, flags, 0) {
                Ok(dir) => dir,
                // Name what is there instead: a symlink gives ENOTDIR or
                // ELOOP here, depending on the order of the kernel's checks.
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    let stat = beneath::lstat(parent.as_fd(), name)
                        .map_err(|e| FileError::from_errno(guest_path, e))?;
                    let kind = Some(EntryKind::from_mode(stat.st_mode));
                    return Err(FileError::NotADirectory { path: guest_path.to_owned(), kind });
                }
                Err(e) => return Err(FileError::from_errno(guest_path, e)),
            },
        };

        let (names, truncated) =
            smallest_names(dir.as_fd(), max_entries).map_err(|e| FileError::from_errno(guest_path, e))?;
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let stat = match beneath::lstat(dir.as_fd(), name.as_c_str()) {
                Ok(stat) => stat,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(FileError::from_errno(guest_path, e)),
            };
            let kind = EntryKind::from_mode(stat.st_mode);
            let bytes = if kind == EntryKind::File { u64::try_from(stat.st_size).unwrap_or(0) } else { 0 };
            entries.push(Entry { name: name.to_string_lossy().into_owned(), kind, bytes });
        }
        Ok(Listing { entries, truncated })
    }

    /// Checks `path` and splits it against the mount it belongs to.
    fn resolve<'a>(&'a self, path: &'a str) -> Result<Resolved<'a>, FileError> {
        let components = guest_path::components(path)
            .map_err(|reason| FileError::InvalidPath { path: path.to_owned(), reason })?;
        let mut best: Option<&GuestMount> = None;
        for mount in &self.mounts {
            let prefix = mount.components();
            let matches =
                prefix.len() <= components.len() && prefix.iter().zip(&components).all(|(a, b)| a == b);
            if matches && best.is_none_or(|b| prefix.len() > b.components().len()) {
                best = Some(mount);
            }
        }
        let Some(mount) = best else {
            return Err(FileError::Outside { path: path.to_owned() });
        };
        let mut parents = components[mount.components().len()..].to_vec();
        let name = parents.pop();
        Ok(Resolved { mount, parents, name })
    }
}

/// Opens the directory holding the target, beneath its mount.
fn open_parent(target: &Resolved<'_>, path: &str) -> Result<OwnedFd, FileError> {
    let rel = if target.parents.is_empty() { ".".to_owned() } else { target.parents.join("/") };
    beneath::open(target.mount.dir(), &rel, OFlags::PATH | OFlags::DIRECTORY, 0)
        .map_err(|e| FileError::from_errno(path, e))
}

fn not_regular(path: &str, kind: EntryKind) -> FileError {
    FileError::NotRegular { path: path.to_owned(), kind }
}

/// The `max` smallest names (by bytes) in `dir`, sorted, and whether there
/// were more. A max-heap of `max` names keeps memory bounded whatever the
/// size of the directory.
fn smallest_names(dir: BorrowedFd<'_>, max: usize) -> rustix::io::Result<(Vec<CString>, bool)> {
    let mut reader = rustix::fs::Dir::read_from(dir)?;
    let mut heap: BinaryHeap<CString> = BinaryHeap::with_capacity(max.min(4096) + 1);
    let mut truncated = false;
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        if heap.len() == max {
            truncated = true;
            // Keep the name only if it sorts before the largest one kept.
            match heap.peek() {
                Some(largest) if name < largest.as_c_str() => {
                    heap.pop();
                }
                _ => continue,
            }
        }
        heap.push(name.to_owned());
    }
    Ok((heap.into_sorted_vec(), truncated))
}

/// A temp file in the target's directory, removed on drop unless it was
/// renamed into place.
struct TempFile<'a> {
    dir: BorrowedFd<'a>,
    name: String,
    file: File,
    renamed: bool,
}

impl<'a> TempFile<'a> {
    fn create(dir: BorrowedFd<'a>, path: &str) -> Result<TempFile<'a>, FileError> {
        // 64 random bits make a collision with a guest-made name unlikely;
        // O_EXCL makes one harmless, and a few retries get past it.
        let mut tries = 0;
        loop {
            let name = format!(".mimobox-{}", random::hex::<8>().map_err(|e| FileError::io(path, e))?);
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
            match beneath::open(dir, &name, flags, 0o600) {
                Ok(fd) => return Ok(TempFile { dir, name, file: File::from(fd), renamed: false }),
                Err(Errno::EXIST) if tries < 8 => tries += 1,
                Err(e) => return Err(FileError::from_errno(path, e)),
            }
        }
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = rustix::fs::unlinkat(self.dir, self.name.as_str(), rustix::fs::AtFlags::empty());
        }
    }
}

/// Refuses a file's path that ends as a directory's does, as POSIX does.
fn file_path(guest_path: &str) -> Result<(), FileError> {
    if guest_path.ends_with('/') || guest_path.ends_with("/.") {
        return Err(FileError::InvalidPath {
            path: guest_path.to_owned(),
            reason: crate::PathProblem::DirectorySuffix,
        });
    }
    Ok(())
}
