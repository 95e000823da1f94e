//! What keeps a module from running: each a typed error.

use std::path::PathBuf;

use mimobox_core::{ExecRequest, ModuleSource, Outcome, SandboxConfig, SandboxError};
use mimobox_wasm::WasmSandbox;

use crate::{config_in, request};

fn run_path(config: SandboxConfig, path: PathBuf) -> Result<mimobox_core::SandboxResult, SandboxError> {
    WasmSandbox::create(config)?.run(request(&path, &[]))
}

#[test]
fn missing_module_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_path(config_in(dir.path()), dir.path().join("nope.wasm")).unwrap_err();
    assert!(matches!(err, SandboxError::ModuleNotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope.wasm"), "{err}");
}

#[test]
fn garbage_is_an_invalid_module() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0\xff\xff garbage").unwrap();
    let err = run_path(config_in(dir.path()), path).unwrap_err();
    assert!(matches!(err, SandboxError::InvalidModule { .. }), "{err}");
}

#[test]
fn oversized_module_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig { max_module_size: 16, ..config_in(dir.path()) };
    let err = run_path(config, mimobox_fixtures::path("hello")).unwrap_err();
    assert!(matches!(err, SandboxError::ModuleTooLarge { limit: 16, .. }), "{err}");
}

#[test]
fn unknown_import_cannot_be_linked() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_path(config_in(dir.path()), mimobox_fixtures::path("needs_import")).unwrap_err();
    assert!(matches!(err, SandboxError::Link { .. }), "{err}");
    assert!(err.to_string().contains("launch_missiles"), "{err}");
}

#[test]
fn module_without_entry_point_cannot_be_linked() {
    let dir = tempfile::tempdir().unwrap();
    let module = ModuleSource::Bytes { name: "empty".into(), bytes: b"(module)".to_vec().into() };
    let sandbox = WasmSandbox::create(config_in(dir.path())).unwrap();
    let err = sandbox.run(ExecRequest { module: Some(module), ..ExecRequest::default() }).unwrap_err();
    assert!(matches!(err, SandboxError::Link { .. }), "{err}");
}

#[test]
fn wat_text_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let result = run_path(config_in(dir.path()), mimobox_fixtures::wat_path("hello")).unwrap();
    assert_eq!((result.outcome, result.stdout), (Outcome::Exited { code: 0 }, b"hello, world\n".to_vec()));
}

#[test]
fn network_cannot_be_granted() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig { deny_network: false, ..config_in(dir.path()) };
    let err = WasmSandbox::create(config).err().expect("must be refused");
    assert!(matches!(&err, SandboxError::Unsupported { key, .. } if key == "deny_network"), "{err}");
}

#[test]
fn memory_beyond_wasm32_is_unsupported() {
    let config = SandboxConfig { memory_limit: 8 << 30, ..SandboxConfig::default() };
    let err = WasmSandbox::create(config).err().expect("must be refused");
    assert_eq!(err.config_key(), Some("memory_limit_mb"));
}

#[test]
fn missing_mount_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    config.fs_readonly = vec![mimobox_core::Mount::parse("/no/such/dir::/data").unwrap()];
    let err = WasmSandbox::create(config).err().expect("must be refused");
    assert!(matches!(err, SandboxError::Mount { .. }), "{err}");
}

#[test]
fn zero_timeout_is_a_config_error() {
    let config = SandboxConfig { timeout: std::time::Duration::ZERO, ..SandboxConfig::default() };
    let err = WasmSandbox::create(config).err().expect("must be refused");
    assert_eq!(err.config_key(), Some("timeout_secs"));
}

#[test]
fn malformed_request_env_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config_in(dir.path())).unwrap();
    let mut req = request(&mimobox_fixtures::path("hello"), &[]);
    req.env = vec![("A=B".into(), "c".into())];
    let err = sandbox.run(req).unwrap_err();
    assert_eq!(err.config_key(), Some("env"));
}

#[test]
fn the_largest_module_size_limit_does_not_overflow() {
    // A library caller may set the bound to u64::MAX; reading a module
    // must not compute past it.
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.max_module_size = u64::MAX;
    let result = run_path(config, mimobox_fixtures::path("hello")).unwrap();
    assert_eq!(result.stdout, b"hello, world\n");
}
