//! `cargo xtask fixtures`: the WAT fixtures, compiled as the tests see them.

use anyhow::{Result, anyhow};

pub fn run() -> Result<()> {
    let out = super::root().join("target").join("fixtures");
    let written =
        mimobox_fixtures::compile_dir(&mimobox_fixtures::wat_dir(), &out).map_err(|e| anyhow!(e))?;
    for path in &written {
        println!("{}", path.display());
    }
    println!("{} fixtures in {}", written.len(), out.display());
    Ok(())
}
