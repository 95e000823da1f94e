//! Which tools a [`SandboxConfig`] grants.

use mimobox_core::{ConfigError, SandboxConfig, SandboxError, keys};

use crate::Tool;

/// The tools `config` grants: each `[tools.NAME]` command, checked to be
/// an executable file now rather than at its first call, and `http` when
/// `allowed_http_domains` lists any host.
pub fn granted_tools(config: &SandboxConfig) -> Result<Vec<Tool>, SandboxError> {
    let mut granted = Vec::new();
    // A command tool runs in a PID namespace of its own, so that nothing
    // it starts outlives its call; a host that refuses one cannot honour
    // the grant.
    if !config.tools.is_empty() {
        crate::command_tools_supported()
            .map_err(|reason| SandboxError::Unsupported { key: keys::TOOLS.into(), reason })?;
    }
    for (name, tool) in &config.tools {
        let key = format!("{}.{name}.command", keys::TOOLS);
        let program = tool.program().ok_or_else(|| ConfigError::new(&key, "names no program"))?;
        let executable = std::fs::metadata(&program)
            .map(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0);
        match executable {
            Ok(true) => {}
            Ok(false) => {
                return Err(ConfigError::new(
                    key,
                    format!("{} is not an executable file", program.display()),
                )
                .into());
            }
            Err(e) => return Err(ConfigError::new(key, format!("{}: {e}", program.display())).into()),
        }
        granted.push(crate::command_tool(name, tool));
    }
    if !config.allowed_http_domains.is_empty() {
        granted.push(crate::http_tool(&config.allowed_http_domains));
    }
    Ok(granted)
}
