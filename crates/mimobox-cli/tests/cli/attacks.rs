//! Attacks on the `mimobox` process itself, each carried out: a reader that
//! never reads, a log flood, a compile bomb, a huge stdin, a mount over the
//! cache.

use std::process::Stdio;
use std::time::Duration;

use crate::{Cli, fixture, json, stderr, wait_bounded};

#[test]
fn a_stdout_nobody_reads_cannot_defeat_the_timeout() {
    let cli = Cli::new();
    // A pipe whose reading end stays open and unread: writes to it block
    // once its buffer is full.
    let (reader, writer) = std::io::pipe().unwrap();
    let child = cli
        .command(&["run", "--timeout", "1s", "--max-output", "100MiB", &fixture("spew")])
        .stdout(writer)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (code, _) = wait_bounded(child, Duration::from_secs(15));
    drop(reader);
    assert_eq!(code, Some(124), "timed out on time, and exited");
}

#[test]
fn guest_triggered_runtime_warnings_do_not_reach_stderr() {
    let cli = Cli::new();
    let out = cli.run(&["run", "--max-output", "1KiB", &fixture("sock_flood")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.len() < 1024, "{} bytes on stderr", out.stderr.len());
}

#[test]
fn a_compile_bomb_is_refused_before_it_takes_memory() {
    let cli = Cli::new();
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    // Type section: one type, () -> ().
    module.extend([1, 4, 1, 0x60, 0, 0]);
    let functions: u32 = 300_000;
    // Function section: every function has type 0.
    let mut body = leb(functions);
    body.extend(std::iter::repeat_n(0u8, functions as usize));
    section(&mut module, 3, &body);
    // Export `_start` (function 0), so only the compile is in question.
    section(&mut module, 7, &[1, 6, b'_', b's', b't', b'a', b'r', b't', 0, 0]);
    // Code section: empty bodies (size 2: no locals, `end`).
    let mut code = leb(functions);
    for _ in 0..functions {
        code.extend([2, 0, 0x0b]);
    }
    section(&mut module, 10, &code);
    std::fs::write(cli.path().join("bomb.wasm"), &module).unwrap();

    let child = cli
        .command(&["run", "--memory", "64MiB", "bomb.wasm"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, peak_kib) = wait_bounded(child, Duration::from_secs(120));
    assert_eq!(code, Some(2), "refused as mimobox's own error");
    assert!(peak_kib < 768 * 1024, "peak RSS {peak_kib} KiB");
    let out = cli.run(&["run", "bomb.wasm"]);
    let message = stderr(&out);
    assert!(message.contains("max_compile_memory") && message.contains("300000 functions"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

fn leb(mut n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn section(module: &mut Vec<u8>, id: u8, body: &[u8]) {
    module.push(id);
    module.extend(leb(body.len() as u32));
    module.extend_from_slice(body);
}

#[test]
fn stdin_from_a_file_is_streamed_not_read_whole() {
    let cli = Cli::new();
    let input = std::fs::File::create(cli.path().join("huge")).unwrap();
    input.set_len(1 << 30).unwrap();
    let child = cli
        .command(&["run", "--stdin", "huge", &fixture("hello")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (code, peak_kib) = wait_bounded(child, Duration::from_secs(60));
    assert_eq!(code, Some(0));
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB for a guest that never reads stdin");
}

#[test]
fn mounting_a_directory_that_holds_the_cache_is_refused() {
    let cli = Cli::new();
    // The CLI's cache lives in its temp directory, as ~/.cache does in ~.
    std::fs::create_dir_all(cli.cache()).unwrap();
    let home = format!("{}::/home", cli.path().display());
    for flag in ["--dir", "--ro-dir"] {
        let out = cli.run(&["run", flag, &home, &fixture("hello")]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let message = stderr(&out);
        assert!(message.contains("module cache") && message.lines().count() == 1, "{message}");
    }
}

#[test]
fn json_records_memory_denials_and_trap_on_memory_limit_ends_the_run() {
    let cli = Cli::new();
    let out = cli.run(&["run", "--json", "--timeout", "500ms", &fixture("grow_loop")]);
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(json(&out)["memory_limit_hit"], true);
    let out = cli.run(&["run", "--json", "--trap-on-memory-limit", &fixture("grow_loop")]);
    assert_eq!(out.status.code(), Some(134));
    assert_eq!(json(&out)["outcome"], "memory_limit");
}

#[test]
fn instance_limits_agree_with_the_one_slot_pool() {
    let cli = Cli::new();
    let out = cli.run(&["run", &fixture("three_memories")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = cli.run(&["run", "--json", &fixture("seventeen_tables")]);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    assert_eq!(json(&out)["outcome"], "memory_limit");
}
