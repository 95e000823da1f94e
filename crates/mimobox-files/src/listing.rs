//! What a directory listing returns.

use std::fmt;

/// What a directory entry is, as `lstat` reports it (a symlink is not
/// followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else: a FIFO, a socket or a device.
    Other,
}

impl EntryKind {
    /// The kind as one lowercase word: `"file"`, `"dir"`, `"symlink"` or
    /// `"other"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Other => "other",
        }
    }

    /// The kind of a file with the raw `st_mode` `mode`.
    pub(crate) fn from_mode(mode: u32) -> EntryKind {
        use rustix::fs::FileType;
        match FileType::from_raw_mode(mode) {
            FileType::RegularFile => EntryKind::File,
            FileType::Directory => EntryKind::Dir,
            FileType::Symlink => EntryKind::Symlink,
            _ => EntryKind::Other,
        }
    }

    /// The kind in words, for messages.
    pub(crate) fn described(self) -> &'static str {
        match self {
            EntryKind::File => "regular file",
            EntryKind::Dir => "directory",
            EntryKind::Symlink => "symbolic link (never followed here)",
            EntryKind::Other => "FIFO, socket or device",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name; a name that is not valid UTF-8 is given lossily
    /// (with U+FFFD in place of the bad bytes).
    pub name: String,
    /// What the entry is, without following a symlink.
    pub kind: EntryKind,
    /// The size of a regular file in bytes; 0 for every other kind.
    pub bytes: u64,
}

/// A directory listing, bounded by the caller's maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The entries, sorted by the bytes of their names; when the directory
    /// has more than the maximum, these are the first ones in that order.
    pub entries: Vec<Entry>,
    /// Whether the directory had more entries than the maximum, so that some
    /// were left out.
    pub truncated: bool,
}
