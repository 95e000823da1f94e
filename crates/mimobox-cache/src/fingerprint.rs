//! [`Fingerprint`]: recognising an unchanged module file without reading it.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// The identity and change state of a file: device, inode, size,
/// modification time and status-change time.
///
/// Two different files never share a fingerprint (device and inode differ),
/// and a file rewritten in place has a new change time even when its size
/// and modification time are restored, because no unprivileged call can set
/// the change time back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Fingerprint {
    /// Reads the fingerprint from a file's metadata.
    pub fn of(metadata: &Metadata) -> Fingerprint {
        Fingerprint {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.len(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec()),
            ctime_ns: i128::from(metadata.ctime()) * 1_000_000_000 + i128::from(metadata.ctime_nsec()),
        }
    }

    /// Whether the file changed too recently for its timestamps to tell a
    /// later rewrite apart. File systems stamp times from a coarse clock
    /// (ticks of milliseconds, a whole second on some), so a file rewritten
    /// within the same tick can keep the same times. Such a fingerprint is
    /// not recorded until the file has been still for `settle`.
    pub fn is_settled(&self, now: SystemTime, settle: Duration) -> bool {
        let now_ns = match now.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(_) => return false,
        };
        let newest = self.mtime_ns.max(self.ctime_ns);
        now_ns - newest >= settle.as_nanos() as i128
    }

    /// The file name under which this fingerprint's content hash is kept.
    pub(crate) fn file_name(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [self.dev as i128, self.ino as i128, self.size as i128, self.mtime_ns, self.ctime_ns] {
            hasher.update(part.to_le_bytes());
        }
        hasher.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}
