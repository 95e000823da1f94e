//! A worker among workers: requests for a session another worker holds are
//! forwarded to it, and a session no worker holds is claimed and taken up
//! here. Workers authenticate each other with a shared secret.
//!
//! A forwarded request carries its owner as the forwarding worker found it
//! (from the client's bearer token), signed with its body:
//!
//! ```text
//! x-mimobox-peer-owner: hex(owner)
//! x-mimobox-peer-time:  unix milliseconds
//! x-mimobox-peer-nonce: 32 hex digits, random
//! x-mimobox-peer-body:  hex(SHA-256(body))
//! x-mimobox-peer-mac:   hex(HMAC-SHA256(secret, each length-prefixed: "mimobox-peer-3", the
//!                           worker it is for, time, nonce, owner-hex, method, path-and-query,
//!                           body-hex, and each of SIGNED_HEADERS with its values))
//! ```
//!
//! A worker accepts it only with a MAC that checks out under its secret,
//! addressed to itself (its advertised address), a time within
//! [`PEER_SKEW`] of its own clock and not before it started, a nonce it has
//! not seen (it remembers them for twice the skew), and a body whose digest
//! is the one signed (checked as the body ends; no handler acts on a body
//! before it is whole). A client that sends these headers without the
//! secret is refused, so no client ever names its owner itself; a captured
//! request cannot be sent again, to this worker or another, nor its body or
//! the headers that steer it (`Idempotency-Key`, `Content-Type`, ...)
//! changed. A forwarded request is never forwarded again. The peer network
//! carries requests in the clear: it is the cluster's own (see
//! docs/deploy.md).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mimobox_fleet::{Located, Member, Record, RedisCatalog};

use crate::openapi::{SessionBody, SessionList, State as SessionStateBody};
use mimobox_host::{SessionHost, SessionId};
use mimobox_wasm::WasmSandbox;
use sha2::{Digest, Sha256};

/// The header naming the owner of a forwarded request (hex).
pub const PEER_OWNER: &str = "x-mimobox-peer-owner";
/// The header with the forwarding worker's clock (unix milliseconds).
pub const PEER_TIME: &str = "x-mimobox-peer-time";
/// The header with the request's MAC under the shared secret.
pub const PEER_MAC: &str = "x-mimobox-peer-mac";
/// The header with a forwarded request's nonce (128 random bits, hex).
pub const PEER_NONCE: &str = "x-mimobox-peer-nonce";
/// The header with the SHA-256 of a forwarded request's body (hex).
pub const PEER_BODY: &str = "x-mimobox-peer-body";

/// The peer headers, all of which a forwarded request carries.
const PEER_HEADERS: [&str; 5] = [PEER_OWNER, PEER_TIME, PEER_NONCE, PEER_BODY, PEER_MAC];

/// Most nonces remembered at once: past it (a flood of forwarded
/// requests, each genuine), forwarded requests are refused (503) until old
/// ones expire.
pub const MAX_NONCES: usize = 1 << 18;

/// Most nonces of one owner's requests remembered at once: one owner's
/// flood is refused before it fills the room of the others.
pub const MAX_NONCES_PER_OWNER: usize = MAX_NONCES / 4;

/// The request headers a forwarded request's MAC covers (besides the peer
/// headers): the ones that change what a worker does with it.
pub const SIGNED_HEADERS: [&str; 5] =
    ["content-type", "idempotency-key", "accept", "mcp-protocol-version", "origin"];
/// The header naming the worker that served a request.
pub const SERVED_BY: &str = "x-mimobox-worker";

/// Most difference between two workers' clocks that a forwarded request
/// survives; a captured one is replayable for no longer.
pub const PEER_SKEW: Duration = Duration::from_secs(30);

/// Shortest shared secret accepted.
pub const MIN_PEER_SECRET: usize = 32;

/// This worker's part in the fleet, as the HTTP API uses it.
#[derive(Clone)]
pub struct Peers {
    member: Member<RedisCatalog>,
    secret: Arc<[u8]>,
    client: Client<HttpConnector, Body>,
    worker: HeaderValue,
    seen: Arc<std::sync::Mutex<Nonces>>,
    /// When this worker started (unix milliseconds): a request sent before
    /// could be one it saw, and forgot the nonce of, before a restart.
    started_ms: u64,
    /// Sessions being located and taken up here, one request at a time:
    /// a second request for one waits, then finds it held.
    taking: Arc<std::sync::Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A request's turn at locating and taking up one session; the entry goes
/// with the last request that wanted it.
struct Taking {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    map: Arc<std::sync::Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>>,
    id: SessionId,
}

impl Drop for Taking {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&self.id).is_some_and(|gate| Arc::strong_count(gate) == 1) {
            map.remove(&self.id);
        }
    }
}

/// The nonces of forwarded requests accepted in the last `2 * PEER_SKEW`,
/// in the order they came, with how many each owner holds.
#[derive(Default)]
struct Nonces {
    set: std::collections::HashSet<u128>,
    order: std::collections::VecDeque<(std::time::Instant, u128, Arc<str>)>,
    of_owner: HashMap<Arc<str>, usize>,
}

impl Nonces {
    /// Records `owner`'s `nonce`, seen now: `Err` when it was seen
    /// already, or when [`MAX_NONCES`] (or [`MAX_NONCES_PER_OWNER`] of the
    /// owner's) are remembered.
    fn record(&mut self, nonce: u128, owner: &str, now: std::time::Instant) -> Result<(), PeerRefusal> {
        while let Some((at, _, _)) = self.order.front() {
            if now.duration_since(*at) <= 2 * PEER_SKEW {
                break;
            }
            let Some((_, old, whose)) = self.order.pop_front() else { break };
            self.set.remove(&old);
            if let Some(count) = self.of_owner.get_mut(&whose) {
                *count -= 1;
                if *count == 0 {
                    self.of_owner.remove(&whose);
                }
            }
        }
        if self.set.contains(&nonce) {
            return Err(PeerRefusal::Replayed);
        }
        let held = self.of_owner.get(owner).copied().unwrap_or(0);
        if self.set.len() >= MAX_NONCES || held >= MAX_NONCES_PER_OWNER {
            return Err(PeerRefusal::Flooded);
        }
        let owner: Arc<str> = match self.of_owner.get_key_value(owner) {
            Some((known, _)) => known.clone(),
            None => Arc::from(owner),
        };
        self.set.insert(nonce);
        *self.of_owner.entry(owner.clone()).or_default() += 1;
        self.order.push_back((now, nonce, owner));
        Ok(())
    }
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("worker", &self.member.worker()).finish_non_exhaustive()
    }
}

/// Why a request that claims to come from a peer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRefusal {
    /// This worker has no peers (no fleet): nobody may send peer headers.
    NoFleet,
    /// A header is missing or not well formed.
    Malformed,
    /// Its time is too far from this worker's clock.
    Expired,
    /// Its MAC does not check out.
    Forged,
    /// Its nonce was seen before: a captured request sent again.
    Replayed,
    /// It is addressed to another worker.
    Misdirected,
    /// It was sent before this worker started.
    BeforeStart,
    /// This worker remembers as many nonces as it may.
    Flooded,
}

impl PeerRefusal {
    /// The HTTP status it is answered with: 503 for a flood (the request
    /// may be sent again), 401 for the rest.
    pub fn status(self) -> StatusCode {
        match self {
            PeerRefusal::Flooded => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The refusal's message.
    pub fn message(self) -> &'static str {
        match self {
            PeerRefusal::NoFleet => "peer headers are refused by a worker without a fleet",
            PeerRefusal::Malformed => "a forwarded request's peer headers are not well formed",
            PeerRefusal::Expired => "a forwarded request's time is too far from this worker's clock",
            PeerRefusal::Forged => "a forwarded request's MAC does not check out",
            PeerRefusal::Replayed => "a forwarded request was sent before: its nonce is spent",
            PeerRefusal::Flooded => "too many forwarded requests in the last minute; send it again later",
            PeerRefusal::Misdirected => "a forwarded request is addressed to another worker",
            PeerRefusal::BeforeStart => "a forwarded request was sent before this worker started",
        }
    }
}

/// A request forwarded by a peer, checked.
#[derive(Debug, Clone)]
pub(crate) struct Forwarded;

/// What a forwarded request's peer headers say, checked: its owner, and
/// the digest its body must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FromPeer {
    pub(crate) owner: String,
    pub(crate) body: [u8; 32],
}

impl Peers {
    /// This worker's peers, authenticated with `secret` (at least
    /// [`MIN_PEER_SECRET`] bytes).
    pub fn new(member: Member<RedisCatalog>, secret: Vec<u8>) -> Result<Peers, String> {
        if secret.len() < MIN_PEER_SECRET {
            return Err(format!("the peer secret must be at least {MIN_PEER_SECRET} bytes"));
        }
        let worker = HeaderValue::from_str(member.worker())
            .map_err(|_| "the advertised address is not a header value")?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        let client =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Ok(Peers {
            member,
            secret: secret.into(),
            client,
            worker,
            seen: Arc::default(),
            started_ms: now_ms(),
            taking: Default::default(),
        })
    }

    /// This worker's membership.
    pub fn member(&self) -> &Member<RedisCatalog> {
        &self.member
    }

    fn mac(&self, signed: &Signed<'_>, headers: &HeaderMap) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        let mut part = |bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_le_bytes());
            mac.update(bytes);
        };
        for text in [
            "mimobox-peer-3",
            signed.to,
            signed.time,
            signed.nonce,
            signed.owner_hex,
            signed.method,
            signed.target,
            signed.body,
        ] {
            part(text.as_bytes());
        }
        for name in SIGNED_HEADERS {
            let values = headers.get_all(name);
            part(name.as_bytes());
            part(&(values.iter().count() as u64).to_le_bytes());
            for value in values {
                part(value.as_bytes());
            }
        }
        mac
    }

    /// What a peer's request says, if it carries peer headers: `Ok(None)`
    /// when it carries none.
    pub(crate) fn verify(
        peers: Option<&Peers>,
        headers: &HeaderMap,
        method: &str,
        target: &str,
    ) -> Result<Option<FromPeer>, PeerRefusal> {
        let present = PEER_HEADERS.iter().filter(|h| headers.contains_key(**h)).count();
        if present == 0 {
            return Ok(None);
        }
        let Some(peers) = peers else { return Err(PeerRefusal::NoFleet) };
        if present != PEER_HEADERS.len()
            || PEER_HEADERS.iter().any(|h| headers.get_all(*h).iter().count() != 1)
        {
            return Err(PeerRefusal::Malformed);
        }
        let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        let (Some(owner_hex), Some(time), Some(nonce), Some(body), Some(mac)) =
            (text(PEER_OWNER), text(PEER_TIME), text(PEER_NONCE), text(PEER_BODY), text(PEER_MAC))
        else {
            return Err(PeerRefusal::Malformed);
        };
        let owner = unhex(owner_hex).and_then(|b| String::from_utf8(b).ok());
        let sent = time.parse::<u64>().ok().filter(|_| time.bytes().all(|b| b.is_ascii_digit()));
        let nonce_value = unhex(nonce).and_then(|b| <[u8; 16]>::try_from(b).ok()).map(u128::from_be_bytes);
        let digest = unhex(body).and_then(|b| <[u8; 32]>::try_from(b).ok());
        let (Some(owner), Some(sent), Some(nonce_value), Some(digest), Some(tag)) =
            (owner, sent, nonce_value, digest, unhex(mac))
        else {
            return Err(PeerRefusal::Malformed);
        };
        if now_ms().abs_diff(sent) > PEER_SKEW.as_millis() as u64 {
            return Err(PeerRefusal::Expired);
        }
        // Signed for this worker (the MAC says so below), and, wherever it
        // was first sent, not replayed to another.
        let to = peers.member.worker();
        let signed = Signed { to, time, nonce, owner_hex, method, target, body };
        peers.mac(&signed, headers).verify_slice(&tag).map_err(|_| PeerRefusal::Forged)?;
        if sent < peers.started_ms {
            return Err(PeerRefusal::BeforeStart);
        }
        peers.seen.lock().unwrap_or_else(|p| p.into_inner()).record(
            nonce_value,
            &owner,
            std::time::Instant::now(),
        )?;
        Ok(Some(FromPeer { owner, body: digest }))
    }

    /// Serves a request for a session: here if this worker holds it (or
    /// claims it now), else forwarded to the worker that holds it.
    pub(crate) async fn route(
        &self,
        host: &SessionHost<WasmSandbox>,
        owner: &str,
        id: SessionId,
        request: Request,
        next: Next,
        max_body: usize,
    ) -> Response {
        if host.holds(owner, id) {
            return self.served(next.run(request).await);
        }
        let forwarded = request.extensions().get::<Forwarded>().is_some();
        let located = {
            // One request at a time locates and takes up a session here: a
            // claim over a take-up under way would fence it off.
            let _taking = self.taking(id).await;
            if host.holds(owner, id) {
                return self.served(next.run(request).await);
            }
            let located = self.member.locate(owner, id).await;
            if let Ok(Located::Claimed { state, epoch, resumed_from }) = &located
                && let Err(e) = host.take_up(owner, *state, *epoch, *resumed_from).await
            {
                self.member.release(id).await;
                return crate::http::host_refusal(&e);
            }
            located
        };
        match located {
            Ok(Located::NotFound) => self.served(next.run(request).await),
            Ok(Located::Lost) => crate::http::refuse(
                StatusCode::NOT_FOUND,
                "the session was lost with its worker before any of its state was stored",
            ),
            Ok(Located::Claimed { .. }) => self.served(next.run(request).await),
            // Moving between workers just now: the client sends it again.
            Ok(Located::Elsewhere { .. }) if forwarded => {
                unavailable("the session is moving between workers")
            }
            Ok(Located::Elsewhere { worker }) => self.forward(&worker, owner, request, max_body).await,
            Err(e) => {
                tracing::warn!(
                    "the session catalog: {}",
                    mimobox_core::text::one_line_bounded(&e.to_string())
                );
                unavailable("the session catalog is unavailable")
            }
        }
    }

    /// Waits for this request's turn at locating session `id` here.
    async fn taking(&self, id: SessionId) -> Taking {
        let gate = {
            let mut map = self.taking.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id).or_default().clone()
        };
        Taking { guard: Some(gate.lock_owned().await), map: self.taking.clone(), id }
    }

    fn served(&self, mut response: Response) -> Response {
        response.headers_mut().insert(HeaderName::from_static(SERVED_BY), self.worker.clone());
        response
    }

    /// Sends `request` on to `worker` for `owner`, signed with its body;
    /// its answer, streamed back as it comes.
    async fn forward(&self, worker: &str, owner: &str, request: Request, max_body: usize) -> Response {
        let (parts, body) = request.into_parts();
        // The body is signed whole, so it is read whole first (within the
        // route's bound).
        let body = match crate::http::read_whole(body, max_body).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        let outgoing = match self.signed(worker, owner, parts, body) {
            Ok(outgoing) => outgoing,
            Err(refusal) => return refusal,
        };
        match self.client.request(outgoing).await {
            Ok(answer) => answer.map(Body::new),
            Err(e) => {
                tracing::warn!(worker, "forwarding to a worker failed: {e}");
                unavailable("the session's worker cannot be reached; it is taken over once its lease ends")
            }
        }
    }

    /// The request of `parts` and `body` for `owner`, addressed to
    /// `worker` and signed.
    #[allow(clippy::result_large_err)]
    fn signed(
        &self,
        worker: &str,
        owner: &str,
        mut parts: axum::http::request::Parts,
        body: Bytes,
    ) -> Result<hyper::Request<Body>, Response> {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let Ok(uri) = format!("http://{worker}{target}").parse::<Uri>() else {
            return Err(unavailable("the session's worker has an address this worker cannot reach"));
        };
        let owner_hex = hex(owner.as_bytes());
        let time = now_ms().to_string();
        // 128 random bits.
        let Ok(nonce) = SessionId::random() else {
            return Err(unavailable("this worker cannot draw random numbers"));
        };
        let nonce = nonce.to_string();
        let digest = hex(&Sha256::digest(&body));
        let method = parts.method.as_str().to_owned();
        let signed = Signed {
            to: worker,
            time: &time,
            nonce: &nonce,
            owner_hex: &owner_hex,
            method: &method,
            target: &target,
            body: &digest,
        };
        let tag = hex(&self.mac(&signed, &parts.headers).finalize().into_bytes());
        // What this hop was told of the client stays here: the token, and
        // whatever peer headers it sent (already checked, or refused).
        for name in [header::AUTHORIZATION, header::HOST, header::CONNECTION, header::TRANSFER_ENCODING] {
            parts.headers.remove(name);
        }
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        for (name, value) in [
            (PEER_OWNER, owner_hex),
            (PEER_TIME, time),
            (PEER_NONCE, nonce),
            (PEER_BODY, digest),
            (PEER_MAC, tag),
        ] {
            parts.headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&value).expect("hex and digits are header values"),
            );
        }
        parts.uri = uri;
        Ok(hyper::Request::from_parts(parts, Body::from(body)))
    }

    /// `owner`'s sessions in the whole fleet: `local` (this worker's),
    /// each other worker's as it answers for its own, and the paused ones
    /// (and those of a worker that does not answer in time) as the catalog
    /// last recorded them.
    pub(crate) async fn sessions(
        &self,
        owner: &str,
        local: Vec<SessionBody>,
    ) -> Result<Vec<SessionBody>, mimobox_fleet::CatalogError> {
        let listed = self.member.sessions_of(owner, MAX_LISTED).await?;
        let here: std::collections::HashSet<String> = local.iter().map(|s| s.id.clone()).collect();
        let mut out = local;
        let mut elsewhere: HashMap<String, Vec<(SessionId, Record)>> = Default::default();
        for (id, record) in listed {
            if here.contains(&id.to_string()) {
                continue;
            }
            match &record.worker {
                Some(worker) if worker != self.member.worker() => {
                    elsewhere.entry(worker.clone()).or_default().push((id, record));
                }
                _ => out.push(from_record(id, &record)),
            }
        }
        let asked = elsewhere.into_iter().map(|(worker, records)| async move {
            let theirs = self.sessions_at(&worker, owner).await;
            let mut found: std::collections::HashMap<String, SessionBody> =
                theirs.unwrap_or_default().into_iter().map(|s| (s.id.clone(), s)).collect();
            records
                .into_iter()
                .map(|(id, record)| found.remove(&id.to_string()).unwrap_or_else(|| from_record(id, &record)))
                .collect::<Vec<_>>()
        });
        // At most ASK_AT_ONCE workers asked at a time.
        let answered: Vec<Vec<SessionBody>> = futures_util::StreamExt::collect(
            futures_util::StreamExt::buffer_unordered(futures_util::stream::iter(asked), ASK_AT_ONCE),
        )
        .await;
        out.extend(answered.into_iter().flatten());
        out.truncate(MAX_LISTED);
        Ok(out)
    }

    /// The sessions `worker` holds of `owner`'s, as it answers for them
    /// within [`ASK_TIMEOUT`]; `None` when it does not.
    async fn sessions_at(&self, worker: &str, owner: &str) -> Option<Vec<SessionBody>> {
        let (parts, ()) = Request::get("/v1/sessions?scope=local").body(()).ok()?.into_parts();
        let outgoing = self.signed(worker, owner, parts, Bytes::new()).ok()?;
        let asked = async {
            let answer = self.client.request(outgoing).await.ok()?;
            if answer.status() != StatusCode::OK {
                return None;
            }
            let body = http_body_util::Limited::new(answer.into_body(), MAX_LISTING_BYTES);
            let bytes = http_body_util::BodyExt::collect(body).await.ok()?.to_bytes();
            serde_json::from_slice::<SessionList>(&bytes).ok()
        };
        match tokio::time::timeout(ASK_TIMEOUT, asked).await {
            Ok(Some(list)) => Some(list.sessions),
            _ => {
                tracing::warn!(worker, "a worker did not list its sessions; the catalog's record stands in");
                None
            }
        }
    }
}

/// Most sessions a listing names.
pub const MAX_LISTED: usize = 10_000;

/// Most bytes of one worker's answer to a listing (10,000 sessions are
/// about 2 MB).
const MAX_LISTING_BYTES: usize = 4 << 20;

/// Most workers a listing asks at once.
const ASK_AT_ONCE: usize = 8;

/// How long a worker waits for another's listing.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// A session as the catalog last recorded it.
fn from_record(id: SessionId, record: &Record) -> SessionBody {
    SessionBody {
        id: id.to_string(),
        profile: record.profile.clone(),
        state: if record.worker.is_some() { SessionStateBody::Live } else { SessionStateBody::Paused },
        turns: record.paused.as_ref().map_or(0, |p| p.turn),
        memory_bytes: 0,
        idle_seconds: record.paused_ago.unwrap_or(record.age).as_secs_f64(),
        age_seconds: record.age.as_secs_f64(),
    }
}

/// The parts of a forwarded request its MAC covers (with its
/// [`SIGNED_HEADERS`]).
struct Signed<'a> {
    /// The worker it is for, as the catalog names it.
    to: &'a str,
    time: &'a str,
    nonce: &'a str,
    owner_hex: &'a str,
    method: &'a str,
    target: &'a str,
    /// The body's SHA-256, hex.
    body: &'a str,
}

/// A forwarded request's body, checked against the digest its peer
/// signed as it ends: a body that differs fails to read, so nothing acts
/// on it.
pub(crate) struct SignedBody {
    body: Body,
    hash: Option<Sha256>,
    expected: [u8; 32],
}

impl SignedBody {
    pub(crate) fn new(body: Body, expected: [u8; 32]) -> SignedBody {
        SignedBody { body, hash: Some(Sha256::new()), expected }
    }
}

/// The error of a forwarded body that is not the one its peer signed.
#[derive(Debug, thiserror::Error)]
#[error("a forwarded request's body is not the one its peer signed")]
pub(crate) struct BodyForged;

impl http_body::Body for SignedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        let Some(hash) = this.hash.as_mut() else { return Poll::Ready(None) };
        match std::pin::Pin::new(&mut this.body).poll_frame(context) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    hash.update(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                let digest: [u8; 32] = this.hash.take().expect("present").finalize().into();
                if bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..], &this.expected[..])) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(axum::Error::new(BodyForged))))
                }
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        // Its end is where the digest is checked: it is always polled to.
        self.hash.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A 503 refusal with `Retry-After: 1`: the request may be sent again.
pub(crate) fn unavailable(message: &str) -> Response {
    let mut response = crate::http::refuse(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 1024 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_a_fleet_refuses_any_peer_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(Peers::verify(None, &headers, "GET", "/v1/sessions"), Ok(None));
        headers.insert(PEER_OWNER, HeaderValue::from_static("616c696365"));
        assert_eq!(Peers::verify(None, &headers, "GET", "/v1/sessions"), Err(PeerRefusal::NoFleet));
    }

    #[test]
    fn a_nonce_is_spent_once_remembered_for_twice_the_skew_and_bounded() {
        let mut nonces = Nonces::default();
        let start = std::time::Instant::now();
        assert_eq!(nonces.record(1, "alice", start), Ok(()));
        assert_eq!(nonces.record(1, "alice", start + PEER_SKEW), Err(PeerRefusal::Replayed));
        assert_eq!(nonces.record(1, "bob", start + PEER_SKEW), Err(PeerRefusal::Replayed));
        assert_eq!(nonces.record(2, "alice", start + PEER_SKEW), Ok(()));
        // Past twice the skew a request's time no longer passes, so its
        // nonce may be forgotten.
        assert_eq!(nonces.record(1, "alice", start + 2 * PEER_SKEW + Duration::from_millis(1)), Ok(()));
        assert_eq!((nonces.set.len(), nonces.of_owner["alice"]), (2, 2));
        // One owner's flood is stopped at its share; the others still pass,
        // up to the whole bound.
        let mut full = Nonces::default();
        for n in 0..MAX_NONCES_PER_OWNER as u128 {
            full.record(n + 10, "mallory", start).unwrap();
        }
        assert_eq!(full.record(5, "mallory", start), Err(PeerRefusal::Flooded));
        assert_eq!(full.record(5, "alice", start), Ok(()));
        for (i, owner) in ["b", "c", "d"].iter().enumerate() {
            let base = (1 + i as u128) << 40;
            for n in 0..MAX_NONCES_PER_OWNER as u128 - u128::from(i == 0) {
                full.record(base + n, owner, start).unwrap();
            }
        }
        assert_eq!(full.set.len(), MAX_NONCES);
        assert_eq!(full.record(6, "alice", start), Err(PeerRefusal::Flooded));
        assert_eq!(full.record(6, "alice", start + 3 * PEER_SKEW), Ok(()), "expired ones make room");
        assert_eq!(full.set.len(), 1);
        assert!(!full.of_owner.contains_key("mallory"));
        assert_eq!(PeerRefusal::Flooded.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(unhex(&hex(b"alice \xe2\x9c\x93")).unwrap(), b"alice \xe2\x9c\x93");
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
        assert!(unhex("+1").is_none());
    }
}
