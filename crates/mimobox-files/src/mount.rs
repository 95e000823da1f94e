//! One directory of the host, as the guest sees it.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::guest_path;

/// A host directory that the guest sees at an absolute guest path, such as
/// `/workspace`, either read-write or read-only.
///
/// The directory is opened once, here; every later lookup starts from this
/// handle, so renaming or replacing `host_dir` afterwards changes nothing.
pub struct GuestMount {
    /// The guest path, normalised: `/` followed by the components joined by
    /// `/` (just `/` for a mount at the root).
    guest: String,
    components: Vec<String>,
    dir: OwnedFd,
    writable: bool,
}

impl GuestMount {
    /// Opens `host_dir` as the mount at guest path `guest`.
    ///
    /// `guest` must be absolute and free of `..` (empty and `.` components
    /// are dropped). `host_dir` is the host's choice, so symlinks in it are
    /// followed; it must be a directory.
    pub fn open(guest: &str, host_dir: &Path, writable: bool) -> std::io::Result<GuestMount> {
        let components = guest_path::components(guest).map_err(|problem| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("mount point {guest:?}: {problem}"))
        })?;
        // O_PATH: the handle is only ever a starting point for lookups, so it
        // needs no read permission and can never be read from by mistake.
        let dir =
            rustix::fs::open(host_dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let components: Vec<String> = components.into_iter().map(str::to_owned).collect();
        let guest = format!("/{}", components.join("/"));
        Ok(GuestMount { guest, components, dir, writable })
    }

    /// The normalised guest path of the mount, such as `/workspace`.
    pub fn guest_path(&self) -> &str {
        &self.guest
    }

    /// Whether the guest (and [`GuestFiles::write`](crate::GuestFiles::write))
    /// may write here.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The components of the guest path.
    pub(crate) fn components(&self) -> &[String] {
        &self.components
    }

    /// The directory handle every lookup starts from.
    pub(crate) fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

impl fmt::Debug for GuestMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestMount").field("guest", &self.guest).field("writable", &self.writable).finish()
    }
}
