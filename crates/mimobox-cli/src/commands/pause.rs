//! `mimobox session --pause-to / --resume`: the key that authenticates
//! paused sessions, and their files.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mimobox_core::SandboxConfig;
use mimobox_wasm::{PauseBinding, WasmSandbox};

/// Bytes of a key made on first use; a key file must hold at least this.
const KEY_BYTES: usize = 32;
/// Most bytes of a key file.
const MAX_KEY_FILE: u64 = 4096;

/// What a paused session of this command is bound to: one name for the
/// command's sessions, and the user who runs it.
pub fn binding() -> PauseBinding {
    let euid = rustix::process::geteuid().as_raw();
    PauseBinding { session: "mimobox session".into(), owner: format!("uid {euid}") }
}

/// The key in `given`, else the user's own key beside the cache, made on
/// first use. A key file must be a regular file of this user's, closed to
/// group and others, of at least 32 bytes.
pub fn state_key(given: Option<&Path>, sandbox: &WasmSandbox) -> Result<Vec<u8>> {
    let path = match given {
        Some(path) => path.to_owned(),
        None => default_key_path(sandbox)?,
    };
    if given.is_none() && !path.exists() {
        create_key(&path)?;
    }
    read_state_key(&path)
}

fn default_key_path(sandbox: &WasmSandbox) -> Result<PathBuf> {
    let cache = sandbox
        .config()
        .cache
        .dir
        .clone()
        .or_else(|| std::env::var_os("MIMOBOX_CACHE_DIR").map(PathBuf::from))
        .or_else(|| sandbox.cache().map(|c| c.dir().to_owned()))
        .context("no cache directory to keep the state key beside: give --state-key")?;
    let parent = cache.parent().context("the cache directory has no parent: give --state-key")?;
    Ok(parent.join("mimobox-state.key"))
}

fn create_key(path: &Path) -> Result<()> {
    let mut key = [0u8; KEY_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut key))
        .context("reading /dev/urandom for a state key")?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the state key {}", path.display()))?;
    file.write_all(&key).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", path.display()))
}

/// The key in the key file at `path`, checked as `state_key` checks it.
pub fn read_state_key(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("state key {}", path.display()))?;
    let metadata = file.metadata()?;
    let euid = rustix::process::geteuid().as_raw();
    if !metadata.is_file() {
        bail!("state key {}: not a regular file", path.display());
    }
    if metadata.uid() != euid || metadata.permissions().mode() & 0o077 != 0 {
        bail!("state key {}: must be this user's and closed to group and others (mode 0600)", path.display());
    }
    let mut key = Vec::new();
    file.take(MAX_KEY_FILE + 1).read_to_end(&mut key)?;
    if key.len() < KEY_BYTES || key.len() as u64 > MAX_KEY_FILE {
        bail!("state key {}: must hold 32 to 4096 bytes", path.display());
    }
    Ok(key)
}

/// A paused session's bytes, at most what a session of `config` can hold.
pub fn read_paused(path: &Path, config: &SandboxConfig) -> Result<Vec<u8>> {
    let bound = config
        .memory_limit
        .saturating_add(config.session.workspace.unwrap_or(0).min(config.max_disk_write))
        .saturating_add(64 << 20);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("paused session {}", path.display()))?;
    if !file.metadata()?.is_file() {
        bail!("paused session {}: not a regular file", path.display());
    }
    let mut bytes = Vec::new();
    file.take(bound + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > bound {
        bail!("paused session {}: larger than a session of this profile can be", path.display());
    }
    Ok(bytes)
}

/// Writes `paused` to `path` whole or not at all: a temp file of mode 0600
/// beside it, synced, then renamed over it.
pub fn write_paused(path: &Path, paused: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("--pause-to names no file")?;
    let temp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        file.write_all(paused)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(
            anyhow::Error::new(e).context(format!("writing the paused session to {}", path.display()))
        );
    }
    Ok(())
}
