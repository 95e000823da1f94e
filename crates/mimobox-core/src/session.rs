//! Sessions: one live guest that keeps its state between turns of code.
//!
//! A caller opens a session, sends it [`TurnRequest`]s, and gets a
//! [`TurnResult`] for each: the same outcome, output, truncation, timing and
//! fuel as a one-shot run, plus whether the session is still alive. The
//! guest implements the turn interface of `docs/sessions.md`.
//!
//! Limits: the timeout, fuel and output caps apply to each turn; the memory
//! limit and open files to the whole session; [`SessionConfig`] bounds how
//! long a session may sit idle and live.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::outcome::SandboxResult;
use crate::sandbox::OutputSink;
use crate::serde_units;

/// Default idle timeout of a session: 15 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default lifetime of a session: 1 hour.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// Default wait for room in the pool when opening a session: 30 s.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The session settings of a sandbox. Table `[session]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// A session with no turn for this long is closed. Key
    /// `session.idle_timeout_secs`.
    #[serde(rename = "idle_timeout_secs", with = "serde_units::seconds")]
    pub idle_timeout: Duration,
    /// A session is closed this long after it opened, and a turn's deadline
    /// never reaches past it. Key `session.lifetime_secs`.
    #[serde(rename = "lifetime_secs", with = "serde_units::seconds")]
    pub lifetime: Duration,
    /// How long opening a session waits for a free pool slot (each open
    /// session holds one) before it fails. Key `session.open_timeout_secs`.
    #[serde(rename = "open_timeout_secs", with = "serde_units::seconds")]
    pub open_timeout: Duration,
    /// Code run once, as the first turn of a session on the module, whose
    /// resulting state is kept as a checkpoint (see `docs/sessions.md`):
    /// every session is then opened from that checkpoint, as if it had run
    /// this code itself. Key `session.preload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preload: Option<String>,
    /// Code run, unseen, as the first turn of every session opened from a
    /// checkpoint or forked from another session, so that the guest takes
    /// up the new session's own arguments, environment and randomness.
    /// `{{argv}}` is replaced by the session's arguments (argv\[0\] first)
    /// as a JSON array of strings, and `{{env}}` by its environment as a
    /// JSON object. Key `session.restore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<String>,
    /// Whether closing a live session calls the guest's `shutdown` export
    /// (bounded to a few seconds) before its instance is dropped. Off by
    /// default: the instance is thrown away whole, so closing takes no
    /// time (a runtime's own finalisation, CPython's say, can take a
    /// second). Key `session.shutdown`.
    pub shutdown: bool,
}

/// In [`SessionConfig::restore`], the placeholder for the session's
/// arguments.
pub const RESTORE_ARGV: &str = "{{argv}}";
/// In [`SessionConfig::restore`], the placeholder for the session's
/// environment.
pub const RESTORE_ENV: &str = "{{env}}";

/// The code of a restore turn: `template` with each [`RESTORE_ARGV`] and
/// [`RESTORE_ENV`] replaced by the session's arguments and environment.
///
/// The template is read once, left to right, and what is inserted is never
/// read again, so a value that itself contains a placeholder stays text.
/// Values are JSON in which every character that could end or escape a
/// string literal in a common language (quotes, backslashes, line breaks,
/// control and bidirectional-format characters, `<`, `>`, `&`, and so on)
/// is written as a `\uXXXX` escape: the only quotes in what is inserted
/// are the JSON's own, so no text a value holds can become code. The
/// template must put each placeholder where an expression goes (a JSON
/// array of strings, and an object of strings, are valid Python and
/// JavaScript literals).
///
/// ```
/// use mimobox_core::fill_restore;
/// let code = fill_restore("setup({{argv}}, {{env}})", &["a{{env}}".into()], &[("K".into(), "\"); x()".into())]);
/// assert_eq!(code, r#"setup(["a\u007b\u007benv\u007d\u007d"], {"K":"\u0022\u0029\u003b x\u0028\u0029"})"#);
/// ```
pub fn fill_restore(template: &str, argv: &[String], env: &[(String, String)]) -> String {
    let mut code = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        code.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix(RESTORE_ARGV) {
            code.push('[');
            for (i, arg) in argv.iter().enumerate() {
                if i > 0 {
                    code.push(',');
                }
                push_json_string(&mut code, arg);
            }
            code.push(']');
            rest = after;
        } else if let Some(after) = tail.strip_prefix(RESTORE_ENV) {
            code.push('{');
            for (i, (name, value)) in env.iter().enumerate() {
                if i > 0 {
                    code.push(',');
                }
                push_json_string(&mut code, name);
                code.push(':');
                push_json_string(&mut code, value);
            }
            code.push('}');
            rest = after;
        } else {
            // Not a placeholder here; one may start at the next brace.
            code.push('{');
            rest = &tail[1..];
        }
    }
    code.push_str(rest);
    code
}

/// Appends `text` as a JSON string in which only letters, digits, space
/// and `_ . , / = : + -` stand as themselves, besides non-ASCII characters
/// that are neither controls nor line or format characters; everything else
/// is a `\uXXXX` escape (only characters of the Basic Multilingual Plane are
/// escaped, so no escape needs a surrogate pair).
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        let plain = c.is_ascii_alphanumeric()
            || matches!(c, ' ' | '_' | '.' | ',' | '/' | '=' | ':' | '+' | '-')
            || (!c.is_ascii()
                && !crate::text::escaped_on_a_terminal(c)
                && !matches!(c, '\u{2028}' | '\u{2029}'));
        if plain {
            out.push(c);
        } else {
            // Every character escaped here is in the BMP.
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
    }
    out.push('"');
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            lifetime: DEFAULT_LIFETIME,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            preload: None,
            restore: None,
            shutdown: false,
        }
    }
}

/// One turn: code for the guest to run in its live state.
#[derive(Default)]
pub struct TurnRequest {
    /// The code (for CPython, Python source run in `__main__`).
    pub code: String,
    /// Live receiver of this turn's stdout, if any.
    pub stdout_sink: Option<OutputSink>,
    /// Live receiver of this turn's stderr, if any.
    pub stderr_sink: Option<OutputSink>,
}

impl TurnRequest {
    /// A turn of `code`, with output captured only.
    pub fn new(code: impl Into<String>) -> TurnRequest {
        TurnRequest { code: code.into(), ..TurnRequest::default() }
    }
}

impl std::fmt::Debug for TurnRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnRequest").field("code", &self.code).finish_non_exhaustive()
    }
}

/// What a turn produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnResult {
    /// The turn's number, counting from 1.
    pub turn: u64,
    /// Whether the session can take another turn. A turn that timed out,
    /// trapped, ran out of fuel or memory, or exited the guest ends it.
    pub alive: bool,
    /// Outcome, output and measures of the turn, as for a run. An exception
    /// in the guest's code is `Exited { code: 1 }` with the traceback on
    /// stderr, and the session goes on.
    pub result: SandboxResult,
}

/// A live session. Dropping it closes it.
pub trait Session: Send {
    /// Runs one turn.
    fn turn(&mut self, request: TurnRequest) -> Result<TurnResult, crate::SandboxError>;

    /// Whether the session can take another turn.
    fn alive(&self) -> bool;

    /// Opens a second session that starts from this one's current state,
    /// with the request's arguments, environment and stdin (its `module`
    /// must be `None`); both go on independently, each with its own
    /// environment and randomness. A backend refuses, with the reason,
    /// state it cannot carry (a file the guest holds open, say).
    fn fork(&mut self, request: crate::ExecRequest) -> Result<Self, crate::SandboxError>
    where
        Self: Sized;

    /// Closes the session; a backend lets the guest finalise first, within
    /// a short bound, when the config asks for it (`session.shutdown`).
    fn close(self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_in_one_pass() {
        let argv = vec!["python".to_owned(), "{{env}}".to_owned(), "{{argv}}".to_owned()];
        let env = vec![("A".to_owned(), "{{argv}}".to_owned())];
        assert_eq!(fill_restore("{{{argv}}}", &[], &[]), "{[]}");
        let code = fill_restore("f({{argv}}, {{env}}, {{other}} {{)", &argv, &env);
        assert_eq!(
            code,
            r#"f(["python","\u007b\u007benv\u007d\u007d","\u007b\u007bargv\u007d\u007d"], {"A":"\u007b\u007bargv\u007d\u007d"}, {{other}} {{)"#
        );
    }

    #[test]
    fn no_value_can_close_a_string_or_a_line() {
        let hostile = "\"'`\\\n\r\u{2028}\u{202e}</script>${x}#\u{0}é😀";
        let code = fill_restore(
            "{{argv}}{{env}}",
            &[hostile.to_owned()],
            &[(hostile.to_owned(), hostile.to_owned())],
        );
        let inner: String = code.chars().filter(|c| *c != '"').collect();
        for bad in ['\'', '`', '\n', '\r', '\u{2028}', '\u{202e}', '<', '>', '$', '#', '\u{0}', ';', '(', ')']
        {
            assert!(!inner.contains(bad), "{bad:?} in {code}");
        }
        assert_eq!(code.matches('"').count(), 6, "only the JSON's own quotes: {code}");
        // It is still JSON, and says exactly what was given.
        let (argv, env) = code.split_at(code.find('{').unwrap());
        let argv: Vec<String> = serde_json::from_str(argv).unwrap();
        let env: std::collections::BTreeMap<String, String> = serde_json::from_str(env).unwrap();
        assert_eq!(argv, [hostile]);
        assert_eq!(env[hostile], hostile);
    }
}
