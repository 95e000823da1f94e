//! The host's metrics: counters, gauges and a turn-latency histogram, in
//! atomics (nothing on the turn path takes a lock for them), rendered in
//! the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The upper bounds of the turn-latency histogram's buckets, in seconds.
pub const TURN_SECONDS_BUCKETS: [f64; 14] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// The outcomes a turn is counted under (`Outcome::name`), plus `error`
/// for a turn the backend refused.
pub const TURN_OUTCOMES: [&str; 8] =
    ["exited", "timed_out", "fuel_exhausted", "memory_limit", "trap", "output_limit", "error", "other"];

/// Why sessions close, as counted.
pub const CLOSE_REASONS: [&str; 6] = ["client", "idle", "lifetime", "ended", "shutdown", "failed"];

/// Live counts of what the host does.
#[derive(Default)]
pub struct Metrics {
    pub(crate) opened: AtomicU64,
    pub(crate) closed: [AtomicU64; CLOSE_REASONS.len()],
    pub(crate) turns: [AtomicU64; TURN_OUTCOMES.len()],
    pub(crate) turn_buckets: [AtomicU64; TURN_SECONDS_BUCKETS.len()],
    pub(crate) turn_nanos: AtomicU64,
    pub(crate) pauses: AtomicU64,
    pub(crate) pause_failures: AtomicU64,
    pub(crate) resumes: AtomicU64,
    pub(crate) resume_failures: AtomicU64,
    pub(crate) refused: [AtomicU64; 5],
    /// Turns sent again under their idempotency key, answered from the
    /// record (or refused) rather than run again.
    pub(crate) replayed: AtomicU64,
}

/// The refusals counted, by reason.
pub(crate) const REFUSALS: [&str; 5] = ["sessions", "running_turns", "memory", "busy", "shutting_down"];

/// What the host holds now, beside the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Sessions with a live instance.
    pub live: u64,
    /// Sessions paused to storage.
    pub paused: u64,
    /// Sessions opened ahead of demand, not yet anyone's
    /// ([`crate::HostConfig::ready_sessions`]).
    pub ready: u64,
    /// Turns running now.
    pub running_turns: u64,
    /// Bytes of memory live sessions hold, as last measured.
    pub memory: u64,
}

impl Metrics {
    pub(crate) fn close(&self, reason: &str) {
        if let Some(i) = CLOSE_REASONS.iter().position(|r| *r == reason) {
            self.closed[i].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn refuse(&self, reason: &str) {
        if let Some(i) = REFUSALS.iter().position(|r| *r == reason) {
            self.refused[i].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn turn(&self, outcome: &str, took: Duration) {
        let i = TURN_OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(TURN_OUTCOMES.len() - 1);
        self.turns[i].fetch_add(1, Relaxed);
        let seconds = took.as_secs_f64();
        if let Some(b) = TURN_SECONDS_BUCKETS.iter().position(|le| seconds <= *le) {
            self.turn_buckets[b].fetch_add(1, Relaxed);
        }
        self.turn_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Turns counted under `outcome` (one of [`TURN_OUTCOMES`]).
    pub fn turns(&self, outcome: &str) -> u64 {
        TURN_OUTCOMES.iter().position(|o| *o == outcome).map_or(0, |i| self.turns[i].load(Relaxed))
    }

    /// Sessions closed for `reason` (one of [`CLOSE_REASONS`]).
    pub fn closed(&self, reason: &str) -> u64 {
        CLOSE_REASONS.iter().position(|r| *r == reason).map_or(0, |i| self.closed[i].load(Relaxed))
    }

    /// Sessions opened.
    pub fn opened(&self) -> u64 {
        self.opened.load(Relaxed)
    }

    /// Sessions paused to storage, and pauses that failed.
    pub fn pauses(&self) -> (u64, u64) {
        (self.pauses.load(Relaxed), self.pause_failures.load(Relaxed))
    }

    /// Turns sent again under their idempotency key and not run again.
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Relaxed)
    }

    /// Sessions resumed from storage, and resumes that failed.
    pub fn resumes(&self) -> (u64, u64) {
        (self.resumes.load(Relaxed), self.resume_failures.load(Relaxed))
    }

    /// The metrics in the Prometheus text exposition format (0.0.4), with
    /// `gauges` for what the host holds now.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::new();
        family(&mut out, "mimobox_sessions", "gauge", "Sessions the host holds, by state.");
        let _ = writeln!(out, "mimobox_sessions{{state=\"live\"}} {}", gauges.live);
        let _ = writeln!(out, "mimobox_sessions{{state=\"paused\"}} {}", gauges.paused);
        let _ = writeln!(out, "mimobox_sessions{{state=\"ready\"}} {}", gauges.ready);
        family(&mut out, "mimobox_session_memory_bytes", "gauge", "Memory live sessions hold.");
        let _ = writeln!(out, "mimobox_session_memory_bytes {}", gauges.memory);
        family(&mut out, "mimobox_turns_running", "gauge", "Turns running now.");
        let _ = writeln!(out, "mimobox_turns_running {}", gauges.running_turns);
        family(&mut out, "mimobox_sessions_opened_total", "counter", "Sessions opened.");
        let _ = writeln!(out, "mimobox_sessions_opened_total {}", self.opened.load(Relaxed));
        family(&mut out, "mimobox_sessions_closed_total", "counter", "Sessions closed, by reason.");
        for (reason, count) in CLOSE_REASONS.iter().zip(&self.closed) {
            let _ =
                writeln!(out, "mimobox_sessions_closed_total{{reason=\"{reason}\"}} {}", count.load(Relaxed));
        }
        family(&mut out, "mimobox_turns_total", "counter", "Turns run, by outcome.");
        for (outcome, count) in TURN_OUTCOMES.iter().zip(&self.turns) {
            let _ = writeln!(out, "mimobox_turns_total{{outcome=\"{outcome}\"}} {}", count.load(Relaxed));
        }
        family(&mut out, "mimobox_turn_seconds", "histogram", "Time a turn took, as the host saw it.");
        let mut cumulative = 0;
        for (le, count) in TURN_SECONDS_BUCKETS.iter().zip(&self.turn_buckets) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(out, "mimobox_turn_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let total: u64 = self.turns.iter().map(|c| c.load(Relaxed)).sum();
        let _ = writeln!(out, "mimobox_turn_seconds_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "mimobox_turn_seconds_sum {}", self.turn_nanos.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "mimobox_turn_seconds_count {total}");
        family(&mut out, "mimobox_pauses_total", "counter", "Sessions paused to storage, by result.");
        let _ = writeln!(out, "mimobox_pauses_total{{result=\"ok\"}} {}", self.pauses.load(Relaxed));
        let _ =
            writeln!(out, "mimobox_pauses_total{{result=\"failed\"}} {}", self.pause_failures.load(Relaxed));
        family(&mut out, "mimobox_resumes_total", "counter", "Sessions resumed from storage, by result.");
        let _ = writeln!(out, "mimobox_resumes_total{{result=\"ok\"}} {}", self.resumes.load(Relaxed));
        let _ = writeln!(
            out,
            "mimobox_resumes_total{{result=\"failed\"}} {}",
            self.resume_failures.load(Relaxed)
        );
        family(
            &mut out,
            "mimobox_turns_replayed_total",
            "counter",
            "Turns sent again under their idempotency key, not run again.",
        );
        let _ = writeln!(out, "mimobox_turns_replayed_total {}", self.replayed.load(Relaxed));
        family(&mut out, "mimobox_refusals_total", "counter", "Calls refused, by reason.");
        for (reason, count) in REFUSALS.iter().zip(&self.refused) {
            let _ = writeln!(out, "mimobox_refusals_total{{reason=\"{reason}\"}} {}", count.load(Relaxed));
        }
        out
    }
}

/// Writes a metric family's `HELP` and `TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
