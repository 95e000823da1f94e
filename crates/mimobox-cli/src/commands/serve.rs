//! `mimobox serve`: the HTTP API on a session host of the offered
//! profiles, until SIGTERM or SIGINT drains it.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mimobox_host::{HostConfig, Limits, LocalDir, SessionHost};
use mimobox_server::http::{HttpConfig, parse_token_hash};

use crate::cli::ServeArgs;
use crate::commands::{mcp, pause};

/// Most bytes of one paused session in the pause directory.
const MAX_PAUSED: u64 = 8 << 30;

pub fn execute(args: ServeArgs) -> Result<ExitCode> {
    let mut tokens = Vec::new();
    for value in &args.tokens {
        let Some((owner, hex)) = value.split_once('=') else {
            bail!("--token-sha256: expected OWNER=HEX");
        };
        let Some(hash) = parse_token_hash(&hex.to_ascii_lowercase()) else {
            bail!(
                "--token-sha256 {}: the hash is 64 hex digits",
                mimobox_core::text::one_line_bounded(owner)
            );
        };
        if owner.is_empty()
            || owner.len() > mimobox_host::MAX_OWNER_NAME
            || owner.chars().any(char::is_control)
        {
            bail!("--token-sha256: an owner is 1 to 128 printable characters");
        }
        if tokens.iter().any(|(h, _)| *h == hash) {
            bail!(
                "--token-sha256 {}: this token hash is given twice",
                mimobox_core::text::one_line_bounded(owner)
            );
        }
        tokens.push((hash, owner.to_owned()));
    }
    let profiles = mcp::sandboxes(&args.profiles, args.max_sessions)?;
    let mut host_config = match &args.pause_dir {
        Some(dir) => {
            let mut config = HostConfig::new(pause::state_key(args.state_key.as_deref(), &profiles[0].1)?);
            let store =
                LocalDir::open(dir, MAX_PAUSED).with_context(|| format!("--pause-dir {}", dir.display()))?;
            config.store = Some(Arc::new(store));
            config.pause_idle_after = Some(Duration::from_secs(args.pause_after.max(1)));
            config
        }
        None => HostConfig::new(mcp::random_key()?),
    };
    // The pool holds `max_sessions` sessions and one spare slot for a
    // pause: that bounds the whole server, not each owner alone.
    host_config.owner_limits = Limits { sessions: u64::from(args.max_sessions), ..Limits::UNLIMITED };
    host_config.limits = Limits { sessions: u64::from(args.max_sessions), ..Limits::UNLIMITED };
    let mut http = HttpConfig::new(args.listen);
    http.tokens = tokens;
    http.read_timeout = Duration::from_secs(args.read_timeout.max(1));
    http.max_stream = Duration::from_secs(args.max_stream.max(1));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let host = SessionHost::new(host_config, profiles)?;
        // What an earlier server paused on its drain is taken up again.
        let adopted = host.adopt_paused().await?;
        if adopted.adopted + adopted.refused > 0 {
            tracing::info!("paused sessions taken up: {}, left alone: {}", adopted.adopted, adopted.refused);
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
        .with_context(|| format!("--listen {}", args.listen))
    })?;
    Ok(ExitCode::SUCCESS)
}
