//! `mimobox demo`: the built-in hello module, with no set-up.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use mimobox_core::{ExecRequest, ModuleSource, SandboxConfig};
use mimobox_wasm::WasmSandbox;

use crate::cli::DemoArgs;
use crate::commands::run::{one_shot, report};

/// The hello fixture, as WAT text; the sandbox compiles text as well.
const HELLO: &str = include_str!("demo.wat");

pub fn execute(args: DemoArgs) -> Result<ExitCode> {
    let sandbox = WasmSandbox::create(one_shot(SandboxConfig::default()))?;
    let module = ModuleSource::Bytes { name: "hello.wat".into(), bytes: Arc::from(HELLO.as_bytes()) };
    let result = sandbox.run(ExecRequest { module: Some(module), ..ExecRequest::default() })?;
    report(&result, args.json, false)
}
