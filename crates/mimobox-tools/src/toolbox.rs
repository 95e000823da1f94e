//! [`Toolbox`]: the tools granted to a guest, and the decoding of its
//! request frames into answers and calls.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mimobox_core::ToolCall;
use serde_json::{Value, json};

use crate::protocol::{PROTOCOL, error_frame, frame_bytes, ok_frame};
use crate::tool::{Abandoned, Run};
use crate::{CallGuard, ErrorKind, Tool, ToolError};

/// Bounds on the tools of one turn (or one run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolLimits {
    /// Most calls per turn; past it, calls answer `budget_exceeded`.
    pub max_calls: u32,
    /// Largest request frame, in bytes; past it, `too_large`.
    pub max_request: usize,
    /// Largest answer frame, in bytes; past it, `too_large`.
    pub max_response: usize,
}

/// Default most tool calls per turn: 64.
pub const DEFAULT_MAX_CALLS: u32 = 64;
/// Default largest request frame: 1 MiB.
pub const DEFAULT_MAX_REQUEST: usize = 1 << 20;
/// Default largest answer frame: 16 MiB.
pub const DEFAULT_MAX_RESPONSE: usize = 16 << 20;

impl Default for ToolLimits {
    fn default() -> Self {
        ToolLimits {
            max_calls: DEFAULT_MAX_CALLS,
            max_request: DEFAULT_MAX_REQUEST,
            max_response: DEFAULT_MAX_RESPONSE,
        }
    }
}

struct Entry {
    tool: Tool,
    validator: jsonschema::Validator,
}

/// The tools granted to a sandbox, with their limits.
#[derive(Default)]
pub struct Toolbox {
    tools: BTreeMap<String, Entry>,
    limits: ToolLimits,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolbox").field("tools", &self.tools.keys()).field("limits", &self.limits).finish()
    }
}

/// What to do with a request frame.
pub enum Request {
    /// Answer with these bytes at once (a list, or an error).
    Answer(Vec<u8>, Option<ToolCall>),
    /// Run this call, then answer with what it returns.
    Call(PendingCall),
}

/// A validated call, ready to run.
pub struct PendingCall {
    id: Value,
    name: String,
    args: Value,
    handler: Run,
    max_response: usize,
    abandoned: Abandoned,
}

impl Toolbox {
    /// An empty toolbox with these limits.
    pub fn with_limits(limits: ToolLimits) -> Toolbox {
        Toolbox { tools: BTreeMap::new(), limits }
    }

    /// The limits.
    pub fn limits(&self) -> ToolLimits {
        self.limits
    }

    /// Grants `tool`. Its schema must be a valid JSON Schema, and its name
    /// must be new.
    pub fn add(&mut self, tool: Tool) -> Result<(), ToolError> {
        if self.tools.contains_key(&tool.name) {
            return Err(ToolError::new(ErrorKind::Denied, format!("tool `{}` is granted twice", tool.name)));
        }
        let validator = jsonschema::validator_for(&tool.input_schema).map_err(|e| {
            ToolError::new(
                ErrorKind::InvalidArguments,
                format!("tool `{}`: invalid input schema: {e}", tool.name),
            )
        })?;
        self.tools.insert(tool.name.clone(), Entry { tool, validator });
        Ok(())
    }

    /// Whether no tool is granted.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Decodes one request frame. `calls_made` is the number of calls this
    /// turn has made before it.
    pub fn request(&self, frame: &[u8], calls_made: u32) -> Request {
        let started = Instant::now();
        if frame.len() > self.limits.max_request {
            let error = ToolError::new(
                ErrorKind::TooLarge,
                format!("the request is over the {} byte limit", self.limits.max_request),
            );
            return Request::Answer(error_frame(&Value::Null, &error), None);
        }
        let request: Value = match serde_json::from_slice(frame) {
            Ok(Value::Object(object)) => Value::Object(object),
            _ => {
                let error = ToolError::new(ErrorKind::Protocol, "a request is one JSON object");
                return Request::Answer(error_frame(&Value::Null, &error), None);
            }
        };
        let id = match &request["id"] {
            Value::Number(n) if n.is_u64() => Value::Number(n.clone()),
            _ => Value::Null,
        };
        if request["v"].as_u64() != Some(PROTOCOL) {
            let error = ToolError::new(ErrorKind::Protocol, "this host serves protocol version 1");
            return Request::Answer(error_frame(&id, &error), None);
        }
        match request["op"].as_str() {
            Some("list") => {
                let tools: Vec<Value> = self
                    .tools
                    .values()
                    .map(|e| {
                        json!({"name": e.tool.name, "description": e.tool.description, "inputSchema": e.tool.input_schema})
                    })
                    .collect();
                let answer = frame_bytes(json!({"v": PROTOCOL, "id": id, "ok": true, "tools": tools}));
                Request::Answer(answer, None)
            }
            Some("call") => {
                let name = request["tool"].as_str().unwrap_or_default().to_owned();
                let refuse = |error: ToolError| {
                    let record = record(&name, started.elapsed(), Err(&error));
                    Request::Answer(error_frame(&id, &error), Some(record))
                };
                if calls_made >= self.limits.max_calls {
                    return refuse(ToolError::new(
                        ErrorKind::BudgetExceeded,
                        format!("this turn has made its {} tool calls", self.limits.max_calls),
                    ));
                }
                let Some(entry) = self.tools.get(&name) else {
                    return refuse(ToolError::new(ErrorKind::UnknownTool, "no tool of that name is granted"));
                };
                let args = request.get("args").cloned().unwrap_or_else(|| json!({}));
                if let Some(problem) = entry.validator.iter_errors(&args).next() {
                    return refuse(ToolError::new(ErrorKind::InvalidArguments, problem.to_string()));
                }
                Request::Call(PendingCall {
                    id,
                    name,
                    args,
                    handler: entry.tool.handler.clone(),
                    max_response: self.limits.max_response,
                    abandoned: Abandoned::default(),
                })
            }
            _ => Request::Answer(
                error_frame(
                    &id,
                    &ToolError::new(ErrorKind::Protocol, "the operations are `list` and `call`"),
                ),
                None,
            ),
        }
    }
}

impl PendingCall {
    /// The tool's name.
    pub fn tool(&self) -> &str {
        &self.name
    }

    /// The guard of this call, for whoever waits for its answer: dropping
    /// it (say, when the turn's deadline passes) abandons the call.
    pub fn guard(&self) -> CallGuard {
        CallGuard(self.abandoned.clone())
    }

    /// Runs the handler, and returns the answer frame and the record.
    pub fn run(self) -> (Vec<u8>, ToolCall) {
        let started = Instant::now();
        let outcome = (self.handler)(self.args, &self.abandoned);
        let answer = match &outcome {
            Ok(answer) => ok_frame(&self.id, answer),
            Err(error) => error_frame(&self.id, error),
        };
        if answer.len() > self.max_response {
            let error = ToolError::new(
                ErrorKind::TooLarge,
                format!("the answer is over the {} byte limit", self.max_response),
            );
            return (error_frame(&self.id, &error), record(&self.name, started.elapsed(), Err(&error)));
        }
        (answer, record(&self.name, started.elapsed(), outcome.as_ref().map(|_| ())))
    }
}

fn record(name: &str, duration: Duration, outcome: Result<(), &ToolError>) -> ToolCall {
    ToolCall {
        tool: mimobox_core::text::one_line_bounded(name),
        duration,
        ok: outcome.is_ok(),
        error: outcome.err().map(|e| e.kind.as_str().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::Answer;
    use serde_json::value::RawValue;

    fn toolbox() -> Toolbox {
        let mut tools = Toolbox::with_limits(ToolLimits { max_calls: 2, max_request: 256, max_response: 64 });
        let schema = json!({"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"], "additionalProperties": false});
        tools
            .add(Tool::new("lookup", "Looks a word up.", schema, |args| {
                Ok(json!(format!("meaning of {}", args["word"].as_str().unwrap())))
            }))
            .unwrap();
        tools.add(Tool::new("big", "Answers too much.", json!({}), |_| Ok(json!("x".repeat(1000))))).unwrap();
        tools
    }

    fn answer(tools: &Toolbox, frame: &str, made: u32) -> (Value, Option<ToolCall>) {
        match tools.request(frame.as_bytes(), made) {
            Request::Answer(bytes, record) => (serde_json::from_slice(&bytes).unwrap(), record),
            Request::Call(call) => {
                let (bytes, record) = call.run();
                (serde_json::from_slice(&bytes).unwrap(), Some(record))
            }
        }
    }

    #[test]
    fn lists_and_calls() {
        let tools = toolbox();
        let (list, _) = answer(&tools, r#"{"v":1,"id":1,"op":"list"}"#, 0);
        assert_eq!(list["tools"][1]["name"], "lookup");
        assert!(list["tools"][1]["inputSchema"].is_object());
        let (called, record) =
            answer(&tools, r#"{"v":1,"id":2,"op":"call","tool":"lookup","args":{"word":"x"}}"#, 0);
        assert_eq!((called["id"].as_u64(), called["value"].as_str()), (Some(2), Some("meaning of x")));
        assert!(record.unwrap().ok);
    }

    #[test]
    fn arguments_are_checked_before_the_handler_runs() {
        let (bad, record) =
            answer(&toolbox(), r#"{"v":1,"id":3,"op":"call","tool":"lookup","args":{"word":5}}"#, 0);
        assert_eq!(bad["error"]["kind"], "invalid_arguments");
        assert_eq!(record.unwrap().error.as_deref(), Some("invalid_arguments"));
    }

    #[test]
    fn limits_hold() {
        let tools = toolbox();
        let (over, _) =
            answer(&tools, r#"{"v":1,"id":4,"op":"call","tool":"lookup","args":{"word":"x"}}"#, 2);
        assert_eq!(over["error"]["kind"], "budget_exceeded");
        let (big, _) = answer(&tools, r#"{"v":1,"id":5,"op":"call","tool":"big","args":{}}"#, 0);
        assert_eq!(big["error"]["kind"], "too_large");
        let long = format!(
            r#"{{"v":1,"id":6,"op":"call","tool":"lookup","args":{{"word":"{}"}}}}"#,
            "y".repeat(300)
        );
        let (long, _) = answer(&tools, &long, 0);
        assert_eq!(long["error"]["kind"], "too_large");
    }

    #[test]
    fn raw_answers_go_into_the_frame_as_they_are() {
        let mut tools = Toolbox::with_limits(ToolLimits { max_calls: 4, max_request: 256, max_response: 64 });
        let raw = |name: &str, text: String| {
            Tool::answering(name, "Answers raw JSON.", json!({}), move |_, _| {
                Ok(Answer::Raw(RawValue::from_string(text.clone()).unwrap()))
            })
        };
        tools.add(raw("small", r#"[0,{"b":1,"a":2}]"#.to_owned())).unwrap();
        tools.add(raw("big", format!("[{}0]", "0,".repeat(20)))).unwrap();
        let Request::Call(call) = tools.request(br#"{"v":1,"id":3,"op":"call","tool":"small"}"#, 0) else {
            panic!()
        };
        assert_eq!(call.run().0, br#"{"id":3,"ok":true,"v":1,"value":[0,{"b":1,"a":2}]}"#);
        // The bound applies to the whole frame, raw or not.
        let (big, _) = answer(&tools, r#"{"v":1,"id":4,"op":"call","tool":"big"}"#, 0);
        assert_eq!(big["error"]["kind"], "too_large");
        // A value's frame is the bytes it always was.
        let frame = br#"{"v":1,"id":2,"op":"call","tool":"lookup","args":{"word":"x"}}"#;
        let Request::Call(call) = toolbox().request(frame, 0) else { panic!() };
        assert_eq!(call.run().0, br#"{"id":2,"ok":true,"v":1,"value":"meaning of x"}"#);
    }

    #[test]
    fn dropping_the_guard_abandons_the_call() {
        let mut tools = Toolbox::default();
        tools
            .add(Tool::answering("watch", "Reports abandonment.", json!({}), |_, abandoned| {
                Ok(Answer::Value(json!(abandoned.is_set())))
            }))
            .unwrap();
        let Request::Call(call) = tools.request(br#"{"v":1,"id":1,"op":"call","tool":"watch"}"#, 0) else {
            panic!()
        };
        drop(call.guard());
        assert_eq!(call.run().0, br#"{"id":1,"ok":true,"v":1,"value":true}"#);
    }

    #[test]
    fn malformed_frames_are_protocol_errors() {
        let tools = toolbox();
        for frame in ["nope", "[]", r#"{"v":2,"op":"list"}"#, r#"{"v":1,"op":"batch"}"#] {
            assert_eq!(answer(&tools, frame, 0).0["error"]["kind"], "protocol", "{frame}");
        }
        let (unknown, _) = answer(&tools, r#"{"v":1,"id":7,"op":"call","tool":"nope"}"#, 0);
        assert_eq!(unknown["error"]["kind"], "unknown_tool");
    }
}
