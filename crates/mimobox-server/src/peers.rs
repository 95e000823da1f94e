//! A worker among workers: requests for a session another worker holds are
//! forwarded to it, and a session no worker holds is claimed and taken up
//! here. Workers authenticate each other with a shared secret.
//!
//! A forwarded request carries its owner as the forwarding worker found it
//! (from the client's bearer token), signed:
//!
//! ```text
//! x-mimobox-peer-owner: hex(owner)
//! x-mimobox-peer-time:  unix milliseconds
//! x-mimobox-peer-mac:   hex(HMAC-SHA256(secret, "mimobox-peer-1\n" time "\n" owner-hex "\n" method "\n" path-and-query))
//! ```
//!
//! A worker accepts it only with a MAC that checks out under its secret
//! and a time within [`PEER_SKEW`] of its own clock; a client that sends
//! these headers without the secret is refused, so no client ever names
//! its owner itself. A forwarded request is never forwarded again.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mimobox_fleet::{Located, Member, RedisCatalog};
use mimobox_host::{SessionHost, SessionId};
use mimobox_wasm::WasmSandbox;
use sha2::Sha256;

/// The header naming the owner of a forwarded request (hex).
pub const PEER_OWNER: &str = "x-mimobox-peer-owner";
/// The header with the forwarding worker's clock (unix milliseconds).
pub const PEER_TIME: &str = "x-mimobox-peer-time";
/// The header with the request's MAC under the shared secret.
pub const PEER_MAC: &str = "x-mimobox-peer-mac";
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
}

impl PeerRefusal {
    /// The refusal's message.
    pub fn message(self) -> &'static str {
        match self {
            PeerRefusal::NoFleet => "peer headers are refused by a worker without a fleet",
            PeerRefusal::Malformed => "a forwarded request's peer headers are not well formed",
            PeerRefusal::Expired => "a forwarded request's time is too far from this worker's clock",
            PeerRefusal::Forged => "a forwarded request's MAC does not check out",
        }
    }
}

/// A request forwarded by a peer, checked: its owner.
#[derive(Debug, Clone)]
pub(crate) struct Forwarded;

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
        Ok(Peers { member, secret: secret.into(), client, worker })
    }

    /// This worker's membership.
    pub fn member(&self) -> &Member<RedisCatalog> {
        &self.member
    }

    fn mac(&self, time: &str, owner_hex: &str, method: &str, target: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        for part in ["mimobox-peer-1", time, owner_hex, method, target] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    /// The owner a peer's request is for, if it carries peer headers:
    /// `Ok(None)` when it carries none.
    pub(crate) fn verify(
        peers: Option<&Peers>,
        headers: &HeaderMap,
        method: &str,
        target: &str,
    ) -> Result<Option<String>, PeerRefusal> {
        let present = [PEER_OWNER, PEER_TIME, PEER_MAC].iter().filter(|h| headers.contains_key(**h)).count();
        if present == 0 {
            return Ok(None);
        }
        let Some(peers) = peers else { return Err(PeerRefusal::NoFleet) };
        let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        let (Some(owner_hex), Some(time), Some(mac)) = (text(PEER_OWNER), text(PEER_TIME), text(PEER_MAC))
        else {
            return Err(PeerRefusal::Malformed);
        };
        let (Some(owner), Some(sent), Some(tag)) =
            (unhex(owner_hex).and_then(|b| String::from_utf8(b).ok()), time.parse::<u64>().ok(), unhex(mac))
        else {
            return Err(PeerRefusal::Malformed);
        };
        let now = now_ms();
        if now.abs_diff(sent) > PEER_SKEW.as_millis() as u64 {
            return Err(PeerRefusal::Expired);
        }
        peers.mac(time, owner_hex, method, target).verify_slice(&tag).map_err(|_| PeerRefusal::Forged)?;
        Ok(Some(owner))
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
    ) -> Response {
        if host.holds(owner, id) {
            return self.served(next.run(request).await);
        }
        let forwarded = request.extensions().get::<Forwarded>().is_some();
        match self.member.locate(owner, id).await {
            Ok(Located::NotFound) => self.served(next.run(request).await),
            Ok(Located::Lost) => crate::http::refuse(
                StatusCode::NOT_FOUND,
                "the session was lost with its worker before any of its state was stored",
            ),
            Ok(Located::Claimed { state, epoch, resumed_from }) => {
                match host.take_up(owner, state, epoch, resumed_from).await {
                    Ok(()) => self.served(next.run(request).await),
                    Err(e) => {
                        self.member.release(id).await;
                        crate::http::host_refusal(&e)
                    }
                }
            }
            // Moving between workers just now: the client sends it again.
            Ok(Located::Elsewhere { .. }) if forwarded => {
                unavailable("the session is moving between workers")
            }
            Ok(Located::Elsewhere { worker }) => self.forward(&worker, owner, request).await,
            Err(e) => {
                tracing::warn!(
                    "the session catalog: {}",
                    mimobox_core::text::one_line_bounded(&e.to_string())
                );
                unavailable("the session catalog is unavailable")
            }
        }
    }

    fn served(&self, mut response: Response) -> Response {
        response.headers_mut().insert(HeaderName::from_static(SERVED_BY), self.worker.clone());
        response
    }

    /// Sends `request` on to `worker` for `owner`, signed; its answer,
    /// streamed back as it comes.
    async fn forward(&self, worker: &str, owner: &str, request: Request) -> Response {
        let (mut parts, body) = request.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let Ok(uri) = format!("http://{worker}{target}").parse::<Uri>() else {
            return unavailable("the session's worker has an address this worker cannot reach");
        };
        let owner_hex = hex(owner.as_bytes());
        let time = now_ms().to_string();
        let tag = hex(&self.mac(&time, &owner_hex, parts.method.as_str(), &target).finalize().into_bytes());
        // What this hop was told of the client stays here: the token, and
        // whatever peer headers it sent (already checked, or refused).
        for name in [header::AUTHORIZATION, header::HOST, header::CONNECTION] {
            parts.headers.remove(name);
        }
        for (name, value) in [(PEER_OWNER, owner_hex), (PEER_TIME, time), (PEER_MAC, tag)] {
            parts.headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&value).expect("hex and digits are header values"),
            );
        }
        parts.uri = uri;
        let outgoing = hyper::Request::from_parts(parts, body);
        match self.client.request(outgoing).await {
            Ok(answer) => answer.map(Body::new),
            Err(e) => {
                tracing::warn!(worker, "forwarding to a worker failed: {e}");
                unavailable("the session's worker cannot be reached; it is taken over once its lease ends")
            }
        }
    }
}

fn unavailable(message: &str) -> Response {
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
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(unhex(&hex(b"alice \xe2\x9c\x93")).unwrap(), b"alice \xe2\x9c\x93");
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
        assert!(unhex("+1").is_none());
    }
}
