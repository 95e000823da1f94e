//! The command line, defined once: these doc comments are the help text,
//! each value is parsed by its flag's own parser (so that clap names the
//! flag in any error), and a flag that a later error names has its long
//! name in [`flag`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mimobox_core::Mount;
use mimobox_core::units::{parse_duration, parse_size};
use mimobox_server::config::StoreAt;

/// Long names of the flags that an error found after parsing names (a
/// backend refusing a value, two flags that disagree).
pub mod flag {
    /// `--timeout`
    pub const TIMEOUT: &str = "timeout";
    /// `--compile-timeout`
    pub const COMPILE_TIMEOUT: &str = "compile-timeout";
    /// `--memory`
    pub const MEMORY: &str = "memory";
    /// `--fuel`
    pub const FUEL: &str = "fuel";
    /// `--max-output`
    pub const MAX_OUTPUT: &str = "max-output";
    /// `--trap-on-memory-limit`
    pub const TRAP_ON_MEMORY_LIMIT: &str = "trap-on-memory-limit";
    /// `--max-open-files`
    pub const MAX_OPEN_FILES: &str = "max-open-files";
    /// `--max-disk-write`
    pub const MAX_DISK_WRITE: &str = "max-disk-write";
    /// `--ro-dir`
    pub const RO_DIR: &str = "ro-dir";
    /// `--dir`
    pub const DIR: &str = "dir";
    /// `--env`
    pub const ENV: &str = "env";
    /// `--cache-dir`
    pub const CACHE_DIR: &str = "cache-dir";
    /// `--no-cache`
    pub const NO_CACHE: &str = "no-cache";
    /// `--profile`
    pub const PROFILE: &str = "profile";
    /// `--token-sha256`
    pub const TOKEN_SHA256: &str = "token-sha256";
    /// `--metrics-owner`
    pub const METRICS_OWNER: &str = "metrics-owner";
    /// `--advertise`
    pub const ADVERTISE: &str = "advertise";
}

/// A duration: `1.5s`, `500ms`, or seconds.
fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// A duration of more than zero and at most `most`.
fn duration_up_to(
    most: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let value = duration(text)?;
        mimobox_server::config::check_duration(Some(value), most)?;
        Ok(value)
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// A lease: from 1 second to an hour.
fn lease(text: &str) -> Result<Duration, String> {
    let value = duration_up_to(HOUR)(text)?;
    if value < Duration::from_secs(1) {
        return Err("must be at least 1 second".into());
    }
    Ok(value)
}

/// A size: `64MiB`, `1GiB`, or bytes.
fn size(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|e| e.to_string())
}

/// A `KEY=VALUE` pair.
fn env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
        None => Err("not KEY=VALUE".into()),
    }
}

/// A routing catalog's address, `redis://HOST:PORT`.
fn catalog(text: &str) -> Result<String, String> {
    mimobox_server::config::check_catalog(text)?;
    Ok(text.to_owned())
}

/// A store of paused sessions, `s3://BUCKET/PREFIX` or `file:///DIR`.
fn store(text: &str) -> Result<StoreAt, String> {
    mimobox_server::config::store_at(text)
}

/// The address other workers reach this one at, `HOST:PORT`.
fn advertise(text: &str) -> Result<String, String> {
    mimobox_server::config::check_advertise(text)?;
    Ok(text.to_owned())
}

/// Run untrusted WebAssembly under hard limits: wall-clock time, fuel,
/// memory, output, and only the directories, environment and arguments it
/// is given. No network.
#[derive(Debug, Parser)]
#[command(name = "mimobox", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a module in a sandbox.
    ///
    /// Exit status: the guest's own code when it exits; 124 when it times
    /// out or runs out of fuel; 134 when it traps, the memory limit
    /// included; 2 when mimobox cannot run it.
    Run(Box<RunArgs>),
    /// Run the built-in hello module, to see a sandbox at work.
    Demo(DemoArgs),
    /// Check or show a TOML profile.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Compile modules into the cache ahead of time, and report what was
    /// done for each.
    Compile(Box<CompileArgs>),
    /// Inspect or empty the compiled-module cache.
    Cache(CacheArgs),
    /// Open a session: one live guest that keeps its state between turns.
    ///
    /// When stdin is not a terminal it speaks JSON lines: each request line
    /// is `{"code": "..."}`, and each answer line is the object `run --json`
    /// prints plus `turn` (from 1) and `alive`; a line that is not a valid
    /// request gets `{"error": "..."}`. At end of input the session shuts
    /// down and mimobox exits 0; at the session's idle timeout or lifetime
    /// it is closed whether or not input comes, and mimobox exits 124. On
    /// a terminal it is a REPL: `>>> ` and `... ` prompts, a blank line
    /// ends a block; the guest's output is shown with its control
    /// characters escaped.
    Session(Box<SessionArgs>),
    /// Serve MCP over stdio: mimobox's sessions as the tools `run_code`,
    /// `create_session`, `close_session`, `write_file`, `read_file`,
    /// `list_files` and `list_profiles`, for one MCP client (Claude
    /// Desktop, the OpenAI Agents SDK, any MCP client's stdio config).
    ///
    /// The client names a profile only by the names given here; it passes
    /// no path, mount or limit. Exit status 0 when the client closes stdin.
    Mcp(Box<McpArgs>),
    /// Serve the HTTP API: sessions, turns (whole or streamed as NDJSON),
    /// files, /healthz, /readyz and /metrics, for the owners whose bearer
    /// tokens it knows (by their SHA-256).
    ///
    /// SIGTERM or SIGINT drains: no new sessions or turns, running turns
    /// finish (up to 30 s), idle sessions are paused to --pause-dir (or
    /// closed without one), then mimobox exits 0.
    Serve(Box<ServeArgs>),
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("pause_target").args(["pause_dir", "store"]).multiple(true))]
pub struct ServeArgs {
    /// The server's config file (TOML): listen address, profiles, owners
    /// and their limits, pausing, HTTP bounds. In place of the flags below.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the config (and the profiles it names), print a summary, and
    /// exit: 0 when it is good, 2 with the first problem when not.
    #[arg(long)]
    pub check: bool,
    /// The address to listen on. Port 0 picks a free port; the address
    /// bound is printed on stderr.
    #[arg(long, value_name = "ADDR", conflicts_with = "config")]
    pub listen: Option<std::net::SocketAddr>,
    /// A profile to offer, as NAME=FILE, or FILE (named after the file,
    /// without `.toml`). Repeatable; the first is the default.
    #[arg(
        long = flag::PROFILE,
        value_name = "NAME=FILE",
        value_parser = offered_profile,
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub profiles: Vec<(String, PathBuf)>,
    /// An owner and the SHA-256 of its bearer token, in hex (64 digits):
    /// OWNER=HEX. Repeatable. `printf %s "$TOKEN" | sha256sum` makes one.
    #[arg(
        long = flag::TOKEN_SHA256,
        value_name = "OWNER=HEX",
        value_parser = token_hash,
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub tokens: Vec<(String, [u8; 32])>,
    /// An owner that may read `/metrics` (the whole server's numbers).
    /// Repeatable; without one, `/metrics` is refused to every owner.
    #[arg(long = flag::METRICS_OWNER, value_name = "OWNER", conflicts_with = "config")]
    pub metrics_owners: Vec<String>,
    /// Most sessions open at once, in all (and so for each owner).
    /// Default 64.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "config")]
    pub max_sessions: Option<u32>,
    /// Pause idle sessions (and, on a drain, every live one) to this
    /// directory (mode 0700, created if missing), and resume them on their
    /// next call.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "catalog"])]
    pub pause_dir: Option<PathBuf>,
    /// Idleness after which a session is paused (with --pause-dir or
    /// --store), in seconds or with a unit (`5m`). Default 5 minutes.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = duration_up_to(365 * 24 * HOUR),
        conflicts_with = "config",
        requires = "pause_target"
    )]
    pub pause_after: Option<Duration>,
    /// The key that authenticates paused sessions (at least 32 bytes).
    /// Default: the user's own, `mimobox-state.key` beside the cache.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub state_key: Option<PathBuf>,
    /// Time a client has to send a request's headers, and between pieces
    /// of its body; a slower one is dropped. Default 10 s.
    #[arg(long, value_name = "DURATION", value_parser = duration_up_to(HOUR), conflicts_with = "config")]
    pub read_timeout: Option<Duration>,
    /// Longest a streamed answer lasts, however slowly its client reads.
    /// Default 15 minutes.
    #[arg(long, value_name = "DURATION", value_parser = duration_up_to(24 * HOUR), conflicts_with = "config")]
    pub max_stream: Option<Duration>,
    /// Join a fleet: the routing catalog of sessions, `redis://HOST:PORT`.
    /// Needs --store, --advertise and --peer-secret-file.
    #[arg(
        long,
        value_name = "URL",
        value_parser = catalog,
        conflicts_with = "config",
        requires_all = ["store", "advertise", "peer_secret_file"]
    )]
    pub catalog: Option<String>,
    /// Where the fleet's paused sessions are kept: `s3://BUCKET/PREFIX`
    /// (endpoint, region and credentials from `AWS_ENDPOINT_URL`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), or
    /// `file:///DIR`, a directory the workers share.
    #[arg(long, value_name = "URL", value_parser = store, conflicts_with = "config", requires = "catalog")]
    pub store: Option<StoreAt>,
    /// The address other workers reach this one at, `HOST:PORT`; also with
    /// --config (say `--advertise $(POD_IP):8800`).
    #[arg(long = flag::ADVERTISE, value_name = "HOST:PORT", value_parser = advertise)]
    pub advertise: Option<String>,
    /// The file of the secret the fleet's workers share (at least 32
    /// bytes).
    #[arg(long, value_name = "FILE", conflicts_with = "config", requires = "catalog")]
    pub peer_secret_file: Option<PathBuf>,
    /// How long a lease on a session lasts, from 1 second to an hour
    /// (default 15s).
    #[arg(long, value_name = "DURATION", value_parser = lease, conflicts_with = "config", requires = "catalog")]
    pub lease: Option<Duration>,
    /// How often a live session that took turns is written to the store
    /// (default 30s).
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = duration_up_to(24 * HOUR),
        conflicts_with = "config",
        requires = "catalog"
    )]
    pub checkpoint_after: Option<Duration>,
}

/// A profile offered by name: `NAME=FILE`, or `FILE`, named after the
/// file without `.toml`.
fn offered_profile(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = match text.split_once('=') {
        Some((name, path)) => (name.to_owned(), PathBuf::from(path)),
        None => {
            let path = PathBuf::from(text);
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or("no name can be made from the file name")?
                .to_owned();
            (name, path)
        }
    };
    mimobox_server::config::check_profile_name(&name)?;
    Ok((name, path))
}

/// An owner and the SHA-256 of its token, `OWNER=HEX`.
fn token_hash(text: &str) -> Result<(String, [u8; 32]), String> {
    let (owner, hex) = text.split_once('=').ok_or("expected OWNER=HEX")?;
    mimobox_server::config::check_owner_name(owner)?;
    let hash = mimobox_server::http::parse_token_hash(&hex.to_ascii_lowercase())
        .ok_or("the hash is 64 hex digits")?;
    Ok((owner.to_owned(), hash))
}

#[derive(Debug, Args)]
pub struct McpArgs {
    /// A profile to offer, as NAME=FILE, or FILE (named after the file,
    /// without `.toml`). Repeatable; the first is the default.
    #[arg(long = flag::PROFILE, value_name = "NAME=FILE", value_parser = offered_profile, required = true)]
    pub profiles: Vec<(String, PathBuf)>,
    /// Most sessions open at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_sessions: u32,
}

#[derive(Debug, Args)]
pub struct SessionArgs {
    #[command(flatten)]
    pub limits: LimitFlags,
    /// In the REPL, pass the guest's output to the terminal as it is,
    /// escape sequences and invalid UTF-8 included (by default control
    /// characters other than newline and tab are escaped).
    #[arg(long)]
    pub raw_output: bool,
    /// At the end of input, pause the session to FILE (its memory, globals
    /// and workspace files, compressed and authenticated) instead of
    /// closing it; `--resume FILE` carries on from it.
    #[arg(long, value_name = "FILE")]
    pub pause_to: Option<PathBuf>,
    /// Carry on from a session paused with `--pause-to` (same profile).
    /// A file that was altered, truncated, made for another module or
    /// engine, or written under another key is refused, and nothing runs.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// The key that authenticates paused sessions (at least 32 bytes).
    /// Default: a key of the user's own, `mimobox-state.key` beside the
    /// cache directory (mode 0600), created on first use.
    #[arg(long, value_name = "FILE")]
    pub state_key: Option<PathBuf>,
    /// The module (unless the profile names one), then its arguments.
    #[arg(value_name = "MODULE | ARGS", trailing_var_arg = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub limits: LimitFlags,
    /// The modules (`.wasm` or `.wat`); without any, the profile's module.
    #[arg(value_name = "MODULE")]
    pub modules: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The cache directory (default: MIMOBOX_CACHE_DIR, else
    /// $XDG_CACHE_HOME/mimobox, else ~/.cache/mimobox).
    #[arg(long, value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the cache directory.
    Dir,
    /// Print entries, total size, size limit, stale entries, hits and misses.
    Stats {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove every compiled module that no process is using.
    Clear,
    /// Evict stale, then least recently used, modules down to the limit.
    Prune {
        /// The size to prune to (default: the configured limit,
        /// MIMOBOX_CACHE_MAX_SIZE, else 1GiB).
        #[arg(long, value_name = "SIZE", value_parser = size)]
        max_size: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub limits: LimitFlags,
    /// Pass FILE to the guest as its stdin. Without it, mimobox passes its
    /// own stdin when that is not a terminal, and nothing otherwise.
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// Print one JSON object instead of passing the guest's output through:
    /// outcome, exit_code, trap, stdout, stderr, stdout_truncated,
    /// stderr_truncated, elapsed_ms, fuel_consumed, peak_memory_bytes,
    /// memory_limit_hit, disk_written_bytes, disk_quota_hit, tool_calls. `outcome` is
    /// the authoritative answer: a guest can exit with any status.
    #[arg(long)]
    pub json: bool,
    /// The module (`.wasm` or `.wat`), then its arguments. When the profile
    /// names a module, every argument goes to the guest. Use `--` before
    /// guest arguments that start with `-`.
    #[arg(value_name = "MODULE | ARGS", trailing_var_arg = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the result as JSON, as `run --json` does.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Validate a profile, with errors that name the key and line.
    Check {
        /// The profile.
        file: PathBuf,
    },
    /// Print the effective config: defaults, then the profile, then flags.
    Show {
        /// The profile.
        file: PathBuf,
        #[command(flatten)]
        limits: Box<LimitFlags>,
    },
}

/// Settings shared by the commands that build a sandbox. Each overrides
/// the profile's value.
#[derive(Debug, Args, Default)]
pub struct LimitFlags {
    /// Load settings from a TOML profile; the flags below override it.
    #[arg(long = flag::PROFILE, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Mount a host directory read-write (repeatable).
    #[arg(long = flag::DIR, value_name = "HOST[::GUEST]", value_parser = Mount::parse)]
    pub dirs: Vec<Mount>,
    /// Mount a host directory read-only (repeatable).
    #[arg(long = flag::RO_DIR, value_name = "HOST[::GUEST]", value_parser = Mount::parse)]
    pub ro_dirs: Vec<Mount>,
    /// Set an environment variable for the guest (repeatable).
    #[arg(long = flag::ENV, value_name = "KEY=VALUE", value_parser = env_pair)]
    pub envs: Vec<(String, String)>,
    /// Wall-clock limit of the run, compilation excluded: "1.5s", "500ms".
    #[arg(long = flag::TIMEOUT, value_name = "DURATION", value_parser = duration)]
    pub timeout: Option<Duration>,
    /// Linear-memory limit: "64MiB", "1GiB".
    #[arg(long = flag::MEMORY, value_name = "SIZE", value_parser = size)]
    pub memory: Option<u64>,
    /// Instruction budget (fuel); the guest stops when it is spent.
    #[arg(long = flag::FUEL, value_name = "N")]
    pub fuel: Option<u64>,
    /// Cap on each of stdout and stderr: "1MiB". Output past it is dropped.
    #[arg(long = flag::MAX_OUTPUT, value_name = "SIZE", value_parser = size)]
    pub max_output: Option<u64>,
    /// End the run at once, as over the memory limit (status 134), when the
    /// limit denies a memory growth, instead of letting the growth fail.
    #[arg(long = flag::TRAP_ON_MEMORY_LIMIT)]
    pub trap_on_memory_limit: bool,
    /// Most files the guest may hold open at once (default 1024).
    #[arg(long = flag::MAX_OPEN_FILES, value_name = "N")]
    pub max_open_files: Option<u32>,
    /// Most bytes the guest may write to read-write mounts (default 1GiB).
    #[arg(long = flag::MAX_DISK_WRITE, value_name = "SIZE", value_parser = size)]
    pub max_disk_write: Option<u64>,
    /// Bound on compiling a module that is not cached: "2m".
    #[arg(long = flag::COMPILE_TIMEOUT, value_name = "DURATION", value_parser = duration)]
    pub compile_timeout: Option<Duration>,
    /// Keep compiled modules in DIR instead of the default cache directory.
    #[arg(long = flag::CACHE_DIR, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the compiled-module cache.
    #[arg(long = flag::NO_CACHE)]
    pub no_cache: bool,
}
