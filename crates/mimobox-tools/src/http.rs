//! The built-in `http` tool, granted by `allowed_http_domains`: the host
//! makes one HTTP request for the guest, to a host on the list.
//!
//! - The URL's host must match an entry: an exact name, `*.` and a name,
//!   or an IP address. Only `http` and `https`.
//! - Each redirect is followed by the tool itself, and its target is
//!   checked against the list again (at most [`MAX_REDIRECTS`]).
//! - Unless the entry that matched is an IP address, every address the
//!   name resolves to must be public: loopback, private, link-local (cloud
//!   metadata included), shared, multicast and reserved ranges are refused,
//!   IPv4 inside IPv6 too. The check happens in the resolver that the
//!   connection uses, so the address checked is the address connected to.
//! - No proxy from the environment; no `Host` header from the guest (it
//!   would reach another site behind an allowed address).
//! - The response body is capped ([`MAX_BODY`]); a longer one is a
//!   `too_large` error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use mimobox_core::grants::{DomainPattern, HTTP_TOOL};
use serde_json::{Map, Value, json};
use ureq::config::Config;
use ureq::http;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::{ErrorKind, Tool, ToolError};

/// Most redirects one call follows.
pub const MAX_REDIRECTS: u32 = 5;
/// Largest response body, in bytes: 8 MiB.
pub const MAX_BODY: u64 = 8 << 20;
/// Bound on one request (each redirect is another request).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Headers the guest may not set: the client owns them, and `Host` would
/// reach another site behind an allowed address.
const FORBIDDEN_HEADERS: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "upgrade", "proxy-authorization", "te"];

/// The `http` tool for `domains` (entries of `allowed_http_domains`, which
/// must parse).
pub fn http_tool(domains: &[String]) -> Result<Tool, String> {
    let patterns: Vec<DomainPattern> =
        domains.iter().map(|d| DomainPattern::parse(d)).collect::<Result<_, _>>()?;
    let patterns = Arc::new(patterns);
    let schema = json!({
        "type": "object",
        "properties": {
            "method": {"enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]},
            "url": {"type": "string", "maxLength": 8192},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"type": ["string", "object"]}
        },
        "required": ["url"],
        "additionalProperties": false
    });
    let description = format!(
        "Makes an HTTP request to an allowed host ({}). Arguments: url, method (GET by default), \
         headers, body (a string, or {{\"$bytes\": base64}}). Answers status, headers, body and the final url.",
        domains.join(", ")
    );
    Ok(Tool::new(HTTP_TOOL, description, schema, move |args| fetch(&patterns, &args)))
}

/// The guest's request, decoded.
struct Call {
    method: http::Method,
    url: url::Url,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn fetch(patterns: &[DomainPattern], args: &Value) -> Result<Value, ToolError> {
    let mut call = decode(args)?;
    for _ in 0..=MAX_REDIRECTS {
        let literal = allowed(patterns, &call.url)?;
        let refusal = Arc::new(Mutex::new(None));
        let resolver = GuardedResolver { literal_allowed: literal, refusal: refusal.clone() };
        let config = Config::builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(None)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_response_header_size(64 * 1024)
            .user_agent("mimobox")
            .build();
        let agent = ureq::Agent::with_parts(config, DefaultConnector::new(), resolver);
        let mut request = http::Request::builder().method(call.method.clone()).uri(call.url.as_str());
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        let request =
            request.body(call.body.clone()).map_err(|e| invalid(format!("cannot build the request: {e}")))?;
        let mut response = match agent.run(request) {
            Ok(response) => response,
            Err(error) => {
                if let Some(why) = refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(ToolError { kind: ErrorKind::Denied, message: why });
                }
                return Err(ToolError::failed(format!("{}: {error}", host_of(&call.url))));
            }
        };
        let status = response.status();
        if status.is_redirection()
            && let Some(location) = response.headers().get(http::header::LOCATION)
        {
            let location =
                location.to_str().map_err(|_| ToolError::failed("a redirect's Location is not text"))?;
            let next =
                call.url.join(location).map_err(|e| ToolError::failed(format!("bad redirect: {e}")))?;
            // 303, and 301/302 after a POST, become a GET without a body,
            // as browsers do; 307 and 308 keep the method and body.
            if status == http::StatusCode::SEE_OTHER
                || (call.method == http::Method::POST && status.as_u16() < 303)
            {
                call.method = http::Method::GET;
                call.body.clear();
            }
            // Credentials stay with the host they were meant for.
            if next.host_str() != call.url.host_str() {
                call.headers.retain(|(n, _)| {
                    !n.eq_ignore_ascii_case("authorization") && !n.eq_ignore_ascii_case("cookie")
                });
            }
            call.url = next;
            continue;
        }
        let headers: Map<String, Value> = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (name.to_string(), Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()))
            })
            .collect();
        let body = response.body_mut().with_config().limit(MAX_BODY).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => ToolError {
                kind: ErrorKind::TooLarge,
                message: format!("the response body is over {MAX_BODY} bytes"),
            },
            other => ToolError::failed(format!("reading the response: {other}")),
        })?;
        let body = match String::from_utf8(body) {
            Ok(text) => Value::String(text),
            Err(bytes) => {
                json!({"$bytes": base64::engine::general_purpose::STANDARD.encode(bytes.into_bytes())})
            }
        };
        return Ok(json!({
            "status": status.as_u16(),
            "headers": headers,
            "body": body,
            "url": call.url.as_str(),
        }));
    }
    Err(ToolError::failed(format!("more than {MAX_REDIRECTS} redirects")))
}

fn invalid(message: String) -> ToolError {
    ToolError { kind: ErrorKind::InvalidArguments, message }
}

fn decode(args: &Value) -> Result<Call, ToolError> {
    let method = args.get("method").and_then(Value::as_str).unwrap_or("GET");
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| invalid("bad method".into()))?;
    let url = args.get("url").and_then(Value::as_str).unwrap_or_default();
    let url = url::Url::parse(url).map_err(|e| invalid(format!("bad url: {e}")))?;
    let mut headers = Vec::new();
    if let Some(given) = args.get("headers").and_then(Value::as_object) {
        for (name, value) in given {
            if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(ToolError {
                    kind: ErrorKind::Denied,
                    message: format!("the `{name}` header is set by the host, not the guest"),
                });
            }
            headers.push((name.clone(), value.as_str().unwrap_or_default().to_owned()));
        }
    }
    let body = match args.get("body") {
        None => Vec::new(),
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(Value::Object(o)) => match o.get("$bytes").and_then(Value::as_str) {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| invalid(format!("body: bad base64: {e}")))?,
            None => return Err(invalid("body: a string, or {\"$bytes\": base64}".into())),
        },
        Some(_) => return Err(invalid("body: a string, or {\"$bytes\": base64}".into())),
    };
    Ok(Call { method, url, headers, body })
}

fn host_of(url: &url::Url) -> String {
    url.host_str().unwrap_or_default().to_owned()
}

/// Checks the URL against the list; whether it matched an IP entry (which
/// may then be any address).
fn allowed(patterns: &[DomainPattern], url: &url::Url) -> Result<bool, ToolError> {
    let denied = |message: String| ToolError { kind: ErrorKind::Denied, message };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(denied(format!("`{}` URLs are not allowed (http and https only)", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(denied("URLs with credentials are not allowed".into()));
    }
    let host = host_of(url);
    match patterns.iter().find(|p| p.matches(&host)) {
        Some(DomainPattern::Ip(_)) => Ok(true),
        Some(_) if url_host_is_ip(url) => Err(denied(format!(
            "{host} is an address, and only a name is allowed there (list the address itself)"
        ))),
        Some(_) => Ok(false),
        None => Err(denied(format!("{host} is not in allowed_http_domains"))),
    }
}

fn url_host_is_ip(url: &url::Url) -> bool {
    matches!(url.host(), Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)))
}

/// Resolves through the system, then refuses any address that is not
/// public unless the host was allowed as an address itself.
#[derive(Debug)]
struct GuardedResolver {
    literal_allowed: bool,
    refusal: Arc<Mutex<Option<String>>>,
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let found = DefaultResolver::default().resolve(uri, config, timeout)?;
        if self.literal_allowed {
            return Ok(found);
        }
        let mut kept = self.empty();
        for addr in found.iter() {
            if is_public(addr.ip()) {
                kept.push(*addr);
            }
        }
        if kept.is_empty() {
            let host = uri.host().unwrap_or_default();
            let addrs: Vec<String> = found.iter().map(SocketAddr::to_string).collect();
            *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("{host} resolves to {}, which is not a public address", addrs.join(", ")));
            return Err(ureq::Error::HostNotFound);
        }
        Ok(kept)
    }
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let seg = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        return public_v4(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ));
    }
    if seg[0] == 0x2002 {
        return public_v4(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || seg[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private} passed");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public} refused");
        }
    }

    #[test]
    fn the_list_decides_before_any_connection() {
        let patterns =
            vec![DomainPattern::parse("*.example.com").unwrap(), DomainPattern::parse("127.0.0.1").unwrap()];
        let check = |u: &str| allowed(&patterns, &url::Url::parse(u).unwrap());
        assert!(!check("https://api.example.com/x").unwrap(), "a name entry");
        assert!(check("http://127.0.0.1:8080/").unwrap(), "an address entry");
        for refused in [
            "https://example.com/",
            "https://example.com.evil.net/",
            "file:///etc/passwd",
            "https://user:pw@api.example.com/",
            "http://127.0.0.2/",
            "ftp://api.example.com/",
        ] {
            assert_eq!(check(refused).unwrap_err().kind, ErrorKind::Denied, "{refused}");
        }
    }

    #[test]
    fn the_guest_cannot_set_the_host_header() {
        let args = json!({"url": "https://api.example.com/", "headers": {"Host": "internal.example.net"}});
        let Err(error) = decode(&args) else { panic!("accepted") };
        assert_eq!(error.kind, ErrorKind::Denied);
    }
}
