//! `mimobox serve`'s HTTP API: sessions, turns (whole or streamed as
//! NDJSON), files, health, readiness and metrics, over the session host.
//!
//! Every route but `/healthz` and `/readyz` needs `Authorization: Bearer
//! TOKEN`; the SHA-256 of the token names its owner (compared in constant
//! time against every configured hash). An owner reaches only its own
//! sessions: another's id is the same 404 as one that never existed.
//!
//! Bounds: request bodies (JSON and file uploads apart), the time to send
//! the headers (HTTP/1 only; an idle keep-alive connection too), a whole
//! body and between its chunks, a client taking an answer's bytes,
//! connections at once; a stream ends by `max_stream` and holds a bounded
//! queue, so a client that stops reading holds neither the turn nor
//! memory for longer. A turn runs as a task of its own: a client that
//! hangs up does not abandon it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mimobox_core::{SandboxError, TurnEvent, TurnRequest};
use mimobox_files::FileError;
use mimobox_host::{
    BadTurnKey, HostError, SessionHost, SessionId, SessionInfo, SessionState, TurnKey, WhenBusy,
};
use mimobox_wasm::WasmSandbox;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, Semaphore};

use crate::mcp::{McpServer, RequestOwner};
use crate::openapi::{
    Created, ErrorBody, Execute, ListingBody, NewSession, SessionBody, SessionList,
    State as SessionStateBody, TurnAnswer, Written,
};
use crate::peers::{Forwarded, Peers, SignedBody};
use crate::wire;

/// How the HTTP server runs.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Owners by the SHA-256 of their bearer token.
    pub tokens: Vec<([u8; 32], String)>,
    /// Most bytes of a JSON request body.
    pub max_json: usize,
    /// Most bytes of a file upload.
    pub max_upload: usize,
    /// Time a client has to send its request's headers, and between two
    /// pieces of its body.
    pub read_timeout: Duration,
    /// Time a client has to send its whole body, however it trickles.
    pub body_timeout: Duration,
    /// Longest a write to a client may wait for it to read: past it, the
    /// connection is dropped.
    pub write_timeout: Duration,
    /// Most connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long a call waits for its session's running call.
    pub busy_wait: Duration,
    /// How long running turns get to finish on a drain.
    pub drain_grace: Duration,
    /// Longest a streamed answer lasts, however slowly it is read.
    pub max_stream: Duration,
    /// Most requests of one owner at once (a stream counts until it ends),
    /// unless `requests_of` names the owner.
    pub owner_requests: u32,
    /// Most requests at once of particular owners.
    pub requests_of: HashMap<String, u32>,
    /// Owners that may read `/metrics`, the whole server's numbers.
    pub metrics_owners: HashSet<String>,
    /// The other workers of this one's fleet, if it has one.
    pub peers: Option<Peers>,
}

impl HttpConfig {
    /// Defaults for `listen`: 1 MiB JSON bodies, 64 MiB uploads, 10 s to
    /// send the headers and between pieces of a body, 60 s for a whole
    /// body, 30 s for a client to take an answer's next bytes, 1,024
    /// connections, 64 requests at once per owner, 30 s for a
    /// busy session, 30 s of drain, 15 minutes for a stream.
    pub fn new(listen: SocketAddr) -> HttpConfig {
        HttpConfig {
            listen,
            tokens: Vec::new(),
            max_json: 1 << 20,
            max_upload: 64 << 20,
            read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_connections: 1024,
            busy_wait: Duration::from_secs(30),
            drain_grace: Duration::from_secs(30),
            max_stream: Duration::from_secs(15 * 60),
            owner_requests: 64,
            requests_of: HashMap::new(),
            metrics_owners: HashSet::new(),
            peers: None,
        }
    }
}

/// A token's hash from its hex spelling (64 hex digits).
pub fn parse_token_hash(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[derive(Clone)]
pub(crate) struct AppState {
    host: SessionHost<WasmSandbox>,
    tokens: Arc<Vec<([u8; 32], Arc<str>)>>,
    /// Each owner's requests at once.
    requests_of: Arc<HashMap<Arc<str>, Arc<Semaphore>>>,
    body_timeout: Duration,
    metrics_owners: Arc<HashSet<String>>,
    busy_wait: Duration,
    max_stream: Duration,
    max_json: usize,
    max_upload: usize,
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// Requests whose answers are not done yet.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    requests: Arc<[AtomicU64; 5]>,
    peers: Option<Peers>,
}

#[derive(Clone)]
pub(crate) struct Owner(Arc<str>);

/// The API's router (every route, its limits and its authentication).
fn router(state: AppState, config: &HttpConfig) -> Router {
    // MCP over streamable HTTP, the same tools as over stdio, each call
    // its token's owner's. Browsers' requests (an `Origin` header) are
    // refused, and the `Host` must be this server's, against DNS rebinding.
    let default = state.host.profiles().first().map(|p| p.to_string()).unwrap_or_default();
    let host = state.host.clone();
    let mut allowed_hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    allowed_hosts.push(config.listen.ip().to_string());
    allowed_hosts.push(config.listen.to_string());
    // A call routed from another worker names this one by its advertised
    // address.
    if let Some(peers) = &config.peers {
        let advertised = peers.member().worker();
        allowed_hosts.push(advertised.to_owned());
        if let Some((host, _port)) = advertised.rsplit_once(':') {
            allowed_hosts.push(host.trim_start_matches('[').trim_end_matches(']').to_owned());
        }
    }
    let unspecified = config.listen.ip().is_unspecified();
    let mcp = rmcp::transport::streamable_http_server::StreamableHttpService::new(
        move || Ok(McpServer::per_request(host.clone(), &default)),
        Arc::new(rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default()),
        {
            let mcp = rmcp::transport::streamable_http_server::StreamableHttpServerConfig::default()
                // State is in the tools' explicit session ids: no MCP
                // sessions for the server to keep.
                .with_legacy_session_mode(false)
                .with_json_response(true)
                .enforce_origin_validation()
                .with_max_request_body_bytes(config.max_json);
            // Bound to every address, the server answers by any name; the
            // bearer token already keeps a rebinding page out.
            if unspecified { mcp.disable_allowed_hosts() } else { mcp.with_allowed_hosts(allowed_hosts) }
        },
    );
    let document = serde_json::to_vec(&crate::openapi::document(
        &state.host.profiles().iter().map(|p| p.to_string()).collect::<Vec<_>>(),
    ))
    .map(Bytes::from)
    .unwrap_or_default();
    let api = Router::new()
        .nest_service("/mcp", mcp)
        .route("/v1/sessions", post(create_session).get(list_sessions))
        .route("/v1/sessions/{id}", get(inspect_session).delete(close_session))
        .route("/v1/sessions/{id}/execute", post(execute))
        .route("/v1/sessions/{id}/files", get(list_files))
        .route("/v1/sessions/{id}/files/{*path}", get(read_file).put(write_file))
        .route("/metrics", get(metrics))
        // The document names the profiles offered: for owners only.
        .route(
            "/v1/openapi.json",
            get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document) }
            }),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .merge(api)
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            refuse(StatusCode::METHOD_NOT_ALLOWED, "this route does not take this method")
        })
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(config.read_timeout))
        .layer(middleware::from_fn_with_state(state.clone(), body_deadline))
        .layer(middleware::from_fn_with_state(state.clone(), refuse_long_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Serves the API on `config.listen` until `stop` is notified (a
/// SIGTERM, say): then no new sessions or turns, running turns finish for
/// up to `drain_grace`, what is left is paused (or closed), and this
/// returns.
pub async fn serve(
    host: SessionHost<WasmSandbox>,
    config: HttpConfig,
    stop: Arc<Notify>,
    bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let tokens: Vec<([u8; 32], Arc<str>)> =
        config.tokens.iter().map(|(hash, owner)| (*hash, Arc::<str>::from(owner.as_str()))).collect();
    let requests_of = tokens
        .iter()
        .map(|(_, owner)| {
            let bound = config.requests_of.get(&**owner).copied().unwrap_or(config.owner_requests);
            (owner.clone(), Arc::new(Semaphore::new(bound.max(1) as usize)))
        })
        .collect();
    let state = AppState {
        host: host.clone(),
        tokens: Arc::new(tokens),
        requests_of: Arc::new(requests_of),
        body_timeout: config.body_timeout,
        metrics_owners: Arc::new(config.metrics_owners.clone()),
        busy_wait: config.busy_wait,
        max_stream: config.max_stream,
        max_json: config.max_json,
        max_upload: config.max_upload,
        draining: Arc::default(),
        in_flight: Arc::default(),
        requests: Arc::new(Default::default()),
        peers: config.peers.clone(),
    };
    let app = router(state.clone(), &config);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    bound(listener.local_addr()?);
    let connections = Arc::new(Semaphore::new(config.max_connections));
    // Told once the drain is done: open connections then finish the
    // request they are on and close.
    let (closing, closed) = tokio::sync::watch::channel(false);
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
            _ = stop.notified() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.notified() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut closed = closed.clone();
        let read_timeout = config.read_timeout;
        let write_timeout = config.write_timeout;
        let live = live.clone();
        live.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            // A client that stops reading an answer fails its write after
            // `write_timeout`, and loses its connection.
            let io = hyper_util::rt::TokioIo::new(crate::stall::WriteDeadline::new(stream, write_timeout));
            let service = hyper_util::service::TowerToHyperService::new(app);
            // HTTP/1 only: its header read timeout runs from when hyper
            // starts reading a request's head, an idle keep-alive
            // connection included (HTTP/2 would bring streams and idle
            // connections that no timeout here bounds).
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(read_timeout)
                .max_buf_size(64 << 10)
                .serve_connection(io, service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = until_closing(&mut closed) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
            live.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
    }
    // No new connections: the listener goes, so clients (and a load
    // balancer's readiness probe) are refused at once rather than queued.
    drop(listener);
    state.draining.store(true, Ordering::SeqCst);
    // Requests in hand finish first (a forwarded one included, whose turn
    // runs on another worker), then the host drains in what is left of
    // the grace.
    let drain_until = tokio::time::Instant::now() + config.drain_grace;
    while state.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut report = host.shutdown(drain_until.saturating_duration_since(tokio::time::Instant::now())).await;
    if report.still_running > 0 {
        // What held a session past the grace (a turn that outlasted it, a
        // background pause under way) gets one more bounded pass, so that
        // what it leaves is paused rather than dropped with the process.
        tracing::warn!("{} sessions still busy at the end of the grace: one more pass", report.still_running);
        report = host.shutdown(LAST_PASS).await;
    }
    tracing::info!(
        "drained: {} paused, {} closed, {} still running (not stored), {} held by another worker, {} left \
         with their last stored state ({} pauses tried again)",
        report.paused,
        report.closed,
        report.still_running,
        report.moved,
        report.unstored,
        report.pause_retries
    );
    let _ = closing.send(true);
    // Open connections get a moment to send what they have, and work that
    // outlasted the grace (a turn whose client left, a stream's last
    // bytes) a moment to end: the runtime must not be torn down under it.
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    while (live.load(Ordering::SeqCst) > 0 || host.gauges().running_turns > 0)
        && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The drain's last pass over sessions still busy when its grace ended.
const LAST_PASS: Duration = Duration::from_secs(5);

/// Returns once the drain says connections are to close.
async fn until_closing(closed: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let done = *closed.borrow_and_update();
        if done || closed.changed().await.is_err() {
            return;
        }
    }
}

/// Finds the owner of the request's bearer token (or of a peer's signed
/// request), or refuses it; in a fleet, sends a request for a session to
/// where the session is.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let from_peer =
        match Peers::verify(state.peers.as_ref(), request.headers(), request.method().as_str(), &target) {
            Ok(owner) => owner,
            Err(refusal) if refusal.status() == StatusCode::SERVICE_UNAVAILABLE => {
                return crate::peers::unavailable(refusal.message());
            }
            Err(refusal) => return refuse(refusal.status(), refusal.message()),
        };
    let found = match from_peer {
        Some(peer) => match state.tokens.iter().find(|(_, known)| **known == *peer.owner) {
            Some((_, known)) => {
                request.extensions_mut().insert(Forwarded);
                let request_body = std::mem::take(request.body_mut());
                *request.body_mut() = Body::new(SignedBody::new(request_body, peer.body));
                known.clone()
            }
            None => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "a forwarded request names an owner this worker does not know",
                );
            }
        },
        None => match owner_of_token(&state, &request) {
            Ok(owner) => owner,
            Err(response) => return response,
        },
    };
    let owner = found;
    // The owner's bound on requests at once; a streamed answer holds its
    // place until its body ends.
    let permit = match state.requests_of.get(&owner).map(|slots| slots.clone().try_acquire_owned()) {
        Some(Ok(permit)) => Arc::new(permit),
        _ => {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "this owner has as many requests running as it may",
            );
        }
    };
    request.extensions_mut().insert(RequestOwner(owner.clone()));
    request.extensions_mut().insert(Owner(owner.clone()));
    // A turn's task holds the place too, so that a client that hangs up
    // mid-turn does not free it while the turn runs.
    request.extensions_mut().insert(Place { _held: permit.clone() });
    let mut session = state.peers.as_ref().and_then(|_| session_of(request.uri().path()));
    // An MCP tool call names its session in its arguments: in a fleet, it
    // is read (whole, within the JSON bound) to be sent where that is.
    let path = request.uri().path();
    if state.peers.is_some()
        && request.method() == axum::http::Method::POST
        && (path == "/mcp" || path.starts_with("/mcp/"))
    {
        let (parts, body) = request.into_parts();
        let body = match read_whole(body, state.max_json).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        session = mcp_session_of(&body);
        request = Request::from_parts(parts, Body::from(body));
    }
    let response = match (&state.peers, session) {
        (Some(peers), Some(id)) => {
            let max_body = body_limit(&state, &request);
            peers.route(&state.host, &owner, id, request, next, max_body).await
        }
        _ => next.run(request).await,
    };
    response.map(|body| Body::new(Held { body, _place: Place { _held: permit } }))
}

/// The session a `/v1/sessions/{id}...` path names, if it names one.
fn session_of(path: &str) -> Option<SessionId> {
    let rest = path.strip_prefix("/v1/sessions/")?;
    rest.split('/').next()?.parse().ok()
}

/// The session an MCP message's tool call names (`params.arguments.session_id`
/// of a `tools/call` request), if it is one and names one.
fn mcp_session_of(body: &[u8]) -> Option<SessionId> {
    // As a `Value`, so that a key given twice reads as rmcp reads it (the
    // last one).
    let message: Value = serde_json::from_slice(body).ok()?;
    if message.get("method")?.as_str()? != "tools/call" {
        return None;
    }
    message.get("params")?.get("arguments")?.get("session_id")?.as_str()?.parse().ok()
}

/// The owner whose token the request's bearer is, or the refusal.
#[allow(clippy::result_large_err)]
fn owner_of_token(state: &AppState, request: &Request) -> Result<Arc<str>, Response> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .map(|(_, token)| Sha256::digest(token.trim().as_bytes()));
    let Some(presented) = presented else {
        return Err(refuse(StatusCode::UNAUTHORIZED, "an Authorization: Bearer token is needed"));
    };
    // Every hash is compared, in constant time, whichever matches.
    let mut found: Option<Arc<str>> = None;
    for (hash, owner) in state.tokens.iter() {
        if bool::from(hash.ct_eq(presented.as_slice())) {
            found = Some(owner.clone());
        }
    }
    found.ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "the token is not one this server knows"))
}

/// A response body that holds its owner's request slot until it is done
/// (or dropped).
struct Held {
    body: Body,
    _place: Place,
}

/// A request's place among its owner's requests at once.
#[derive(Clone)]
pub(crate) struct Place {
    _held: Arc<dyn std::any::Any + Send + Sync>,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(context)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A request's whole body: at most its route's bound (413), all of it
/// within `body_timeout` however it trickles, and no pause between pieces
/// longer than `read_timeout` (408 either way).
pub(crate) struct Whole(Bytes);

impl axum::extract::FromRequest<AppState> for Whole {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Whole, Response> {
        let limit = body_limit(state, &request);
        read_whole(request.into_body(), limit).await.map(Whole)
    }
}

/// A body read whole: at most `limit` bytes (413); 408 when it came too
/// slowly, 401 when it is not the one a forwarding peer signed, 400 when
/// it could not be read.
pub(crate) async fn read_whole(body: Body, limit: usize) -> Result<Bytes, Response> {
    let body = http_body_util::Limited::new(body, limit);
    // The whole-body deadline is `body_deadline`'s, on every route.
    let late = || refuse(StatusCode::REQUEST_TIMEOUT, "the request's body did not arrive in time");
    match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
            while let Some(e) = cause {
                if e.is::<http_body_util::LengthLimitError>() {
                    return Err(refuse(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("the body is over {limit} bytes"),
                    ));
                }
                if e.is::<tower_http::timeout::TimeoutError>() || e.is::<BodyLate>() {
                    return Err(late());
                }
                if e.is::<crate::peers::BodyForged>() {
                    return Err(refuse(StatusCode::UNAUTHORIZED, &e.to_string()));
                }
                cause = e.source();
            }
            Err(refuse(StatusCode::BAD_REQUEST, "the request's body could not be read"))
        }
    }
}

/// Gives every request's body, on every route (`/mcp` too), until
/// `body_timeout` from its headers to arrive whole; past it, reading the
/// body fails.
async fn body_deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let deadline = tokio::time::Instant::now()
        .checked_add(state.body_timeout)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
    let request =
        request.map(|body| Body::new(Deadline { body, late: Box::pin(tokio::time::sleep_until(deadline)) }));
    next.run(request).await
}

/// A request body that fails once its deadline passes.
struct Deadline {
    body: Body,
    late: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// The error of a body that did not arrive by its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request's body did not arrive in time")]
struct BodyLate;

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let std::task::Poll::Ready(frame) = std::pin::Pin::new(&mut self.body).poll_frame(context) {
            return std::task::Poll::Ready(frame);
        }
        match self.late.as_mut().poll(context) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Some(Err(axum::Error::new(BodyLate)))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether a request uploads a file (its body bound is `max_upload`).
fn is_upload(request: &Request) -> bool {
    request.method() == axum::http::Method::PUT && request.uri().path().contains("/files/")
}

/// The most bytes `request`'s body may have on its route.
fn body_limit(state: &AppState, request: &Request) -> usize {
    if is_upload(request) { state.max_upload } else { state.max_json }
}

/// Refuses a body whose declared length is over its route's bound (413)
/// before any of it is read.
async fn refuse_long_bodies(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = body_limit(&state, &request);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, &format!("the body is over {limit} bytes"));
    }
    next.run(request).await
}

/// Counts answers by status class.
async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Once a drain has begun, a request that arrives on a connection kept
    // alive is answered at once, and nothing of it is done: sending it
    // again elsewhere is safe. Those already in hand run to their end
    // (their answer's last byte), and the drain waits for them.
    let response =
        if state.draining.load(Ordering::SeqCst) && !matches!(request.uri().path(), "/healthz" | "/readyz") {
            let mut response =
                refuse(StatusCode::SERVICE_UNAVAILABLE, "this worker is draining; send the request again");
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        } else {
            let in_flight = InFlight::new(&state.in_flight);
            next.run(request)
                .await
                .map(|body| Body::new(Held { body, _place: Place { _held: Arc::new(in_flight) } }))
        };
    let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    state.requests[class].fetch_add(1, Ordering::Relaxed);
    response
}

/// A request counted as in flight until its answer's body is done.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<std::sync::atomic::AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses(
    (status = 200, description = "The server is up", body = String, content_type = "text/plain"),
))]
pub(crate) async fn health() -> &'static str {
    "ok\n"
}

/// Whether the server takes new work (not while it drains).
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()), responses(
    (status = 200, description = "Ready", body = String, content_type = "text/plain"),
    (status = 503, description = "Draining", body = ErrorBody),
))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        refuse(StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

/// The whole server's metrics in the Prometheus text format, for owners
/// the operator named.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "The metrics", body = String, content_type = "text/plain"),
    (status = 401, description = "No token, or an unknown one", body = ErrorBody),
    (status = 403, description = "This owner may not read them", body = ErrorBody),
    (status = 429, description = "Too many of this owner's requests at once", body = ErrorBody),
))]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    Extension(Owner(owner)): Extension<Owner>,
) -> Response {
    // Sessions, turns and memory of every owner: for the operator's own.
    if !state.metrics_owners.contains(&*owner) {
        return refuse(StatusCode::FORBIDDEN, "this owner may not read the server's metrics");
    }
    let mut text = state.host.render_metrics();
    text.push_str("# HELP mimobox_http_responses_total HTTP answers, by status class.\n");
    text.push_str("# TYPE mimobox_http_responses_total counter\n");
    for (i, count) in state.requests.iter().enumerate() {
        text.push_str(&format!(
            "mimobox_http_responses_total{{class=\"{}xx\"}} {}\n",
            i + 1,
            count.load(Ordering::Relaxed)
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Opens a session of a profile the server offers.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body(content = NewSession, content_type = "application/json",
        description = "Optional: without a body, the default profile"),
    responses(
        (status = 201, description = "Opened", body = Created),
        (status = 400, description = "A malformed body, or a profile not offered", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Past a limit of the owner or the server", body = ErrorBody),
        (status = 503, description = "Draining, or no room for another live session", body = ErrorBody),
    ))]
pub(crate) async fn create_session(
    State(state): State<AppState>,
    Extension(Owner(owner)): Extension<Owner>,
    Whole(body): Whole,
) -> Response {
    let request: NewSession = match json_body(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let profile = match request.profile {
        Some(name) => name,
        None => match state.host.profiles().first() {
            Some(name) => name.to_string(),
            None => return refuse(StatusCode::BAD_REQUEST, "this server offers no profile"),
        },
    };
    match state.host.open(&owner, &profile).await {
        Ok(id) => (StatusCode::CREATED, axum::Json(Created { id: id.to_string(), profile })).into_response(),
        Err(e) => host_refusal(&e),
    }
}

/// Lists the caller's own sessions.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", params(
        ("scope" = Option<String>, Query, description = "`fleet` (the default): the caller's sessions on every \
            worker of the fleet (those no worker holds, or whose worker does not answer, as the catalog last \
            recorded them); `local`: only those this worker holds", pattern = "^(fleet|local)$"),
    ), responses(
    (status = 200, description = "The caller's sessions", body = SessionList),
    (status = 400, description = "A scope that is neither `fleet` nor `local`", body = ErrorBody),
    (status = 401, description = "No token, or an unknown one", body = ErrorBody),
    (status = 429, description = "Too many of this owner's requests at once", body = ErrorBody),
    (status = 503, description = "The fleet's catalog is unavailable", body = ErrorBody),
))]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    Extension(Owner(owner)): Extension<Owner>,
    query: Result<Query<ScopeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let local = match query.as_ref().map(|q| q.scope.as_deref()) {
        Ok(None | Some("fleet")) => false,
        Ok(Some("local")) => true,
        _ => return refuse(StatusCode::BAD_REQUEST, "the query is `?scope=fleet` or `?scope=local`"),
    };
    let sessions: Vec<SessionBody> = state.host.list(&owner).iter().map(info_body).collect();
    let sessions = match &state.peers {
        Some(peers) if !local => match peers.sessions(&owner, sessions).await {
            Ok(sessions) => sessions,
            Err(e) => {
                tracing::warn!(
                    "the session catalog: {}",
                    mimobox_core::text::one_line_bounded(&e.to_string())
                );
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "the session catalog is unavailable");
            }
        },
        _ => sessions,
    };
    axum::Json(SessionList { sessions }).into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct ScopeQuery {
    scope: Option<String>,
}

/// One of the caller's sessions.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "The session's id")), responses(
        (status = 200, description = "The session", body = SessionBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 404, description = "No such session of the caller's (or no such file in it)", body = ErrorBody),
        (status = 429, description = "Too many of this owner's requests at once", body = ErrorBody),
    ))]
pub(crate) async fn inspect_session(
    State(state): State<AppState>,
    Extension(Owner(owner)): Extension<Owner>,
    Id(id): Id,
) -> Response {
    match state.host.info(&owner, id) {
        Ok(info) => axum::Json(info_body(&info)).into_response(),
        Err(e) => host_refusal(&e),
    }
}

/// Closes one of the caller's sessions.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "The session's id")), responses(
        (status = 204, description = "Closed"),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 404, description = "No such session of the caller's (or no such file in it)", body = ErrorBody),
        (status = 429, description = "Too many of this owner's requests at once", body = ErrorBody),
        (status = 409, description = "Busy past the wait", body = ErrorBody),
        (status = 503, description = "Draining", body = ErrorBody),
    ))]
pub(crate) async fn close_session(
    State(state): State<AppState>,
    Extension(Owner(owner)): Extension<Owner>,
    Id(id): Id,
) -> Response {
    match state.host.close(&owner, id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => host_refusal(&e),
    }
}

/// Runs a turn: the whole answer, or NDJSON event lines ending with it.
#[utoipa::path(post, path = "/v1/sessions/{id}/execute", tag = "sessions", params(
        ("id" = String, Path, description = "The session's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "The caller's name for this turn (1 to 255 \
            visible ASCII characters): the same turn sent again under it, after its answer was lost, gets the \
            answer of the turn that ran (`\"replayed\": true`) and does not run again. A session keeps its \
            last 8 keyed turns, and the answer of the newest.", max_length = 255, pattern = r"^[!-~]{1,255}$"),
    ),
    request_body(content = Execute, content_type = "application/json"),
    responses(
        (status = 200, description = "The turn's answer; with `stream`, NDJSON lines (`stdout`, `stderr`, \
            `result`, `error`) ending with the answer as a `\"type\": \"end\"` line, or an end line with \
            only `error` when the session could not run it",
            content((TurnAnswer = "application/json"), (String = "application/x-ndjson"))),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 404, description = "No such session of the caller's (or no such file in it)", body = ErrorBody),
        (status = 429, description = "Too many of this owner's requests at once", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 409, description = "Busy past the wait; or the turn of this `Idempotency-Key` ran already \
            and its answer is not kept (an earlier key, a large answer, a session that moved), or the key was \
            used for another request", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 503, description = "Draining, or no room to resume the session", body = ErrorBody),
    ))]
pub(crate) async fn execute(
    State(state): State<AppState>,
    Extension(Owner(owner)): Extension<Owner>,
    Extension(place): Extension<Place>,
    Id(id): Id,
    headers: axum::http::HeaderMap,
    Whole(body): Whole,
) -> Response {
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(response) => return *response,
    };
    let request: Execute = match json_body(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let stream = request.stream.unwrap_or(false);
    let timeout = match wire::turn_timeout(request.timeout.map(Value::from).as_ref()) {
        Ok(timeout) => timeout,
        Err(problem) => return refuse(StatusCode::BAD_REQUEST, problem),
    };
    let mut turn = TurnRequest { timeout, ..TurnRequest::new(request.code) };
    let wait = WhenBusy::Wait(state.busy_wait);
    if !stream {
        // A task of its own: a client that hangs up mid-turn does not
        // abandon the turn (which would end the session).
        let host = state.host.clone();
        let ran = tokio::spawn(async move {
            let _place = place;
            host.turn_once(&owner, id, key, turn, wait).await
        })
        .await;
        return match ran {
            Ok(Ok(result)) => axum::Json(wire::turn_json(&result)).into_response(),
            Ok(Err(e)) => host_refusal(&e),
            Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "the turn's task failed"),
        };
    }
    // An id the caller has no session under is a 404 before the stream's
    // 200 is sent (a refusal after it, say a busy session, is the end
    // line's `error`).
    if let Err(e) = state.host.info(&owner, id) {
        return host_refusal(&e);
    }
    // The turn runs on its own; its events go through a bounded queue to
    // the response. A client that stops reading fills the queue, then the
    // guest's own bounded stream, whose undelivered output is dropped at
    // the turn's deadline: it holds neither the turn nor memory.
    let (lines, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
    let events = lines.clone();
    let mut encoder = wire::EventLines::default();
    turn.events = Some(Box::new(move |event: TurnEvent| {
        if let Some(line) = encoder.line(event) {
            let _ = events.blocking_send(ndjson(&line));
        }
    }));
    let host = state.host.clone();
    let max_stream = state.max_stream;
    tokio::spawn(async move {
        let _place = place;
        let end = match host.turn_once(&owner, id, key, turn, wait).await {
            Ok(result) => {
                let mut answer = wire::turn_json(&result);
                answer["type"] = "end".into();
                answer
            }
            Err(e) => json!({"type": "end", "error": refusal_text(&e)}),
        };
        let _ = lines.send_timeout(ndjson(&end), max_stream).await;
    });
    // However slowly the client reads, the stream ends by `max_stream`:
    // then its queue is dropped, which frees the turn's output thread and
    // the task waiting to send the end line.
    let deadline = tokio::time::Instant::now()
        .checked_add(state.max_stream)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
    let body = futures_util::stream::unfold(receiver, move |mut receiver| async move {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(line)) => Some((Ok::<_, std::io::Error>(line), receiver)),
            _ => None,
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    response
}

/// The request's `Idempotency-Key`, if it has one (once, well formed).
#[allow(clippy::result_large_err)]
fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<TurnKey>, Box<Response>> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else { return Ok(None) };
    let bad = |problem: &str| Box::new(refuse(StatusCode::BAD_REQUEST, problem));
    if values.next().is_some() {
        return Err(bad("the Idempotency-Key header is given once"));
    }
    let text = value.to_str().map_err(|_| bad(&BadTurnKey.to_string()))?;
    TurnKey::new(text).map(Some).map_err(|e| bad(&e.to_string()))
}

#[derive(serde::Deserialize)]
pub(crate) struct ListQuery {
    path: Option<String>,
}

/// Lists a directory of the session's.
#[utoipa::path(get, path = "/v1/sessions/{id}/files", tag = "files", params(
        ("id" = String, Path, description = "The session's id"),
        ("path" = Option<String>, Query, description = "The directory, absolute; `/workspace` when absent",
            pattern = r"^/(([^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+)(/([^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+))*/?)?$",
            max_length = 4000),
    ), responses(
        (status = 200, description = "The listing", body = ListingBody),
        (status = 400, description = "A path the rules refuse", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 404, description = "No such session of the caller's (or no such file in it)", body = ErrorBody),
        (status = 429, description = "Too many of this owner's requests at once", body = ErrorBody),
        (status = 409, description = "Busy past the wait", body = ErrorBody),
        (status = 503, description = "Draining, or no room to resume the session", body = ErrorBody),
    ))]
pub(crate) async fn list_files(
    State(state): State<AppState>,
    Extension(Owner(owner)): Extension<Owner>,
    Id(id): Id,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return refuse(StatusCode::BAD_REQUEST, "the query is `?path=DIRECTORY`, once");
    };
    let path = query.path.unwrap_or_else(|| "/workspace".into());
    match state.host.list_files(&owner, id, &path, WhenBusy::Wait(state.busy_wait)).await {
        Ok(listing) => axum::Json(wire::listing_json(&listing)).into_response(),
        Err(e) => host_refusal(&e),
    }
}

/// A file of the session's, as raw bytes.
#[utoipa::path(get, path = "/v1/sessions/{id}/files/{path}", tag = "files", params(
        ("id" = String, Path, description = "The session's id"),
        ("path" = String, Path, description = "The guest path without its leading `/` (`workspace/data.csv`)",
            pattern = r"^([^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+)(/([^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+))*$",
            max_length = 4000),
    ), responses(
        (status = 200, description = "The file's bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 400, description = "A path the rules refuse", body = ErrorBody),
        (status = 403, description = "A read-only place", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 404, description = "No such session of the caller's (or no such file in it)", body = ErrorBody),
        (status = 429, description = "Too many of this owner's requests at once", body = ErrorBody),
        (status = 409, description = "Busy past the wait", body = ErrorBody),
        (status = 413, description = "Larger than a read may be", body = ErrorBody),
        (status = 503, description = "Draining, or no room to resume the session", body = ErrorBody),
    ))]
pub(crate) async fn read_file(
    State(state): State<AppState>,
    Extension(Owner(owner)): Extension<Owner>,
    FilePath(id, path): FilePath,
) -> Response {
    match state.host.read_file(&owner, id, &path, WhenBusy::Wait(state.busy_wait)).await {
        Ok(data) => ([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response(),
        Err(e) => host_refusal(&e),
    }
}

/// Writes a file of the session's from the raw bytes of the body.
#[utoipa::path(put, path = "/v1/sessions/{id}/files/{path}", tag = "files", params(
        ("id" = String, Path, description = "The session's id"),
        ("path" = String, Path, description = "The guest path without its leading `/` (`workspace/data.csv`)",
            pattern = r"^([^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+)(/([^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+))*$",
            max_length = 4000),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Written", body = Written),
        (status = 400, description = "A path the rules refuse", body = ErrorBody),
        (status = 403, description = "A read-only place", body = ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = ErrorBody),
        (status = 404, description = "No such session of the caller's (or no such file in it)", body = ErrorBody),
        (status = 429, description = "Too many of this owner's requests at once", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 409, description = "Busy past the wait", body = ErrorBody),
        (status = 413, description = "Over the upload bound or the session's disk quota", body = ErrorBody),
        (status = 503, description = "Draining, or no room to resume the session", body = ErrorBody),
    ))]
pub(crate) async fn write_file(
    State(state): State<AppState>,
    Extension(Owner(owner)): Extension<Owner>,
    FilePath(id, path): FilePath,
    Whole(body): Whole,
) -> Response {
    match state.host.write_file(&owner, id, &path, &body, WhenBusy::Wait(state.busy_wait)).await {
        Ok(bytes) => axum::Json(Written { bytes }).into_response(),
        Err(e) => host_refusal(&e),
    }
}

fn info_body(info: &SessionInfo) -> SessionBody {
    SessionBody {
        id: info.id.to_string(),
        profile: info.profile.to_string(),
        state: match info.state {
            SessionState::Live => SessionStateBody::Live,
            SessionState::Paused => SessionStateBody::Paused,
        },
        turns: info.turns,
        memory_bytes: info.memory,
        idle_seconds: info.idle.as_secs_f64(),
        age_seconds: info.age.as_secs_f64(),
    }
}

fn ndjson(value: &Value) -> Bytes {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    Bytes::from(line)
}

/// A JSON body as `T` (an empty body is `{}`), or the answer refusing
/// it: an unknown key, a missing one or a value of the wrong type is a
/// 400 that says which.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| {
        Box::new(refuse(
            StatusCode::BAD_REQUEST,
            &format!("the body is not the request: {}", mimobox_core::text::one_line_bounded(&e.to_string())),
        ))
    })
}

/// The session id of a route's path; one that cannot be an id is a 404,
/// as an id that names nothing is.
pub(crate) struct Id(SessionId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Id {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Id, Response> {
        let Ok(Path(id)) = Path::<String>::from_request_parts(parts, state).await else {
            return Err(not_found());
        };
        id.parse().map(Id).map_err(|_| not_found())
    }
}

/// The session id and the guest path (with its leading `/`) of a file
/// route.
pub(crate) struct FilePath(SessionId, String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for FilePath {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<FilePath, Response> {
        let Ok(Path((id, path))) = Path::<(String, String)>::from_request_parts(parts, state).await else {
            return Err(not_found());
        };
        let id = id.parse().map_err(|_| not_found())?;
        Ok(FilePath(id, format!("/{path}")))
    }
}

fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, "no such session")
}

pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(ErrorBody { error: message.to_owned() })).into_response()
}

/// The status and the message a host refusal answers with; a failure of
/// the server itself is logged, and its client told no more than that.
pub(crate) fn host_refusal(error: &HostError) -> Response {
    let status = match error {
        HostError::NotFound => StatusCode::NOT_FOUND,
        HostError::File(file) => match file {
            // A place outside the session's files is, for the session,
            // one that does not exist.
            FileError::NotFound { .. } | FileError::Outside { .. } => StatusCode::NOT_FOUND,
            // A directory where a file is meant, or the other way round.
            FileError::NotRegular { .. } | FileError::NotADirectory { .. } => StatusCode::CONFLICT,
            FileError::TooLarge { .. } | FileError::OverQuota { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FileError::ReadOnly { .. } => StatusCode::FORBIDDEN,
            FileError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        },
        HostError::UnknownProfile { .. } | HostError::BadOwner { .. } => StatusCode::BAD_REQUEST,
        HostError::Limit { .. } => StatusCode::TOO_MANY_REQUESTS,
        // The key's turn ran already, or it names another request: each a
        // conflict with what the session recorded.
        HostError::Busy { .. } | HostError::AlreadyRan { .. } | HostError::KeyReused { .. } => {
            StatusCode::CONFLICT
        }
        HostError::ShuttingDown | HostError::Moved | HostError::Catalog(_) => StatusCode::SERVICE_UNAVAILABLE,
        HostError::Sandbox(SandboxError::SessionEnded { .. }) => StatusCode::NOT_FOUND,
        HostError::Sandbox(SandboxError::SessionCapacity { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refuse(status, &refusal_text(error))
}

/// What a client is told of a refusal: the reason for its own mistakes
/// and limits, a fixed line for the server's failures (which are logged).
pub(crate) fn refusal_text(error: &HostError) -> String {
    match error {
        HostError::NotFound | HostError::Sandbox(SandboxError::SessionEnded { .. }) => {
            "no such session".into()
        }
        HostError::File(FileError::Io { .. }) => {
            tracing::warn!(
                "a file operation failed: {}",
                mimobox_core::text::one_line_bounded(&error.to_string())
            );
            "the file operation failed in the server".into()
        }
        HostError::UnknownProfile { .. }
        | HostError::BadOwner { .. }
        | HostError::File(_)
        | HostError::Limit { .. }
        | HostError::Busy { .. }
        | HostError::KeyReused { .. }
        | HostError::AlreadyRan { .. }
        | HostError::ShuttingDown
        | HostError::Moved
        | HostError::Sandbox(SandboxError::SessionCapacity { .. }) => {
            mimobox_core::text::one_line_bounded(&error.to_string())
        }
        other => {
            tracing::warn!(
                "a request failed in the server: {}",
                mimobox_core::text::one_line_bounded(&other.to_string())
            );
            "the server could not do this; its log says why".into()
        }
    }
}
