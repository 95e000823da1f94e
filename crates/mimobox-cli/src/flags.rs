//! Layering the config: built-in defaults, then the profile, then flags.

use anyhow::{Context, Result, anyhow, bail};
use mimobox_core::units::{parse_duration, parse_size};
use mimobox_core::{Mount, Profile, SandboxConfig, SandboxError, keys};

use crate::cli::LimitFlags;

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
        let overridden = apply(flags, &mut config)?;
        let resolved = Resolved { config, profile, overridden };
        check(&resolved.config).map_err(|e| resolved.explain(e))?;
        Ok(resolved)
    }

    /// Turns a sandbox error into one that names where the bad value came
    /// from: a flag, or the profile's key and line.
    pub fn explain(&self, error: SandboxError) -> anyhow::Error {
        let Some(key) = error.config_key() else { return error.into() };
        if let Some((_, flag)) = self.overridden.iter().find(|(k, _)| *k == key) {
            return anyhow!("{flag}: {error}");
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

/// Applies the flags over `config` and lists the keys they set.
/// The `--env KEY=VALUE` flags, in order.
pub fn env_pairs(flags: &LimitFlags) -> Result<Vec<(String, String)>> {
    flags
        .envs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
            None => bail!("--env: `{pair}` is not KEY=VALUE"),
        })
        .collect()
}

fn apply(flags: &LimitFlags, config: &mut SandboxConfig) -> Result<Vec<(&'static str, &'static str)>> {
    let mut set = Vec::new();
    if let Some(text) = &flags.timeout {
        config.timeout = parse_duration(text).context("--timeout")?;
        set.push((keys::TIMEOUT, "--timeout"));
    }
    if let Some(text) = &flags.compile_timeout {
        config.compile_timeout = parse_duration(text).context("--compile-timeout")?;
        set.push((keys::COMPILE_TIMEOUT, "--compile-timeout"));
    }
    if let Some(text) = &flags.memory {
        config.memory_limit = parse_size(text).context("--memory")?;
        set.push((keys::MEMORY_LIMIT, "--memory"));
    }
    if let Some(fuel) = flags.fuel {
        config.fuel = Some(fuel);
        set.push((keys::FUEL, "--fuel"));
    }
    if let Some(text) = &flags.max_output {
        let cap = parse_size(text).context("--max-output")?;
        config.max_stdout = cap;
        config.max_stderr = cap;
        set.extend([(keys::MAX_STDOUT, "--max-output"), (keys::MAX_STDERR, "--max-output")]);
    }
    if flags.trap_on_memory_limit {
        config.trap_on_memory_limit = true;
        set.push((keys::TRAP_ON_MEMORY_LIMIT, "--trap-on-memory-limit"));
    }
    if let Some(files) = flags.max_open_files {
        config.max_open_files = files;
        set.push((keys::MAX_OPEN_FILES, "--max-open-files"));
    }
    if let Some(text) = &flags.max_disk_write {
        config.max_disk_write = parse_size(text).context("--max-disk-write")?;
        set.push((keys::MAX_DISK_WRITE, "--max-disk-write"));
    }
    for spec in &flags.ro_dirs {
        config.fs_readonly.push(Mount::parse(spec).map_err(|e| anyhow!("--ro-dir: {e}"))?);
        set.push((keys::FS_READONLY, "--ro-dir"));
    }
    for spec in &flags.dirs {
        config.fs_readwrite.push(Mount::parse(spec).map_err(|e| anyhow!("--dir: {e}"))?);
        set.push((keys::FS_READWRITE, "--dir"));
    }
    for (name, value) in env_pairs(flags)? {
        config.env.insert(name, value);
        set.push((keys::ENV, "--env"));
    }
    if let Some(dir) = &flags.cache_dir {
        config.cache.dir = Some(dir.clone());
        set.push((keys::CACHE_DIR, "--cache-dir"));
    }
    if flags.no_cache {
        config.cache.enabled = false;
        set.push((keys::CACHE_ENABLED, "--no-cache"));
    }
    Ok(set)
}
