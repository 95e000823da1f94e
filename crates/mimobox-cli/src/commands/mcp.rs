//! `mimobox mcp`: the MCP server over stdio, on a session host of the
//! offered profiles.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use mimobox_core::Profile;
use mimobox_host::{HostConfig, Limits, SessionHost};
use mimobox_server::mcp::McpServer;
use mimobox_wasm::{WasmSandbox, check_config};

use crate::cli::McpArgs;

/// The owner of every session of this process: its one client.
const OWNER: &str = "stdio";

pub fn execute(args: McpArgs) -> Result<ExitCode> {
    let profiles = sandboxes(&args.profiles, args.max_sessions)?;
    let default = profiles[0].0.clone();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(serve(profiles, default, args.max_sessions))?;
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

/// One sandbox for each `--profile` value, by name, with room in its pool
/// for `sessions` sessions.
pub fn sandboxes(values: &[String], sessions: u32) -> Result<Vec<(String, WasmSandbox)>> {
    let mut profiles = Vec::new();
    for (name, path) in offered(values)? {
        let profile = Profile::load(&path).map_err(|e| anyhow::anyhow!("--profile {name}: profile {e}"))?;
        let mut config = profile.into_config();
        // Every session holds a slot; a pause takes one more for a moment.
        config.pool.size = config.pool.size.max(sessions.saturating_add(1)).min(1024);
        check_config(&config).map_err(|e| anyhow::anyhow!("--profile {name}: {e}"))?;
        let sandbox = WasmSandbox::create(config).map_err(|e| anyhow::anyhow!("--profile {name}: {e}"))?;
        profiles.push((name, sandbox));
    }
    Ok(profiles)
}

/// The `--profile` values as (name, file), names unique.
fn offered(values: &[String]) -> Result<Vec<(String, PathBuf)>> {
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
        if name.is_empty()
            || name.len() > 128
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!(
                "--profile {}: a name is 1 to 128 letters, digits, `-`, `_` and `.`",
                mimobox_core::text::one_line_bounded(&name)
            );
        }
        if offered.iter().any(|(other, _)| *other == name) {
            bail!("--profile {name}: named twice");
        }
        offered.push((name, path));
    }
    Ok(offered)
}

/// A key for this process's paused states (none outlive it).
pub fn random_key() -> Result<Vec<u8>> {
    let mut key = vec![0u8; 32];
    rustix::rand::getrandom(&mut key, rustix::rand::GetRandomFlags::empty()).context("reading randomness")?;
    Ok(key)
}
