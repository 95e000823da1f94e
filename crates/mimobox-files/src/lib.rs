//! The host side of a code-interpreter session's files.
//!
//! - **[`Workspace`]** is a private directory pair (`workspace/` and `tmp/`)
//!   made for one session under a base directory that belongs to this user
//!   alone. A `flock` on a lock file beside it lives as long as the
//!   `Workspace`, so after a crash [`Workspace::sweep`] can tell a dead
//!   session's leftovers from a live one and remove them.
//! - **[`GuestFiles`]** reads, writes and lists *guest* paths (such as
//!   `/workspace/data.csv`) with the guest's own confinement: each path is
//!   resolved beneath the directory handle of one [`GuestMount`] by
//!   `openat2(RESOLVE_BENEATH)`, so neither the agent that sends the path nor
//!   the links, FIFOs and huge files the guest may have made can reach
//!   anything outside the mounts.
//!
//! Architecture invariant: nothing here resolves a guest path from the host
//! root, and no final symlink is ever followed.
//!
//! ```
//! use mimobox_files::{GuestFiles, GuestMount, Workspace};
//!
//! let scratch = tempfile::tempdir()?;
//! let session = Workspace::create(&scratch.path().join("sessions"))?;
//! let files = GuestFiles::new(vec![
//!     GuestMount::open("/workspace", session.workspace_dir(), true)?,
//!     GuestMount::open("/tmp", session.tmp_dir(), true)?,
//! ]);
//! files.write("/workspace/hello.txt", b"hi", 1 << 20)?;
//! assert_eq!(files.read("/workspace/hello.txt", 1024)?, b"hi");
//! assert_eq!(files.list("/workspace", 100)?.entries[0].name, "hello.txt");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Linux only: it relies on `openat2` (Linux 5.6) and `flock`.

mod beneath;
mod error;
mod files;
mod guest_path;
mod listing;
mod mount;
mod random;
mod workspace;

pub use error::{FileError, PathProblem};
pub use files::GuestFiles;
pub use guest_path::MAX_PATH_BYTES;
pub use listing::{Entry, EntryKind, Listing};
pub use mount::GuestMount;
pub use workspace::{Workspace, WorkspaceError, default_base};
