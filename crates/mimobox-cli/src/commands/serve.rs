//! `mimobox serve`: the HTTP API on a session host of the offered
//! profiles, until SIGTERM or SIGINT drains it. Configured by a file
//! (`--config`, checked alone with `--check`) or, for the common case, by
//! flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use mimobox_core::Profile;
use mimobox_core::text::one_line_bounded;
use mimobox_core::units::parse_duration;
use mimobox_fleet::S3Store;
use mimobox_host::{HostConfig, Limits, LocalDir, SessionHost};
use mimobox_server::config::{
    DEFAULT_CHECKPOINT_AFTER, DEFAULT_LEASE, DEFAULT_PAUSE_AFTER, FleetConfig, PauseConfig, ServerConfig,
    StoreAt, check_advertise, check_catalog, check_duration, check_owner_name, check_profile_name, store_at,
};
use mimobox_server::http::{HttpConfig, parse_token_hash};

use crate::cli::ServeArgs;
use crate::commands::{mcp, pause};

/// Most bytes of one paused session in the pause directory.
const MAX_PAUSED: u64 = 8 << 30;

/// Sessions a server started by flags holds at once, unless told.
const DEFAULT_MAX_SESSIONS: u32 = mimobox_server::config::DEFAULT_SESSIONS as u32;

pub fn execute(args: ServeArgs) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::load(path).map_err(|e| anyhow!("{e}"))?,
        None => from_flags(&args)?,
    };
    if let Some(fleet) = &mut config.fleet {
        if let Some(advertise) = &args.advertise {
            check_advertise(advertise).map_err(|problem| anyhow!("--advertise: {problem}"))?;
            fleet.advertise = advertise.clone();
        }
        if fleet.advertise.is_empty() {
            bail!(
                "a fleet's worker needs the address other workers reach it at: `fleet.advertise` or --advertise"
            );
        }
        if config.pause.as_ref().is_none_or(|p| p.state_key.is_none()) {
            bail!("a fleet's workers share the key of paused states: `sessions.state_key` or --state-key");
        }
    } else if args.advertise.is_some() {
        bail!("--advertise: needs a fleet (--catalog, or `[fleet]` in the config)");
    }
    if args.check {
        check(&config)?;
        let what = args.config.as_deref().map_or("the flags".into(), |p| p.display().to_string());
        println!(
            "{what}: ok: {} profile(s), {} owner(s), listening on {}",
            config.profiles.len(),
            config.http.tokens.iter().map(|(_, owner)| owner).collect::<std::collections::HashSet<_>>().len(),
            config.http.listen
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Every live session holds a slot of its profile's pool, and a pause
    // one more for a moment.
    let slots = u32::try_from(config.limits.sessions).unwrap_or(u32::MAX);
    let profiles = mcp::sandboxes(&config.profiles, slots)?;
    let mut host_config = match &config.pause {
        Some(paused) => {
            let mut host = HostConfig::new(pause::state_key(paused.state_key.as_deref(), &profiles[0].1)?);
            host.store = Some(match &paused.store {
                StoreAt::Dir(dir) => Arc::new(
                    LocalDir::open(dir, MAX_PAUSED)
                        .with_context(|| format!("the pause directory {}", dir.display()))?,
                ),
                StoreAt::S3(location) => Arc::new(
                    S3Store::from_env(location.clone(), MAX_PAUSED)
                        .with_context(|| format!("the store {location}"))?,
                ),
            });
            host.pause_idle_after = Some(paused.after);
            host
        }
        None => HostConfig::new(mcp::random_key()?),
    };
    host_config.limits = config.limits;
    host_config.owner_limits = config.owner_limits;
    host_config.owners = config.owners.clone();
    host_config.close_idle_after = config.close_after;
    let fleet = config.fleet.clone();
    let peer_secret = match &fleet {
        Some(fleet) => Some(read_peer_secret(&fleet.peer_secret_file)?),
        None => None,
    };
    let mut http = config.http.clone();
    let listen = http.listen;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        if let (Some(fleet), Some(secret)) = (&fleet, peer_secret) {
            let catalog = mimobox_fleet::RedisCatalog::connect(&fleet.catalog, "mimobox:")
                .await
                .map_err(|e| anyhow!("the catalog {}: {e}", one_line_bounded(&fleet.catalog)))?;
            let member = mimobox_fleet::Member::new(catalog, fleet.advertise.clone(), fleet.lease);
            host_config.fleet = Some(Arc::new(member.clone()));
            host_config.checkpoint_after = Some(fleet.checkpoint_after);
            http.peers = Some(mimobox_server::peers::Peers::new(member, secret).map_err(|e| anyhow!("{e}"))?);
        }
        let in_fleet = host_config.fleet.is_some();
        let host = SessionHost::new(host_config, profiles)?;
        // What an earlier server paused on its drain is taken up again; in
        // a fleet, each session is claimed when it is next asked for.
        if !in_fleet {
            let adopted = host.adopt_paused().await?;
            if adopted.adopted + adopted.refused > 0 {
                tracing::info!(
                    "paused sessions taken up: {}, left alone: {}",
                    adopted.adopted,
                    adopted.refused
                );
            }
        }
        let stop = Arc::new(tokio::sync::Notify::new());
        let signals = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            signals.notify_waiters();
            signals.notify_one();
        });
        mimobox_server::http::serve(host, http, stop, |bound| {
            eprintln!("mimobox: listening on http://{bound}")
        })
        .await
        .with_context(|| format!("listening on {listen}"))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Checks what a start would check first, without starting: every
/// profile loads and its settings are ones the backend honours, and the
/// state key (when one is named) is readable.
fn check(config: &ServerConfig) -> Result<()> {
    for (name, path) in &config.profiles {
        let profile = Profile::load(path).map_err(|e| anyhow!("profile {name}: {e}"))?;
        mimobox_wasm::check_config(profile.config()).map_err(|e| anyhow!("profile {name}: {e}"))?;
    }
    if let Some(PauseConfig { state_key: Some(key), .. }) = &config.pause {
        pause::read_state_key(key)?;
    }
    if let Some(fleet) = &config.fleet {
        read_peer_secret(&fleet.peer_secret_file)?;
    }
    Ok(())
}

/// The fleet's shared secret, from a file that only this user can read.
fn read_peer_secret(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let what = || format!("the peer secret {}", path.display());
    let metadata = std::fs::metadata(path).with_context(what)?;
    if !metadata.is_file() || metadata.len() > 4096 {
        bail!("{}: not a file of at most 4096 bytes", what());
    }
    if metadata.mode() & 0o077 != 0 {
        bail!("{}: readable by others (it must be mode 0600 or stricter)", what());
    }
    let secret = std::fs::read(path).with_context(what)?;
    let secret = secret.trim_ascii().to_vec();
    if secret.len() < mimobox_server::peers::MIN_PEER_SECRET {
        bail!("{}: at least {} bytes", what(), mimobox_server::peers::MIN_PEER_SECRET);
    }
    Ok(secret)
}

/// The config the flags describe.
fn from_flags(args: &ServeArgs) -> Result<ServerConfig> {
    let listen = args.listen.unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8800)));
    let mut http = HttpConfig::new(listen);
    for value in &args.tokens {
        let Some((owner, hex)) = value.split_once('=') else {
            bail!("--token-sha256: expected OWNER=HEX");
        };
        check_owner_name(owner).map_err(|problem| anyhow!("--token-sha256: {problem}"))?;
        let Some(hash) = parse_token_hash(&hex.to_ascii_lowercase()) else {
            bail!("--token-sha256 {}: the hash is 64 hex digits", one_line_bounded(owner));
        };
        if http.tokens.iter().any(|(h, _)| *h == hash) {
            bail!("--token-sha256 {}: this token hash is given twice", one_line_bounded(owner));
        }
        http.tokens.push((hash, owner.to_owned()));
    }
    for owner in &args.metrics_owners {
        if !http.tokens.iter().any(|(_, named)| named == owner) {
            bail!("--metrics-owner {}: no --token-sha256 names this owner", one_line_bounded(owner));
        }
        http.metrics_owners.insert(owner.clone());
    }
    let duration =
        |flag: &str, text: &Option<String>, default: Duration, most: Duration| -> Result<Duration> {
            match text {
                None => Ok(default),
                Some(text) => {
                    let value = parse_duration(text).with_context(|| flag.to_owned())?;
                    check_duration(Some(value), most).map_err(|problem| anyhow!("{flag}: {problem}"))?;
                    Ok(value)
                }
            }
        };
    const HOUR: Duration = Duration::from_secs(3600);
    http.read_timeout = duration("--read-timeout", &args.read_timeout, http.read_timeout, HOUR)?;
    http.max_stream = duration("--max-stream", &args.max_stream, http.max_stream, 24 * HOUR)?;
    let sessions = match args.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS) {
        0 => bail!("--max-sessions: must be more than zero"),
        n => u64::from(n),
    };
    let limits = Limits { sessions, ..Limits::UNLIMITED };
    let pause = match &args.pause_dir {
        Some(dir) => Some(PauseConfig {
            store: StoreAt::Dir(dir.clone()),
            after: duration("--pause-after", &args.pause_after, DEFAULT_PAUSE_AFTER, 365 * 24 * HOUR)?,
            state_key: args.state_key.clone(),
        }),
        None if args.pause_after.is_some() && args.store.is_none() => {
            bail!("--pause-after: needs --pause-dir")
        }
        None => None,
    };
    let (fleet, pause) = match &args.catalog {
        None => (None, pause),
        Some(catalog) => {
            check_catalog(catalog).map_err(|problem| anyhow!("--catalog: {problem}"))?;
            if pause.is_some() {
                bail!("--pause-dir: a fleet's sessions pause to --store");
            }
            let store = args.store.as_deref().unwrap_or_default();
            let store = store_at(store).map_err(|problem| anyhow!("--store: {problem}"))?;
            let fleet = FleetConfig {
                catalog: catalog.clone(),
                advertise: String::new(),
                peer_secret_file: args.peer_secret_file.clone().unwrap_or_default(),
                lease: duration("--lease", &args.lease, DEFAULT_LEASE, HOUR)?,
                checkpoint_after: duration(
                    "--checkpoint-after",
                    &args.checkpoint_after,
                    DEFAULT_CHECKPOINT_AFTER,
                    24 * HOUR,
                )?,
            };
            if fleet.lease < Duration::from_secs(1) {
                bail!("--lease: must be at least 1 second");
            }
            let pause = PauseConfig {
                store,
                after: duration("--pause-after", &args.pause_after, DEFAULT_PAUSE_AFTER, 365 * 24 * HOUR)?,
                state_key: args.state_key.clone(),
            };
            (Some(fleet), Some(pause))
        }
    };
    Ok(ServerConfig {
        http,
        profiles: offered(&args.profiles)?,
        limits,
        owner_limits: limits,
        owners: Default::default(),
        pause,
        close_after: None,
        fleet,
    })
}

/// The `--profile` values as (name, file), names unique.
pub fn offered(values: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let mut offered: Vec<(String, PathBuf)> = Vec::new();
    for value in values {
        let (name, path) = match value.split_once('=') {
            Some((name, path)) => (name.to_owned(), PathBuf::from(path)),
            None => {
                let path = PathBuf::from(value);
                let name = Path::new(&path)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .with_context(|| format!("--profile {value}: no name can be made from the file name"))?
                    .to_owned();
                (name, path)
            }
        };
        check_profile_name(&name)
            .map_err(|problem| anyhow!("--profile {}: {problem}", one_line_bounded(&name)))?;
        if offered.iter().any(|(other, _)| *other == name) {
            bail!("--profile {name}: named twice");
        }
        offered.push((name, path));
    }
    Ok(offered)
}
