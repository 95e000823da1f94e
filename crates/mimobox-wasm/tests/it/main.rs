//! The Wasm sandbox through its public API, with hostile fixtures for every
//! limit. One test binary; modules by topic.

mod async_api;
mod attacks;
mod cache;
mod checkpoints;
mod errors;
mod fs;
mod interpreter;
mod io;
mod limits;
mod sessions;
mod threads;
mod tools;

use std::path::Path;

use mimobox_core::{ExecRequest, ModuleSource, SandboxConfig, SandboxResult};
use mimobox_wasm::WasmSandbox;

/// A config whose disk cache lives in `cache_dir`, never in the user's.
fn config_in(cache_dir: &Path) -> SandboxConfig {
    let mut config = SandboxConfig::default();
    config.cache.dir = Some(cache_dir.to_owned());
    config
}

/// A request to run `module` with `args`.
fn request(module: &Path, args: &[&str]) -> ExecRequest {
    ExecRequest {
        module: Some(ModuleSource::Path(module.to_owned())),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..ExecRequest::default()
    }
}

/// Runs fixture `name` with `args` under `config`.
fn run_fixture(config: SandboxConfig, name: &str, args: &[&str]) -> SandboxResult {
    let sandbox = WasmSandbox::create(config).expect("sandbox");
    sandbox.run(request(&mimobox_fixtures::path(name), args)).expect("run")
}

/// Runs fixture `name` under `adjust(default config)` with a private cache.
fn run_with(name: &str, args: &[&str], adjust: impl FnOnce(&mut SandboxConfig)) -> SandboxResult {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    adjust(&mut config);
    run_fixture(config, name, args)
}

/// A sandbox on the shipped `python-sci` profile (the scientific CPython,
/// with its preload), whose cache is the one the CLI's tests share, so
/// that the 100 MB module and its checkpoint are compiled once per run.
fn python_sci() -> WasmSandbox {
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles/python-sci.toml");
    mimobox_fixtures::runtimes::scientific();
    let mut config = mimobox_core::Profile::load(&profile).unwrap().into_config();
    config.cache.dir = Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("scientific-cache"));
    config.compile_timeout = std::time::Duration::from_secs(600);
    WasmSandbox::create(config).unwrap()
}
