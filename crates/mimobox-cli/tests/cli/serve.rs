//! `mimobox serve` as a real process, driven over HTTP: owners and their
//! tokens, sessions, turns whole and streamed, files, health and metrics,
//! and the attacks of a hostile client (no token, a wrong one, another
//! owner's id, a huge body, a slow client, a trickled body, a stream
//! nobody reads), the drain on SIGTERM, and the config file with its
//! per-owner limits and its check.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mcp::run_client;
use crate::scientific::{cli, relocated_profile};

const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";

fn sha256_hex(text: &str) -> String {
    use std::fmt::Write as _;
    // The test's own SHA-256 is the system's, as an operator would make it.
    let out = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let mut hex = String::new();
    let _ = write!(hex, "{}", String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap());
    hex
}

struct Server {
    child: Child,
    base: String,
    agent: ureq::Agent,
    cli: Option<crate::Cli>,
    pause_dir: std::path::PathBuf,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_in(cli(), extra)
    }

    /// A server in `cli`'s directory (its pause directory and profile).
    fn start_in(cli: crate::Cli, extra: &[&str]) -> Server {
        let profile = cli.write("python-sci.toml", &relocated_profile());
        let pause_dir = cli.path().join("paused");
        let alice = format!("alice={}", sha256_hex(ALICE));
        let bob = format!("bob={}", sha256_hex(BOB));
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--profile",
            profile.to_str().unwrap(),
            "--token-sha256",
            &alice,
            "--token-sha256",
            &bob,
            "--pause-dir",
            pause_dir.to_str().unwrap(),
            "--metrics-owner",
            "alice",
        ];
        args.extend_from_slice(extra);
        Server::spawn(cli, &args, pause_dir.clone())
    }

    /// A server started from a config file; `{alice}` and `{bob}` in
    /// `config` become the hashes of their tokens.
    fn start_with_config(config: &str) -> Server {
        let cli = cli();
        cli.write("python-sci.toml", &relocated_profile());
        let config = config.replace("{alice}", &sha256_hex(ALICE)).replace("{bob}", &sha256_hex(BOB));
        let file = cli.write("server.toml", &config);
        let pause_dir = cli.path().join("paused");
        Server::spawn(cli, &["serve", "--config", file.to_str().unwrap()], pause_dir)
    }

    fn spawn(cli: crate::Cli, args: &[&str], pause_dir: std::path::PathBuf) -> Server {
        let mut child = cli.command(args).stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let base =
            line.trim().strip_prefix("mimobox: listening on ").unwrap_or_else(|| panic!("{line}")).to_owned();
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Server { child, base, agent, cli: Some(cli), pause_dir }
    }

    /// A request whose `head` is sent at once and whose body then comes a
    /// byte every 400 ms (each within the read timeout), from a thread of
    /// its own: the connection, when the body began, and that thread.
    fn trickle(&self, head: &str) -> (TcpStream, Instant, std::thread::JoinHandle<()>) {
        let mut stream = self.connect();
        stream.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            for _ in 0..20 {
                if writer.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(400));
            }
        });
        (stream, started, sender)
    }

    /// A raw connection to the server.
    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.base.trim_start_matches("http://")).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET", _) | ("DELETE", _) => {
                let mut request =
                    if method == "GET" { self.agent.get(&url) } else { self.agent.delete(&url) };
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                request.call()
            }
            (_, body) => {
                let mut request = if method == "PUT" { self.agent.put(&url) } else { self.agent.post(&url) };
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                request.send(body.unwrap_or_default())
            }
        }
        .unwrap();
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        response.into_body().into_reader().read_to_end(&mut bytes).unwrap();
        (status, bytes)
    }

    fn json(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string().into_bytes());
        let (status, bytes) = self.call(method, path, token, body.as_deref());
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn open(&self, token: &str) -> String {
        let (status, answer) = self.json("POST", "/v1/sessions", Some(token), Some(json!({})));
        assert_eq!(status, 201, "{answer}");
        answer["id"].as_str().unwrap().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sessions_turns_and_files_over_http_each_owner_its_own() {
    let server = Server::start(&[]);
    assert_eq!(server.call("GET", "/healthz", None, None).0, 200);
    assert_eq!(server.call("GET", "/readyz", None, None).0, 200);
    // No token, a wrong one: 401, for every route.
    for path in ["/v1/sessions", "/metrics"] {
        assert_eq!(server.call("GET", path, None, None).0, 401);
        assert_eq!(server.call("GET", path, Some("guess"), None).0, 401);
    }
    let id = server.open(ALICE);
    let execute = format!("/v1/sessions/{id}/execute");
    let (status, turn) =
        server.json("POST", &execute, Some(ALICE), Some(json!({"code": "x = 6 * 7\nprint(x)"})));
    assert_eq!(
        (status, turn["stdout"].as_str(), turn["turn"].as_u64()),
        (200, Some("42\n"), Some(1)),
        "{turn}"
    );
    let (_, turn) = server.json("POST", &execute, Some(ALICE), Some(json!({"code": "x + 1"})));
    assert_eq!(turn["results"][0]["text/plain"], "43", "{turn}");

    // Bob gets for alice's session exactly what an id that never existed gets.
    let never = "0123456789abcdef0123456789abcdef";
    for target in [id.as_str(), never] {
        for (method, path, body) in [
            ("GET", format!("/v1/sessions/{target}"), None),
            ("DELETE", format!("/v1/sessions/{target}"), None),
            ("POST", format!("/v1/sessions/{target}/execute"), Some(json!({"code": "print(x)"}))),
            (
                "POST",
                format!("/v1/sessions/{target}/execute"),
                Some(json!({"code": "print(x)", "stream": true})),
            ),
            ("GET", format!("/v1/sessions/{target}/files/workspace/a.txt"), None),
            ("GET", format!("/v1/sessions/{target}/files?path=/workspace"), None),
        ] {
            let (status, answer) = server.json(method, &path, Some(BOB), body);
            assert_eq!((status, answer), (404, json!({"error": "no such session"})), "{method} {path}");
        }
    }
    let (_, listed) = server.json("GET", "/v1/sessions", Some(BOB), None);
    assert_eq!(listed, json!({"sessions": []}));
    let (_, listed) = server.json("GET", "/v1/sessions", Some(ALICE), None);
    assert_eq!(listed["sessions"][0]["id"], id.as_str());

    // Files: raw bytes in and out, and the listing.
    let (status, written) = server.call(
        "PUT",
        &format!("/v1/sessions/{id}/files/workspace/in.csv"),
        Some(ALICE),
        Some(b"a,b\n1,2\n"),
    );
    assert_eq!((status, String::from_utf8_lossy(&written).into_owned()), (200, "{\"bytes\":8}".to_owned()));
    let code = json!({"code": "import pandas\npandas.read_csv('in.csv').sum().to_csv('out.csv')"});
    assert_eq!(server.json("POST", &execute, Some(ALICE), Some(code)).0, 200);
    let (status, read) =
        server.call("GET", &format!("/v1/sessions/{id}/files/workspace/out.csv"), Some(ALICE), None);
    assert_eq!((status, read), (200, b",0\na,1\nb,2\n".to_vec()));
    let (_, listing) =
        server.json("GET", &format!("/v1/sessions/{id}/files?path=/workspace"), Some(ALICE), None);
    assert_eq!(listing["entries"].as_array().unwrap().len(), 2, "{listing}");
    let (status, _) =
        server.call("GET", &format!("/v1/sessions/{id}/files/workspace/../../etc/passwd"), Some(ALICE), None);
    assert!(status == 400 || status == 404, "{status}");

    // The stream: event lines in order, then the answer as `"type": "end"`.
    let body = json!({"code": "print('a')\nimport sys; print('b', file=sys.stderr)\n1 + 1", "stream": true});
    let (status, bytes) = server.call("POST", &execute, Some(ALICE), Some(body.to_string().as_bytes()));
    assert_eq!(status, 200);
    let lines: Vec<Value> =
        String::from_utf8(bytes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["stdout", "stderr", "result", "end"], "{lines:?}");
    assert_eq!(lines[3]["results"][0]["text/plain"], "2");

    // Metrics (the whole server's numbers): only for an owner the
    // operator named; bob is not one.
    assert_eq!(server.call("GET", "/metrics", Some(BOB), None).0, 403);
    let (status, text) = server.call("GET", "/metrics", Some(ALICE), None);
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("mimobox_sessions{state=\"live\"} 1"), "{text}");
    assert!(text.contains("mimobox_http_responses_total{class=\"4xx\"}"), "{text}");

    assert_eq!(server.call("DELETE", &format!("/v1/sessions/{id}"), Some(ALICE), None).0, 204);
    assert_eq!(server.json("GET", &format!("/v1/sessions/{id}"), Some(ALICE), None).0, 404);
}

#[test]
fn a_huge_body_a_slow_client_and_a_stream_nobody_reads_hold_nothing() {
    let server = Server::start(&["--read-timeout", "1"]);
    let id = server.open(ALICE);
    // A JSON body over the bound: 413 from its length alone, before any of
    // it is read (the server need not take 2 MiB to refuse it).
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut huge = TcpStream::connect(&address).unwrap();
    huge.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        huge,
        "POST /v1/sessions/{id}/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"code\": \"",
        2 << 20
    )
    .unwrap();
    let mut answer = [0u8; 64];
    let n = huge.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(huge);

    // A client that sends its headers one byte at a time, slowly, is cut
    // off at the read timeout.
    let mut slow = TcpStream::connect(&address).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut dropped = false;
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n" {
        if slow.write_all(&[*byte]).is_err() {
            dropped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    // Closed by the server: the read ends (EOF or a reset) instead of
    // waiting out its own 10 s.
    let mut rest = Vec::new();
    let closed = match slow.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    };
    assert!(dropped || closed, "the server still held the slow client after {:?}", started.elapsed());
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "{}", String::from_utf8_lossy(&rest));

    // A stream whose client reads nothing: the turn still ends at its
    // timeout, and the session's next call gets its answer.
    let mut reader = TcpStream::connect(&address).unwrap();
    let body = json!({"code": "while True: print('x' * 1000)", "stream": true, "timeout": 2}).to_string();
    write!(
        reader,
        "POST /v1/sessions/{id}/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let (status, answer) = server.json("GET", &format!("/v1/sessions/{id}"), Some(ALICE), None);
    assert_eq!(status, 200, "the server answers other calls meanwhile: {answer}");
    // The timed-out turn ended the session; a call after it is told so,
    // well within the timeout plus the flush grace.
    let (status, _) =
        server.json("POST", &format!("/v1/sessions/{id}/execute"), Some(ALICE), Some(json!({"code": "1"})));
    assert_eq!(status, 404);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    drop(reader);
}

#[test]
fn sigterm_drains_pauses_live_sessions_and_a_restarted_server_takes_them_up() {
    let mut server = Server::start(&[]);
    let id = server.open(ALICE);
    let (status, _) = server.json(
        "POST",
        &format!("/v1/sessions/{id}/execute"),
        Some(ALICE),
        Some(json!({"code": "y = 5"})),
    );
    assert_eq!(status, 200);
    let pid = server.child.id() as i32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "the drain did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    // Its first pause, by a server alone (epoch 0): `ID.0.1.paused`.
    let paused = server.pause_dir.join(format!("{id}.0.1.paused"));
    assert!(paused.is_file(), "the live session was paused to {}", paused.display());

    // A server started again on the same directory takes the session up:
    // its next turn sees its variables, and its turns go on.
    let again = Server::start_in(server.cli.take().unwrap(), &[]);
    let (status, turn) = again.json(
        "POST",
        &format!("/v1/sessions/{id}/execute"),
        Some(ALICE),
        Some(json!({"code": "print(y)"})),
    );
    assert_eq!(
        (status, turn["stdout"].as_str(), turn["turn"].as_u64()),
        (200, Some("5\n"), Some(2)),
        "{turn}"
    );
    // Still only its owner's.
    assert_eq!(again.json("GET", &format!("/v1/sessions/{id}"), Some(BOB), None).0, 404);
}

#[test]
fn the_official_mcp_client_works_over_streamable_http_for_its_owner_only() {
    let server = Server::start(&[]);
    run_client(
        "mcp_http.py",
        &[server.base.as_str(), ALICE, BOB],
        None,
        &[
            "protocol 2026-07-28",
            "protocol 2025-11-25",
            "state kept",
            "figure",
            "files",
            "error turn",
            "owners apart",
            "refused",
        ],
    );
}

#[test]
fn the_python_client_works_against_the_server_and_locally() {
    let server = Server::start(&[]);
    let cli = server.cli.as_ref().unwrap();
    let profile = cli.path().join("python-sci.toml");
    run_client(
        "python_client.py",
        &[server.base.as_str(), ALICE, env!("CARGO_BIN_EXE_mimobox"), profile.to_str().unwrap()],
        Some(cli),
        &["http", "wrong token", "sent again", "local"],
    );
}

/// A server config with two owners: alice with the defaults of
/// `[owner_limits]`, bob with one session.
const CONFIG: &str = r#"
listen = "127.0.0.1:0"

[profiles]
python-sci = "python-sci.toml"

[owner_limits]
sessions = 2
requests = 2

[owners.alice]
token_sha256 = "{alice}"
metrics = true

[owners.bob]
token_sha256 = ["{bob}"]
sessions = 1

[sessions]
pause_dir = "paused"
close_after = "1h"

[http]
read_timeout = "1s"
body_timeout = "2s"
write_timeout = "2s"
"#;

/// The ready gauge of `/metrics` once it reads `count`, within 20 s.
fn ready_reaches(server: &Server, count: u32) {
    let asked = Instant::now();
    loop {
        let (status, metrics) = server.call("GET", "/metrics", Some(ALICE), None);
        assert_eq!(status, 200);
        let metrics = String::from_utf8_lossy(&metrics).into_owned();
        if metrics.contains(&format!("mimobox_sessions{{state=\"ready\"}} {count}\n")) {
            return;
        }
        assert!(asked.elapsed() < Duration::from_secs(20), "{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_config_file_keeps_sessions_opened_ahead_that_are_nobodys_until_taken() {
    let server = Server::start_with_config(
        &CONFIG.replace("close_after = \"1h\"\n", "close_after = \"1h\"\nready = 1\n"),
    );
    ready_reaches(&server, 1);
    // Bob's one session is the one opened ahead; his limit of one holds,
    // and another is opened behind it for the next caller.
    let bobs = server.open(BOB);
    assert_eq!(server.json("POST", "/v1/sessions", Some(BOB), Some(json!({}))).0, 429);
    ready_reaches(&server, 1);
    let (status, answer) = server.json(
        "POST",
        &format!("/v1/sessions/{bobs}/execute"),
        Some(BOB),
        Some(json!({"code": "x = 41\nx + 1"})),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["text/plain"], "42", "{answer}");
}

#[test]
fn a_config_file_gives_each_owner_its_limits_and_bounds_requests_and_bodies() {
    let server = Server::start_with_config(CONFIG);
    // Sessions: bob's own bound of 1, alice's 2 from `[owner_limits]`.
    let bobs = server.open(BOB);
    let (status, answer) = server.json("POST", "/v1/sessions", Some(BOB), Some(json!({})));
    assert_eq!(status, 429, "{answer}");
    let first = server.open(ALICE);
    let second = server.open(ALICE);
    assert_eq!(server.json("POST", "/v1/sessions", Some(ALICE), Some(json!({}))).0, 429);

    // Requests at once: alice's two streams hold both of her places until
    // they end; a third request of hers is refused meanwhile, bob's is not.
    let mut streams = Vec::new();
    for id in [&first, &second] {
        let mut stream = server.connect();
        let body = json!({"code": "import time\ntime.sleep(4)\nprint('slept')", "stream": true}).to_string();
        write!(
            stream,
            "POST /v1/sessions/{id}/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        streams.push(stream);
    }
    // Refused as soon as both streams hold their places (well within the
    // turns' 4 s, however busy the machine).
    let asked = Instant::now();
    loop {
        let (status, answer) = server.json("GET", "/v1/sessions", Some(ALICE), None);
        if status == 429 {
            break;
        }
        assert_eq!(status, 200, "{answer}");
        assert!(asked.elapsed() < Duration::from_secs(3), "a third request was not refused while two ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.json("GET", &format!("/v1/sessions/{bobs}"), Some(BOB), None).0, 200);
    for mut stream in streams {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains("slept") && answer.contains("\"type\":\"end\""), "{answer}");
    }
    assert_eq!(server.json("GET", "/v1/sessions", Some(ALICE), None).0, 200);
    assert_eq!(server.call("GET", "/metrics", Some(ALICE), None).0, 200);
    assert_eq!(server.call("GET", "/metrics", Some(BOB), None).0, 403);

    // A body that trickles in, each piece within the read timeout, is cut
    // off at the whole-body deadline with 408.
    let (mut trickle, started, sender) = server.trickle(&format!(
        "POST /v1/sessions/{first}/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\nContent-Length: 100\r\n\r\n"
    ));
    let mut answer = [0u8; 64];
    let n = trickle.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    drop(trickle);
    let _ = sender.join();

    // The same trickle to `/mcp` (rmcp reads its own bodies): the body's
    // deadline ends it there too, and the connection is let go.
    let (mut trickle, started, sender) = server.trickle(&format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ALICE}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n"
    ));
    let mut answer = Vec::new();
    let _ = trickle.read_to_end(&mut answer);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "/mcp held a trickled body for {:?}",
        started.elapsed()
    );
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 2"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(trickle);
    let _ = sender.join();

    // A client that asks for 32 MiB and reads none of it: the server's
    // write stalls, and past the write timeout the connection is dropped
    // (the client gets at most what the sockets' buffers held).
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    let path = format!("/v1/sessions/{second}/files/workspace/big.bin");
    assert_eq!(server.call("PUT", &path, Some(ALICE), Some(&big)).0, 200);
    let mut stalled = server.connect();
    write!(stalled, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let mut received = Vec::new();
    let _ = stalled.read_to_end(&mut received);
    assert!(received.len() < big.len(), "the whole answer came, {} bytes", received.len());
    assert_eq!(server.call("GET", "/healthz", None, None).0, 200);
}

#[test]
fn serve_check_passes_a_good_config_and_names_the_line_of_a_bad_one() {
    let cli = cli();
    cli.write("python-sci.toml", &relocated_profile());
    let good = CONFIG.replace("{alice}", &sha256_hex(ALICE)).replace("{bob}", &sha256_hex(BOB));
    let file = cli.write("server.toml", &good);
    let out = cli.run(&["serve", "--config", file.to_str().unwrap(), "--check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok: 1 profile(s), 2 owner(s)"), "{stdout}");

    for (bad, expected) in [
        // A typo in an owner's table: its line and column, and the key.
        (good.replace("sessions = 1\n", "sesions = 1\n"), ":17:1: key `owners.bob.sesions`"),
        (
            good.replace("requests = 2", "requests = 0"),
            ":9:1: key `owner_limits.requests`: must be more than zero",
        ),
        (
            good.replace(&sha256_hex(BOB), "abc"),
            "key `owners.bob.token_sha256`: a token hash is 64 hex digits",
        ),
        (good.replace(&sha256_hex(BOB), &sha256_hex(ALICE)), "this token hash is given twice"),
        (good.replace("body_timeout = \"2s\"", "body_timeout = \"2 weeks\""), "key `http.body_timeout`"),
        (good.replace("python-sci.toml", "missing.toml"), "profile python-sci: "),
    ] {
        std::fs::write(&file, &bad).unwrap();
        let out = cli.run(&["serve", "--config", file.to_str().unwrap(), "--check"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in {stderr}");
    }
    // The config is in place of the flags, not beside them.
    let out = cli.run(&["serve", "--config", file.to_str().unwrap(), "--profile", "x.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn schemathesis_finds_no_answer_the_openapi_document_does_not_allow() {
    let server = Server::start(&[]);
    // The document is the server's own, for owners only.
    assert_eq!(server.call("GET", "/v1/openapi.json", None, None).0, 401);
    let (status, document) = server.json("GET", "/v1/openapi.json", Some(ALICE), None);
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["components"]["schemas"]["NewSession"]["properties"]["profile"]["enum"],
        json!(["python-sci"])
    );
    // Random valid and invalid requests, alone and in sequences that
    // follow the links from a new session to its turns and files: no 5xx,
    // no status, content type, header or body the document does not
    // allow, invalid requests refused and valid ones accepted.
    let output = std::process::Command::new("schemathesis")
        .args(["run", &format!("{}/v1/openapi.json", server.base)])
        .args(["--header", &format!("Authorization: Bearer {ALICE}")])
        .args(["--checks", "all", "--max-examples", "25", "--seed", "20261202"])
        .args(["--generation-database", "none", "--request-timeout", "60", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache of crashes goes in the test's own directory, not the
        // source tree.
        .current_dir(server.pause_dir.parent().unwrap())
        .output()
        .expect("schemathesis runs (.ci/run installs it from PyPI)");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(out.contains("Stateful") && !out.contains("failures"), "{out}");
    // The server is still up and answers.
    assert_eq!(server.call("GET", "/healthz", None, None).0, 200);
}

#[test]
fn curl_streams_ndjson_lines_and_moves_files() {
    let server = Server::start(&[]);
    let id = server.open(ALICE);
    let dir = server.cli.as_ref().unwrap().path().to_owned();
    let curl = |args: &[&str]| {
        let output = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--fail-with-body", "--max-time", "60"])
            .args(["-H", &format!("Authorization: Bearer {ALICE}")])
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("curl runs");
        assert!(output.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    };
    std::fs::write(dir.join("data.csv"), "a,b\n1,2\n3,4\n").unwrap();
    let url = format!("{}/v1/sessions/{id}", server.base);
    let written =
        curl(&["-X", "PUT", "--data-binary", "@data.csv", &format!("{url}/files/workspace/data.csv")]);
    assert_eq!(String::from_utf8_lossy(&written), "{\"bytes\":12}");
    // -N: each event line as it comes, then the end line.
    let code = json!({"code": "import pandas\ndf = pandas.read_csv('data.csv')\nprint(df.a.sum())\ndf.to_csv('out.csv', index=False)\nint(df.b.sum())", "stream": true});
    let lines = curl(&[
        "-N",
        "-H",
        "Content-Type: application/json",
        "-d",
        &code.to_string(),
        &format!("{url}/execute"),
    ]);
    let lines: Vec<Value> =
        String::from_utf8(lines).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["stdout", "result", "end"], "{lines:?}");
    assert_eq!(
        (lines[0]["text"].as_str(), lines[2]["results"][0]["text/plain"].as_str()),
        (Some("4\n"), Some("6"))
    );
    let read = curl(&["-o", "-", &format!("{url}/files/workspace/out.csv")]);
    assert_eq!(String::from_utf8_lossy(&read), "a,b\n1,2\n3,4\n");
    let listing: Value = serde_json::from_slice(&curl(&[&format!("{url}/files?path=/workspace")])).unwrap();
    let mut names: Vec<&str> =
        listing["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["data.csv", "out.csv"], "{listing}");
}
