//! [`SandboxConfig`]: every limit and grant of a sandbox, with safe defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::grants::{self, CommandTool};
use crate::keys;
use crate::serde_units;
use crate::session::SessionConfig;

/// Default linear-memory limit: 64 MiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 << 20;
/// Default wall-clock limit of one execution: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on each captured output stream: 1 MiB.
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 20;
/// Default bound on compiling one module: 120 s.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default largest module file accepted: 100 MiB. Larger files are refused
/// before they are read.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 100 << 20;
/// Default most files a guest may hold open at once: 1024.
pub const DEFAULT_MAX_OPEN_FILES: u32 = 1024;
/// Default most bytes one execution may write to read-write mounts: 1 GiB.
pub const DEFAULT_MAX_DISK_WRITE: u64 = 1 << 30;

/// The complete description of what a sandbox may do.
///
/// Everything is denied unless granted here. With [`SandboxConfig::default`]
/// a guest gets:
/// - no directories (no filesystem at all);
/// - no environment variables and no arguments beyond the ones of the call;
/// - an empty stdin unless the call supplies bytes;
/// - no network (`deny_network = true`; the Wasm backend cannot grant one);
/// - 64 MiB of linear memory, 30 s of wall-clock time, no fuel budget, and
///   1 MiB of captured output per stream.
///
/// A config is loaded from a TOML profile with [`crate::Profile::load`] and
/// checked with [`SandboxConfig::validate`]; `docs/profiles.md` documents
/// every key. Read through [`crate::toml_file::parse`] (as a profile is),
/// a key that no field takes is an error; serde's `Deserialize` alone
/// passes over it (and leaves the field at its default, which denies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxConfig {
    /// Which backend runs the guest. Key `backend`.
    pub backend: Backend,
    /// The module to run when the command does not name one. Key `module`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<PathBuf>,
    /// The guest's `argv[0]`. Key `argv0`. When unset it is the module's
    /// file name, never its host path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv0: Option<String>,
    /// Arguments placed before the caller's own. Key `args`.
    pub args: Vec<String>,
    /// Linear-memory limit in bytes, for all memories of the guest together.
    /// Key `memory_limit_mb`: a number of MiB or a size such as `"64MiB"`.
    #[serde(rename = "memory_limit_mb", with = "serde_units::mebibytes")]
    pub memory_limit: u64,
    /// Whether a denied memory growth ends the run at once, as a trap with
    /// the outcome `MemoryLimit`, instead of failing the growth (which lets
    /// a runtime raise its own out-of-memory error). Key
    /// `trap_on_memory_limit`.
    pub trap_on_memory_limit: bool,
    /// Wall-clock limit of one execution, compilation excluded. Key
    /// `timeout_secs`: a number of seconds or a duration such as `"1.5s"`.
    #[serde(rename = "timeout_secs", with = "serde_units::seconds")]
    pub timeout: Duration,
    /// Instruction budget of one execution; `None` turns fuel metering off
    /// (and compiles it out). Key `fuel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Cap on captured stdout in bytes; more output is dropped and flagged.
    /// Key `max_stdout`: bytes, or a size such as `"1MiB"`.
    #[serde(with = "serde_units::bytes")]
    pub max_stdout: u64,
    /// Cap on captured stderr in bytes. Key `max_stderr`.
    #[serde(with = "serde_units::bytes")]
    pub max_stderr: u64,
    /// Environment variables the guest sees. Key `env`, a table.
    pub env: BTreeMap<String, String>,
    /// Most files and directories the guest may hold open at once, beyond
    /// its stdio and mounts; past it, opening fails with `EMFILE`. Key
    /// `max_open_files`.
    pub max_open_files: u32,
    /// Most bytes one execution may write to read-write mounts (created
    /// directories, symlinks and files count a block each); past it, writes
    /// fail with `ENOSPC` and the result records it. Key `max_disk_write`.
    #[serde(with = "serde_units::bytes")]
    pub max_disk_write: u64,
    /// Directories the guest may read. Key `fs_readonly`.
    pub fs_readonly: Vec<Mount>,
    /// Directories the guest may read and write. Key `fs_readwrite`.
    pub fs_readwrite: Vec<Mount>,
    /// Whether the guest is denied sockets of its own. Key `deny_network`.
    /// No backend of this build can grant guest sockets, so `false` is
    /// refused. The host's `http` tool is another grant
    /// (`allowed_http_domains`), which this does not block.
    pub deny_network: bool,
    /// Bound on compiling a module that is not in the cache. Key
    /// `compile_timeout_secs`.
    #[serde(rename = "compile_timeout_secs", with = "serde_units::seconds")]
    pub compile_timeout: Duration,
    /// Largest module file accepted, in bytes. Key `max_module_size`.
    #[serde(with = "serde_units::bytes")]
    pub max_module_size: u64,
    /// Most host memory that compiling one module may take, as estimated
    /// from its functions before compiling. Key `max_compile_memory`. When
    /// unset, the budget is 64 MiB plus 32 times the module's size.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_units::optional_bytes")]
    pub max_compile_memory: Option<u64>,
    /// The compiled-module cache. Table `[cache]`.
    #[serde(deserialize_with = "serde_units::table")]
    pub cache: CacheConfig,
    /// Reuse of instance slots across executions. Table `[pool]`.
    #[serde(deserialize_with = "serde_units::table")]
    pub pool: PoolConfig,
    /// Sessions: idle timeout, lifetime, the wait for a slot, and the
    /// preload checkpoint. Table `[session]`.
    #[serde(deserialize_with = "serde_units::table")]
    pub session: SessionConfig,
    /// Host commands granted to the guest as tools. Tables `[tools.NAME]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, CommandTool>,
    /// Web hosts the guest may reach through the built-in `http` tool: an
    /// exact name, `*.example.com`, or an IP address. Empty (the default)
    /// means no network at all. The guest itself never gets a socket.
    /// Key `allowed_http_domains`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_http_domains: Vec<crate::grants::DomainPattern>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            backend: Backend::Wasm,
            module: None,
            argv0: None,
            args: Vec::new(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            trap_on_memory_limit: false,
            timeout: DEFAULT_TIMEOUT,
            fuel: None,
            max_stdout: DEFAULT_MAX_OUTPUT,
            max_stderr: DEFAULT_MAX_OUTPUT,
            env: BTreeMap::new(),
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            max_disk_write: DEFAULT_MAX_DISK_WRITE,
            fs_readonly: Vec::new(),
            fs_readwrite: Vec::new(),
            deny_network: true,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            max_module_size: DEFAULT_MAX_MODULE_SIZE,
            max_compile_memory: None,
            cache: CacheConfig::default(),
            pool: PoolConfig::default(),
            session: SessionConfig::default(),
            tools: BTreeMap::new(),
            allowed_http_domains: Vec::new(),
        }
    }
}

/// Default number of pooled instance slots: executions that can run at once
/// without allocating.
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// Instance pooling: memory, tables and stacks are reserved once, in
/// `size` slots, and reused (copy-on-write) by every execution. A slot
/// reserves about 4 GiB of address space (not memory); executions beyond
/// `size` at once wait for a free slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolConfig {
    /// Number of slots; 0 allocates per execution instead. Key `pool.size`.
    pub size: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { size: DEFAULT_POOL_SIZE }
    }
}

/// Settings of the on-disk compiled-module cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// Whether compiled modules are stored on disk. Key `cache.enabled`.
    pub enabled: bool,
    /// The cache directory. Key `cache.dir`. When unset, `MIMOBOX_CACHE_DIR`
    /// is used, else `$XDG_CACHE_HOME/mimobox`, else `~/.cache/mimobox`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Size bound of the cache in bytes; least recently used artifacts are
    /// evicted past it. Key `cache.max_size`. When unset,
    /// `MIMOBOX_CACHE_MAX_SIZE` is used, else 1 GiB.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_units::optional_bytes")]
    pub max_size: Option<u64>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { enabled: true, dir: None, max_size: None }
    }
}

/// The backends a profile can name with `backend = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Backend {
    /// WebAssembly on Wasmtime with WASI preview 1.
    #[default]
    Wasm,
}

impl Backend {
    /// The names of the backends built into this mimobox.
    pub const BUILT_IN: &'static [&'static str] = &["wasm"];

    /// The name a profile uses for this backend.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Wasm => "wasm",
        }
    }
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.as_str() {
            "wasm" => Ok(Backend::Wasm),
            other => Err(serde::de::Error::custom(format_args!(
                "backend `{other}` is not built into this mimobox (built in: {})",
                Backend::BUILT_IN.join(", ")
            ))),
        }
    }
}

/// A host directory made visible to the guest.
///
/// In a profile a mount is either a string, `"HOST"` or `"HOST::GUEST"`, or a
/// table `{ host = "...", guest = "..." }`. When the guest path is left out it
/// is the host path as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// The directory on the host. Relative paths in a profile resolve
    /// against the profile's directory.
    pub host: PathBuf,
    /// Where the guest sees it, for example `/data` or `/`.
    pub guest: String,
}

impl Mount {
    /// Parses the `HOST[::GUEST]` form used by profiles and the command line.
    pub fn parse(spec: &str) -> Result<Mount, String> {
        let (host, guest) = match spec.split_once("::") {
            Some((host, guest)) => (host, guest),
            None => (spec, spec),
        };
        if host.is_empty() {
            return Err(format!("mount `{spec}` has an empty host path"));
        }
        if guest.is_empty() {
            return Err(format!("mount `{spec}` has an empty guest path"));
        }
        Ok(Mount { host: PathBuf::from(host), guest: guest.to_owned() })
    }

    /// Resolves a relative host path against `base`.
    pub fn resolve_against(&mut self, base: &Path) {
        if self.host.is_relative() {
            self.host = base.join(&self.host);
        }
    }
}

impl<'de> Deserialize<'de> for Mount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Mount;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string \"HOST[::GUEST]\" or a table { host = \"...\", guest = \"...\" }")
            }

            fn visit_str<E: serde::de::Error>(self, spec: &str) -> Result<Mount, E> {
                Mount::parse(spec).map_err(E::custom)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Mount, A::Error> {
                let (mut host, mut guest) = (None::<PathBuf>, None::<String>);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "host" => host = Some(map.next_value()?),
                        "guest" => guest = Some(map.next_value()?),
                        // Passed over as serde passes over a struct's unknown
                        // fields, so that the reader names it.
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                let host = host.ok_or_else(|| serde::de::Error::missing_field("host"))?;
                let guest = guest.unwrap_or_else(|| host.to_string_lossy().into_owned());
                if guest.is_empty() {
                    return Err(serde::de::Error::custom("mount has an empty guest path"));
                }
                Ok(Mount { host, guest })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A config value that can never work, found by [`SandboxConfig::validate`]
/// or by a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct ConfigError {
    /// The profile key at fault, for example `timeout_secs` or `cache.dir`.
    pub key: String,
    /// What is wrong with its value.
    pub message: String,
}

impl ConfigError {
    /// Creates an error about `key`.
    pub fn new(key: impl Into<String>, message: impl fmt::Display) -> Self {
        ConfigError { key: key.into(), message: message.to_string() }
    }
}

impl SandboxConfig {
    /// Checks the values that no backend could honour: zero limits, empty
    /// or duplicate guest paths, malformed environment names.
    ///
    /// Backends check their own bounds on top of this (the Wasm backend,
    /// for example, refuses memory beyond 4 GiB and `deny_network = false`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new(keys::TIMEOUT, "must be greater than zero"));
        }
        if self.compile_timeout.is_zero() {
            return Err(ConfigError::new(keys::COMPILE_TIMEOUT, "must be greater than zero"));
        }
        if self.memory_limit == 0 {
            return Err(ConfigError::new(keys::MEMORY_LIMIT, "must be greater than zero"));
        }
        if self.fuel == Some(0) {
            return Err(ConfigError::new(
                keys::FUEL,
                "must be greater than zero (leave it out to disable fuel)",
            ));
        }
        if self.pool.size > 1024 {
            return Err(ConfigError::new(keys::POOL_SIZE, "must be at most 1024"));
        }
        for (key, value) in [
            (keys::SESSION_IDLE_TIMEOUT, self.session.idle_timeout),
            (keys::SESSION_LIFETIME, self.session.lifetime),
            (keys::SESSION_OPEN_TIMEOUT, self.session.open_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be greater than zero"));
            }
        }
        for (key, value) in [
            (keys::SESSION_MAX_RESULT_BYTES, self.session.max_result_bytes),
            (keys::SESSION_MAX_FILE_READ, self.session.max_file_read),
            (keys::SESSION_WORKSPACE, self.session.workspace.unwrap_or(1)),
            (keys::SESSION_MAX_RESULTS, u64::from(self.session.max_results)),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be greater than zero"));
            }
        }
        if self.max_compile_memory == Some(0) {
            return Err(ConfigError::new(keys::MAX_COMPILE_MEMORY, "must be greater than zero"));
        }
        if let Some(name) = &self.argv0
            && name.contains('\0')
        {
            return Err(ConfigError::new(keys::ARGV0, "contains a NUL byte"));
        }
        if self.max_module_size == 0 {
            return Err(ConfigError::new(keys::MAX_MODULE_SIZE, "must be greater than zero"));
        }
        for (name, value) in &self.env {
            if let Some(problem) = env_var_problem(name, value) {
                return Err(ConfigError::new(keys::ENV, problem));
            }
        }
        let mut guests = std::collections::HashSet::new();
        for (key, mounts) in
            [(keys::FS_READONLY, &self.fs_readonly), (keys::FS_READWRITE, &self.fs_readwrite)]
        {
            for mount in mounts {
                if mount.guest.contains('\0') {
                    return Err(ConfigError::new(
                        key,
                        format!("guest path `{}` contains a NUL byte", mount.guest),
                    ));
                }
                if !guests.insert(mount.guest.as_str()) {
                    return Err(ConfigError::new(
                        key,
                        format!("guest path `{}` is mounted twice", mount.guest),
                    ));
                }
            }
        }
        if self.session.workspace.is_some()
            && let Some(taken) =
                guests.iter().find(|g| ["/workspace", "/tmp"].contains(&g.trim_end_matches('/')))
        {
            return Err(ConfigError::new(
                keys::SESSION_WORKSPACE,
                format!("the workspace takes `/workspace` and `/tmp`, but a mount is at `{taken}`"),
            ));
        }
        grants::validate(&self.tools, &self.allowed_http_domains)
    }

    /// Resolves every relative path (module, mounts, cache directory)
    /// against `base`, the directory of the profile that named them.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(module) = &mut self.module
            && module.is_relative()
        {
            *module = base.join(&*module);
        }
        for mount in self.fs_readonly.iter_mut().chain(self.fs_readwrite.iter_mut()) {
            mount.resolve_against(base);
        }
        if let Some(dir) = &mut self.cache.dir
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
        for tool in self.tools.values_mut() {
            tool.resolve_against(base);
        }
        if let Some(file) = &mut self.session.setup_file
            && file.is_relative()
        {
            *file = base.join(&*file);
        }
    }

    /// Renders the config as a TOML profile that loads back to the same
    /// value, with sizes and durations in readable units. A path that is not
    /// UTF-8 (a profile in such a directory, say) cannot be written as TOML;
    /// that is an error naming the key.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let paths = [
            (keys::MODULE, self.module.as_deref()),
            (keys::CACHE_DIR, self.cache.dir.as_deref()),
            (keys::SESSION_SETUP_FILE, self.session.setup_file.as_deref()),
        ];
        let mounts = self.fs_readonly.iter().map(|m| (keys::FS_READONLY, Some(m.host.as_path())));
        let mounts =
            mounts.chain(self.fs_readwrite.iter().map(|m| (keys::FS_READWRITE, Some(m.host.as_path()))));
        for (key, path) in paths.into_iter().chain(mounts) {
            if let Some(path) = path
                && path.to_str().is_none()
            {
                return Err(ConfigError::new(
                    key,
                    format!("path `{}` is not UTF-8 and cannot be written as TOML", path.display()),
                ));
            }
        }
        toml::to_string(self).map_err(|e| ConfigError::new("profile", e))
    }
}

/// Why `name=value` cannot be an environment variable of a guest or a
/// tool, if it cannot: an empty name, or one with `=` or a NUL byte, or a
/// value with a NUL byte. The name is escaped for the message.
pub fn env_var_problem(name: &str, value: &str) -> Option<String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        Some(format!("`{}` is not a valid variable name", crate::text::one_line_bounded(name)))
    } else if value.contains('\0') {
        Some(format!("the value of `{}` contains a NUL byte", crate::text::one_line_bounded(name)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_valid() {
        let config = SandboxConfig::default();
        assert!(config.deny_network);
        assert!(config.fs_readonly.is_empty() && config.fs_readwrite.is_empty());
        assert!(config.env.is_empty());
        assert_eq!(config.memory_limit, 64 << 20);
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert_eq!(config.max_stdout, 1 << 20);
        assert_eq!(config.fuel, None);
        config.validate().unwrap();
    }

    #[test]
    fn mount_specs_parse() {
        assert_eq!(
            Mount::parse("/srv/data::/data").unwrap(),
            Mount { host: "/srv/data".into(), guest: "/data".into() }
        );
        assert_eq!(Mount::parse("data").unwrap(), Mount { host: "data".into(), guest: "data".into() });
        assert!(Mount::parse("::/x").is_err());
        assert!(Mount::parse("/x::").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let config = SandboxConfig { timeout: Duration::ZERO, ..Default::default() };
        assert_eq!(config.validate().unwrap_err().key, "timeout_secs");
        let config = SandboxConfig { fuel: Some(0), ..Default::default() };
        assert_eq!(config.validate().unwrap_err().key, "fuel");
        let mount = Mount::parse("/a::/x").unwrap();
        let config = SandboxConfig {
            fs_readonly: vec![mount.clone()],
            fs_readwrite: vec![mount],
            ..Default::default()
        };
        assert_eq!(config.validate().unwrap_err().key, "fs_readwrite");
    }

    #[test]
    fn serde_writes_exactly_the_named_keys() {
        let mut config = SandboxConfig {
            module: Some("m.wasm".into()),
            argv0: Some("m".into()),
            fuel: Some(1),
            max_compile_memory: Some(1 << 30),
            ..Default::default()
        };
        config.cache.dir = Some("/c".into());
        config.cache.max_size = Some(1 << 30);
        config.session.preload = Some("import json".into());
        config.session.restore = Some("setup({{argv}}, {{env}})".into());
        config.session.setup_file = Some("/kernel.py".into());
        config.session.workspace = Some(1 << 20);
        config.allowed_http_domains = vec!["example.com".parse().unwrap()];
        let tool: CommandTool =
            toml::from_str("description = \"d\"\ncommand = [\"./t\"]\nenv = { A = \"1\" }").unwrap();
        config.tools.insert("t".into(), tool);
        let table: toml::Table = toml::from_str(&config.to_toml().unwrap()).unwrap();
        let mut written = Vec::new();
        for (key, value) in &table {
            match value.as_table() {
                Some(inner) if key != keys::ENV && key != keys::TOOLS => {
                    written.push(key.clone());
                    written.extend(inner.keys().map(|k| format!("{key}.{k}")));
                }
                _ => written.push(key.clone()),
            }
        }
        written.sort();
        let mut named: Vec<String> = keys::ALL.iter().map(|k| k.to_string()).collect();
        named.sort();
        assert_eq!(written, named);
    }

    #[test]
    fn toml_rendering_round_trips() {
        let mut config = SandboxConfig {
            timeout: Duration::from_millis(1500),
            fuel: Some(1_000_000),
            fs_readonly: vec![Mount::parse("/srv::/data").unwrap()],
            ..Default::default()
        };
        config.env.insert("LANG".into(), "C".into());
        let text = config.to_toml().unwrap();
        let back: SandboxConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config, "{text}");
    }
}
