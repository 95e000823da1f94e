//! Attacks of a hostile guest on the host, each carried out against the
//! library: escapes through mounts and the cache, and limits that must
//! hold under attack. (The command-line and CPython versions are in the
//! CLI's tests.)

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use mimobox_core::{Mount, Outcome, SandboxConfig, SandboxError};
use mimobox_wasm::WasmSandbox;

use crate::{config_in, request, run_with};

/// WASI errno values.
const EPERM: i32 = 63;
const EINVAL: i32 = 28;

fn mount(host: &Path, guest: &str) -> Mount {
    Mount { host: host.to_owned(), guest: guest.to_owned() }
}

#[test]
fn a_guest_cannot_create_a_symlink_that_leaves_its_mount() {
    let ws = tempfile::tempdir().unwrap();
    let result = run_with("symlink_escape", &[], |c| c.fs_readwrite = vec![mount(ws.path(), "/ws")]);
    assert_eq!(result.outcome, Outcome::Exited { code: EPERM }, "`../..` is refused with EPERM");
    assert_eq!(
        fs::read_link(ws.path().join("down")).unwrap(),
        Path::new("inside/file"),
        "a link inside is made"
    );
    assert!(fs::symlink_metadata(ws.path().join("up")).is_err(), "no link leaves the mount");
    assert!(fs::symlink_metadata(ws.path().join("abs")).is_err(), "no absolute link");
}

#[test]
fn a_planted_symlink_cannot_redirect_a_mount_inside_another() {
    // What a guest of a weaker sandbox (or another process) left behind:
    // `ws/out` is a symlink to the host's root.
    let ws = tempfile::tempdir().unwrap();
    symlink("../../../../../../../../..", ws.path().join("out")).unwrap();
    let mut config = SandboxConfig::default();
    config.cache.enabled = false;
    config.fs_readwrite = vec![mount(ws.path(), "/ws"), mount(&ws.path().join("out"), "/out")];
    let error = WasmSandbox::create(config).map(|_| ()).unwrap_err();
    assert!(matches!(error, SandboxError::Mount { .. }), "{error}");
    assert!(error.to_string().contains("symlink"), "{error}");
}

#[test]
fn mounts_are_resolved_once_so_a_later_swap_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (data, elsewhere) = (root.path().join("data"), root.path().join("elsewhere"));
    fs::create_dir(&data).unwrap();
    fs::create_dir(&elsewhere).unwrap();
    fs::write(data.join("f"), "granted\n").unwrap();
    fs::write(elsewhere.join("f"), "secret\n").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.fs_readonly = vec![mount(&data, "/data")];
    let sandbox = WasmSandbox::create(config).unwrap();
    let module = mimobox_fixtures::path("fs");
    assert_eq!(sandbox.run(request(&module, &["r", "3", "f"])).unwrap().stdout, b"granted\n");

    // Swap the mounted path for a symlink to another directory.
    fs::rename(&data, root.path().join("old")).unwrap();
    symlink(&elsewhere, &data).unwrap();
    let after = sandbox.run(request(&module, &["r", "3", "f"])).unwrap();
    assert_eq!(after.stdout, b"granted\n", "the sandbox keeps the directory it opened");
}

#[test]
fn a_mount_that_overlaps_the_module_cache_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join(".cache").join("mimobox");
    fs::create_dir_all(&cache).unwrap();
    for (host, writable) in
        [(home.path().to_owned(), true), (home.path().to_owned(), false), (cache.clone(), true)]
    {
        let mut config = config_in(&cache);
        let mounted = vec![mount(&host, "/home")];
        if writable {
            config.fs_readwrite = mounted;
        } else {
            config.fs_readonly = mounted;
        }
        let error = WasmSandbox::create(config).map(|_| ()).unwrap_err();
        assert!(error.to_string().contains("cache"), "{}: {error}", host.display());
    }
    // Even a sandbox that does not use the cache may not expose it.
    let mut config = config_in(&cache);
    config.cache.enabled = false;
    config.fs_readwrite = vec![mount(&cache.join("v1"), "/v1").clone()];
    fs::create_dir_all(cache.join("v1")).unwrap();
    assert!(WasmSandbox::create(config).is_err(), "inside the cache");
}

#[test]
fn tables_count_against_the_memory_limit_with_and_without_a_pool() {
    for pool in [0, 1] {
        let result = run_with("tables", &[], |c| {
            c.memory_limit = 1 << 20;
            c.pool.size = pool;
        });
        assert_eq!(result.outcome, Outcome::MemoryLimit, "pool size {pool}");
        assert!(result.memory_limit_hit);
    }
    // With room for them, the same tables are fine.
    let result = run_with("tables", &[], |c| c.memory_limit = 256 << 20);
    assert_eq!(result.outcome, Outcome::Exited { code: 0 });
}

#[test]
fn one_poll_with_half_a_million_subscriptions_is_refused() {
    let result = run_with("poll_bomb", &[], |c| c.memory_limit = 90 << 20);
    assert_eq!(result.outcome, Outcome::Exited { code: EINVAL });
}

#[test]
fn a_module_within_the_instance_limits_runs_in_a_one_slot_pool() {
    let result = run_with("three_memories", &[], |c| c.pool.size = 1);
    assert_eq!(result.outcome, Outcome::Exited { code: 0 });
}

#[test]
fn a_module_beyond_the_instance_limits_is_over_the_memory_limit_and_never_compiled() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.pool.size = 1;
    let sandbox = WasmSandbox::create(config).unwrap();
    let module = mimobox_fixtures::path("seventeen_tables");
    for _ in 0..2 {
        let result = sandbox.run(request(&module, &[])).unwrap();
        assert_eq!(result.outcome, Outcome::MemoryLimit);
        assert!(result.memory_limit_hit);
    }
    let stored: Vec<_> = mimobox_fixtures::files_under(cache.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert!(stored.is_empty(), "nothing compiled or stored: {stored:?}");
}

#[test]
fn a_denied_grow_is_recorded_even_when_the_guest_carries_on() {
    let result = run_with("grow_loop", &[], |c| c.timeout = Duration::from_millis(300));
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert!(result.memory_limit_hit, "the denial is in the result");

    let started = Instant::now();
    let result = run_with("grow_loop", &[], |c| {
        c.timeout = Duration::from_secs(30);
        c.trap_on_memory_limit = true;
    });
    assert_eq!(result.outcome, Outcome::MemoryLimit, "trap_on_memory_limit ends it at once");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn memory_growth_still_fails_softly_by_default() {
    // membomb traps itself once growth fails: the default lets it see -1.
    let result = run_with("membomb", &[], |_| {});
    assert_eq!(result.outcome, Outcome::MemoryLimit);
    assert!(result.memory_limit_hit);
}

#[test]
fn a_fifo_swapped_in_for_the_module_never_hangs_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("m.wasm");
    let (real, fifo) = (dir.path().join("real.wasm"), dir.path().join("fifo"));
    fs::copy(mimobox_fixtures::path("hello"), &real).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    fs::copy(&real, &module).unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, module, fifo) = (stop.clone(), module.clone(), fifo.clone());
        std::thread::spawn(move || {
            // Swap the FIFO in and out under the loader's feet.
            let aside = module.with_extension("aside");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = fs::rename(&module, &aside);
                let _ = fs::rename(&fifo, &module);
                let _ = fs::rename(&module, &fifo);
                let _ = fs::rename(&aside, &module);
            }
        })
    };
    let (done, finished) = std::sync::mpsc::channel();
    let cache = tempfile::tempdir().unwrap();
    let config = config_in(cache.path());
    std::thread::spawn(move || {
        for _ in 0..300 {
            let sandbox = WasmSandbox::create(config.clone()).unwrap();
            let _ = sandbox.prepare(&mimobox_core::ModuleSource::Path(module.clone()));
        }
        let _ = done.send(());
    });
    let result = finished.recv_timeout(Duration::from_secs(60));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(result.is_ok(), "a load hung on a FIFO");
}

#[test]
fn a_write_with_two_billion_buffers_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let result = run_with("iovec_bomb", &[], |c| c.fs_readwrite = vec![mount(dir.path(), "/d")]);
    assert_eq!(result.outcome, Outcome::Exited { code: EINVAL });
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}
