//! `mimobox mcp`: the MCP server over stdio, on a session host of the
//! offered profiles.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use mimobox_core::Profile;
use mimobox_host::{HostConfig, Limits, SessionHost};
use mimobox_server::mcp::McpServer;
use mimobox_wasm::{WasmSandbox, check_config};

use crate::cli::McpArgs;

/// The owner of every session of this process: its one client.
const OWNER: &str = "stdio";

pub fn execute(args: McpArgs) -> Result<ExitCode> {
    let profiles = sandboxes(&super::serve::offered(&args.profiles)?, args.max_sessions)?;
    let default = profiles[0].0.clone();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let served = runtime.block_on(serve(profiles, default, args.max_sessions));
    // Work that outlasts the shutdown's bound ends with the process.
    runtime.shutdown_background();
    served?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(profiles: Vec<(String, WasmSandbox)>, default: String, max_sessions: u32) -> Result<()> {
    {
        let mut config = HostConfig::new(random_key()?);
        config.owner_limits = Limits { sessions: u64::from(max_sessions), ..Limits::UNLIMITED };
        let host = SessionHost::new(config, profiles)?;
        let server = McpServer::new(host.clone(), OWNER, &default);
        let served = mimobox_server::mcp::serve_stdio(server).await;
        host.shutdown(std::time::Duration::from_secs(5)).await;
        served.map_err(anyhow::Error::from)
    }
}

/// One sandbox for each offered profile, by name, with room in its pool
/// for `sessions` sessions.
pub fn sandboxes(offered: &[(String, PathBuf)], sessions: u32) -> Result<Vec<(String, WasmSandbox)>> {
    let mut profiles = Vec::new();
    for (name, path) in offered {
        let name = name.clone();
        let profile = Profile::load(path).map_err(|e| anyhow::anyhow!("profile {name}: {e}"))?;
        let mut config = profile.into_config();
        // Every session holds a slot; a pause takes one more for a moment.
        config.pool.size = config.pool.size.max(sessions.saturating_add(1)).min(1024);
        check_config(&config).map_err(|e| anyhow::anyhow!("profile {name}: {e}"))?;
        let sandbox = WasmSandbox::create(config).map_err(|e| anyhow::anyhow!("profile {name}: {e}"))?;
        profiles.push((name, sandbox));
    }
    Ok(profiles)
}

/// A key for this process's paused states (none outlive it).
pub fn random_key() -> Result<Vec<u8>> {
    let mut key = vec![0u8; 32];
    rustix::rand::getrandom(&mut key, rustix::rand::GetRandomFlags::empty()).context("reading randomness")?;
    Ok(key)
}
