//! The Wasm backend's own checks of a [`SandboxConfig`].

use mimobox_core::{Backend, SandboxConfig, SandboxError, keys};

use super::limits::MAX_MEMORY_LIMIT;

/// Checks that this backend can honour every setting of `config`, on top
/// of [`SandboxConfig::validate`]. A setting it cannot honour is an error,
/// never a silent downgrade.
pub fn check_config(config: &SandboxConfig) -> Result<(), SandboxError> {
    config.validate()?;
    if config.backend != Backend::Wasm {
        return Err(SandboxError::Unsupported {
            key: keys::BACKEND.into(),
            reason: format!("this is the wasm backend, not `{}`", config.backend.name()),
        });
    }
    if !config.deny_network {
        return Err(SandboxError::Unsupported {
            key: keys::DENY_NETWORK.into(),
            reason: "the wasm backend has no network to grant; set `deny_network = true`".into(),
        });
    }
    if config.memory_limit > MAX_MEMORY_LIMIT {
        return Err(SandboxError::Unsupported {
            key: keys::MEMORY_LIMIT.into(),
            reason: format!(
                "{} is beyond what a wasm32 guest can address (at most 4GiB)",
                mimobox_core::units::format_size(config.memory_limit)
            ),
        });
    }
    Ok(())
}
