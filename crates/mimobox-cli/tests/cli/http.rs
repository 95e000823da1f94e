//! The `http` tool of `allowed_http_domains`, against a local server on
//! 127.0.0.1: what the list allows, and what it refuses (a host not on it,
//! a redirect to one, a name that resolves to a private address, a body
//! over the cap), each recorded in the run's tool calls; and which headers
//! follow a redirect.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, ToSocketAddrs, UdpSocket};

use crate::{Cli, fixture, stderr, stdout};

/// A server on 127.0.0.1 that answers each path with a canned response;
/// its port.
fn serve() -> u16 {
    serve_on("127.0.0.1:0")
}

/// A server bound to `bind` that answers each path with a canned response:
/// `/hello`, redirects, `/to/PORT/PATH` (a redirect to that port of
/// 127.0.0.1), `/echo-headers` (the request's header lines as the body),
/// `/big`. Its port.
fn serve_on(bind: &str) -> u16 {
    let listener = TcpListener::bind(bind).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                let mut host = String::new();
                let mut received = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    if line.to_ascii_lowercase().starts_with("host:") {
                        host = line[5..].trim().to_owned();
                    }
                    received.push_str(&line.to_ascii_lowercase());
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, extra, body): (&str, String, Vec<u8>) = match path.as_str() {
                    "/echo-headers" => ("200 OK", String::new(), received.into_bytes()),
                    to if to.starts_with("/to/") => {
                        let (to_port, rest) = to["/to/".len()..].split_once('/').unwrap_or(("0", ""));
                        ("302 Found", format!("Location: http://127.0.0.1:{to_port}/{rest}\r\n"), Vec::new())
                    }
                    "/hello" => {
                        ("200 OK", "X-Served-For: test\r\n".into(), format!("hello {host}").into_bytes())
                    }
                    "/to-hello" => {
                        ("302 Found", format!("Location: http://127.0.0.1:{port}/hello\r\n"), Vec::new())
                    }
                    "/to-outside" => {
                        ("302 Found", "Location: http://not-allowed.invalid/\r\n".into(), Vec::new())
                    }
                    "/to-localhost" => (
                        "307 Temporary Redirect",
                        format!("Location: http://localhost:{port}/hello\r\n"),
                        Vec::new(),
                    ),
                    "/big" => ("200 OK", String::new(), vec![b'x'; 9 << 20]),
                    _ => ("404 Not Found", String::new(), b"no".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    port
}

/// A profile allowing `domains`.
fn profile(cli: &Cli, domains: &[&str]) -> String {
    let list: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
    cli.write("http.toml", &format!("timeout_secs = 20\nallowed_http_domains = [{}]\n", list.join(", ")));
    "http.toml".to_owned()
}

/// One `http` call through the door; the run's `--json` result and the
/// guest's answer frame.
fn fetch(cli: &Cli, profile: &str, args: serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    let frame = serde_json::json!({"v": 1, "id": 1, "op": "call", "tool": "http", "args": args});
    let out = cli.run(&["run", "--json", "--profile", profile, &fixture("tool_caller"), &frame.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let answer = serde_json::from_str(result["stdout"].as_str().unwrap()).unwrap();
    (result, answer)
}

fn refused(answer: &serde_json::Value, says: &str) {
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"]["kind"], "denied", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains(says), "{answer}");
}

#[test]
fn an_allowed_host_answers_with_status_headers_and_body_and_is_recorded() {
    let port = serve();
    let cli = Cli::new();
    let profile = profile(&cli, &["127.0.0.1"]);
    let (result, answer) =
        fetch(&cli, &profile, serde_json::json!({"url": format!("http://127.0.0.1:{port}/hello")}));
    assert_eq!(answer["ok"], true, "{answer}");
    let value = &answer["value"];
    assert_eq!(value["status"], 200);
    assert_eq!(value["headers"]["x-served-for"], "test");
    assert_eq!(value["body"], format!("hello 127.0.0.1:{port}"));
    assert_eq!(result["tool_calls"][0]["tool"], "http");
    assert_eq!(result["tool_calls"][0]["ok"], true);
    // A redirect within the list is followed.
    let (_, answer) =
        fetch(&cli, &profile, serde_json::json!({"url": format!("http://127.0.0.1:{port}/to-hello")}));
    assert_eq!(answer["value"]["url"], format!("http://127.0.0.1:{port}/hello"), "{answer}");
}

#[test]
fn without_the_key_there_is_no_http_tool() {
    let cli = Cli::new();
    cli.write("none.toml", "timeout_secs = 5\n");
    let frame = r#"{"v":1,"id":1,"op":"call","tool":"http","args":{"url":"http://127.0.0.1/"}}"#;
    let out = cli.run(&["run", "--json", "--profile", "none.toml", &fixture("tool_caller"), frame]);
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(result["exit_code"], 11, "the door answers no host: {result}");
}

#[test]
fn a_host_not_on_the_list_is_refused_without_a_request() {
    let port = serve();
    let cli = Cli::new();
    let profile = profile(&cli, &["127.0.0.1"]);
    let (result, answer) = fetch(&cli, &profile, serde_json::json!({"url": "http://example.org/"}));
    refused(&answer, "example.org is not in allowed_http_domains");
    assert_eq!(result["tool_calls"][0]["ok"], false);
    let (_, answer) =
        fetch(&cli, &profile, serde_json::json!({"url": format!("http://127.0.0.2:{port}/hello")}));
    refused(&answer, "not in allowed_http_domains");
}

#[test]
fn a_redirect_to_a_host_not_on_the_list_is_refused() {
    let port = serve();
    let cli = Cli::new();
    let profile = profile(&cli, &["127.0.0.1"]);
    for path in ["to-outside", "to-localhost"] {
        let (_, answer) =
            fetch(&cli, &profile, serde_json::json!({"url": format!("http://127.0.0.1:{port}/{path}")}));
        refused(&answer, "is not in allowed_http_domains");
    }
}

#[test]
fn a_name_that_resolves_to_a_private_address_is_refused() {
    let port = serve();
    let cli = Cli::new();
    // `localhost` is on the list as a name: its address is loopback, so
    // the request is refused after resolution; only an address entry
    // allows a private address.
    let profile = profile(&cli, &["localhost"]);
    let (_, answer) =
        fetch(&cli, &profile, serde_json::json!({"url": format!("http://localhost:{port}/hello")}));
    refused(&answer, "(not a public address)");
}

#[test]
fn bodies_over_the_cap_are_refused() {
    let port = serve();
    let cli = Cli::new();
    let profile = profile(&cli, &["127.0.0.1"]);
    let (_, answer) =
        fetch(&cli, &profile, serde_json::json!({"url": format!("http://127.0.0.1:{port}/big")}));
    assert_eq!(answer["error"]["kind"], "too_large", "{answer}");
}

#[test]
fn a_bad_domain_entry_is_a_profile_error() {
    let cli = Cli::new();
    cli.write("bad.toml", "allowed_http_domains = [\"*.com\"]\n");
    let out = cli.run(&["run", "--profile", "bad.toml", &fixture("hello")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("allowed_http_domains") && err.contains("*.com"), "{err}");
}

/// One of this machine's own non-loopback addresses: the source address of
/// its default route (connecting a UDP socket sends nothing).
fn own_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("198.51.100.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn this_host_s_own_address_is_reached_only_through_an_address_entry() {
    let Some(own) = own_address() else {
        eprintln!(
            "note: this machine has no non-loopback address; the unit tests in http.rs cover the check"
        );
        return;
    };
    let port = serve_on("0.0.0.0:0");
    let cli = Cli::new();
    // Listing the address itself is the opt-in, and keeps working.
    let listed = profile(&cli, &[&own.to_string()]);
    let url = format!("http://{own}:{port}/hello");
    let (_, answer) = fetch(&cli, &listed, serde_json::json!({ "url": url }));
    assert_eq!(answer["value"]["status"], 200, "{answer}");
    // A name of this machine that resolves to one of its addresses (its
    // host name, usually) is refused: only the address entry reaches it.
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
    let resolves_here = (name.as_str(), port)
        .to_socket_addrs()
        .is_ok_and(|mut addrs| addrs.any(|a| a.ip() == own || a.ip().is_loopback()));
    if name.is_empty() || !resolves_here {
        eprintln!("note: the host name `{name}` does not resolve to this machine; skipped the name part");
        return;
    }
    let named = profile(&cli, &[&name]);
    let (_, answer) = fetch(&cli, &named, serde_json::json!({"url": format!("http://{name}:{port}/hello")}));
    refused(&answer, "resolves only to addresses it may not reach");
}

#[test]
fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let first = serve();
    let second = serve();
    let cli = Cli::new();
    let profile = profile(&cli, &["127.0.0.1"]);
    let headers =
        serde_json::json!({"Authorization": "Bearer secret", "Cookie": "session=secret", "X-Other": "kept"});
    let received = |from: u16, to: u16| {
        let url = format!("http://127.0.0.1:{from}/to/{to}/echo-headers");
        let (_, answer) = fetch(&cli, &profile, serde_json::json!({"url": url, "headers": headers}));
        assert_eq!(answer["value"]["status"], 200, "{answer}");
        answer["value"]["body"].as_str().unwrap().to_owned()
    };
    // Another port of the same host is another origin: the credentials stay
    // behind, the other headers go on.
    let other = received(first, second);
    assert!(!other.contains("authorization:") && !other.contains("cookie:"), "{other}");
    assert!(other.contains("x-other: kept"), "{other}");
    // The same origin gets them.
    let same = received(first, first);
    assert!(
        same.contains("authorization: bearer secret") && same.contains("cookie: session=secret"),
        "{same}"
    );
}
