//! [`ToolError`]: why a call failed, as the guest sees it.

/// The kinds of tool error a guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The frame was not a request of this protocol.
    Protocol,
    /// No tool has that name.
    UnknownTool,
    /// The arguments do not match the tool's schema.
    InvalidArguments,
    /// The host refused the call.
    Denied,
    /// The tool itself failed.
    ToolError,
    /// The tool took too long.
    Timeout,
    /// A request or an answer was over its size bound.
    TooLarge,
    /// The turn has made all the calls it may.
    BudgetExceeded,
}

impl ErrorKind {
    /// The name the protocol uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::UnknownTool => "unknown_tool",
            ErrorKind::InvalidArguments => "invalid_arguments",
            ErrorKind::Denied => "denied",
            ErrorKind::ToolError => "tool_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::BudgetExceeded => "budget_exceeded",
        }
    }
}

/// A tool call's failure, as the guest is told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What went wrong, for the guest.
    pub message: String,
}

impl ToolError {
    /// A failure of the tool itself.
    pub fn failed(message: impl Into<String>) -> ToolError {
        ToolError { kind: ErrorKind::ToolError, message: message.into() }
    }

    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> ToolError {
        ToolError { kind, message: message.into() }
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for ToolError {}
