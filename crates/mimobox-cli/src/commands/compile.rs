//! `mimobox compile`: warm the cache ahead of time.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use mimobox_core::ModuleSource;
use mimobox_core::units::DisplaySize;
use mimobox_wasm::{ModuleOrigin, WasmSandbox, check_config};

use crate::cli::CompileArgs;
use crate::commands::progress;
use crate::commands::run::one_shot;
use crate::flags::Resolved;

fn describe(origin: ModuleOrigin, started: Instant) -> String {
    match origin {
        ModuleOrigin::Compiled => format!("compiled in {:.2}s", started.elapsed().as_secs_f64()),
        ModuleOrigin::DiskCache => "already cached".to_owned(),
        ModuleOrigin::Memory => "already loaded".to_owned(),
    }
}

pub fn execute(args: CompileArgs) -> Result<ExitCode> {
    let resolved = Resolved::new(&args.limits, check_config)?;
    let sandbox = WasmSandbox::create(one_shot(resolved.config.clone())).map_err(|e| resolved.explain(e))?;
    if sandbox.cache().is_none() {
        anyhow::bail!("no usable module cache: compiling now would not help later runs");
    }
    if std::io::stderr().is_terminal() {
        progress::attach(&sandbox);
    }
    let modules = match (args.modules.is_empty(), &resolved.config.module) {
        (false, _) => args.modules,
        (true, Some(module)) => vec![module.clone()],
        (true, None) => anyhow::bail!("no module given: name one, or use a profile with `module = \"...\"`"),
    };
    for module in &modules {
        let size = std::fs::metadata(module).map(|m| m.len()).unwrap_or(0);
        let started = Instant::now();
        let source = ModuleSource::Path(module.clone());
        let origin = sandbox.prepare(&source).map_err(|e| resolved.explain(e))?;
        println!("{}: {} ({})", module.display(), describe(origin, started), DisplaySize(size));
        // With a preload, sessions open from its checkpoint: build it now.
        if resolved.config.session.preload.is_some() {
            let started = Instant::now();
            let origin = sandbox.prepare_sessions(&source).map_err(|e| resolved.explain(e))?;
            let what = describe(origin, started).replace("compiled", "built");
            println!("{}: session checkpoint (session.preload): {what}", module.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
