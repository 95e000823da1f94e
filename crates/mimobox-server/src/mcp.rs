//! The MCP server: mimobox's sessions as MCP tools, over the session host.
//!
//! State across calls goes through an explicit handle, as MCP 2026-07-28
//! prescribes: `run_code` without a `session_id` opens a session and names
//! it in its answer; later calls pass it back. The tools:
//!
//! - `run_code(code, session_id?, timeout?, idempotency_key?)`: a turn;
//!   stdout and stderr as text content, each figure as `image/png` content
//!   (bounded), the whole turn answer (the JSON-lines one, with
//!   `session_id`) as structured content, and `isError` when the code
//!   raised, timed out or hit a limit; under an `idempotency_key` (with a
//!   `session_id`), a turn sent again is answered, not run twice;
//! - `create_session(profile?)`, `close_session(session_id)`;
//! - `write_file(session_id, path, data)` (base64), `read_file(session_id,
//!   path)`, `list_files(session_id, path)`;
//! - `list_profiles()`: what this server offers.
//!
//! A client names a profile only by the names the operator gave; it passes
//! no path, mount or limit, and `timeout` can only shorten a turn.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mimobox_core::{Outcome, TurnRequest, TurnResult};
use mimobox_host::{HostError, SessionHost, SessionId, TurnKey, WhenBusy};
use mimobox_wasm::WasmSandbox;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::wire;

/// Most bytes of a `run_code` argument's code.
pub const MAX_CODE: usize = 1 << 20;
/// Most bytes of one figure given back as image content (its PNG, before
/// base64); a larger one is named in the text instead.
pub const MAX_IMAGE: usize = 4 << 20;
/// Most bytes of a file written in one `write_file` call (before base64).
pub const MAX_WRITE: usize = 32 << 20;
/// How long a call waits for its session's running call to end.
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// The MCP server of an owner's sessions: every session it opens belongs
/// to that owner (over stdio, the one client's; over HTTP, the owner of
/// the request's bearer token, which the HTTP layer found).
#[derive(Clone)]
pub struct McpServer {
    host: SessionHost<WasmSandbox>,
    /// The owner of every call; `None` takes each call's from its HTTP
    /// request ([`RequestOwner`]).
    owner: Option<Arc<str>>,
    default_profile: Arc<str>,
}

/// The owner the HTTP layer authenticated, in a request's extensions.
#[derive(Debug, Clone)]
pub struct RequestOwner(pub Arc<str>);

impl McpServer {
    /// A server for `owner`'s sessions on `host`; sessions opened without
    /// a profile named run `default_profile`.
    pub fn new(host: SessionHost<WasmSandbox>, owner: &str, default_profile: &str) -> McpServer {
        McpServer { host, owner: Some(owner.into()), default_profile: default_profile.into() }
    }

    /// A server whose calls each belong to the owner their HTTP request
    /// carries ([`RequestOwner`]); a call without one is refused.
    pub fn per_request(host: SessionHost<WasmSandbox>, default_profile: &str) -> McpServer {
        McpServer { host, owner: None, default_profile: default_profile.into() }
    }

    fn owner_of(&self, context: &RequestContext<RoleServer>) -> Result<Arc<str>, McpError> {
        if let Some(owner) = &self.owner {
            return Ok(owner.clone());
        }
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<RequestOwner>())
            .map(|owner| owner.0.clone())
            .ok_or_else(|| McpError::invalid_request("no authenticated owner for this call", None))
    }

    /// The tools, with their input and output schemas.
    pub fn tools() -> Vec<Tool> {
        let session_id = json!({"type": "string", "pattern": "^[0-9a-f]{32}$",
            "description": "A session's id, as create_session or run_code answered it."});
        let path = json!({"type": "string", "maxLength": 4096,
            "description": "An absolute guest path, such as /workspace/data.csv."});
        vec![
            tool(
                "run_code",
                "Runs code in a sandboxed interpreter session and returns what Jupyter would: stdout, stderr, \
                 results (values, tables, figures as images) and the error. Without session_id a new session \
                 is opened and its id is in the answer; pass it back to keep variables, imports and files.",
                json!({"type": "object", "properties": {
                    "code": {"type": "string", "maxLength": MAX_CODE, "description": "The code to run."},
                    "session_id": session_id,
                    "timeout": {"type": "number", "minimum": 0.001,
                        "description": "Seconds; may only shorten the profile's timeout."},
                    "idempotency_key": {"type": "string", "pattern": "^[!-~]{1,255}$",
                        "description": "Your name for this turn (with session_id): sent again after its answer \
                            was lost, the turn is not run twice, and the answer of the one that ran comes back."}
                }, "required": ["code"], "additionalProperties": false}),
                turn_schema(),
            ),
            tool(
                "create_session",
                "Opens a new interpreter session and answers its id.",
                json!({"type": "object", "properties": {
                    "profile": {"type": "string", "maxLength": 128,
                        "description": "One of list_profiles' names; the server's default if absent."}
                }, "additionalProperties": false}),
                json!({"type": "object", "properties": {
                    "session_id": {"type": "string"}, "profile": {"type": "string"}
                }, "required": ["session_id", "profile"]}),
            ),
            tool(
                "close_session",
                "Closes a session and removes its files.",
                json!({"type": "object", "properties": {"session_id": session_id},
                    "required": ["session_id"], "additionalProperties": false}),
                json!({"type": "object", "properties": {"closed": {"type": "boolean"}}, "required": ["closed"]}),
            ),
            tool(
                "write_file",
                "Writes a file into a session (the whole file, replaced atomically), under /workspace or /tmp.",
                json!({"type": "object", "properties": {
                    "session_id": session_id, "path": path,
                    "data": {"type": "string", "contentEncoding": "base64", "description": "The bytes, base64."}
                }, "required": ["session_id", "path", "data"], "additionalProperties": false}),
                json!({"type": "object", "properties": {"bytes": {"type": "integer"}}, "required": ["bytes"]}),
            ),
            tool(
                "read_file",
                "Reads a file of a session; the bytes come back base64.",
                json!({"type": "object", "properties": {"session_id": session_id, "path": path},
                    "required": ["session_id", "path"], "additionalProperties": false}),
                json!({"type": "object", "properties": {
                    "data": {"type": "string", "contentEncoding": "base64"}, "bytes": {"type": "integer"}
                }, "required": ["data", "bytes"]}),
            ),
            tool(
                "list_files",
                "Lists a directory of a session.",
                json!({"type": "object", "properties": {"session_id": session_id, "path": path},
                    "required": ["session_id", "path"], "additionalProperties": false}),
                json!({"type": "object", "properties": {
                    "entries": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "kind": {"type": "string"}, "bytes": {"type": "integer"}
                    }, "required": ["name", "kind", "bytes"]}},
                    "truncated": {"type": "boolean"}
                }, "required": ["entries", "truncated"]}),
            ),
            tool(
                "list_profiles",
                "Lists the interpreter profiles this server offers.",
                json!({"type": "object", "properties": {}, "additionalProperties": false}),
                json!({"type": "object", "properties": {
                    "profiles": {"type": "array", "items": {"type": "string"}}, "default": {"type": "string"}
                }, "required": ["profiles", "default"]}),
            ),
        ]
    }

    /// Runs one tool call; a refusal the client should read is a tool
    /// result with `isError`, not a protocol error.
    pub async fn call(
        &self,
        owner: &str,
        name: &str,
        arguments: JsonObject,
    ) -> Result<CallToolResult, McpError> {
        let args = Args::new(name, arguments)?;
        match name {
            "run_code" => {
                args.only(&["code", "session_id", "timeout", "idempotency_key"])?;
                let code = args.string("code")?.ok_or_else(|| args.missing("code"))?;
                if code.len() > MAX_CODE {
                    return Err(McpError::invalid_params(format!("`code` is over {MAX_CODE} bytes"), None));
                }
                let timeout = args.timeout()?;
                let key = match args.string("idempotency_key")? {
                    None => None,
                    // Without a session, each call would open a new one,
                    // and the turn would run in each.
                    Some(_) if args.session("session_id")?.is_none() => {
                        return Err(args.bad("`idempotency_key` needs `session_id`".into()));
                    }
                    Some(text) => Some(TurnKey::new(&text).map_err(|e| args.bad(e.to_string()))?),
                };
                let id = match args.session("session_id")? {
                    Some(id) => id,
                    None => match self.host.open(owner, &self.default_profile).await {
                        Ok(id) => id,
                        Err(e) => return Ok(refusal(&e)),
                    },
                };
                let opened = args.session("session_id")?.is_none();
                let request = TurnRequest { timeout, ..TurnRequest::new(code) };
                match self.host.turn_once(owner, id, key, request, WhenBusy::Wait(BUSY_WAIT)).await {
                    Ok(turn) => Ok(turn_result(id, &turn)),
                    // A session this call opened is not left behind unnamed.
                    Err(e) if opened => {
                        let _ = self.host.close(owner, id).await;
                        Ok(refusal(&e))
                    }
                    Err(e) => Ok(refusal(&e)),
                }
            }
            "create_session" => {
                args.only(&["profile"])?;
                let profile = args.string("profile")?.unwrap_or_else(|| self.default_profile.to_string());
                match self.host.open(owner, &profile).await {
                    Ok(id) => Ok(structured(json!({"session_id": id.to_string(), "profile": profile}))),
                    Err(e) => Ok(refusal(&e)),
                }
            }
            "close_session" => {
                args.only(&["session_id"])?;
                let id = args.session("session_id")?.ok_or_else(|| args.missing("session_id"))?;
                match self.host.close(owner, id).await {
                    Ok(()) => Ok(structured(json!({"closed": true}))),
                    Err(e) => Ok(refusal(&e)),
                }
            }
            "write_file" => {
                args.only(&["session_id", "path", "data"])?;
                let (id, path) = args.file()?;
                let encoded = args.string("data")?.ok_or_else(|| args.missing("data"))?;
                if encoded.len() > MAX_WRITE.div_ceil(3) * 4 {
                    return Err(McpError::invalid_params(format!("`data` is over {MAX_WRITE} bytes"), None));
                }
                let data = STANDARD
                    .decode(encoded.as_bytes())
                    .map_err(|e| McpError::invalid_params(format!("`data` is not base64: {e}"), None))?;
                match self.host.write_file(owner, id, &path, &data, WhenBusy::Wait(BUSY_WAIT)).await {
                    Ok(bytes) => Ok(structured(json!({"bytes": bytes}))),
                    Err(e) => Ok(refusal(&e)),
                }
            }
            "read_file" => {
                args.only(&["session_id", "path"])?;
                let (id, path) = args.file()?;
                match self.host.read_file(owner, id, &path, WhenBusy::Wait(BUSY_WAIT)).await {
                    Ok(data) => Ok(structured(json!({"data": wire::base64(&data), "bytes": data.len()}))),
                    Err(e) => Ok(refusal(&e)),
                }
            }
            "list_files" => {
                args.only(&["session_id", "path"])?;
                let (id, path) = args.file()?;
                match self.host.list_files(owner, id, &path, WhenBusy::Wait(BUSY_WAIT)).await {
                    Ok(listing) => Ok(structured(wire::listing_json(&listing))),
                    Err(e) => Ok(refusal(&e)),
                }
            }
            "list_profiles" => {
                args.only(&[])?;
                Ok(structured(json!({"profiles": self.host.profiles(), "default": &*self.default_profile})))
            }
            _ => Err(McpError::invalid_params(format!("no tool named {}", bounded(name)), None)),
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mimobox", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "A sandboxed code interpreter. Call run_code with Python code; pass the session_id it \
                 answers to later calls to keep state. Files go in and out with write_file and read_file.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(McpServer::tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        McpServer::tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let owner = self.owner_of(&context)?;
        let arguments = request.arguments.unwrap_or_default();
        self.call(&owner, &request.name, arguments).await.map(CallToolResponse::from)
    }
}

fn tool(name: &'static str, description: &'static str, input: Value, output: Value) -> Tool {
    let object = |v: Value| match v {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("schemas are objects"),
    };
    Tool::new(Cow::Borrowed(name), Cow::Borrowed(description), object(input))
        .with_raw_output_schema(object(output))
}

/// The schema of a turn's structured content: the JSON-lines answer and
/// the session's id.
fn turn_schema() -> Value {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    json!({"type": "object", "properties": {
        "session_id": {"type": "string"},
        "turn": {"type": "integer"},
        "alive": {"type": "boolean"},
        "outcome": {"type": "string"},
        "exit_code": nullable("integer"),
        "trap": nullable("string"),
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "stdout_truncated": {"type": "boolean"},
        "stderr_truncated": {"type": "boolean"},
        "elapsed_ms": {"type": "number"},
        "fuel_consumed": nullable("integer"),
        "peak_memory_bytes": {"type": "integer"},
        "memory_limit_hit": {"type": "boolean"},
        "disk_written_bytes": {"type": "integer"},
        "disk_quota_hit": {"type": "boolean"},
        "tool_calls": {"type": "array"},
        "results": {"type": "array", "items": {"type": "object"}},
        "results_truncated": {"type": "boolean"},
        "resumed_from_turn": {"type": "integer"},
        "replayed": {"type": "boolean"},
        "error": {"type": ["object", "null"], "properties": {
            "name": {"type": "string"}, "value": {"type": "string"},
            "traceback": {"type": "array", "items": {"type": "string"}}
        }}
    }, "required": ["session_id", "turn", "alive", "outcome", "stdout", "stderr", "results", "error"]})
}

/// A turn as a tool result: text, images, the structured answer, and
/// `isError` when it did not succeed.
fn turn_result(id: SessionId, turn: &TurnResult) -> CallToolResult {
    let mut answer = wire::turn_json(turn);
    answer["session_id"] = id.to_string().into();
    let mut content = Vec::new();
    let stdout = turn.result.stdout_lossy();
    if !stdout.is_empty() {
        content.push(ContentBlock::text(stdout.into_owned()));
    }
    let stderr = turn.result.stderr_lossy();
    if !stderr.is_empty() {
        content.push(ContentBlock::text(format!("stderr:\n{stderr}")));
    }
    for bundle in &turn.results {
        match bundle.get("image/png").and_then(Value::as_str) {
            Some(png) if png.len() <= MAX_IMAGE.div_ceil(3) * 4 => {
                content.push(ContentBlock::image(png.to_owned(), "image/png"));
            }
            Some(png) => content.push(ContentBlock::text(format!(
                "[a figure of {} bytes, over the {MAX_IMAGE}-byte bound for image content]",
                png.len() / 4 * 3
            ))),
            None => {
                if let Some(text) = bundle.get("text/plain").and_then(Value::as_str) {
                    content.push(ContentBlock::text(text.to_owned()));
                }
            }
        }
    }
    let failed = turn.result.outcome != (Outcome::Exited { code: 0 }) || turn.error.is_some();
    if let Some(error) = &turn.error {
        content.push(ContentBlock::text(format!("{}: {}", error.name, error.value)));
    } else if failed {
        let why = match &turn.result.outcome {
            Outcome::Exited { code } => format!("the code exited with status {code}"),
            Outcome::Trap { message } => format!("the interpreter trapped: {message}"),
            other => format!("stopped: {}", other.name()),
        };
        content.push(ContentBlock::text(why));
    }
    if !turn.alive {
        content
            .push(ContentBlock::text("The session has ended; run_code without session_id starts a new one."));
    }
    let mut result = if failed { CallToolResult::error(content) } else { CallToolResult::success(content) };
    result.structured_content = Some(answer);
    result
}

/// A structured success.
fn structured(value: Value) -> CallToolResult {
    let text = value.to_string();
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    result
}

/// A refusal the client reads: `isError`, the reason in the text.
fn refusal(error: &HostError) -> CallToolResult {
    let message = match error {
        HostError::NotFound => {
            "no such session (it never existed, it has ended, or it is not yours)".to_owned()
        }
        // The server's own failures are logged; the client gets no paths.
        other => crate::http::refusal_text(other),
    };
    CallToolResult::error(vec![ContentBlock::text(message)])
}

fn bounded(text: &str) -> String {
    mimobox_core::text::one_line_bounded(text)
}

/// A call's arguments, checked as they are read.
struct Args<'a> {
    tool: &'a str,
    map: JsonObject,
}

impl<'a> Args<'a> {
    fn new(tool: &'a str, map: JsonObject) -> Result<Args<'a>, McpError> {
        Ok(Args { tool, map })
    }

    fn bad(&self, what: String) -> McpError {
        McpError::invalid_params(format!("{}: {what}", bounded(self.tool)), None)
    }

    fn missing(&self, key: &str) -> McpError {
        self.bad(format!("`{key}` is required"))
    }

    /// Refuses a key that is not one of `known`.
    fn only(&self, known: &[&str]) -> Result<(), McpError> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(key) => Err(self.bad(format!("unknown argument `{}`", bounded(key)))),
            None => Ok(()),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, McpError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.bad(format!("`{key}` must be a string"))),
        }
    }

    fn timeout(&self) -> Result<Option<Duration>, McpError> {
        wire::turn_timeout(self.map.get("timeout")).map_err(|problem| self.bad(problem.to_owned()))
    }

    fn session(&self, key: &str) -> Result<Option<SessionId>, McpError> {
        match self.string(key)? {
            None => Ok(None),
            Some(text) => {
                text.parse().map(Some).map_err(|_| self.bad(format!("`{key}` is not a session id")))
            }
        }
    }

    fn file(&self) -> Result<(SessionId, String), McpError> {
        let id = self.session("session_id")?.ok_or_else(|| self.missing("session_id"))?;
        let path = self.string("path")?.ok_or_else(|| self.missing("path"))?;
        Ok((id, path))
    }
}

/// Why serving ended badly.
#[derive(Debug, thiserror::Error)]
#[error("MCP over stdio: {0}")]
pub struct ServeError(String);

/// Serves `server` over this process's stdin and stdout until the client
/// closes them.
pub async fn serve_stdio(server: McpServer) -> Result<(), ServeError> {
    use rmcp::ServiceExt as _;
    let running = server.serve(rmcp::transport::stdio()).await.map_err(|e| ServeError(e.to_string()))?;
    running.waiting().await.map_err(|e| ServeError(e.to_string()))?;
    Ok(())
}
