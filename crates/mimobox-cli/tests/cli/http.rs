//! The `http` tool of `allowed_http_domains`, against a local server on
//! 127.0.0.1: what the list allows, and what it refuses (a host not on it,
//! a redirect to one, a name that resolves to a private address, a body
//! over the cap), each recorded in the run's tool calls.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use crate::{Cli, fixture, stderr, stdout};

/// A server that answers each path with a canned response; its port.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                let mut host = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    if line.to_ascii_lowercase().starts_with("host:") {
                        host = line[5..].trim().to_owned();
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, extra, body): (&str, String, Vec<u8>) = match path.as_str() {
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
    refused(&answer, "which is not a public address");
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
