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
/// Default bound on the display results of one turn: 4 MiB.
pub const DEFAULT_MAX_RESULT_BYTES: u64 = 4 << 20;
/// Default bound on the number of display results of one turn.
pub const DEFAULT_MAX_RESULTS: u32 = 64;
/// Default bound on a file read out of a session: 64 MiB.
pub const DEFAULT_MAX_FILE_READ: u64 = 64 << 20;
/// Default wait for room in the pool when opening a session: 30 s.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The session settings of a sandbox. Table `[session]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    /// A file of code that starts the preload (and is the preload when
    /// `session.preload` is unset), so that every session starts from its
    /// effects and its cost is paid once, in the checkpoint. A runtime's
    /// display hooks live here (see `profiles/python-sci/kernel.py`).
    /// Relative to the profile. Key `session.setup_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_file: Option<std::path::PathBuf>,
    /// A private workspace of this many bytes: each session gets an empty
    /// directory at `/workspace` and another at `/tmp`, both writable, both
    /// its own, removed when it ends; the session's disk writes (to these
    /// and to any read-write mount, over all its turns) are bounded by
    /// this size and `max_disk_write`, whichever is smaller. Off when
    /// unset. Key `session.workspace`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_units::optional_bytes")]
    pub workspace: Option<u64>,
    /// Most bytes of display results (values, figures, errors) one turn
    /// may return; past it results are dropped, a note says so, and the
    /// turn is flagged `results_truncated`. Key `session.max_result_bytes`.
    #[serde(with = "serde_units::bytes")]
    pub max_result_bytes: u64,
    /// Most display results one turn may return. Key
    /// `session.max_results`.
    pub max_results: u32,
    /// Most bytes a `read_file` operation may return. Key
    /// `session.max_file_read`.
    #[serde(with = "serde_units::bytes")]
    pub max_file_read: u64,
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
            setup_file: None,
            workspace: None,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            max_results: DEFAULT_MAX_RESULTS,
            max_file_read: DEFAULT_MAX_FILE_READ,
        }
    }
}

/// A display result as Jupyter gives one: values keyed by MIME type (text
/// as a string, PNG and JPEG as base64, JSON as JSON).
pub type MimeBundle = serde_json::Map<String, serde_json::Value>;

/// The exception a turn raised, as the guest's runtime reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnError {
    /// The exception's type, such as `ZeroDivisionError`.
    pub name: String,
    /// Its message, such as `division by zero`.
    pub value: String,
    /// The traceback, one entry per line, without line ends.
    pub traceback: Vec<String>,
}

/// What a turn produces while it runs, in the order it was produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// Bytes the guest wrote to stdout (as captured: within the cap).
    Stdout(Vec<u8>),
    /// Bytes the guest wrote to stderr (as captured: within the cap).
    Stderr(Vec<u8>),
    /// A display result.
    Result(MimeBundle),
    /// The exception the turn raised.
    Error(TurnError),
}

/// A live receiver of a turn's [`TurnEvent`]s. It runs on a thread of its
/// own; one that blocks slows the guest's output down but never holds the
/// turn past its deadline (what it has not taken by then is dropped).
pub type EventSink = Box<dyn FnMut(TurnEvent) + Send>;

/// One turn: code for the guest to run in its live state.
#[derive(Default)]
pub struct TurnRequest {
    /// The code (for CPython, Python source run in `__main__`).
    pub code: String,
    /// Live receiver of this turn's stdout, if any.
    pub stdout_sink: Option<OutputSink>,
    /// Live receiver of this turn's stderr, if any.
    pub stderr_sink: Option<OutputSink>,
    /// Live receiver of all of this turn's events (stdout, stderr, results
    /// and the error), in the order the guest produced them. With it set,
    /// `stdout_sink` and `stderr_sink` are not used.
    pub events: Option<EventSink>,
    /// The formats figures are returned in, besides PNG, which is always
    /// given: [`FigureFormat::Svg`] adds `image/svg+xml`.
    pub figure_formats: Vec<FigureFormat>,
    /// A shorter timeout for this turn than the config's `timeout_secs`;
    /// a longer one has no effect (a caller can lower a limit, never
    /// raise it).
    pub timeout: Option<std::time::Duration>,
}

/// A format a figure may be returned in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FigureFormat {
    /// `image/png`, base64.
    Png,
    /// `image/svg+xml`, text.
    Svg,
}

impl FigureFormat {
    /// The format named `name` (`png`, `svg`).
    pub fn parse(name: &str) -> Option<FigureFormat> {
        match name {
            "png" => Some(FigureFormat::Png),
            "svg" => Some(FigureFormat::Svg),
            _ => None,
        }
    }

    /// Its name, as [`FigureFormat::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            FigureFormat::Png => "png",
            FigureFormat::Svg => "svg",
        }
    }
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
    /// The turn's display results, in the order they were produced: the
    /// value of its last expression, figures, what it passed to
    /// `display`. Only what the guest sent through the host-call door's
    /// display frames; nothing it printed.
    pub results: Vec<MimeBundle>,
    /// Whether results were dropped for `session.max_result_bytes` or
    /// `session.max_results` (a note stands in the place of each one
    /// dropped for its size).
    pub results_truncated: bool,
    /// The exception the turn raised, when it exited with a non-zero
    /// status and the guest reported one.
    pub error: Option<TurnError>,
    /// Set on the first turn after the session was taken up from its last
    /// stored state by another worker after its own was lost (a crash):
    /// the number of the last turn that state holds. Turns after it were
    /// lost, and numbering goes on from it.
    pub resumed_from_turn: Option<u64>,
    /// Set when this is the recorded answer of a turn sent again under the
    /// same idempotency key: the turn ran once, before, and not again.
    pub replayed: bool,
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
