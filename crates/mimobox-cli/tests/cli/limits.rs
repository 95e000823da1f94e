//! Hostile guests through the CLI: each limit, its outcome and status.

use std::time::{Duration, Instant};

use crate::{Cli, fixture, json, stderr, stdout};

#[test]
fn infinite_loop_times_out_with_124() {
    let cli = Cli::new();
    let started = Instant::now();
    let out = cli.run(&["run", "--timeout", "1s", &fixture("loop")]);
    assert_eq!(out.status.code(), Some(124));
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
}

#[test]
fn blocking_sleep_times_out_with_124() {
    let cli = Cli::new();
    let started = Instant::now();
    let out = cli.run(&["run", "--json", "--timeout", "1s", &fixture("sleep")]);
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(json(&out)["outcome"], "timed_out");
    assert!(json(&out)["elapsed_ms"].as_f64().unwrap() >= 990.0, "timers have millisecond granularity");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn memory_bomb_is_a_trap_status() {
    let cli = Cli::new();
    let out = cli.run(&["run", "--json", "--memory", "32MiB", &fixture("membomb")]);
    assert_eq!(out.status.code(), Some(134));
    assert_eq!(json(&out)["outcome"], "memory_limit");
}

#[test]
fn output_flood_is_truncated() {
    let cli = Cli::new();
    let out = cli.run(&["run", "--max-output", "4KiB", &fixture("flood")]);
    assert_eq!(out.status.code(), Some(0), "the guest finishes");
    assert_eq!(out.stdout.len(), 4096);
    assert!(stderr(&out).contains("stdout was truncated"), "{}", stderr(&out));
    let out = cli.run(&["run", "--json", "--max-output", "4KiB", &fixture("flood")]);
    let value = json(&out);
    assert_eq!(value["stdout_truncated"], true);
    assert_eq!(value["stdout"].as_str().unwrap().len(), 4096);
}

#[test]
fn fuel_exhaustion_is_124() {
    let cli = Cli::new();
    let out = cli.run(&["run", "--json", "--fuel", "100000", "--timeout", "60s", &fixture("loop")]);
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(json(&out)["outcome"], "out_of_fuel");
    assert_eq!(json(&out)["fuel_consumed"], 100000);
    assert_eq!(stdout(&cli.run(&["run", "--fuel", "100000", &fixture("loop")])), "");
}
