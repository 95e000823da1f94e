//! Sessions through the library, against the counter fixture that
//! implements the turn interface: state between turns, per-turn limits and
//! output, what ends a session, capacity, idle timeout and lifetime.

use std::time::Duration;

use mimobox_core::{ExecRequest, ModuleSource, Outcome, SandboxConfig, SandboxError, Session, TurnRequest};
use mimobox_wasm::{ModuleOrigin, WasmSandbox, WasmSession};

use crate::config_in;

fn open_with(adjust: impl FnOnce(&mut SandboxConfig)) -> (tempfile::TempDir, WasmSandbox, WasmSession) {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    adjust(&mut config);
    let sandbox = WasmSandbox::create(config).unwrap();
    let session = sandbox.open_session(counter()).unwrap();
    (cache, sandbox, session)
}

fn counter() -> ExecRequest {
    ExecRequest {
        module: Some(ModuleSource::Path(mimobox_fixtures::path("counter"))),
        ..ExecRequest::default()
    }
}

fn turn(session: &mut WasmSession, code: &str) -> mimobox_core::TurnResult {
    session.turn(TurnRequest::new(code)).unwrap()
}

#[test]
fn state_survives_between_turns_and_output_is_per_turn() {
    let (_cache, _sandbox, mut session) = open_with(|_| {});
    for expected in 1..=3 {
        let result = turn(&mut session, "i");
        assert_eq!(result.turn, expected);
        assert!(result.alive);
        assert_eq!(result.result.outcome, Outcome::Exited { code: 0 });
        assert_eq!(result.result.stdout, format!("{expected}\n").into_bytes(), "only this turn's output");
    }
    assert_eq!(turn(&mut session, "p").result.stdout, b"3\n");
}

#[test]
fn an_error_in_a_turn_is_status_1_and_the_session_goes_on() {
    let (_cache, _sandbox, mut session) = open_with(|_| {});
    turn(&mut session, "i");
    let failed = turn(&mut session, "e");
    assert_eq!(failed.result.outcome, Outcome::Exited { code: 1 });
    assert_eq!(failed.result.stderr, b"error\n");
    assert!(failed.alive);
    assert_eq!(turn(&mut session, "p").result.stdout, b"1\n");
}

#[test]
fn exit_ends_the_session() {
    let (_cache, _sandbox, mut session) = open_with(|_| {});
    let result = turn(&mut session, "x");
    assert_eq!(result.result.outcome, Outcome::Exited { code: 0 });
    assert!(!result.alive);
    assert!(!session.alive());
    assert!(matches!(session.turn(TurnRequest::new("p")), Err(SandboxError::SessionEnded { .. })));
}

#[test]
fn a_timeout_trap_memory_limit_or_fuel_ends_the_session() {
    type Case = (&'static str, Outcome, fn(&mut SandboxConfig));
    let cases: [Case; 4] = [
        ("l", Outcome::TimedOut, |c| c.timeout = Duration::from_millis(200)),
        ("t", Outcome::Trap { message: String::new() }, |_| {}),
        ("m", Outcome::MemoryLimit, |c| c.memory_limit = 8 << 20),
        ("l", Outcome::OutOfFuel, |c| c.fuel = Some(1_000_000)),
    ];
    for (code, expected, adjust) in cases {
        let (_cache, _sandbox, mut session) = open_with(adjust);
        assert!(turn(&mut session, "i").alive);
        let result = turn(&mut session, code);
        assert_eq!(result.result.outcome.name(), expected.name(), "{code}: {:?}", result.result.outcome);
        assert!(!result.alive, "{code}");
        assert!(session.turn(TurnRequest::new("p")).is_err(), "{code}: no turn after the end");
    }
}

#[test]
fn limits_are_per_turn_for_time_fuel_and_output() {
    let (_cache, _sandbox, mut session) = open_with(|c| {
        c.max_stdout = 100 << 10;
        c.fuel = Some(50_000_000);
    });
    for _ in 0..3 {
        let flood = turn(&mut session, "f");
        assert!(flood.alive);
        assert_eq!(flood.result.stdout.len(), 100 << 10, "each turn has the whole cap");
        assert!(flood.result.stdout_truncated);
        assert!(flood.result.fuel_consumed.unwrap() < 50_000_000, "each turn has the whole budget");
    }
    let quiet = turn(&mut session, "p");
    assert!(!quiet.result.stdout_truncated);
}

#[test]
fn sessions_beyond_the_pool_wait_then_fail_clearly() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.pool.size = 2;
    config.session.open_timeout = Duration::from_millis(300);
    let sandbox = WasmSandbox::create(config).unwrap();
    let first = sandbox.open_session(counter()).unwrap();
    let _second = sandbox.open_session(counter()).unwrap();
    let error = sandbox.open_session(counter()).unwrap_err();
    assert!(matches!(error, SandboxError::SessionCapacity { slots: 2, .. }), "{error}");
    // Closing one makes room.
    first.close();
    let mut third = sandbox.open_session(counter()).unwrap();
    assert_eq!(turn(&mut third, "i").result.stdout, b"1\n");
}

#[test]
fn sessions_move_between_threads_and_run_at_once() {
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    let sessions: Vec<_> = (0..4).map(|_| sandbox.open_session(counter()).unwrap()).collect();
    let handles: Vec<_> = sessions
        .into_iter()
        .map(|mut session| {
            std::thread::spawn(move || {
                for _ in 0..50 {
                    turn(&mut session, "i");
                }
                turn(&mut session, "p").result.stdout
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), b"50\n");
    }
}

#[test]
fn idle_and_lifetime_close_a_session() {
    let (_cache, _sandbox, mut session) = open_with(|c| c.session.idle_timeout = Duration::from_secs(1));
    turn(&mut session, "i");
    std::thread::sleep(Duration::from_millis(1200));
    let error = session.turn(TurnRequest::new("p")).unwrap_err();
    assert!(error.to_string().contains("idle"), "{error}");

    let (_cache, _sandbox, mut session) = open_with(|c| c.session.lifetime = Duration::from_secs(1));
    turn(&mut session, "i");
    // A turn's deadline never reaches past the lifetime.
    let result = turn(&mut session, "l");
    assert_eq!(result.result.outcome, Outcome::TimedOut);
    assert!(result.result.elapsed < Duration::from_secs(5));
}

#[test]
fn fork_and_checkpoint_refuse_a_session_past_its_idle_timeout_or_lifetime() {
    let idle = Duration::from_secs(1);
    let (_cache, _sandbox, mut session) = open_with(|c| c.session.idle_timeout = idle);
    turn(&mut session, "i");
    let due = session.closes_at();
    assert!(due <= std::time::Instant::now() + idle, "due at its idle timeout");
    std::thread::sleep(idle + Duration::from_millis(200));
    assert!(session.expired().unwrap().contains("session.idle_timeout_secs"));
    let forked = session.fork(ExecRequest::default()).unwrap_err();
    assert!(matches!(forked, SandboxError::SessionEnded { .. }), "{forked}");
    assert!(matches!(session.checkpoint().unwrap_err(), SandboxError::SessionEnded { .. }));
    assert!(!session.alive());

    let life = Duration::from_secs(1);
    let (_cache, _sandbox, mut session) = open_with(|c| c.session.lifetime = life);
    turn(&mut session, "i");
    std::thread::sleep(life + Duration::from_millis(200));
    assert!(session.expired().unwrap().contains("session.lifetime_secs"));
    let checkpoint = session.checkpoint().unwrap_err();
    assert!(checkpoint.to_string().contains("lifetime"), "{checkpoint}");
    assert!(matches!(session.fork(ExecRequest::default()).unwrap_err(), SandboxError::SessionEnded { .. }));
}

#[test]
fn a_module_without_the_turn_interface_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    let request = ExecRequest {
        module: Some(ModuleSource::Path(mimobox_fixtures::path("hello"))),
        ..ExecRequest::default()
    };
    let compiles = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = compiles.clone();
    sandbox.on_compile(move |event| {
        if matches!(event, mimobox_wasm::CompileEvent::Started { .. }) {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let error = sandbox.open_session(request).unwrap_err();
    assert!(error.to_string().contains("not a session guest"), "{error}");
    assert_eq!(compiles.load(std::sync::atomic::Ordering::SeqCst), 0, "it was compiled first");
}

#[test]
fn a_checkpoint_carries_the_state_into_sessions_opened_from_it() {
    let (_cache, sandbox, mut session) = open_with(|_| {});
    for _ in 0..3 {
        turn(&mut session, "i");
    }
    let checkpoint = session.checkpoint().unwrap();
    assert!(checkpoint.module().starts_with(b"\0asm"));
    // The checkpointed session goes on by itself.
    assert_eq!(turn(&mut session, "i").result.stdout, b"4\n");

    // Two sessions from the checkpoint: each starts at 3, and neither
    // runs `_initialize` again (the counter traps if it does).
    let mut first = sandbox.open_session_from(&checkpoint, ExecRequest::default()).unwrap();
    let mut second = sandbox.open_session_from(&checkpoint, ExecRequest::default()).unwrap();
    let result = turn(&mut first, "i");
    assert_eq!((result.turn, result.result.stdout.as_slice()), (1, &b"4\n"[..]));
    assert_eq!(turn(&mut first, "i").result.stdout, b"5\n");
    assert_eq!(turn(&mut second, "p").result.stdout, b"3\n");
    assert_eq!(turn(&mut session, "p").result.stdout, b"4\n");

    // A checkpoint of a session opened from a checkpoint works the same.
    let again = first.checkpoint().unwrap();
    let mut third = sandbox.open_session_from(&again, ExecRequest::default()).unwrap();
    assert_eq!(turn(&mut third, "p").result.stdout, b"5\n");

    // Its module, kept as bytes (on disk, say), is a checkpoint again, in
    // another sandbox too.
    let kept: std::sync::Arc<[u8]> = again.module().to_vec().into();
    let other = WasmSandbox::create(sandbox.config().clone()).unwrap();
    let loaded = mimobox_wasm::Checkpoint::from_module("kept", kept);
    assert_eq!(
        turn(&mut other.open_session_from(&loaded, ExecRequest::default()).unwrap(), "p").result.stdout,
        b"5\n"
    );
}

#[test]
fn a_fork_starts_from_the_current_state_and_then_goes_its_own_way() {
    let (_cache, _sandbox, mut session) = open_with(|_| {});
    turn(&mut session, "i");
    turn(&mut session, "i");
    let mut fork = session.fork(ExecRequest::default()).unwrap();
    assert_eq!(turn(&mut fork, "i").result.stdout, b"3\n");
    assert_eq!(turn(&mut fork, "i").result.stdout, b"4\n");
    assert_eq!(turn(&mut session, "p").result.stdout, b"2\n", "the original is untouched");
    let mut grandchild = fork.fork(ExecRequest::default()).unwrap();
    assert_eq!(turn(&mut grandchild, "p").result.stdout, b"4\n");
    // A fork of a session that has taken no turn still initialises once.
    let (_cache, _sandbox, mut fresh) = open_with(|_| {});
    let mut fork = fresh.fork(ExecRequest::default()).unwrap();
    assert_eq!(turn(&mut fork, "i").result.stdout, b"1\n");
}

#[test]
fn a_session_that_has_ended_cannot_be_checkpointed_or_forked() {
    let (_cache, _sandbox, mut session) = open_with(|_| {});
    turn(&mut session, "t");
    assert!(matches!(session.checkpoint(), Err(SandboxError::SessionEnded { .. })));
    assert!(matches!(session.fork(ExecRequest::default()), Err(SandboxError::SessionEnded { .. })));
}

#[test]
fn the_restore_turn_sees_the_new_sessions_arguments_and_environment() {
    // The counter's code is one command letter: a restore template that
    // expands to a command shows that it ran; one that fails, that a
    // failing restore refuses the open.
    let (_cache, sandbox, mut session) =
        open_with(|config| config.session.restore = Some("i {{argv}}".into()));
    turn(&mut session, "i");
    let checkpoint = session.checkpoint().unwrap();
    let mut restored = sandbox.open_session_from(&checkpoint, ExecRequest::default()).unwrap();
    let first = turn(&mut restored, "p");
    assert_eq!(first.turn, 1, "the restore turn is not counted");
    assert_eq!(first.result.stdout, b"2\n", "the restore turn ran once");

    let (_cache, sandbox, mut session) = open_with(|config| config.session.restore = Some("e{{env}}".into()));
    let checkpoint = session.checkpoint().unwrap();
    let error = sandbox.open_session_from(&checkpoint, ExecRequest::default()).unwrap_err();
    assert!(matches!(error, SandboxError::HiddenTurnFailed { .. }), "{error}");
    assert!(error.to_string().contains("session.restore"), "{error}");
    assert!(session.fork(ExecRequest::default()).is_err());
}

#[test]
fn every_session_of_a_preloaded_config_starts_from_the_preload() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.session.preload = Some("i".into());
    let sandbox = WasmSandbox::create(config.clone()).unwrap();
    let mut first = sandbox.open_session(counter()).unwrap();
    let mut second = sandbox.open_session(counter()).unwrap();
    let result = turn(&mut first, "i");
    assert_eq!((result.turn, result.result.stdout.as_slice()), (1, &b"2\n"[..]));
    assert_eq!(turn(&mut second, "p").result.stdout, b"1\n");

    // Another sandbox (another process, say) finds the checkpoint in the
    // disk cache rather than running the preload again.
    let again = WasmSandbox::create(config).unwrap();
    assert_eq!(again.prepare_sessions(&counter().module.unwrap()).unwrap(), ModuleOrigin::DiskCache);
    assert_eq!(turn(&mut again.open_session(counter()).unwrap(), "p").result.stdout, b"1\n");
}

#[test]
fn a_preload_that_fails_is_an_error_naming_the_key() {
    let (_cache, sandbox, _) = open_with(|_| {});
    let mut config = sandbox.config().clone();
    config.session.preload = Some("e".into());
    let sandbox = WasmSandbox::create(config).unwrap();
    let error = sandbox.open_session(counter()).unwrap_err();
    assert!(matches!(error, SandboxError::HiddenTurnFailed { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("session.preload") && message.contains("status 1") && message.contains("error"),
        "{message}"
    );
}

#[test]
fn sandboxes_starting_at_once_on_a_cold_cache_run_the_preload_once() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.session.preload = Some("i".into());
    let preloads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (config, preloads) = (config.clone(), preloads.clone());
            std::thread::spawn(move || {
                // Each sandbox has its own loader, as each process would.
                let sandbox = WasmSandbox::create(config).unwrap();
                sandbox.on_compile(move |event| {
                    if matches!(event, mimobox_wasm::CompileEvent::Preloading { .. }) {
                        preloads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
                let mut session = sandbox.open_session(counter()).unwrap();
                turn(&mut session, "p").result.stdout
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), b"1\n");
    }
    assert_eq!(preloads.load(std::sync::atomic::Ordering::SeqCst), 1, "the preload ran more than once");
}

#[test]
fn a_checkpoint_over_max_module_size_is_refused_before_it_is_compiled() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    // The preload fills 16 MiB of memory: its checkpoint holds it as data.
    config.session.preload = Some("g".into());
    config.max_module_size = 8 << 20;
    let sandbox = WasmSandbox::create(config.clone()).unwrap();
    let error = sandbox.open_session(counter()).unwrap_err();
    assert!(matches!(error, SandboxError::CheckpointTooLarge { limit, .. } if limit == 8 << 20), "{error}");
    assert!(error.to_string().contains("max_module_size"), "{error}");
    let stored: u64 = mimobox_fixtures::files_under(cache.path())
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .max()
        .unwrap_or(0);
    assert!(stored < 8 << 20, "a {stored}-byte file was written into the cache");

    // Under the size bound, the compile memory budget still holds for it.
    config.max_module_size = 64 << 20;
    config.max_compile_memory = Some(60 << 20);
    let error = WasmSandbox::create(config).unwrap().open_session(counter()).unwrap_err();
    assert!(matches!(error, SandboxError::CompileMemory { .. }), "{error}");
}

#[test]
fn a_checkpoint_is_never_reused_after_what_its_preload_read_has_changed() {
    let cache = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("data.txt"), "tenant a\n").unwrap();
    let mut config = config_in(cache.path());
    config.fs_readonly =
        vec![mimobox_core::Mount::parse(&format!("{}::/data", data.path().display())).unwrap()];
    // The preload reads the mounted file into memory; the checkpoint keeps it.
    config.session.preload = Some("r".into());
    let sandbox = WasmSandbox::create(config.clone()).unwrap();
    assert_eq!(turn(&mut sandbox.open_session(counter()).unwrap(), "P").result.stdout, b"tenant a\n");

    // The file is replaced (same size, a new inode), then rewritten in
    // place: new sessions, in this sandbox and in a new one, see each.
    std::fs::write(data.path().join("next.txt"), "tenant b\n").unwrap();
    std::fs::rename(data.path().join("next.txt"), data.path().join("data.txt")).unwrap();
    assert_eq!(turn(&mut sandbox.open_session(counter()).unwrap(), "P").result.stdout, b"tenant b\n");
    // Timestamps move in the kernel's ticks (a few ms): let one pass, as
    // any rewrite a moment after a session opened would.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(data.path().join("data.txt"), "tenant c\n").unwrap();
    let fresh = WasmSandbox::create(config).unwrap();
    assert_eq!(turn(&mut fresh.open_session(counter()).unwrap(), "P").result.stdout, b"tenant c\n");
    assert_eq!(turn(&mut sandbox.open_session(counter()).unwrap(), "P").result.stdout, b"tenant c\n");
}

#[test]
fn closing_calls_the_guests_shutdown_only_when_the_config_asks() {
    // `s` makes the counter's `shutdown` loop until its bound (5 s) ends
    // it: a close that calls it takes that long, one that does not is
    // immediate.
    for (asked, shortest, longest) in [
        (false, Duration::ZERO, Duration::from_secs(2)),
        (true, Duration::from_secs(4), Duration::from_secs(30)),
    ] {
        let (_cache, _sandbox, mut session) = open_with(|c| c.session.shutdown = asked);
        turn(&mut session, "s");
        let started = std::time::Instant::now();
        session.close();
        let took = started.elapsed();
        assert!(took >= shortest && took < longest, "session.shutdown = {asked}: closing took {took:?}");
    }
}
