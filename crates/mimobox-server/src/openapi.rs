//! The HTTP API's request and answer bodies as types, and the OpenAPI
//! document the server serves at `/v1/openapi.json`, generated from them
//! and from the routes' annotations in [`crate::http`].
//!
//! Requests are read and the simple answers written through these types,
//! so the document and the server cannot drift apart; the turn's answer is
//! `wire`'s, and [`TurnAnswer`] describes it (the schemathesis test of
//! `mimobox serve` holds real turns' answers against it).

use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// A refusal: why the request was not done.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// One line saying why.
    pub error: String,
}

/// `POST /v1/sessions`: which profile the new session runs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// One of the profiles this server offers; the default when absent.
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "present")]
    pub profile: Option<String>,
}

/// A session just opened.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// The session's id: 32 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub id: String,
    /// The profile it runs.
    pub profile: String,
}

/// Whether a session is in memory or paused to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// In memory, ready for a turn.
    Live,
    /// Paused to the store; its next call resumes it.
    Paused,
}

/// One session, as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionBody {
    /// The session's id.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub id: String,
    /// The profile it runs.
    pub profile: String,
    /// Live or paused.
    pub state: State,
    /// Turns run so far.
    pub turns: u64,
    /// Bytes of memory it holds while live (0 when paused).
    pub memory_bytes: u64,
    /// Seconds since its last call.
    pub idle_seconds: f64,
    /// Seconds since it was opened.
    pub age_seconds: f64,
}

/// The caller's own sessions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    /// Each session of the caller's.
    pub sessions: Vec<SessionBody>,
}

/// `POST /v1/sessions/{id}/execute`: the code of one turn.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Execute {
    /// The code to run in the session's interpreter.
    pub code: String,
    /// Answer with NDJSON event lines as the turn runs, ending with the
    /// answer as a `"type": "end"` line.
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "present")]
    pub stream: Option<bool>,
    /// Seconds this turn may take at most (never more than the profile
    /// allows).
    #[schema(minimum = 0.001, nullable = false)]
    #[serde(default, deserialize_with = "present")]
    pub timeout: Option<f64>,
}

/// How a turn's run ended.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeName {
    /// The guest returned (or exited with a code).
    Exited,
    /// It ran past its timeout.
    TimedOut,
    /// It ran out of fuel.
    OutOfFuel,
    /// It asked for more memory than its limit.
    MemoryLimit,
    /// It trapped.
    Trap,
}

/// One call the guest made to a host tool.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolCallBody {
    /// The tool's name.
    pub tool: String,
    /// Milliseconds it took.
    pub ms: f64,
    /// Whether it answered.
    pub ok: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
}

/// The error a turn's code raised.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnErrorBody {
    /// The exception's type name.
    pub name: String,
    /// Its message.
    pub value: String,
    /// The traceback's lines.
    pub traceback: Vec<String>,
}

/// A turn's answer (the JSON-lines answer object).
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnAnswer {
    /// How the run ended.
    pub outcome: OutcomeName,
    /// The exit code, when it exited with one.
    pub exit_code: Option<i32>,
    /// The trap's message, when it trapped.
    pub trap: Option<String>,
    /// What the code printed (lossy UTF-8).
    pub stdout: String,
    /// What it printed to stderr.
    pub stderr: String,
    /// Whether stdout was cut at the profile's bound.
    pub stdout_truncated: bool,
    /// Whether stderr was.
    pub stderr_truncated: bool,
    /// Milliseconds the turn took.
    pub elapsed_ms: f64,
    /// Fuel used, when the profile meters fuel.
    pub fuel_consumed: Option<u64>,
    /// The most linear memory the guest held, in bytes.
    pub peak_memory_bytes: u64,
    /// Whether it hit its memory limit.
    pub memory_limit_hit: bool,
    /// Bytes it wrote to disk.
    pub disk_written_bytes: u64,
    /// Whether it hit its disk quota.
    pub disk_quota_hit: bool,
    /// Its calls to host tools.
    pub tool_calls: Vec<ToolCallBody>,
    /// The turn's number in its session.
    pub turn: u64,
    /// Whether the session lives on after it.
    pub alive: bool,
    /// The values it displayed, each a MIME bundle (`text/plain`,
    /// `text/html`, `image/png` in base64, ...).
    pub results: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Whether results were left out past the bound.
    pub results_truncated: bool,
    /// The error its code raised, if any.
    pub error: Option<TurnErrorBody>,
    /// Present on the first answer after the session was taken up, from
    /// its last stored state, by another worker after its own was lost:
    /// the last turn that state holds. Later turns were lost; numbering
    /// goes on from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from_turn: Option<u64>,
    /// Present, `true`, when the turn was sent again under the
    /// `Idempotency-Key` of a turn that ran: this is that turn's answer,
    /// and it did not run again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<bool>,
}

/// One entry of a directory listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryBody {
    /// Its name in the directory.
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A directory listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListingBody {
    /// The directory's entries.
    pub entries: Vec<EntryBody>,
    /// Whether the listing was cut at its bound.
    pub truncated: bool,
}

/// A file written.
#[derive(Debug, Serialize, ToSchema)]
pub struct Written {
    /// Bytes written.
    pub bytes: u64,
}

/// The bearer token every route but health and readiness needs.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mimobox",
        description = "Sessions of an untrusted-code interpreter: open one, run turns (whole or streamed as \
                       NDJSON), move files in and out of its workspace, close it. Every route but \
                       /healthz and /readyz needs a bearer token; an owner reaches only its own sessions."
    ),
    paths(
        crate::http::create_session,
        crate::http::list_sessions,
        crate::http::inspect_session,
        crate::http::close_session,
        crate::http::execute,
        crate::http::list_files,
        crate::http::read_file,
        crate::http::write_file,
        crate::http::health,
        crate::http::ready,
        crate::http::metrics,
    ),
    modifiers(&BearerToken),
    security(("bearer" = []))
)]
struct Document;

/// The OpenAPI document of a server offering `profiles` (the names a new
/// session may ask for).
pub fn document(profiles: &[String]) -> utoipa::openapi::OpenApi {
    let mut document = Document::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    // The profiles are the server's own: `profile` is one of them.
    if let Some(components) = document.components.as_mut()
        && let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(new_session))) =
            components.schemas.get_mut("NewSession")
        && let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(profile))) =
            new_session.properties.get_mut("profile")
    {
        profile.enum_values =
            Some(profiles.iter().map(|name| serde_json::Value::from(name.as_str())).collect());
    }
    // A new session needs no body at all (the default profile).
    if let Some(path) = document.paths.paths.get_mut("/v1/sessions")
        && let Some(post) = path.post.as_mut()
        && let Some(body) = post.request_body.as_mut()
    {
        body.required = Some(utoipa::openapi::Required::False);
    }
    document
}

/// An optional field that may be left out but, when given, is not `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}
