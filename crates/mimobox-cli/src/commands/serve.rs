//! `mimobox serve`: the HTTP API on a session host of the offered
//! profiles, until SIGTERM or SIGINT drains it. Configured by a file
//! (`--config`, checked alone with `--check`) or, for the common case, by
//! flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use mimobox_core::Profile;
use mimobox_core::text::one_line_bounded;
use mimobox_fleet::S3Store;
use mimobox_host::{HostConfig, Limits, LocalDir, SessionHost};
use mimobox_server::config::{
    DEFAULT_CHECKPOINT_AFTER, DEFAULT_LEASE, DEFAULT_PAUSE_AFTER, FleetConfig, PauseConfig, ServerConfig,
    StoreAt,
};
use mimobox_server::http::HttpConfig;

use crate::cli::{ServeArgs, flag};
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
        bail!("--{}: needs a fleet (--catalog, or `[fleet]` in the config)", flag::ADVERTISE);
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
    // Every live session holds a slot of its profile's pool, as does each
    // session opened ahead, and a pause one more for a moment.
    let slots = u32::try_from(config.limits.sessions).unwrap_or(u32::MAX).saturating_add(config.ready);
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
    host_config.ready_sessions = config.ready as usize;
    let fleet = config.fleet.clone();
    let peer_secret = match &fleet {
        Some(fleet) => Some(read_peer_secret(&fleet.peer_secret_file)?),
        None => None,
    };
    let mut http = config.http.clone();
    let listen = http.listen;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let served = runtime.block_on(async move {
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
    });
    // What still runs past the drain's bounds is abandoned with the
    // process, not waited for: a runtime torn down under a task that is
    // still computing would fail it in tokio's timers.
    runtime.shutdown_background();
    served?;
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

/// The config the flags describe. Each flag's value was parsed and checked
/// by its own parser; what is left are the checks across flags.
fn from_flags(args: &ServeArgs) -> Result<ServerConfig> {
    let listen = args.listen.unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8800)));
    let mut http = HttpConfig::new(listen);
    for (owner, hash) in &args.tokens {
        if http.tokens.iter().any(|(h, _)| h == hash) {
            bail!("--{} {}: this token hash is given twice", flag::TOKEN_SHA256, one_line_bounded(owner));
        }
        http.tokens.push((*hash, owner.clone()));
    }
    for owner in &args.metrics_owners {
        if !http.tokens.iter().any(|(_, named)| named == owner) {
            bail!(
                "--{} {}: no --{} names this owner",
                flag::METRICS_OWNER,
                one_line_bounded(owner),
                flag::TOKEN_SHA256
            );
        }
        http.metrics_owners.insert(owner.clone());
    }
    http.read_timeout = args.read_timeout.unwrap_or(http.read_timeout);
    http.max_stream = args.max_stream.unwrap_or(http.max_stream);
    let sessions = u64::from(args.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS));
    let limits = Limits { sessions, ..Limits::UNLIMITED };
    let pause_after = args.pause_after.unwrap_or(DEFAULT_PAUSE_AFTER);
    let pause = args.pause_dir.as_ref().map(|dir| PauseConfig {
        store: StoreAt::Dir(dir.clone()),
        after: pause_after,
        state_key: args.state_key.clone(),
    });
    let (fleet, pause) = match (&args.catalog, &args.store) {
        (Some(catalog), Some(store)) => {
            let fleet = FleetConfig {
                catalog: catalog.clone(),
                advertise: String::new(),
                peer_secret_file: args.peer_secret_file.clone().unwrap_or_default(),
                lease: args.lease.unwrap_or(DEFAULT_LEASE),
                checkpoint_after: args.checkpoint_after.unwrap_or(DEFAULT_CHECKPOINT_AFTER),
            };
            let pause =
                PauseConfig { store: store.clone(), after: pause_after, state_key: args.state_key.clone() };
            (Some(fleet), Some(pause))
        }
        _ => (None, pause),
    };
    Ok(ServerConfig {
        http,
        profiles: offered(&args.profiles)?,
        limits,
        owner_limits: limits,
        owners: Default::default(),
        pause,
        close_after: None,
        ready: 0,
        fleet,
    })
}

/// The `--profile` values as (name, file), each name once.
pub fn offered(values: &[(String, PathBuf)]) -> Result<Vec<(String, PathBuf)>> {
    let mut offered: Vec<(String, PathBuf)> = Vec::new();
    for (name, path) in values {
        if offered.iter().any(|(other, _)| other == name) {
            bail!("--{} {name}: named twice", flag::PROFILE);
        }
        offered.push((name.clone(), path.clone()));
    }
    Ok(offered)
}
