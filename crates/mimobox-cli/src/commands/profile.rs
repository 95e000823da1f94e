//! `mimobox profile check|show`.

use std::process::ExitCode;

use anyhow::Result;
use mimobox_wasm::check_config;

use crate::cli::{LimitFlags, ProfileCommand};
use crate::flags::Resolved;

pub fn execute(command: ProfileCommand) -> Result<ExitCode> {
    match command {
        ProfileCommand::Check { file } => {
            let flags = LimitFlags { profile: Some(file.clone()), ..LimitFlags::default() };
            Resolved::new(&flags, check_config)?;
            println!("{}: ok", file.display());
        }
        ProfileCommand::Show { file, mut limits } => {
            limits.profile = Some(file);
            let limits = *limits;
            let resolved = Resolved::new(&limits, check_config)?;
            print!("{}", resolved.config.to_toml()?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
