//! Why a guest file operation was refused or failed.

use crate::guest_path::Shown;
use crate::listing::EntryKind;

/// What is wrong with the text of a guest path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathProblem {
    /// It does not start with `/`.
    #[error("a path must be absolute")]
    NotAbsolute,
    /// It has a `..` component.
    #[error("a path may not contain \"..\"")]
    DotDot,
    /// It contains a NUL byte.
    #[error("a path may not contain a NUL byte")]
    Nul,
    /// It is longer than [`MAX_PATH_BYTES`](crate::MAX_PATH_BYTES).
    #[error("a path may be at most {} bytes", crate::MAX_PATH_BYTES)]
    TooLong,
    /// It names a file, but ends as a directory does (`/` or `/.`).
    #[error("a file's path may not end in \"/\" or \"/.\"")]
    DirectorySuffix,
}

/// Why a [`GuestFiles`](crate::GuestFiles) operation did not happen.
///
/// Every variant carries the guest path as the caller gave it; the message
/// shows it escaped and cut short, on one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The path is malformed; nothing was looked up.
    #[error("{}: {reason}", Shown(.path))]
    InvalidPath {
        /// The guest path.
        path: String,
        /// What is wrong with it.
        reason: PathProblem,
    },
    /// The path is under no mount, or resolving it would leave its mount
    /// (through a symlink, or onto another file system).
    #[error("{}: is outside the session's files", Shown(.path))]
    Outside {
        /// The guest path.
        path: String,
    },
    /// The file, or a directory on the way to it, does not exist.
    #[error("{}: no such file or directory", Shown(.path))]
    NotFound {
        /// The guest path.
        path: String,
    },
    /// A write was asked of a read-only mount.
    #[error("{}: is on a read-only mount", Shown(.path))]
    ReadOnly {
        /// The guest path.
        path: String,
    },
    /// The path names something other than a regular file where one is
    /// needed (reading, or replacing an existing entry).
    #[error("{}: is a {}, not a regular file", Shown(.path), .kind.described())]
    NotRegular {
        /// The guest path.
        path: String,
        /// What it is instead.
        kind: EntryKind,
    },
    /// A listing was asked of something that is not a directory, or a
    /// component on the way is not a directory.
    #[error("{}: {}", Shown(.path), not_a_directory(*.kind))]
    NotADirectory {
        /// The guest path.
        path: String,
        /// What the final component is, when it is the one at fault; `None`
        /// when an earlier component is not a directory.
        kind: Option<EntryKind>,
    },
    /// The file is bigger than the caller's limit; nothing was returned.
    #[error("{}: is {size} bytes, more than the limit of {limit}", Shown(.path))]
    TooLarge {
        /// The guest path.
        path: String,
        /// The size seen: the file's size, or the bytes read so far if it
        /// grew while being read.
        size: u64,
        /// The caller's limit.
        limit: u64,
    },
    /// Writing would use more than the session's remaining write budget;
    /// nothing was created or changed.
    #[error("{}: writing {bytes} bytes is over the disk quota: the session may write {budget} more bytes", Shown(.path))]
    OverQuota {
        /// The guest path.
        path: String,
        /// The bytes asked to be written.
        bytes: u64,
        /// The bytes the session may still write.
        budget: u64,
    },
    /// Any other failure of the host's file system.
    #[error("{}: {source}", Shown(.path))]
    Io {
        /// The guest path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl FileError {
    /// The guest path the operation was given.
    pub fn path(&self) -> &str {
        match self {
            FileError::InvalidPath { path, .. }
            | FileError::Outside { path }
            | FileError::NotFound { path }
            | FileError::ReadOnly { path }
            | FileError::NotRegular { path, .. }
            | FileError::NotADirectory { path, .. }
            | FileError::TooLarge { path, .. }
            | FileError::OverQuota { path, .. }
            | FileError::Io { path, .. } => path,
        }
    }

    /// The error for a failed system call on `path`, named by what the
    /// caller can do about it rather than by errno.
    pub(crate) fn from_errno(path: &str, errno: rustix::io::Errno) -> FileError {
        use rustix::io::Errno;
        let path = path.to_owned();
        match errno {
            Errno::NOENT => FileError::NotFound { path },
            Errno::NOTDIR => FileError::NotADirectory { path, kind: None },
            // RESOLVE_BENEATH and RESOLVE_NO_XDEV refuse with EXDEV a lookup
            // that would leave the mount.
            Errno::XDEV => FileError::Outside { path },
            Errno::ROFS => FileError::ReadOnly { path },
            _ => FileError::Io { path, source: errno.into() },
        }
    }

    /// The error for a failed I/O call on `path`.
    pub(crate) fn io(path: &str, source: std::io::Error) -> FileError {
        FileError::Io { path: path.to_owned(), source }
    }
}

fn not_a_directory(kind: Option<EntryKind>) -> String {
    match kind {
        Some(kind) => format!("is a {}, not a directory", kind.described()),
        None => "a component of the path is not a directory".to_owned(),
    }
}
