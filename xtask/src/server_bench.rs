//! The front doors' rows of `cargo xtask bench`, against the release
//! binary as a real process:
//! - MCP over stdio: `run_code` of `x = 1` on a live session against a
//!   do-nothing tool of the MCP SDK's own `MCPServer`, both called by the
//!   SDK's client, interleaved (`xtask/clients/mcp_bench.py`);
//! - HTTP: a new session and its first `print(1+1)`, client-measured;
//! - HTTP under load: 64 connections, each a client on its own live
//!   session, taking trivial turns as fast as they are answered;
//! - 1,000 sessions open at once in one server, one turn each, and the
//!   server's resident memory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench::{human, median_of};

pub(crate) const TOKEN: &str = "bench-token";

/// A `mimobox serve` process.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(mimobox: &Path, profile: &Path, cache: &Path, sessions: u32) -> Result<Server> {
        // The SHA-256 of TOKEN, as `printf %s bench-token | sha256sum` gives it.
        let hash = sha256_hex(TOKEN)?;
        let mut child = Command::new(mimobox)
            .args(["serve", "--listen", "127.0.0.1:0", "--profile"])
            .arg(format!("python-sci={}", profile.display()))
            .args(["--token-sha256", &format!("bench={hash}"), "--max-sessions", &sessions.to_string()])
            .env("MIMOBOX_CACHE_DIR", cache)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", mimobox.display()))?;
        let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
        let mut line = String::new();
        stderr.read_line(&mut line)?;
        let Some(base) = line.trim().strip_prefix("mimobox: listening on ") else {
            bail!("mimobox serve did not start: {line}");
        };
        let base = base.to_owned();
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Ok(Server { child, base })
    }

    /// The server's resident memory in KiB: RSS (file pages counted once
    /// per mapping), PSS (shared pages divided among their users) and
    /// private (its own pages alone), from `smaps_rollup`.
    fn memory_kib(&self) -> Result<(u64, u64, u64)> {
        let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", self.child.id()))?;
        let field = |name: &str| -> Result<u64> {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {name} in smaps_rollup"))
        };
        Ok((field("Rss:")?, field("Pss:")?, field("Private_Clean:")? + field("Private_Dirty:")?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn sha256_hex(text: &str) -> Result<String> {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    child.stdin.take().expect("piped").write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8(out.stdout)?.split_whitespace().next().context("sha256sum said nothing")?.to_owned())
}

/// One HTTP client with its own connection.
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    pub(crate) fn new(base: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Client { agent, base: base.to_owned() }
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let mut response = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    pub(crate) fn delete(&self, path: &str) -> Result<u16> {
        let response = self
            .agent
            .delete(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()?;
        Ok(response.status().as_u16())
    }

    pub(crate) fn open(&self) -> Result<String> {
        let (status, answer) = self.post("/v1/sessions", &json!({}))?;
        if status != 201 {
            bail!("opening a session: {status} {answer}");
        }
        Ok(answer["id"].as_str().context("no id")?.to_owned())
    }

    pub(crate) fn turn(&self, id: &str, code: &str) -> Result<Value> {
        let (status, answer) = self.post(&format!("/v1/sessions/{id}/execute"), &json!({"code": code}))?;
        if status != 200 || answer["outcome"] != "exited" || !answer["error"].is_null() {
            bail!("a turn failed: {status} {answer}");
        }
        Ok(answer)
    }
}

pub fn rows(root: &Path, mimobox: &Path, quick: bool) -> Result<String> {
    let profile = root.join("profiles").join("python-sci.toml");
    let cache = root.join("target").join("bench-cache");
    let mut out =
        String::from("\nThe front doors (`mimobox mcp`, `mimobox serve`, release build, python-sci)\n\n");

    // MCP over stdio, against the SDK's own server.
    let calls = if quick { "200" } else { "1000" };
    let script = root.join("xtask").join("clients").join("mcp_bench.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(mimobox)
        .arg(&profile)
        .arg(calls)
        .env("MIMOBOX_CACHE_DIR", &cache)
        .output()
        .context("python3 runs the MCP client")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let value =
        |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse::<f64>().ok());
    match (value("mimobox_us "), value("sdk_us ")) {
        (Some(ours), Some(sdk)) => out.push_str(&format!(
            "MCP `run_code` of `x = 1` on a live session over stdio, the SDK's client, {calls} interleaved calls: {} vs a do-nothing tool of the SDK's own MCPServer {}: {:.2}× (target ≤ 1.5×)\n",
            human(ours * 1e3),
            human(sdk * 1e3),
            ours / sdk
        )),
        _ => out.push_str(&format!(
            "MCP row not measured (the `mcp` package is needed): {}\n",
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        )),
    }

    // A new session and its first turn, over HTTP.
    let server = Server::start(mimobox, &profile, &cache, 1100)?;
    let client = Client::new(&server.base);
    let warm = client.open()?;
    client.turn(&warm, "print(1+1)")?;
    client.delete(&format!("/v1/sessions/{warm}"))?;
    let samples = if quick { 20 } else { 100 };
    let (mut firsts, mut opens, mut turns) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        let started = Instant::now();
        let id = client.open()?;
        let opened = started.elapsed();
        let answer = client.turn(&id, "print(1+1)")?;
        firsts.push(started.elapsed().as_secs_f64() * 1e9);
        opens.push(opened.as_secs_f64() * 1e9);
        turns.push(answer["elapsed_ms"].as_f64().unwrap_or(f64::NAN) * 1e6);
        if answer["stdout"] != "2\n" {
            bail!("print(1+1) printed {}", answer["stdout"]);
        }
        client.delete(&format!("/v1/sessions/{id}"))?;
    }
    out.push_str(&format!(
        "New session and its first `print(1+1)` over HTTP, client-measured, {samples} samples: median {} (target ≤ 10 ms); of it, `POST /v1/sessions` {}, the first turn itself (as the session reports it) {}\n",
        human(median_of(firsts)),
        human(median_of(opens)),
        human(median_of(turns))
    ));

    // 64 connections of trivial turns, each on its own live session.
    let connections = 64;
    let seconds = if quick { 3 } else { 10 };
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let ready = Arc::new(std::sync::Barrier::new(connections + 1));
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (base, stop, errors, latencies, ready) =
            (server.base.clone(), stop.clone(), errors.clone(), latencies.clone(), ready.clone());
        workers.push(std::thread::spawn(move || -> Result<()> {
            let client = Client::new(&base);
            let id = client.open()?;
            client.turn(&id, "x = 1")?;
            ready.wait();
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.turn(&id, "x = 1") {
                    Ok(_) => mine.push(started.elapsed().as_secs_f64() * 1e9),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies.lock().expect("not poisoned").extend(mine);
            client.delete(&format!("/v1/sessions/{id}"))?;
            Ok(())
        }));
    }
    ready.wait();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for worker in workers {
        worker.join().expect("a load thread panicked")?;
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("not poisoned"));
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies.get(latencies.len() * 99 / 100).copied().unwrap_or(f64::NAN);
    let count = latencies.len();
    out.push_str(&format!(
        "Trivial turns over HTTP, {connections} connections each on its own live session, {seconds} s: {:.0} turns/s, median {}, p99 {}, {} errors (target ≥ 2,000/s, p99 ≤ 50 ms, no errors)\n",
        count as f64 / elapsed,
        human(median_of(latencies.clone())),
        human(p99),
        errors.load(Ordering::Relaxed)
    ));

    // 1,000 sessions open at once, one turn each.
    let (before, _, _) = server.memory_kib()?;
    let many = if quick { 200 } else { 1000 };
    let ids = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let (base, ids) = (server.base.clone(), ids.clone());
            std::thread::spawn(move || -> Result<()> {
                let client = Client::new(&base);
                for _ in 0..many / 4 {
                    let id = client.open()?;
                    client.turn(&id, "x = 1")?;
                    ids.lock().expect("not poisoned").push(id);
                }
                Ok(())
            })
        })
        .collect();
    for opener in openers {
        opener.join().expect("an opener panicked")?;
    }
    let opened = started.elapsed();
    let (rss, pss, private) = server.memory_kib()?;
    let answered = ids.lock().expect("not poisoned").len();
    out.push_str(&format!(
        "{answered} sessions open at once in one server, one turn each ({:.1} s to open them all on 4 connections): server RSS {} MiB ({} MiB before them; the checkpoint's pages counted once per session's mapping), PSS {} MiB, private {} MiB (target: all answered, RSS ≤ 2 GiB)\n",
        opened.as_secs_f64(),
        rss / 1024,
        before / 1024,
        pss / 1024,
        private / 1024
    ));
    Ok(out)
}
