//! The fleet's rows of `cargo xtask bench-server`: two `mimobox serve`
//! workers (the release binary) sharing a real Redis catalog and a real S3
//! service (the fixtures' s3s-fs, served from this process), each row
//! beside its anchor in the same run:
//! - a trivial turn sent to the worker that does not hold the session
//!   (forwarded) against the same turn sent to the one that does,
//!   interleaved;
//! - a drain of a worker holding 100 live sessions: time to exit, and
//!   every session's state found again on the other worker;
//! - of those, the `python-sci` sessions holding a 10^5-row pandas
//!   DataFrame, each resumed on the other worker to its next answer.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mimobox_fixtures::redis::Redis;
use mimobox_fixtures::s3::S3;

use crate::bench::{human, median_of};
use crate::server_bench::{Client, TOKEN, sha256_hex};

/// A worker of the fleet.
struct Worker {
    child: Child,
    base: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Fleet {
    args: Vec<String>,
    s3: S3,
    cache: std::path::PathBuf,
    _redis: Redis,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn new(mimobox: &Path, profile: &Path, cache: &Path) -> Result<Fleet> {
        let redis = Redis::start();
        let s3 = S3::start("paused");
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("peer-secret");
        let key = dir.path().join("state-key");
        std::fs::write(&secret, "a-secret-the-bench-workers-share-0123456789")?;
        std::fs::write(&key, "a-key-that-authenticates-the-bench-states-0123")?;
        for file in [&secret, &key] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
        }
        let args = vec![
            mimobox.display().to_string(),
            "serve".into(),
            "--profile".into(),
            format!("python-sci={}", profile.display()),
            "--token-sha256".into(),
            format!("bench={}", sha256_hex(TOKEN)?),
            "--catalog".into(),
            redis.url.clone(),
            "--store".into(),
            "s3://paused/bench".into(),
            "--peer-secret-file".into(),
            secret.display().to_string(),
            "--state-key".into(),
            key.display().to_string(),
            "--max-sessions".into(),
            "400".into(),
        ];
        Ok(Fleet { args, s3, cache: cache.to_owned(), _redis: redis, _dir: dir })
    }

    fn worker(&self) -> Result<Worker> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        let mut child = Command::new(&self.args[0])
            .args(&self.args[1..])
            .args(["--listen", &address, "--advertise", &address])
            .envs(self.s3.env())
            .env("MIMOBOX_CACHE_DIR", &self.cache)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting a worker")?;
        let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
        let mut line = String::new();
        stderr.read_line(&mut line)?;
        if !line.starts_with("mimobox: listening on ") {
            bail!("a worker did not start: {line}");
        }
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Ok(Worker { child, base: format!("http://{address}") })
    }
}

pub fn rows(root: &Path, mimobox: &Path, quick: bool) -> Result<String> {
    let profile = root.join("profiles").join("python-sci.toml");
    let cache = root.join("target").join("bench-cache");
    // The module and its session checkpoint built first, as a worker's
    // init container does, so that no row waits for them.
    let status = Command::new(mimobox)
        .args(["compile", "--profile"])
        .arg(&profile)
        .env("MIMOBOX_CACHE_DIR", &cache)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("mimobox compile --profile {} failed", profile.display());
    }
    let fleet = Fleet::new(mimobox, &profile, &cache)?;
    let (a, b) = (fleet.worker()?, fleet.worker()?);
    let (to_a, to_b) = (Client::new(&a.base), Client::new(&b.base));
    let mut out = String::from(
        "\nA fleet (two `mimobox serve` workers, release build, a real Redis catalog, an S3 store on s3s-fs)\n\n",
    );

    // A forwarded turn against the same turn at its holder, interleaved.
    let id = to_a.open()?;
    to_a.turn(&id, "x = 1")?;
    to_b.turn(&id, "x = 1")?;
    let samples = if quick { 100 } else { 500 };
    let (mut direct, mut forwarded) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let started = Instant::now();
        to_a.turn(&id, "x = 1")?;
        direct.push(started.elapsed().as_secs_f64() * 1e9);
        let started = Instant::now();
        // A holds the session's lease while it takes turns, so B can
        // only forward.
        to_b.turn(&id, "x = 1")?;
        forwarded.push(started.elapsed().as_secs_f64() * 1e9);
    }
    let (direct, forwarded) = (median_of(direct), median_of(forwarded));
    out.push_str(&format!(
        "Trivial turn sent to the worker that does not hold the session (forwarded), {samples} interleaved: median {} vs {} at the holder: {} added (target ≤ 1 ms added)\n",
        human(forwarded),
        human(direct),
        human(forwarded - direct),
    ));
    to_a.delete(&format!("/v1/sessions/{id}"))?;

    // A drain of a worker holding 100 live sessions, some with pandas.
    let drained = fleet.worker()?;
    let to_drained = Client::new(&drained.base);
    let (sessions, with_pandas) = (100, if quick { 10 } else { 30 });
    let mut ids = Vec::new();
    for i in 0..sessions {
        let id = to_drained.open()?;
        let code = if i < with_pandas {
            "import pandas; df = pandas.DataFrame({\"a\": range(10**5)}); n = 1"
        } else {
            "n = 1"
        };
        to_drained.turn(&id, code)?;
        ids.push(id);
    }
    let mut drained = drained;
    let started = Instant::now();
    let status = Command::new("kill").args(["-TERM", &drained.child.id().to_string()]).status()?;
    if !status.success() {
        bail!("kill -TERM failed");
    }
    let exit = loop {
        if let Some(exit) = drained.child.try_wait()? {
            break exit;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the drained worker did not exit in 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let drain = started.elapsed();
    let stored = std::fs::read_dir(fleet.s3.object_file("bench"))?.count();

    // Each session's next answer, on the other worker: the pandas ones
    // timed one by one (a resume from the store), every one checked.
    let (mut resumes, mut lost) = (Vec::new(), 0);
    for (i, id) in ids.iter().enumerate() {
        let (code, expected) = if i < with_pandas {
            ("n += 1; print(n, len(df))", "2 100000\n")
        } else {
            ("n += 1; print(n)", "2\n")
        };
        let started = Instant::now();
        let answer = to_b.turn(id, code);
        let took = started.elapsed();
        match answer {
            Ok(answer) if answer["stdout"] == expected && answer["resumed_from_turn"].is_null() => {
                if i < with_pandas {
                    resumes.push(took.as_secs_f64() * 1e9);
                }
            }
            _ => lost += 1,
        }
    }
    out.push_str(&format!(
        "Drain (SIGTERM) of a worker holding {sessions} live python-sci sessions ({with_pandas} with a 10^5-row DataFrame): exited {} in {:.2} s, {stored} states in the bucket, {lost} sessions lost or changed (target ≤ 10 s, zero lost)\n",
        exit.code().map_or("by a signal".into(), |c| format!("{c}")),
        drain.as_secs_f64(),
    ));
    out.push_str(&format!(
        "A paused python-sci session holding `df = pandas.DataFrame({{\"a\": range(10**5)}})` resumed on another worker, to its next answer, {} samples: median {} (target ≤ 100 ms; e2b's published resume about 1 s)\n",
        resumes.len(),
        human(median_of(resumes)),
    ));
    Ok(out)
}
