//! [`Tool`]: a name, a description, an input schema and a handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use serde_json::value::RawValue;

use crate::ToolError;

/// What a tool's handler does with its (already validated) arguments.
pub type Handler = Arc<dyn Fn(Value) -> Result<Value, ToolError> + Send + Sync>;

/// A handler as the toolbox runs it: it may answer JSON text, and may learn
/// that its call was abandoned.
pub(crate) type Run = Arc<dyn Fn(Value, &Abandoned) -> Result<Answer, ToolError> + Send + Sync>;

/// What a handler answers: a value, or JSON text that goes into the answer
/// frame as it is, so that a large answer never becomes a tree of values.
pub(crate) enum Answer {
    Value(Value),
    /// Valid, compact JSON.
    Raw(Box<RawValue>),
}

/// Whether a call has been abandoned: its [`CallGuard`] was dropped.
#[derive(Clone, Default)]
pub(crate) struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Held by whoever waits for a call's answer ([`PendingCall::guard`]).
/// Dropping it tells the call that nobody waits any more: a command tool
/// then ends its process and every process that it started at once, rather
/// than at its own timeout. A call that has already answered ignores it.
#[derive(Debug)]
pub struct CallGuard(pub(crate) Abandoned);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.set();
    }
}

impl std::fmt::Debug for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Abandoned").field(&self.is_set()).finish()
    }
}

/// A host tool.
#[derive(Clone)]
pub struct Tool {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) input_schema: Value,
    pub(crate) handler: Run,
}

impl Tool {
    /// A tool called `name`, described to the guest by `description`, whose
    /// arguments must match the JSON Schema `input_schema`.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: Value,
        handler: impl Fn(Value) -> Result<Value, ToolError> + Send + Sync + 'static,
    ) -> Tool {
        Tool::answering(name, description, input_schema, move |args, _| handler(args).map(Answer::Value))
    }

    /// A tool whose handler may answer JSON text and watch for abandonment.
    pub(crate) fn answering(
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: Value,
        handler: impl Fn(Value, &Abandoned) -> Result<Answer, ToolError> + Send + Sync + 'static,
    ) -> Tool {
        Tool { name: name.into(), description: description.into(), input_schema, handler: Arc::new(handler) }
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the tool does, as the guest is told.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool").field("name", &self.name).finish_non_exhaustive()
    }
}
