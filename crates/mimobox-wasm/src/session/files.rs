//! Files in and out of a live session: reads, writes and listings of its
//! guest paths, with the guest's own rules (see `mimobox-files`), and the
//! session's private workspace.

use std::sync::Once;

use mimobox_core::SandboxError;
use mimobox_files::{FileError, GuestFiles, GuestMount, Listing, Workspace};
use wasmtime_wasi::FsPerms;

use super::WasmSession;
use crate::WasmSandbox;

/// What creating a file costs the quota, as for the guest's own files.
const ENTRY_COST: u64 = crate::guest::wasi_rules::ENTRY_CHARGE;
/// Most entries a listing returns; it says when there were more.
const MAX_LISTING: usize = 10_000;

/// Why a file operation on a session was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileOpError {
    /// The session cannot take it (it has ended, say).
    Session(SandboxError),
    /// The path or the file breaks a rule, or the file system said no.
    File(FileError),
}

impl std::fmt::Display for FileOpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileOpError::Session(e) => e.fmt(f),
            FileOpError::File(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FileOpError {}

impl From<SandboxError> for FileOpError {
    fn from(e: SandboxError) -> FileOpError {
        FileOpError::Session(e)
    }
}

impl From<FileError> for FileOpError {
    fn from(e: FileError) -> FileOpError {
        FileOpError::File(e)
    }
}

impl WasmSandbox {
    /// A new private workspace for a session, if the config asks for one.
    /// The first in a process removes what dead processes left behind.
    pub(super) fn new_workspace(&self) -> Result<Option<Workspace>, SandboxError> {
        if self.config().session.workspace.is_none() {
            return Ok(None);
        }
        static SWEPT: Once = Once::new();
        let base = mimobox_files::default_base();
        SWEPT.call_once(|| {
            if let Ok(removed) = Workspace::sweep(&base)
                && removed > 0
            {
                tracing::debug!("removed {removed} workspaces that ended sessions left behind");
            }
        });
        Workspace::create(&base).map(Some).map_err(|e| SandboxError::Workspace {
            message: mimobox_core::text::one_line_bounded(&e.to_string()),
        })
    }
}

impl WasmSession {
    /// Writes `data` as the whole content of the file at the guest path
    /// `path`, atomically: in the session's workspace, `/tmp` or a
    /// read-write mount. The bytes count against the session's disk quota;
    /// a write over it changes nothing.
    pub fn write_file(&mut self, path: &str, data: &[u8]) -> Result<u64, FileOpError> {
        self.usable()?;
        // The entry costs what a file the guest creates costs.
        let left = self.store.data().files.disk_left();
        if left < ENTRY_COST {
            return Err(FileError::OverQuota {
                path: path.to_owned(),
                bytes: data.len() as u64 + ENTRY_COST,
                budget: left,
            }
            .into());
        }
        let written = self.files()?.write(path, data, left - ENTRY_COST)?;
        self.store.data_mut().files.spend(written + ENTRY_COST);
        Ok(written)
    }

    /// Reads the file at the guest path `path` (read-only mounts too), at
    /// most `session.max_file_read` bytes.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, FileOpError> {
        self.usable()?;
        let max = self.sandbox.config().session.max_file_read;
        Ok(self.files()?.read(path, max)?)
    }

    /// Lists the directory at the guest path `path`.
    pub fn list_files(&mut self, path: &str) -> Result<Listing, FileOpError> {
        self.usable()?;
        Ok(self.files()?.list(path, MAX_LISTING)?)
    }

    /// The guest's file view, opened on first use: the workspace, then the
    /// sandbox's mounts, as the guest sees them.
    fn files(&mut self) -> Result<&GuestFiles, FileOpError> {
        if self.files.is_none() {
            let open_error = |guest: &str, e: std::io::Error| {
                FileOpError::Session(SandboxError::Workspace {
                    message: mimobox_core::text::one_line_bounded(&format!("cannot open {guest}: {e}")),
                })
            };
            let mut mounts = Vec::new();
            if let Some(workspace) = &self.workspace {
                for (guest, dir) in [("/workspace", workspace.workspace_dir()), ("/tmp", workspace.tmp_dir())]
                {
                    mounts.push(GuestMount::open(guest, dir, true).map_err(|e| open_error(guest, e))?);
                }
            }
            for mount in &self.sandbox.inner.mounts {
                let writable = mount.perms != FsPerms::ReadOnly;
                mounts.push(
                    GuestMount::open(&mount.guest, &mount.handle_path(), writable)
                        .map_err(|e| open_error(&mount.guest, e))?,
                );
            }
            self.files = Some(GuestFiles::new(mounts));
        }
        Ok(self.files.as_ref().expect("opened above"))
    }
}
