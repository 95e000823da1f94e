//! The compiled-module cache as the sandbox uses it: miss, hit, corrupt
//! entries and fingerprints.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mimobox_core::{ModuleSource, Outcome, SandboxConfig};
use mimobox_wasm::{ModuleOrigin, WasmSandbox};

use crate::{config_in, request};

fn artifacts(cache: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let modules = cache.join("v1").join("modules");
    for engine in fs::read_dir(&modules).into_iter().flatten() {
        for entry in fs::read_dir(engine.unwrap().path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "cwasm") {
                found.push(path);
            }
        }
    }
    found
}

/// Puts `bytes` at `path` with `mode`, as a process of the same user could.
fn plant(path: &Path, bytes: &[u8], mode: u32) {
    let _ = fs::remove_file(path);
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn prepare(config: SandboxConfig, module: &Path) -> ModuleOrigin {
    WasmSandbox::create(config).unwrap().prepare(&ModuleSource::Path(module.to_owned())).unwrap()
}

#[test]
fn miss_compiles_and_stores_then_a_new_sandbox_hits() {
    let cache = tempfile::tempdir().unwrap();
    let module = mimobox_fixtures::path("hello");
    assert_eq!(prepare(config_in(cache.path()), &module), ModuleOrigin::Compiled);
    let stored = artifacts(cache.path());
    assert_eq!(stored.len(), 1, "{stored:?}");
    let inode = fs::metadata(&stored[0]).unwrap().ino();

    assert_eq!(prepare(config_in(cache.path()), &module), ModuleOrigin::DiskCache);
    assert_eq!(fs::metadata(&stored[0]).unwrap().ino(), inode, "a hit does not rewrite the artifact");
}

#[test]
fn same_sandbox_reuses_the_module_in_memory() {
    let cache = tempfile::tempdir().unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    let source = ModuleSource::Path(mimobox_fixtures::path("hello"));
    assert_eq!(sandbox.prepare(&source).unwrap(), ModuleOrigin::Compiled);
    assert_eq!(sandbox.prepare(&source).unwrap(), ModuleOrigin::Memory);
}

#[test]
fn fuel_and_plain_artifacts_are_cached_apart() {
    let cache = tempfile::tempdir().unwrap();
    let module = mimobox_fixtures::path("hello");
    prepare(config_in(cache.path()), &module);
    let fueled = SandboxConfig { fuel: Some(1000), ..config_in(cache.path()) };
    assert_eq!(prepare(fueled, &module), ModuleOrigin::Compiled, "fuel needs its own artifact");
    assert_eq!(artifacts(cache.path()).len(), 2);
}

#[test]
fn corrupt_entries_are_removed_and_rebuilt() {
    type Corrupt = fn(&[u8]) -> Vec<u8>;
    let corruptions: [(&str, Corrupt); 3] = [
        ("truncated", |good| good[..good.len() / 3].to_vec()),
        ("garbage", |good| vec![0x5a; good.len()]),
        ("empty", |_| Vec::new()),
    ];
    for (what, corrupt) in corruptions {
        let cache = tempfile::tempdir().unwrap();
        let module = mimobox_fixtures::path("hello");
        prepare(config_in(cache.path()), &module);
        let artifact = artifacts(cache.path()).remove(0);
        let good = fs::read(&artifact).unwrap();
        plant(&artifact, &corrupt(&good), 0o400);

        let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
        let result = sandbox.run(request(&module, &[])).unwrap();
        assert_eq!(result.stdout, b"hello, world\n", "{what}: the run still works");
        assert_eq!(fs::read(&artifact).unwrap(), good, "{what}: the entry was rebuilt");
    }
}

#[test]
fn artifact_of_another_engine_is_rejected() {
    let cache = tempfile::tempdir().unwrap();
    let module = mimobox_fixtures::path("hello");
    prepare(config_in(cache.path()), &module);
    let plain = artifacts(cache.path()).remove(0);
    prepare(SandboxConfig { fuel: Some(1000), ..config_in(cache.path()) }, &module);
    // The fuel engine's artifact is the one the second prepare added.
    let fueled = artifacts(cache.path()).into_iter().find(|p| *p != plain).expect("a second artifact");
    let (plain, fueled) = (&plain, &fueled);
    // Plant the fuel engine's artifact where the plain engine looks.
    plant(plain, &fs::read(fueled).unwrap(), 0o400);
    let result = WasmSandbox::create(config_in(cache.path())).unwrap().run(request(&module, &[])).unwrap();
    assert_eq!(result.outcome, Outcome::Exited { code: 0 });
    assert_eq!(result.stdout, b"hello, world\n");
    assert_ne!(fs::read(plain).unwrap(), fs::read(fueled).unwrap(), "the planted artifact was replaced");
}

#[test]
fn module_rewritten_in_place_runs_its_new_code() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("greet.wat");
    let source = fs::read_to_string(mimobox_fixtures::wat_path("hello")).unwrap();
    fs::write(&module, &source).unwrap();
    let mtime = fs::metadata(&module).unwrap().modified().unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    assert_eq!(sandbox.run(request(&module, &[])).unwrap().stdout, b"hello, world\n");

    // Same size, same mtime, same inode: only the content (and ctime) differ.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&module, source.replace("hello, world", "HELLO, WORLD")).unwrap();
    fs::File::options().write(true).open(&module).unwrap().set_modified(mtime).unwrap();
    assert_eq!(sandbox.run(request(&module, &[])).unwrap().stdout, b"HELLO, WORLD\n", "same sandbox");
    let fresh = WasmSandbox::create(config_in(cache.path())).unwrap();
    assert_eq!(fresh.run(request(&module, &[])).unwrap().stdout, b"HELLO, WORLD\n", "new sandbox");
}

#[test]
fn same_size_and_mtime_elsewhere_is_a_different_module() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = fs::read_to_string(mimobox_fixtures::wat_path("hello")).unwrap();
    let (a, b) = (dir.path().join("a.wat"), dir.path().join("b.wat"));
    fs::write(&a, &source).unwrap();
    fs::write(&b, source.replace("hello, world", "other world!")).unwrap();
    let mtime = fs::metadata(&a).unwrap().modified().unwrap();
    fs::File::options().write(true).open(&b).unwrap().set_modified(mtime).unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    assert_eq!(sandbox.run(request(&a, &[])).unwrap().stdout, b"hello, world\n");
    assert_eq!(sandbox.run(request(&b, &[])).unwrap().stdout, b"other world!\n");
}

#[test]
fn untrusted_cache_directory_is_skipped_and_the_run_works() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    fs::set_permissions(cache.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let sandbox = WasmSandbox::create(config_in(cache.path())).unwrap();
    assert!(sandbox.cache().is_none());
    let result = sandbox.run(request(&mimobox_fixtures::path("hello"), &[])).unwrap();
    assert_eq!(result.stdout, b"hello, world\n");
    assert!(artifacts(cache.path()).is_empty(), "nothing is written into an untrusted directory");
}

#[test]
fn disabled_cache_writes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config_in(cache.path());
    config.cache.enabled = false;
    assert_eq!(prepare(config, &mimobox_fixtures::path("hello")), ModuleOrigin::Compiled);
    assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn a_wrong_fingerprint_record_is_caught_by_the_bytes() {
    let cache_dir = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("m.wasm");
    fs::copy(mimobox_fixtures::path("hello"), &module).unwrap();
    let mut cache = mimobox_cache::ModuleCache::open(cache_dir.path()).unwrap();
    cache.set_fingerprint_settle_time(std::time::Duration::ZERO);
    let fingerprint = mimobox_cache::Fingerprint::of(&fs::metadata(&module).unwrap());
    cache.remember(&fingerprint, &mimobox_cache::ContentHash::of(b"some other module"));
    assert!(cache.hash_for(&fingerprint).is_some(), "the wrong record is planted");

    let sandbox = WasmSandbox::create(config_in(cache_dir.path())).unwrap();
    let result = sandbox.run(request(&module, &[])).unwrap();
    assert_eq!(result.stdout, b"hello, world\n", "the bytes, not the record, decide what runs");
}

#[test]
fn artifacts_are_sealed_and_any_other_mode_is_not_mapped() {
    let cache = tempfile::tempdir().unwrap();
    let module = mimobox_fixtures::path("hello");
    prepare(config_in(cache.path()), &module);
    let artifact = artifacts(cache.path()).remove(0);
    assert_eq!(fs::metadata(&artifact).unwrap().mode() & 0o7777, 0o400, "written read-only");

    // A file a guest could make through WASI (which has no chmod) has the
    // process's default mode. Even with the right bytes, it is not mapped:
    // it is replaced.
    let good = fs::read(&artifact).unwrap();
    for mode in [0o644, 0o600, 0o444] {
        plant(&artifact, &good, mode);
        assert_eq!(prepare(config_in(cache.path()), &module), ModuleOrigin::Compiled, "mode {mode:o}");
        assert_eq!(fs::metadata(&artifact).unwrap().mode() & 0o7777, 0o400, "replaced, sealed");
    }
    assert_eq!(prepare(config_in(cache.path()), &module), ModuleOrigin::DiskCache);
}
