//! Host tools through the `host::call` door: no host without tools, calls
//! checked against their schema, limits per turn, the record, and a tool
//! that does not answer before the deadline.

use std::time::{Duration, Instant};

use mimobox_core::{ExecRequest, ModuleSource, Outcome, SandboxResult};
use mimobox_wasm::{Tool, ToolError, ToolLimits, Toolbox, WasmSandbox};
use serde_json::json;

use crate::config_in;

fn call(toolbox: Option<Toolbox>, frame: &str, timeout: Duration) -> SandboxResult {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.timeout = timeout;
    let sandbox = WasmSandbox::create(config).unwrap();
    if let Some(toolbox) = toolbox {
        sandbox.set_tools(toolbox).unwrap();
    }
    sandbox
        .run(ExecRequest {
            module: Some(ModuleSource::Path(mimobox_fixtures::path("tool_caller"))),
            args: vec![frame.to_owned()],
            ..ExecRequest::default()
        })
        .unwrap()
}

fn toolbox(limits: ToolLimits) -> Toolbox {
    let mut tools = Toolbox::with_limits(limits);
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    tools
        .add(Tool::new("double", "Doubles n.", schema, |args| Ok(json!(args["n"].as_i64().unwrap() * 2))))
        .unwrap();
    tools
        .add(Tool::new("fail", "Always fails.", json!({}), |_| Err(ToolError::failed("no such luck"))))
        .unwrap();
    tools
        .add(Tool::new("slow", "Takes ten seconds.", json!({}), |_| {
            std::thread::sleep(Duration::from_secs(10));
            Ok(json!(null))
        }))
        .unwrap();
    tools
}

fn answer(result: &SandboxResult) -> serde_json::Value {
    assert_eq!(result.outcome, Outcome::Exited { code: 0 }, "{:?}", result);
    serde_json::from_slice(&result.stdout).unwrap()
}

const DOUBLE: &str = r#"{"v":1,"id":3,"op":"call","tool":"double","args":{"n":21}}"#;

#[test]
fn without_tools_the_door_answers_no_host() {
    let result = call(None, DOUBLE, Duration::from_secs(10));
    assert_eq!(result.outcome, Outcome::Exited { code: 11 });
    assert!(result.tool_calls.is_empty());
}

#[test]
fn a_call_reaches_its_handler_and_is_recorded() {
    let result = call(Some(toolbox(ToolLimits::default())), DOUBLE, Duration::from_secs(10));
    let value = answer(&result);
    assert_eq!((value["id"].as_u64(), value["value"].as_i64()), (Some(3), Some(42)));
    assert_eq!(result.tool_calls.len(), 1);
    assert_eq!((result.tool_calls[0].tool.as_str(), result.tool_calls[0].ok), ("double", true));

    let listed = answer(&call(
        Some(toolbox(ToolLimits::default())),
        r#"{"v":1,"id":1,"op":"list"}"#,
        Duration::from_secs(10),
    ));
    let names: Vec<_> =
        listed["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["double", "fail", "slow"]);
}

#[test]
fn bad_arguments_and_tool_errors_are_answers_not_traps() {
    let tools = || Some(toolbox(ToolLimits::default()));
    let bad = call(
        tools(),
        r#"{"v":1,"id":4,"op":"call","tool":"double","args":{"n":"x"}}"#,
        Duration::from_secs(10),
    );
    assert_eq!(answer(&bad)["error"]["kind"], "invalid_arguments");
    assert_eq!(bad.tool_calls[0].error.as_deref(), Some("invalid_arguments"));
    let failed =
        call(tools(), r#"{"v":1,"id":5,"op":"call","tool":"fail","args":{}}"#, Duration::from_secs(10));
    assert_eq!(answer(&failed)["error"]["message"], "no such luck");
    let garbage = call(tools(), "not json", Duration::from_secs(10));
    assert_eq!(answer(&garbage)["error"]["kind"], "protocol");
}

#[test]
fn request_and_answer_sizes_and_call_budgets_are_bounded() {
    let small = ToolLimits { max_calls: 0, max_request: 16, max_response: 1 << 20 };
    let over = call(Some(toolbox(small)), DOUBLE, Duration::from_secs(10));
    assert_eq!(answer(&over)["error"]["kind"], "too_large");
    let none = ToolLimits { max_calls: 0, ..ToolLimits::default() };
    let spent = call(Some(toolbox(none)), DOUBLE, Duration::from_secs(10));
    assert_eq!(answer(&spent)["error"]["kind"], "budget_exceeded");
}

#[test]
fn a_tool_still_running_at_the_deadline_ends_the_run_as_timed_out() {
    let started = Instant::now();
    let result = call(
        Some(toolbox(ToolLimits::default())),
        r#"{"v":1,"id":6,"op":"call","tool":"slow","args":{}}"#,
        Duration::from_millis(500),
    );
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert_eq!(result.tool_calls[0].error.as_deref(), Some("timeout"), "{:?}", result.tool_calls);
}

/// The scientific CPython's own client of the door: `from host import
/// tools` lists the tools, and a call goes through the schema check to the
/// closure and back. Uses the compiled module the CLI's tests share.
#[test]
fn python_calls_a_closure_through_the_door() {
    let sandbox = crate::python_sci();
    sandbox.set_tools(toolbox(ToolLimits::default())).unwrap();
    let mut session = sandbox.open_session(ExecRequest::default()).unwrap();
    use mimobox_core::{Session, TurnRequest};
    let turn = session.turn(TurnRequest::new("from host import tools\nprint(tools.double(n=21))")).unwrap();
    assert_eq!(turn.result.stdout_lossy(), "42\n", "{}", turn.result.stderr_lossy());
    assert_eq!(turn.result.tool_calls.len(), 1, "{:?}", turn.result.tool_calls);
    let bad = session.turn(TurnRequest::new("tools.double(n='x')")).unwrap();
    assert_eq!(bad.result.exit_code(), Some(1));
    assert!(bad.alive);
    assert_eq!(bad.result.tool_calls[0].error.as_deref(), Some("invalid_arguments"));
}

/// A guest whose `host_alloc` calls the door again, while the host places
/// an answer, would nest calls, each on another stack of the pool that all
/// sandboxes of the process share. The nested call is refused as a fault.
#[test]
fn a_call_from_inside_host_alloc_is_refused_not_nested() {
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    sandbox.set_tools(toolbox(ToolLimits::default())).unwrap();
    let module = ModuleSource::Path(mimobox_fixtures::path("door_reentry"));
    for _ in 0..3 {
        let result =
            sandbox.run(ExecRequest { module: Some(module.clone()), ..ExecRequest::default() }).unwrap();
        // Outer call answered (0), nested one refused (-2).
        assert_eq!(result.outcome, Outcome::Exited { code: 2 }, "{result:?}");
    }
    // The pool's stacks are all back: other runs go on.
    let hello = sandbox
        .run(ExecRequest {
            module: Some(ModuleSource::Path(mimobox_fixtures::path("hello"))),
            ..ExecRequest::default()
        })
        .unwrap();
    assert_eq!(hello.outcome, Outcome::Exited { code: 0 });
}
