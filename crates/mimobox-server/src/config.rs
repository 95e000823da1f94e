//! The server's config file (`mimobox serve --config FILE`): where it
//! listens, the profiles it offers by name, its owners with their token
//! hashes and limits, idle pause and close times, the pause directory, and
//! the HTTP bounds. Checked as profiles are: an unknown key, a value of the
//! wrong type or an impossible one is one line naming the file, the line
//! and column, and the key.
//!
//! ```toml
//! listen = "127.0.0.1:8800"
//! default_profile = "python"
//!
//! [profiles]
//! python = "python-sci.toml"     # relative to this file
//!
//! [limits]                        # the whole server
//! sessions = 1000
//! memory = "16GiB"
//!
//! [owner_limits]                  # each owner, unless its own table says
//! sessions = 64
//! running_turns = 8
//! requests = 32
//!
//! [owners.alice]
//! token_sha256 = ["<64 hex digits>"]
//! sessions = 200
//! metrics = true                  # may read /metrics
//!
//! [sessions]
//! pause_dir = "/var/lib/mimobox/paused"
//! pause_after = "5m"
//! close_after = "24h"
//! ready = 2                       # each profile's, opened ahead of demand
//!
//! [http]
//! read_timeout = "10s"
//! max_body = "1MiB"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mimobox_core::serde_units;
use mimobox_core::toml_file::{self, TomlError};
use mimobox_fleet::S3Location;
use mimobox_host::{Limits, MAX_OWNER_NAME};
use serde::Deserialize;

use crate::http::{HttpConfig, parse_token_hash};

/// Config files larger than this are refused unread.
const MAX_CONFIG_SIZE: u64 = 1 << 20;

/// A server's whole configuration, from its file (or from flags).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The HTTP face: address, owners' token hashes, bounds.
    pub http: HttpConfig,
    /// The profiles offered, by name, the default first; relative paths
    /// already resolved against the config file's directory.
    pub profiles: Vec<(String, PathBuf)>,
    /// The whole server's limits.
    pub limits: Limits,
    /// Each owner's limits, unless `owners` names it.
    pub owner_limits: Limits,
    /// Limits of particular owners.
    pub owners: HashMap<String, Limits>,
    /// Pausing idle sessions to a directory, if configured.
    pub pause: Option<PauseConfig>,
    /// Close a session idle this long, live or paused, in place of its
    /// profile's idle timeout.
    pub close_after: Option<Duration>,
    /// Membership of a fleet of workers that share sessions, if any.
    pub fleet: Option<FleetConfig>,
    /// Sessions of each profile kept opened ahead of demand (0 to
    /// [`MAX_READY`]); see `mimobox_host::HostConfig::ready_sessions`.
    pub ready: u32,
}

/// Most sessions of one profile a server keeps opened ahead.
pub const MAX_READY: u32 = 64;

/// How a worker joins a fleet: the catalog, its own address, the secret
/// the workers share, its leases and background checkpoints. Its store of
/// paused sessions is the [`PauseConfig`]'s directory, one the workers
/// share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The catalog, `redis://HOST:PORT[/DB]`.
    pub catalog: String,
    /// The address other workers reach this one at, `HOST:PORT`.
    pub advertise: String,
    /// The file holding the secret the workers authenticate each other
    /// with (at least 32 bytes).
    pub peer_secret_file: PathBuf,
    /// How long a lease on a session lasts before it must be renewed; a
    /// lost worker's sessions wait this long before another takes them.
    pub lease: Duration,
    /// How often a live session that took turns is written to the store.
    pub checkpoint_after: Duration,
}

/// Default lease on a session: 15 seconds.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// Default interval of background checkpoints: 30 seconds.
pub const DEFAULT_CHECKPOINT_AFTER: Duration = Duration::from_secs(30);

/// Where paused sessions are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreAt {
    /// A directory of this machine, or one the workers share
    /// (`file:///DIR`; `sessions.pause_dir`).
    Dir(PathBuf),
    /// A bucket of an S3-compatible service (`s3://BUCKET/PREFIX`),
    /// configured by the standard `AWS_*` variables.
    S3(S3Location),
}

/// A fleet's store: `file:///DIR` (a directory the workers share) or
/// `s3://BUCKET/PREFIX`; anything else is refused with the reason.
pub fn store_at(url: &str) -> Result<StoreAt, String> {
    if let Some(dir) = url.strip_prefix("file://") {
        if !dir.starts_with('/') {
            return Err("a file store is `file:///ABSOLUTE/DIR`".into());
        }
        return Ok(StoreAt::Dir(PathBuf::from(dir)));
    }
    if url.starts_with("s3://") {
        return url.parse().map(StoreAt::S3);
    }
    Err("a store is `s3://BUCKET/PREFIX` or `file:///DIR`".into())
}

/// Refuses a catalog that is not a `redis://` URL.
pub fn check_catalog(url: &str) -> Result<(), String> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(())
    } else {
        Err("a catalog is `redis://HOST:PORT`".into())
    }
}

/// Refuses an advertised address that is not `HOST:PORT`.
pub fn check_advertise(address: &str) -> Result<(), String> {
    let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && port.parse::<u16>().is_ok_and(|p| p > 0)
            && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
    });
    if valid { Ok(()) } else { Err("an advertised address is `HOST:PORT`".into()) }
}

/// Where and when idle sessions are paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseConfig {
    /// Where paused states go: a directory (mode 0700, created if
    /// missing), or a fleet's bucket.
    pub store: StoreAt,
    /// Idleness after which a live session is paused.
    pub after: Duration,
    /// The key file that authenticates paused states; `None` is the
    /// user's own beside the cache.
    pub state_key: Option<PathBuf>,
}

// Every table of the file is taken as a table only (`serde_units::table`):
// serde's derive would also fill a struct in order from an array.
#[derive(Deserialize)]
struct File {
    listen: Option<SocketAddr>,
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, PathBuf>,
    #[serde(default, deserialize_with = "serde_units::table")]
    limits: LimitsFile,
    #[serde(default, deserialize_with = "serde_units::table")]
    owner_limits: LimitsFile,
    #[serde(default, deserialize_with = "owner_tables")]
    owners: BTreeMap<String, OwnerFile>,
    #[serde(default, deserialize_with = "serde_units::table")]
    sessions: SessionsFile,
    #[serde(default, deserialize_with = "serde_units::table")]
    http: HttpFile,
    #[serde(default, deserialize_with = "serde_units::optional_table")]
    fleet: Option<FleetFile>,
}

/// `[owners.NAME]`, each a table.
fn owner_tables<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, OwnerFile>, D::Error> {
    struct Owner(OwnerFile);
    impl<'de> Deserialize<'de> for Owner {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Owner, D::Error> {
            serde_units::table(deserializer).map(Owner)
        }
    }
    let owners = BTreeMap::<String, Owner>::deserialize(deserializer)?;
    Ok(owners.into_iter().map(|(name, Owner(owner))| (name, owner)).collect())
}

#[derive(Deserialize)]
struct FleetFile {
    catalog: String,
    store: String,
    advertise: Option<String>,
    peer_secret_file: PathBuf,
    #[serde(default, with = "optional_seconds")]
    lease: Option<Duration>,
    #[serde(default, with = "optional_seconds")]
    checkpoint_after: Option<Duration>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct LimitsFile {
    sessions: Option<u64>,
    running_turns: Option<u64>,
    #[serde(default, with = "serde_units::optional_bytes")]
    memory: Option<u64>,
    requests: Option<u32>,
}

#[derive(Deserialize)]
struct OwnerFile {
    token_sha256: Tokens,
    sessions: Option<u64>,
    running_turns: Option<u64>,
    #[serde(default, with = "serde_units::optional_bytes")]
    memory: Option<u64>,
    requests: Option<u32>,
    #[serde(default)]
    metrics: bool,
}

impl OwnerFile {
    fn limits(&self) -> LimitsFile {
        LimitsFile {
            sessions: self.sessions,
            running_turns: self.running_turns,
            memory: self.memory,
            requests: self.requests,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Tokens {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
struct SessionsFile {
    pause_dir: Option<PathBuf>,
    #[serde(default, with = "optional_seconds")]
    pause_after: Option<Duration>,
    #[serde(default, with = "optional_seconds")]
    close_after: Option<Duration>,
    state_key: Option<PathBuf>,
    ready: Option<u32>,
}

#[derive(Deserialize, Default)]
struct HttpFile {
    #[serde(default, with = "optional_seconds")]
    read_timeout: Option<Duration>,
    #[serde(default, with = "optional_seconds")]
    body_timeout: Option<Duration>,
    #[serde(default, with = "optional_seconds")]
    write_timeout: Option<Duration>,
    #[serde(default, with = "serde_units::optional_bytes")]
    max_body: Option<u64>,
    #[serde(default, with = "serde_units::optional_bytes")]
    max_upload: Option<u64>,
    max_connections: Option<usize>,
    #[serde(default, with = "optional_seconds")]
    max_stream: Option<Duration>,
    #[serde(default, with = "optional_seconds")]
    busy_wait: Option<Duration>,
    #[serde(default, with = "optional_seconds")]
    drain_grace: Option<Duration>,
}

mod optional_seconds {
    use std::time::Duration;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        mimobox_core::serde_units::seconds::deserialize(deserializer).map(Some)
    }
}

/// Default idleness after which a session is paused: 5 minutes.
pub const DEFAULT_PAUSE_AFTER: Duration = Duration::from_secs(300);

/// Default bound of each owner's HTTP requests at once.
pub const DEFAULT_OWNER_REQUESTS: u32 = 64;

/// Default bound of the whole server's sessions, live or paused.
pub const DEFAULT_SESSIONS: u64 = 64;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Refuses a duration of zero or over `most`.
pub fn check_duration(value: Option<Duration>, most: Duration) -> Result<(), String> {
    match value {
        Some(d) if d.is_zero() => Err("must be more than zero".into()),
        Some(d) if d > most => Err(format!("must be at most {}", mimobox_core::units::format_duration(most))),
        _ => Ok(()),
    }
}

impl ServerConfig {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<ServerConfig, TomlError> {
        let source = toml_file::read(path, MAX_CONFIG_SIZE, "server config")?;
        ServerConfig::parse(path, &source)
    }

    /// Checks config text as if read from `path` (relative paths are
    /// resolved against its directory).
    pub fn parse(path: &Path, source: &str) -> Result<ServerConfig, TomlError> {
        let file: File = toml_file::parse(path, source)?;
        let at = |key: &str, message: String| TomlError::at_key(path, source, key, message);
        let base = path.parent().unwrap_or(Path::new(""));

        if file.profiles.is_empty() {
            return Err(at(
                "profiles",
                "at least one profile is offered: `[profiles] NAME = \"FILE\"`".into(),
            ));
        }
        let mut profiles = Vec::new();
        for (name, file_path) in &file.profiles {
            check_profile_name(name)
                .map_err(|problem| at(&format!("profiles.{}", bounded(name)), problem.into()))?;
            profiles.push((name.clone(), base.join(file_path)));
        }
        let default = match &file.default_profile {
            Some(name) => name.clone(),
            None if profiles.len() == 1 => profiles[0].0.clone(),
            None => {
                return Err(at(
                    "default_profile",
                    "with more than one profile, `default_profile` names the one a new session gets".into(),
                ));
            }
        };
        let Some(first) = profiles.iter().position(|(name, _)| *name == default) else {
            return Err(at("default_profile", format!("`{}` is not in [profiles]", bounded(&default))));
        };
        let chosen = profiles.remove(first);
        profiles.insert(0, chosen);

        let listen = file.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8800)));
        let mut http = HttpConfig::new(listen);
        let h = &file.http;
        for (key, value, most) in [
            ("read_timeout", h.read_timeout, HOUR),
            ("body_timeout", h.body_timeout, HOUR),
            ("write_timeout", h.write_timeout, HOUR),
            ("max_stream", h.max_stream, DAY),
            ("busy_wait", h.busy_wait, HOUR),
            ("drain_grace", h.drain_grace, HOUR),
        ] {
            check_duration(value, most).map_err(|problem| at(&format!("http.{key}"), problem))?;
        }
        http.read_timeout = h.read_timeout.unwrap_or(http.read_timeout);
        http.body_timeout = h.body_timeout.unwrap_or(http.body_timeout);
        http.write_timeout = h.write_timeout.unwrap_or(http.write_timeout);
        http.max_stream = h.max_stream.unwrap_or(http.max_stream);
        http.busy_wait = h.busy_wait.unwrap_or(http.busy_wait);
        http.drain_grace = h.drain_grace.unwrap_or(http.drain_grace);
        // Bodies are held whole in memory while they are checked: bounded
        // well below what a server holds.
        for (key, value, into, most, shown) in [
            ("max_body", h.max_body, &mut http.max_json, 64 << 20, "64 MiB"),
            ("max_upload", h.max_upload, &mut http.max_upload, 1 << 30, "1 GiB"),
        ] {
            if let Some(bytes) = value {
                *into = usize::try_from(bytes)
                    .ok()
                    .filter(|&b| b > 0 && b <= most)
                    .ok_or_else(|| at(&format!("http.{key}"), format!("must be from 1 byte to {shown}")))?;
            }
        }
        if let Some(n) = h.max_connections {
            if n == 0 || n > 1 << 20 {
                return Err(at("http.max_connections", "must be from 1 to 1048576".into()));
            }
            http.max_connections = n;
        }

        // Unless the file says otherwise, the whole server holds as many
        // sessions (live or paused) as `mimobox serve` by flags does.
        let default_limits = Limits { sessions: DEFAULT_SESSIONS, ..Limits::UNLIMITED };
        let limits = limits_of(&file.limits, default_limits, "limits", &at)?;
        let owner_limits = limits_of(&file.owner_limits, Limits::UNLIMITED, "owner_limits", &at)?;
        http.owner_requests = positive(file.owner_limits.requests, "owner_limits.requests", &at)?
            .unwrap_or(DEFAULT_OWNER_REQUESTS);
        if file.limits.requests.is_some() {
            return Err(at("limits.requests", "requests are bounded per owner, in [owner_limits]".into()));
        }
        if file.owners.is_empty() {
            return Err(at(
                "owners",
                "at least one owner is named: `[owners.NAME] token_sha256 = \"HEX\"`".into(),
            ));
        }
        let mut owners = HashMap::new();
        for (name, owner) in &file.owners {
            let key = format!("owners.{}", bounded(name));
            check_owner_name(name).map_err(|problem| at(&key, problem.into()))?;
            let hashes = match &owner.token_sha256 {
                Tokens::One(hex) => vec![hex.clone()],
                Tokens::Many(list) => list.clone(),
            };
            if hashes.is_empty() {
                return Err(at(&format!("{key}.token_sha256"), "at least one token hash".into()));
            }
            for hex in hashes {
                let Some(hash) = parse_token_hash(&hex.to_ascii_lowercase()) else {
                    return Err(at(&format!("{key}.token_sha256"), "a token hash is 64 hex digits".into()));
                };
                if http.tokens.iter().any(|(other, _)| *other == hash) {
                    return Err(at(&format!("{key}.token_sha256"), "this token hash is given twice".into()));
                }
                http.tokens.push((hash, name.clone()));
            }
            owners.insert(name.clone(), limits_of(&owner.limits(), owner_limits, &key, &at)?);
            if owner.metrics {
                http.metrics_owners.insert(name.clone());
            }
            if let Some(requests) = positive(owner.requests, &format!("{key}.requests"), &at)? {
                http.requests_of.insert(name.clone(), requests);
            }
        }

        let s = &file.sessions;
        for (key, value) in [("pause_after", s.pause_after), ("close_after", s.close_after)] {
            check_duration(value, 365 * DAY).map_err(|problem| at(&format!("sessions.{key}"), problem))?;
        }
        if s.ready.is_some_and(|ready| ready > MAX_READY) {
            return Err(at("sessions.ready", format!("at most {MAX_READY}")));
        }
        let fleet_store = match &file.fleet {
            Some(fleet) => {
                if s.pause_dir.is_some() {
                    return Err(at("sessions.pause_dir", "a fleet's sessions pause to `fleet.store`".into()));
                }
                Some(store_at(&fleet.store).map_err(|problem| at("fleet.store", problem))?)
            }
            None => None,
        };
        let fleet = match &file.fleet {
            Some(f) => {
                check_catalog(&f.catalog).map_err(|problem| at("fleet.catalog", problem))?;
                if let Some(advertise) = &f.advertise {
                    check_advertise(advertise).map_err(|problem| at("fleet.advertise", problem))?;
                }
                check_duration(f.lease, HOUR).map_err(|problem| at("fleet.lease", problem))?;
                check_duration(f.checkpoint_after, DAY)
                    .map_err(|problem| at("fleet.checkpoint_after", problem))?;
                if f.lease.is_some_and(|lease| lease < Duration::from_secs(1)) {
                    return Err(at("fleet.lease", "must be at least 1 second".into()));
                }
                Some(FleetConfig {
                    catalog: f.catalog.clone(),
                    // Given by `--advertise` when the file leaves it out.
                    advertise: f.advertise.clone().unwrap_or_default(),
                    peer_secret_file: base.join(&f.peer_secret_file),
                    lease: f.lease.unwrap_or(DEFAULT_LEASE),
                    checkpoint_after: f.checkpoint_after.unwrap_or(DEFAULT_CHECKPOINT_AFTER),
                })
            }
            None => None,
        };
        let pause_store = s.pause_dir.as_ref().map(|dir| StoreAt::Dir(base.join(dir))).or(fleet_store);
        let pause = match pause_store {
            Some(store) => Some(PauseConfig {
                store,
                after: s.pause_after.unwrap_or(DEFAULT_PAUSE_AFTER),
                state_key: s.state_key.as_ref().map(|key| base.join(key)),
            }),
            None => {
                for key in ["pause_after", "state_key"] {
                    if toml_file::locate(source, &format!("sessions.{key}")).is_some() {
                        return Err(at(&format!("sessions.{key}"), "needs `sessions.pause_dir`".into()));
                    }
                }
                None
            }
        };
        Ok(ServerConfig {
            http,
            profiles,
            limits,
            owner_limits,
            owners,
            pause,
            close_after: s.close_after,
            fleet,
            ready: s.ready.unwrap_or(0),
        })
    }
}

/// Refuses a profile name that is not 1 to 128 letters, digits, `-`, `_`
/// and `.`.
pub fn check_profile_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty()
        || name.len() > 128
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("a profile name is 1 to 128 letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

/// Refuses an owner name that is not 1 to 128 bytes of printable text.
pub fn check_owner_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_OWNER_NAME || name.chars().any(char::is_control) {
        return Err("an owner is 1 to 128 bytes of printable characters");
    }
    Ok(())
}

fn limits_of(
    file: &LimitsFile,
    default: Limits,
    table: &str,
    at: &impl Fn(&str, String) -> TomlError,
) -> Result<Limits, TomlError> {
    let mut limits = default;
    for (key, value, into) in [
        ("sessions", file.sessions, &mut limits.sessions),
        ("running_turns", file.running_turns, &mut limits.running_turns),
        ("memory", file.memory, &mut limits.memory),
    ] {
        if let Some(value) = value {
            if value == 0 {
                return Err(at(&format!("{table}.{key}"), "must be more than zero".into()));
            }
            *into = value;
        }
    }
    Ok(limits)
}

fn positive(
    value: Option<u32>,
    key: &str,
    at: &impl Fn(&str, String) -> TomlError,
) -> Result<Option<u32>, TomlError> {
    match value {
        Some(0) => Err(at(key, "must be more than zero".into())),
        other => Ok(other),
    }
}

fn bounded(text: &str) -> String {
    mimobox_core::text::one_line_bounded(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn parse(text: &str) -> Result<ServerConfig, TomlError> {
        ServerConfig::parse(Path::new("/etc/mimobox/server.toml"), text)
    }

    #[test]
    fn owners_take_the_defaults_their_tables_leave_unsaid() {
        let config = parse(&format!(
            "default_profile = \"b\"\n[profiles]\na = \"a.toml\"\nb = \"/srv/b.toml\"\n\
             [limits]\nmemory = \"8GiB\"\n[owner_limits]\nsessions = 4\nrunning_turns = 2\n\
             [owners.x]\ntoken_sha256 = \"{HASH}\"\nsessions = 9\nrequests = 3\n\
             [sessions]\npause_dir = \"paused\"\npause_after = 90\nready = 3\n"
        ))
        .unwrap();
        assert_eq!(config.ready, 3);
        assert_eq!(
            config.profiles,
            vec![
                ("b".into(), PathBuf::from("/srv/b.toml")),
                ("a".into(), PathBuf::from("/etc/mimobox/a.toml"))
            ]
        );
        assert_eq!(
            config.limits,
            Limits { memory: 8 << 30, sessions: DEFAULT_SESSIONS, ..Limits::UNLIMITED }
        );
        assert_eq!(config.owners["x"], Limits { sessions: 9, running_turns: 2, memory: u64::MAX });
        assert_eq!(config.http.requests_of["x"], 3);
        assert_eq!(config.http.owner_requests, DEFAULT_OWNER_REQUESTS);
        assert_eq!(
            config.pause,
            Some(PauseConfig {
                store: StoreAt::Dir("/etc/mimobox/paused".into()),
                after: Duration::from_secs(90),
                state_key: None
            })
        );
    }

    #[test]
    fn a_fleet_table_names_the_catalog_the_shared_store_and_the_secret() {
        let owner = format!("[profiles]\na = \"a.toml\"\n[owners.x]\ntoken_sha256 = \"{HASH}\"\n");
        let config = parse(&format!(
            "{owner}[sessions]\nstate_key = \"key\"\n[fleet]\ncatalog = \"redis://redis:6379\"\n\
             store = \"file:///shared/paused\"\npeer_secret_file = \"peer\"\nlease = \"5s\"\n"
        ))
        .unwrap();
        let fleet = config.fleet.unwrap();
        assert_eq!(fleet.catalog, "redis://redis:6379");
        assert_eq!(fleet.peer_secret_file, PathBuf::from("/etc/mimobox/peer"));
        assert_eq!((fleet.lease, fleet.checkpoint_after), (Duration::from_secs(5), DEFAULT_CHECKPOINT_AFTER));
        assert_eq!(fleet.advertise, "", "left to --advertise");
        let pause = config.pause.unwrap();
        assert_eq!(pause.store, StoreAt::Dir("/shared/paused".into()));
        assert_eq!(pause.state_key, Some(PathBuf::from("/etc/mimobox/key")));
        let fleet = |rest: &str| {
            parse(&format!(
                "{owner}[fleet]\ncatalog = \"redis://r:1\"\nstore = \"file:///s\"\npeer_secret_file = \"p\"\n{rest}"
            ))
            .map(|_| ()).map_err(|e| e.to_string())
        };
        for (rest, expected) in [
            ("store2 = 1\n", "key `fleet.store2`: unknown key"),
            ("lease = \"0s\"\n", "key `fleet.lease`: must be more than zero"),
            ("lease = \"500ms\"\n", "at least 1 second"),
            ("advertise = \"nowhere\"\n", "key `fleet.advertise`"),
        ] {
            let error = fleet(rest).unwrap_err();
            assert!(error.contains(expected), "{rest}: {error}");
        }
        assert_eq!(
            store_at("s3://paused/fleet-a"),
            Ok(StoreAt::S3(S3Location { bucket: "paused".into(), prefix: "fleet-a".into() }))
        );
        for (url, expected) in [
            ("s3://Paused/x", "the bucket is"),
            ("s3://paused/../x", "the prefix is"),
            ("file://relative", "ABSOLUTE"),
            ("gs://bucket", "a store is"),
        ] {
            let problem = store_at(url).unwrap_err();
            assert!(problem.contains(expected), "{url}: {problem}");
        }
        assert_eq!(fleet(""), Ok(()));
        let config = parse(&format!(
            "{owner}[sessions]\nstate_key = \"key\"\n[fleet]\ncatalog = \"redis://r:1\"\n\
             store = \"s3://paused/fleet-a\"\npeer_secret_file = \"p\"\n"
        ))
        .unwrap();
        assert_eq!(config.pause.unwrap().store, store_at("s3://paused/fleet-a").unwrap());
        assert!(check_catalog("http://redis").is_err());
    }

    #[test]
    fn the_readme_and_module_examples_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let blocks: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .filter(|block| block.starts_with("# server.toml"))
            .collect();
        assert_eq!(blocks.len(), 1, "the README shows one server config");
        let config = parse(blocks[0]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.owners["alice"].sessions, 200);
        assert!(config.http.metrics_owners.contains("ops"));
        // This module's own example, with a real hash in place of the
        // placeholder.
        let source = include_str!("config.rs");
        let example: String = source
            .lines()
            .skip_while(|line| *line != "//! ```toml")
            .skip(1)
            .take_while(|line| *line != "//! ```")
            .map(|line| format!("{}\n", line.trim_start_matches("//!").trim_start()))
            .collect();
        parse(&example.replace("<64 hex digits>", HASH)).unwrap_or_else(|e| panic!("{e}\n{example}"));
    }

    #[test]
    fn each_problem_is_one_line_naming_its_key_and_line() {
        let owner = format!("[owners.x]\ntoken_sha256 = \"{HASH}\"\n");
        for (text, expected) in [
            (
                format!("lisen = 1\n[profiles]\na = \"a.toml\"\n{owner}"),
                "server.toml:1:1: key `lisen`: unknown key",
            ),
            (
                format!("[profiles]\na = \"a.toml\"\n{owner}tokn = 1\n"),
                "server.toml:5:1: key `owners.x.tokn`",
            ),
            ("[profiles]\n[owners.x]\ntoken_sha256 = \"\"\n".into(), "key `profiles`: at least one profile"),
            (format!("[profiles]\na = \"a\"\nb = \"b\"\n{owner}"), "key `default_profile`: with more"),
            (format!("default_profile = \"c\"\n[profiles]\na = \"a\"\n{owner}"), "`c` is not in [profiles]"),
            (format!("[profiles]\n\"a/b\" = \"a\"\n{owner}"), "server.toml:2:1: key `profiles.a/b`"),
            ("[profiles]\na = \"a\"\n".into(), "key `owners`: at least one owner"),
            (
                format!("[profiles]\na = \"a\"\n{owner}[sessions]\npause_after = 5\n"),
                "needs `sessions.pause_dir`",
            ),
            (format!("[profiles]\na = \"a\"\n{owner}[http]\nmax_connections = 0\n"), "http.max_connections"),
            (
                format!("[profiles]\na = \"a\"\n{owner}[sessions]\nready = 65\n"),
                "key `sessions.ready`: at most 64",
            ),
            (format!("[profiles]\na = \"a\"\n{owner}[limits]\nmemory = \"lots\"\n"), "key `limits.memory`"),
            (
                format!("limits = [4, 99]\n[profiles]\na = \"a\"\n{owner}"),
                "server.toml:1:10: key `limits`: invalid type",
            ),
            (
                format!("[profiles]\na = \"a\"\n[owners]\nx = [\"{HASH}\", 1]\n"),
                "key `owners.x`: invalid type",
            ),
            (format!("fleet = []\n[profiles]\na = \"a\"\n{owner}"), "key `fleet`: invalid type"),
        ] {
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "expected {expected:?} in {error:?}");
            assert!(!error.contains('\n'), "{error:?}");
        }
    }
}
