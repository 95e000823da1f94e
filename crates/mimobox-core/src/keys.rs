//! Names of the profile keys, for code that points at one (a validation
//! error, a flag that overrides it). Which keys a profile has is decided
//! by serde's names for the fields of `SandboxConfig` alone: a reader
//! refuses any other key (`toml_file::parse`), and a test renders a config
//! with every key set and checks that it writes exactly these names.

/// `backend`
pub const BACKEND: &str = "backend";
/// `module`
pub const MODULE: &str = "module";
/// `argv0`
pub const ARGV0: &str = "argv0";
/// `args`
pub const ARGS: &str = "args";
/// `memory_limit_mb`
pub const MEMORY_LIMIT: &str = "memory_limit_mb";
/// `trap_on_memory_limit`
pub const TRAP_ON_MEMORY_LIMIT: &str = "trap_on_memory_limit";
/// `timeout_secs`
pub const TIMEOUT: &str = "timeout_secs";
/// `fuel`
pub const FUEL: &str = "fuel";
/// `max_stdout`
pub const MAX_STDOUT: &str = "max_stdout";
/// `max_stderr`
pub const MAX_STDERR: &str = "max_stderr";
/// `env`
pub const ENV: &str = "env";
/// `max_open_files`
pub const MAX_OPEN_FILES: &str = "max_open_files";
/// `max_disk_write`
pub const MAX_DISK_WRITE: &str = "max_disk_write";
/// `fs_readonly`
pub const FS_READONLY: &str = "fs_readonly";
/// `fs_readwrite`
pub const FS_READWRITE: &str = "fs_readwrite";
/// `deny_network`
pub const DENY_NETWORK: &str = "deny_network";
/// `compile_timeout_secs`
pub const COMPILE_TIMEOUT: &str = "compile_timeout_secs";
/// `max_module_size`
pub const MAX_MODULE_SIZE: &str = "max_module_size";
/// `max_compile_memory`
pub const MAX_COMPILE_MEMORY: &str = "max_compile_memory";
/// `cache`, a table
pub const CACHE: &str = "cache";
/// `cache.enabled`
pub const CACHE_ENABLED: &str = "cache.enabled";
/// `cache.dir`
pub const CACHE_DIR: &str = "cache.dir";
/// `cache.max_size`
pub const CACHE_MAX_SIZE: &str = "cache.max_size";
/// `pool`, a table
pub const POOL: &str = "pool";
/// `pool.size`
pub const POOL_SIZE: &str = "pool.size";

/// `session`, a table
pub const SESSION: &str = "session";
/// `session.idle_timeout_secs`
pub const SESSION_IDLE_TIMEOUT: &str = "session.idle_timeout_secs";
/// `session.lifetime_secs`
pub const SESSION_LIFETIME: &str = "session.lifetime_secs";
/// `session.open_timeout_secs`
pub const SESSION_OPEN_TIMEOUT: &str = "session.open_timeout_secs";
/// `session.preload`
pub const SESSION_PRELOAD: &str = "session.preload";
/// `session.restore`
pub const SESSION_RESTORE: &str = "session.restore";
/// `session.shutdown`
pub const SESSION_SHUTDOWN: &str = "session.shutdown";
/// `session.setup_file`
pub const SESSION_SETUP_FILE: &str = "session.setup_file";
/// `session.workspace`
pub const SESSION_WORKSPACE: &str = "session.workspace";
/// `session.max_result_bytes`
pub const SESSION_MAX_RESULT_BYTES: &str = "session.max_result_bytes";
/// `session.max_results`
pub const SESSION_MAX_RESULTS: &str = "session.max_results";
/// `session.max_file_read`
pub const SESSION_MAX_FILE_READ: &str = "session.max_file_read";

/// `tools`, a table of tables, one per tool
pub const TOOLS: &str = "tools";
/// `allowed_http_domains`
pub const ALLOWED_HTTP_DOMAINS: &str = "allowed_http_domains";

/// Every name above: every key of a profile, dotted for the keys of its
/// tables (`env` takes any variable names, and the keys of a tool's table
/// and of a mount are not named here).
pub const ALL: &[&str] = &[
    BACKEND,
    MODULE,
    ARGV0,
    ARGS,
    MEMORY_LIMIT,
    TRAP_ON_MEMORY_LIMIT,
    TIMEOUT,
    FUEL,
    MAX_STDOUT,
    MAX_STDERR,
    ENV,
    MAX_OPEN_FILES,
    MAX_DISK_WRITE,
    FS_READONLY,
    FS_READWRITE,
    DENY_NETWORK,
    COMPILE_TIMEOUT,
    MAX_MODULE_SIZE,
    MAX_COMPILE_MEMORY,
    CACHE,
    CACHE_ENABLED,
    CACHE_DIR,
    CACHE_MAX_SIZE,
    POOL,
    POOL_SIZE,
    SESSION,
    SESSION_IDLE_TIMEOUT,
    SESSION_LIFETIME,
    SESSION_OPEN_TIMEOUT,
    SESSION_PRELOAD,
    SESSION_RESTORE,
    SESSION_SHUTDOWN,
    SESSION_SETUP_FILE,
    SESSION_WORKSPACE,
    SESSION_MAX_RESULT_BYTES,
    SESSION_MAX_RESULTS,
    SESSION_MAX_FILE_READ,
    TOOLS,
    ALLOWED_HTTP_DOMAINS,
];
