//! Arguments, environment, stdin and live output reaching the guest.

use std::sync::{Arc, Mutex};

use mimobox_core::{ExecRequest, ModuleSource, Outcome, SandboxConfig};
use mimobox_wasm::WasmSandbox;

use crate::{config_in, request};

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes).lines().map(str::to_owned).collect()
}

#[test]
fn args_and_env_reach_the_guest() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.args = vec!["--from-config".into()];
    config.env.insert("GREETING".into(), "hello".into());
    config.env.insert("OVERRIDDEN".into(), "config".into());
    let sandbox = WasmSandbox::create(config).unwrap();
    let module = mimobox_fixtures::path("env_args");
    let mut req = request(&module, &["one", "two words"]);
    req.env = vec![("OVERRIDDEN".into(), "request".into())];
    let result = sandbox.run(req).unwrap();
    assert_eq!(result.outcome, Outcome::Exited { code: 0 });
    assert_eq!(
        lines(&result.stdout),
        [
            // argv[0] is the file name, never the host path.
            module.file_name().unwrap().to_string_lossy().into_owned(),
            "--from-config".into(),
            "one".into(),
            "two words".into(),
            "GREETING=hello".into(),
            "OVERRIDDEN=request".into()
        ]
    );
}

#[test]
fn no_environment_is_inherited_by_default() {
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    let result = sandbox.run(request(&mimobox_fixtures::path("env_args"), &[])).unwrap();
    assert_eq!(lines(&result.stdout).len(), 1, "only argv[0]: {:?}", result.stdout_lossy());
}

#[test]
fn stdin_bytes_reach_the_guest_and_default_to_empty() {
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    let module = mimobox_fixtures::path("cat");
    let mut req = request(&module, &[]);
    req.stdin = b"piped input\n".to_vec().into();
    assert_eq!(sandbox.run(req).unwrap().stdout, b"piped input\n");
    let empty = sandbox.run(request(&module, &[])).unwrap();
    assert_eq!((empty.outcome, empty.stdout), (Outcome::Exited { code: 0 }, vec![]));
}

#[test]
fn live_sink_receives_output_within_the_cap() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.max_stdout = 70_000;
    let sandbox = WasmSandbox::create(config).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    let mut req = request(&mimobox_fixtures::path("flood"), &[]);
    req.stdout_sink = Some(Box::new(move |bytes: &[u8]| sink_seen.lock().unwrap().extend_from_slice(bytes)));
    let result = sandbox.run(req).unwrap();
    assert!(result.stdout_truncated);
    assert_eq!(*seen.lock().unwrap(), result.stdout);
}

#[test]
fn a_sandbox_runs_many_times_in_isolation() {
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    let module = ModuleSource::Path(mimobox_fixtures::path("hello"));
    for _ in 0..20 {
        let result =
            sandbox.run(ExecRequest { module: Some(module.clone()), ..ExecRequest::default() }).unwrap();
        assert_eq!(result.stdout, b"hello, world\n");
    }
}

#[test]
fn trait_execute_takes_a_command_line() {
    use mimobox_core::Sandbox;
    let cache = tempfile::tempdir().unwrap();
    let mut sandbox = <WasmSandbox as Sandbox>::new(config_in(cache.path())).unwrap();
    let cmd = [mimobox_fixtures::path("env_args").display().to_string(), "arg".to_string()];
    let result = sandbox.execute(&cmd).unwrap();
    assert_eq!(lines(&result.stdout)[1], "arg");
    sandbox.destroy();
}

#[test]
fn module_from_config_is_used_when_the_request_names_none() {
    let cache = tempfile::tempdir().unwrap();
    let config = SandboxConfig { module: Some(mimobox_fixtures::path("hello")), ..config_in(cache.path()) };
    let result = WasmSandbox::create(config).unwrap().run(ExecRequest::default()).unwrap();
    assert_eq!(result.stdout, b"hello, world\n");
}
