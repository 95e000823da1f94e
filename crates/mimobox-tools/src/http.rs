//! The built-in `http` tool, granted by `allowed_http_domains`: the host
//! makes one HTTP request for the guest, to a host on the list.
//!
//! - The URL's host must match an entry: an exact name, `*.` and a name,
//!   or an IP address. Only `http` and `https`.
//! - Each redirect is followed by the tool itself, and its target is
//!   checked against the list again (at most [`MAX_REDIRECTS`]). The
//!   credential headers (`Authorization`, `Cookie`, `Proxy-Authorization`)
//!   follow a redirect only within the same origin: scheme, host and port.
//! - Unless the entry that matched is an IP address, every address the
//!   name resolves to must be public and another host's: loopback,
//!   private, link-local (cloud metadata included), shared, multicast and
//!   reserved ranges are refused, IPv4 inside IPv6 too (mapped, NAT64,
//!   6to4), as is all of IPv6 outside global unicast and the IETF's
//!   protocol block (IPv4-translated, local-use NAT64, Teredo); so is any
//!   address assigned to one of this host's interfaces, read at each
//!   request. The check happens in the resolver that the connection uses,
//!   so the address checked is the address connected to.
//! - No proxy from the environment; no `Host` header from the guest (it
//!   would reach another site behind an allowed address).
//! - The response body is capped ([`MAX_BODY`]); a longer one is a
//!   `too_large` error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
/// Headers that carry credentials, which go only to the origin they were
/// given for.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// The `http` tool for `domains` (the entries of `allowed_http_domains`).
pub fn http_tool(domains: &[DomainPattern]) -> Tool {
    let patterns = Arc::new(domains.to_vec());
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
        domains.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    Tool::new(HTTP_TOOL, description, schema, move |args| fetch(&patterns, &args))
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
        let resolver = GuardedResolver {
            literal_allowed: literal,
            refusal: refusal.clone(),
            own_addresses: local_addresses,
        };
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
            keep_credentials_within_origin(&mut call.headers, &call.url, &next);
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

/// Drops the credential headers when a redirect from `from` to `to` leaves
/// its origin: another scheme (https to http included), host or port.
fn keep_credentials_within_origin(headers: &mut Vec<(String, String)>, from: &url::Url, to: &url::Url) {
    if from.origin() != to.origin() {
        headers.retain(|(name, _)| !CREDENTIAL_HEADERS.iter().any(|c| name.eq_ignore_ascii_case(c)));
    }
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
/// public, or is this host's own, unless the host was allowed as an
/// address itself.
#[derive(Debug)]
struct GuardedResolver {
    literal_allowed: bool,
    refusal: Arc<Mutex<Option<String>>>,
    /// This host's addresses, read at each resolution ([`local_addresses`];
    /// tests give others).
    own_addresses: fn() -> std::io::Result<Vec<IpAddr>>,
}

impl GuardedResolver {
    fn refuse(&self, why: String) -> ureq::Error {
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        ureq::Error::HostNotFound
    }
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
        let host = uri.host().unwrap_or_default();
        // Without the list a service of this host's own could be reached,
        // so a failure to read it refuses the request.
        let own = (self.own_addresses)().map_err(|e| {
            self.refuse(format!("{host} is not reached: cannot list this host's own addresses ({e})"))
        })?;
        let mut kept = self.empty();
        let mut refused = Vec::new();
        for addr in found.iter() {
            match unreachable_reason(addr.ip(), &own) {
                None => kept.push(*addr),
                Some(why) => refused.push(format!("{addr} ({why})")),
            }
        }
        if kept.is_empty() {
            return Err(self.refuse(format!(
                "{host} resolves only to addresses it may not reach: {}",
                refused.join(", ")
            )));
        }
        Ok(kept)
    }
}

/// Why a host allowed by name may not be reached at `ip`, if it may not:
/// the address is not public, or it is one of this host's own (`own`),
/// where services bound to all interfaces listen.
fn unreachable_reason(ip: IpAddr, own: &[IpAddr]) -> Option<&'static str> {
    if !is_public(ip) {
        Some("not a public address")
    } else if is_own(ip, own) {
        Some("this host's own address")
    } else {
        None
    }
}

/// Whether `ip`, or the IPv4 address inside it, is one of `own`.
fn is_own(ip: IpAddr, own: &[IpAddr]) -> bool {
    let inner = match ip {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
    };
    own.iter().map(|o| o.to_canonical()).any(|o| o == ip.to_canonical() || Some(o) == inner)
}

/// The addresses of this host's interfaces, read afresh (they change: DHCP,
/// VPNs, containers coming and going). One `getifaddrs` call.
fn local_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid place for getifaddrs to write the list's
    // head to; on failure it writes nothing and the list is not freed.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, which
        // stays valid until freeifaddrs below; nothing keeps a reference.
        let entry = unsafe { &*cursor };
        let addr = entry.ifa_addr;
        if !addr.is_null() {
            // SAFETY: a non-null `ifa_addr` points to a socket address whose
            // family field says its type; each arm reads only the type its
            // family names, unaligned in case the list packs them.
            let ip = unsafe {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in>());
                        Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
                    }
                    libc::AF_INET6 => {
                        let v6 = std::ptr::read_unaligned(addr.cast::<libc::sockaddr_in6>());
                        Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
                    }
                    _ => None,
                }
            };
            found.extend(ip);
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs, is freed once, and
    // no reference into the list outlives the loop above.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

/// Whether `ip` is a public unicast address: for IPv4, outside every
/// special-purpose range; for IPv6, global unicast (`2000::/3`) outside
/// the IETF protocol block (`2001::/23`, Teredo included) and the
/// documentation ranges. An IPv6 address that carries an IPv4 one
/// (mapped, NAT64 `64:ff9b::/96`, 6to4) is judged by that IPv4 address.
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

/// The IPv4 address that an IPv4-mapped (`::ffff:0:0/96`), NAT64
/// (`64:ff9b::/96`) or 6to4 (`2002::/16`) address reaches.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let join = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        Some(join(seg[6], seg[7]))
    } else if seg[0] == 0x2002 {
        Some(join(seg[1], seg[2]))
    } else {
        None
    }
}

fn public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return public_v4(v4);
    }
    let seg = ip.segments();
    // Only global unicast (2000::/3) is public. Outside it is all the rest:
    // ::/8 (unspecified, loopback, IPv4-compatible, IPv4-translated
    // `::ffff:0:a.b.c.d`), local-use NAT64 (64:ff9b:1::/48), discard-only,
    // unique local, link-local, multicast and the unallocated space.
    (seg[0] & 0xe000) == 0x2000
        // IETF protocol assignments, 2001::/23: Teredo (2001::/32, whose
        // client address may be private), benchmarking, ORCHID and more.
        && !(seg[0] == 0x2001 && seg[1] < 0x0200)
        && !(seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        && !(seg[0] == 0x3fff && seg[1] < 0x1000) // documentation (RFC 9637)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

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
    fn translated_forms_of_private_ipv4_are_refused() {
        for private in [
            "::ffff:0:10.0.0.1",  // IPv4-translated (RFC 2765)
            "::ffff:0:127.0.0.1", // IPv4-translated
            "::ffff:0:169.254.169.254",
            "64:ff9b:1::a00:1", // local-use NAT64 (RFC 8215)
            "64:ff9b:1:ffff::7f00:1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe", // Teredo, client 10.0.0.1
            "2001::1",
            "2001:db8::1", // documentation
            "3fff::1",     // documentation (RFC 9637)
            "100::1",      // discard-only
            "::1:2:3:4",   // reserved by the IETF
            "4000::1",     // not global unicast
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private} passed");
        }
        for public in ["2a00:1450:4001::200e", "64:ff9b::808:808", "2002:808:808::1", "2400:cb00::1"] {
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

    /// A resolver that sees `own` as this host's addresses.
    fn resolver(own: fn() -> std::io::Result<Vec<IpAddr>>) -> GuardedResolver {
        GuardedResolver { literal_allowed: false, refusal: Arc::default(), own_addresses: own }
    }

    /// What `resolver` lets a connection to `uri` use, or why it refuses.
    fn resolve(resolver: &GuardedResolver, uri: &str) -> Result<Vec<SocketAddr>, String> {
        let uri: http::Uri = uri.parse().unwrap();
        match resolver.resolve(&uri, &Config::default(), NextTimeout::default()) {
            Ok(found) => Ok(found.iter().copied().collect()),
            Err(e) => Err(resolver.refusal.lock().unwrap().take().unwrap_or_else(|| e.to_string())),
        }
    }

    #[test]
    fn the_host_s_own_public_addresses_are_refused_to_a_name() {
        // As if this host's interfaces had these public addresses: a name
        // resolving to one of them would reach its services on all
        // interfaces. (The URIs hold the addresses a name would resolve
        // to; the resolver is where the check is.)
        let own = || Ok(vec!["93.184.216.34".parse().unwrap(), "2a00:1450:4001::200e".parse().unwrap()]);
        for uri in [
            "http://93.184.216.34:8080/",
            "http://[::ffff:93.184.216.34]/",
            "http://[64:ff9b::5db8:d822]/",
            "http://[2002:5db8:d822::1]/",
            "http://[2a00:1450:4001::200e]/",
        ] {
            let why = resolve(&resolver(own), uri).unwrap_err();
            assert!(why.contains("(this host's own address)"), "{uri}: {why}");
        }
        assert!(resolve(&resolver(own), "http://1.1.1.1/").is_ok(), "another host's public address");
        // An address entry is the explicit opt-in.
        let listed = GuardedResolver { literal_allowed: true, ..resolver(own) };
        assert!(resolve(&listed, "http://93.184.216.34/").is_ok());
        // When the addresses cannot be read, nothing is reached.
        let blind = resolver(|| Err(std::io::Error::other("no netlink")));
        assert!(resolve(&blind, "http://1.1.1.1/").unwrap_err().contains("cannot list"));
    }

    #[test]
    fn this_host_s_addresses_are_read() {
        let own = local_addresses().unwrap();
        assert!(own.iter().any(IpAddr::is_loopback), "{own:?}");
        let why = resolve(&resolver(local_addresses), "http://127.0.0.1/").unwrap_err();
        assert!(why.contains("127.0.0.1:80 (not a public address)"), "{why}");
    }

    #[test]
    fn credentials_stay_within_their_origin() {
        let headers = || {
            ["Authorization", "cookie", "Proxy-Authorization", "X-Other"]
                .map(|n| (n.to_owned(), "v".to_owned()))
                .to_vec()
        };
        let after = |from: &str, to: &str| {
            let mut kept = headers();
            keep_credentials_within_origin(
                &mut kept,
                &url::Url::parse(from).unwrap(),
                &url::Url::parse(to).unwrap(),
            );
            kept.len()
        };
        for (from, to) in [
            ("http://a.example/", "http://a.example:80/x"),
            ("https://a.example/", "https://A.EXAMPLE:443/"),
            ("http://127.0.0.1:1/", "http://127.0.0.1:1/y"),
        ] {
            assert_eq!(after(from, to), 4, "{from} to {to}");
        }
        for (from, to) in [
            ("https://a.example/", "http://a.example/"),
            ("http://a.example/", "https://a.example/"),
            ("http://127.0.0.1:1/", "http://127.0.0.1:2/"),
            ("http://a.example/", "http://b.a.example/"),
            ("http://a.example/", "http://a.example:8080/"),
        ] {
            assert_eq!(after(from, to), 1, "{from} to {to}");
        }
    }

    #[test]
    fn the_guest_cannot_set_the_host_header() {
        let args = json!({"url": "https://api.example.com/", "headers": {"Host": "internal.example.net"}});
        let Err(error) = decode(&args) else { panic!("accepted") };
        assert_eq!(error.kind, ErrorKind::Denied);
    }
}
