//! Layering the config: built-in defaults, then the profile, then flags.

use anyhow::{Result, anyhow};
use mimobox_core::{Profile, SandboxConfig, SandboxError, keys};

use crate::cli::{LimitFlags, flag};

/// A config resolved from defaults, a profile and flags, remembering where
/// each value came from so that an error can point at its source.
pub struct Resolved {
    pub config: SandboxConfig,
    pub profile: Option<Profile>,
    /// Profile keys that a flag overrode, with the flag's name.
    overridden: Vec<(&'static str, &'static str)>,
}

impl Resolved {
    /// Builds the config and checks it with `check` (the backend's own
    /// validation), pointing any error at the flag or profile line at fault.
    pub fn new(
        flags: &LimitFlags,
        check: impl Fn(&SandboxConfig) -> Result<(), SandboxError>,
    ) -> Result<Self> {
        let profile = match &flags.profile {
            Some(path) => Some(Profile::load(path).map_err(|e| anyhow!("profile {e}"))?),
            None => None,
        };
        let mut config = profile.as_ref().map(|p| p.config().clone()).unwrap_or_default();
        let overridden = apply(flags, &mut config);
        let resolved = Resolved { config, profile, overridden };
        check(&resolved.config).map_err(|e| resolved.explain(e))?;
        Ok(resolved)
    }

    /// Turns a sandbox error into one that names where the bad value came
    /// from: a flag, or the profile's key and line.
    pub fn explain(&self, error: SandboxError) -> anyhow::Error {
        let Some(key) = error.config_key() else { return error.into() };
        if let Some((_, flag)) = self.overridden.iter().find(|(k, _)| *k == key) {
            return anyhow!("--{flag}: {error}");
        }
        if let Some(profile) = &self.profile
            && profile.sets(key)
        {
            let located = match &error {
                SandboxError::Config(e) => profile.config_error(e),
                SandboxError::Unsupported { key, reason } => {
                    profile.config_error(&mimobox_core::ConfigError::new(key.clone(), reason))
                }
                _ => return error.into(),
            };
            return anyhow!("profile {located}");
        }
        error.into()
    }
}

/// Applies the flags over `config` and lists the keys they set, with the
/// flag that set each.
fn apply(flags: &LimitFlags, config: &mut SandboxConfig) -> Vec<(&'static str, &'static str)> {
    let mut set = Vec::new();
    if let Some(timeout) = flags.timeout {
        config.timeout = timeout;
        set.push((keys::TIMEOUT, flag::TIMEOUT));
    }
    if let Some(timeout) = flags.compile_timeout {
        config.compile_timeout = timeout;
        set.push((keys::COMPILE_TIMEOUT, flag::COMPILE_TIMEOUT));
    }
    if let Some(memory) = flags.memory {
        config.memory_limit = memory;
        set.push((keys::MEMORY_LIMIT, flag::MEMORY));
    }
    if let Some(fuel) = flags.fuel {
        config.fuel = Some(fuel);
        set.push((keys::FUEL, flag::FUEL));
    }
    if let Some(cap) = flags.max_output {
        config.max_stdout = cap;
        config.max_stderr = cap;
        set.extend([(keys::MAX_STDOUT, flag::MAX_OUTPUT), (keys::MAX_STDERR, flag::MAX_OUTPUT)]);
    }
    if flags.trap_on_memory_limit {
        config.trap_on_memory_limit = true;
        set.push((keys::TRAP_ON_MEMORY_LIMIT, flag::TRAP_ON_MEMORY_LIMIT));
    }
    if let Some(files) = flags.max_open_files {
        config.max_open_files = files;
        set.push((keys::MAX_OPEN_FILES, flag::MAX_OPEN_FILES));
    }
    if let Some(bytes) = flags.max_disk_write {
        config.max_disk_write = bytes;
        set.push((keys::MAX_DISK_WRITE, flag::MAX_DISK_WRITE));
    }
    for mount in &flags.ro_dirs {
        config.fs_readonly.push(mount.clone());
        set.push((keys::FS_READONLY, flag::RO_DIR));
    }
    for mount in &flags.dirs {
        config.fs_readwrite.push(mount.clone());
        set.push((keys::FS_READWRITE, flag::DIR));
    }
    for (name, value) in &flags.envs {
        config.env.insert(name.clone(), value.clone());
        set.push((keys::ENV, flag::ENV));
    }
    if let Some(dir) = &flags.cache_dir {
        config.cache.dir = Some(dir.clone());
        set.push((keys::CACHE_DIR, flag::CACHE_DIR));
    }
    if flags.no_cache {
        config.cache.enabled = false;
        set.push((keys::CACHE_ENABLED, flag::NO_CACHE));
    }
    set
}
