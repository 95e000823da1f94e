//! Process-level rows of the code interpreter, driven over JSON lines as an
//! agent drives it: a trivial turn's round trip, and a 10 MB file written
//! into a session and read back, against `cat` of the same bytes through a
//! pipe.
//!
//! With `MIMOBOX_BASELINE` (another `mimobox` binary) and
//! `MIMOBOX_BASELINE_PROFILE` (the python-sci profile it understands), the
//! trivial turn is measured on both, interleaved, in the same run.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::bench::{human, median_of};

/// A `mimobox session` process.
struct Session {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Session {
    fn open(mimobox: &Path, profile: &Path, cache: &Path) -> Result<Session> {
        let mut child = Command::new(mimobox)
            .args(["session", "--profile"])
            .arg(profile)
            .env("MIMOBOX_CACHE_DIR", cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", mimobox.display()))?;
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Session { child, input, output })
    }

    fn ask(&mut self, line: &str) -> Result<serde_json::Value> {
        writeln!(self.input, "{line}")?;
        self.input.flush()?;
        let mut answer = String::new();
        if self.output.read_line(&mut answer)? == 0 {
            bail!("the session ended");
        }
        Ok(serde_json::from_str(&answer)?)
    }

    fn close(mut self) -> Result<()> {
        drop(self.input);
        self.child.wait()?;
        Ok(())
    }
}

pub fn rows(root: &Path, mimobox: &Path, quick: bool) -> Result<String> {
    let profile = root.join("profiles").join("python-sci.toml");
    let cache = root.join("target").join("bench-cache");
    let mut out = String::from("\nThe code interpreter over JSON lines (`profiles/python-sci.toml`)\n\n");

    // A trivial turn, client round trip, and the turn's own time as the
    // session reports it; against the baseline binary when there is one.
    let turns = if quick { 200 } else { 1000 };
    let baseline = match (std::env::var_os("MIMOBOX_BASELINE"), std::env::var_os("MIMOBOX_BASELINE_PROFILE"))
    {
        (Some(binary), Some(profile)) => Some((PathBuf::from(binary), PathBuf::from(profile))),
        _ => None,
    };
    let mut ours = Session::open(mimobox, &profile, &cache)?;
    let mut theirs = match &baseline {
        Some((binary, profile)) => Some(Session::open(binary, profile, &cache)?),
        None => None,
    };
    let trivial = r#"{"code": "x = 1"}"#;
    ours.ask(trivial)?;
    if let Some(theirs) = &mut theirs {
        theirs.ask(trivial)?;
    }
    let (mut ours_trip, mut ours_turn, mut theirs_trip, mut theirs_turn) = (vec![], vec![], vec![], vec![]);
    for _ in 0..turns {
        for (session, trip, turn) in [(Some(&mut ours), &mut ours_trip, &mut ours_turn)]
            .into_iter()
            .chain([(theirs.as_mut(), &mut theirs_trip, &mut theirs_turn)])
        {
            let Some(session) = session else { continue };
            let started = Instant::now();
            let answer = session.ask(trivial)?;
            trip.push(started.elapsed().as_secs_f64() * 1e9);
            turn.push(answer["elapsed_ms"].as_f64().unwrap_or(f64::NAN) * 1e6);
        }
    }
    ours.close()?;
    let (trip, turn) = (median_of(ours_trip), median_of(ours_turn));
    match theirs {
        Some(theirs) => {
            theirs.close()?;
            let (their_trip, their_turn) = (median_of(theirs_trip), median_of(theirs_turn));
            out.push_str(&format!(
                "Trivial turn `x = 1`, {turns} interleaved turns each: JSON-lines round trip {} vs the baseline's {}: {:.2}× (target ≤ 1.1×); the turn itself (library, as the session reports it) {} vs {}: {:.2}× (target ≤ 1.1×)\n",
                human(trip),
                human(their_trip),
                trip / their_trip,
                human(turn),
                human(their_turn),
                turn / their_turn,
            ));
        }
        None => out.push_str(&format!(
            "Trivial turn `x = 1`, {turns} turns: JSON-lines round trip {}, the turn itself {} (set MIMOBOX_BASELINE and MIMOBOX_BASELINE_PROFILE to compare with another build)\n",
            human(trip),
            human(turn),
        )),
    }

    // 10 MB in and out of a session, against `cat` through a pipe.
    let samples = if quick { 3 } else { 7 };
    let data: Vec<u8> = (0..10_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let (mut files, mut cats) = (vec![], vec![]);
    for _ in 0..samples {
        let mut session = Session::open(mimobox, &profile, &cache)?;
        session.ask(trivial)?;
        let write = serde_json::json!({"op": "write_file", "path": "/workspace/blob", "data": STANDARD.encode(&data)})
            .to_string();
        let started = Instant::now();
        let written = session.ask(&write)?;
        let read = session.ask(r#"{"op": "read_file", "path": "/workspace/blob"}"#)?;
        let back = STANDARD.decode(read["data"].as_str().context("read_file answered no data")?)?;
        files.push(started.elapsed().as_secs_f64() * 1e9);
        if written["bytes"] != 10_000_000 || back != data {
            bail!("the file did not come back whole: {written}");
        }
        session.close()?;

        let started = Instant::now();
        let mut cat = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut input = cat.stdin.take().expect("piped");
        let sent = data.clone();
        let writer = std::thread::spawn(move || input.write_all(&sent));
        let mut back = Vec::with_capacity(data.len());
        cat.stdout.take().expect("piped").read_to_end(&mut back)?;
        writer.join().expect("writer")?;
        cat.wait()?;
        cats.push(started.elapsed().as_secs_f64() * 1e9);
        if back != data {
            bail!("cat lost bytes");
        }
    }
    let (file, cat) = (median_of(files), median_of(cats));
    out.push_str(&format!(
        "10 MB written into a session and read back through JSON lines (base64), {samples} interleaved samples: {} vs `cat` of the same bytes through a pipe {}: {:.1}× (target ≤ 3×)\n",
        human(file),
        human(cat),
        file / cat,
    ));
    Ok(out)
}
