//! Host tools: functions a host grants to the code in a sandbox.
//!
//! A [`Toolbox`] holds [`Tool`]s, each a name, a description, a JSON Schema
//! for its input and a handler (a closure from JSON to JSON). The guest
//! reaches them through the `host::call` door, one request frame and one
//! answer frame per call, in protocol version 1 (compact UTF-8 JSON):
//!
//! - `{"v":1,"id":1,"op":"list"}` answers
//!   `{"v":1,"id":1,"ok":true,"tools":[{"name":..,"description":..,"inputSchema":..}]}`;
//! - `{"v":1,"id":N,"op":"call","tool":T,"args":{..}}` answers
//!   `{"v":1,"id":N,"ok":true,"value":..}` or
//!   `{"v":1,"id":N,"ok":false,"error":{"kind":K,"message":M}}`.
//!
//! Arguments are checked against the tool's schema before its handler runs.
//! [`ToolLimits`] bound the calls per turn and the size of requests and
//! answers. This crate knows no runtime: a backend reads the frame out of
//! the guest, runs [`PendingCall::run`] where it can be abandoned at the
//! deadline (holding the call's [`CallGuard`], so that the call learns it
//! was abandoned), and writes the answer back.
//!
//! ```
//! use mimobox_tools::{Tool, Toolbox, Request};
//! use serde_json::json;
//!
//! let mut tools = Toolbox::default();
//! tools
//!     .add(Tool::new("double", "Doubles n.", json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
//!         |args| Ok(json!(args["n"].as_i64().unwrap_or(0) * 2))))
//!     .unwrap();
//! let Request::Call(call) = tools.request(br#"{"v":1,"id":7,"op":"call","tool":"double","args":{"n":21}}"#, 0) else { panic!() };
//! let (answer, record) = call.run();
//! assert_eq!(answer, br#"{"id":7,"ok":true,"v":1,"value":42}"#);
//! assert!(record.ok);
//! ```

mod command;
mod error;
mod grants;
mod http;
mod protocol;
mod tool;
mod toolbox;
pub mod workers;

pub use command::{command_tool, command_tools_supported};
pub use error::{ErrorKind, ToolError};
pub use grants::granted_tools;
pub use http::{MAX_BODY, MAX_REDIRECTS, REQUEST_TIMEOUT, http_tool, is_public};
pub use protocol::PROTOCOL;
pub use tool::{CallGuard, Handler, Tool};
pub use toolbox::{
    DEFAULT_MAX_CALLS, DEFAULT_MAX_REQUEST, DEFAULT_MAX_RESPONSE, PendingCall, Request, ToolLimits, Toolbox,
};
