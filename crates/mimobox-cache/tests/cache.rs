//! The cache through its public API: keys, fingerprints, atomic writes and
//! the trust rules of its directory.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use mimobox_cache::{CacheError, ContentHash, EngineId, Fingerprint, ModuleCache};

fn engine() -> EngineId {
    EngineId::from_parts(&["test-engine", "fuel=off"])
}

fn open(dir: &Path) -> ModuleCache {
    let mut cache = ModuleCache::open(dir).expect("open cache");
    cache.set_fingerprint_settle_time(Duration::ZERO);
    cache
}

fn set_mtime(path: &Path, when: SystemTime) {
    fs::File::options().write(true).open(path).unwrap().set_modified(when).unwrap();
}

#[test]
fn miss_then_hit() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(&tmp.path().join("cache"));
    let key = ContentHash::of(b"module bytes");
    assert!(cache.artifact(&engine(), &key).is_none(), "empty cache must miss");
    let path = cache.store(&engine(), &key, b"artifact").unwrap();
    let hit = cache.artifact(&engine(), &key).expect("stored entry must hit");
    assert_eq!(hit.path, path);
    assert_eq!(fs::read(&path).unwrap(), b"artifact");
}

#[test]
fn another_engine_never_sees_the_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(tmp.path());
    let key = ContentHash::of(b"module bytes");
    cache.store(&engine(), &key, b"artifact").unwrap();
    let other = EngineId::from_parts(&["test-engine", "fuel=on"]);
    assert!(cache.artifact(&other, &key).is_none());
}

#[test]
fn store_leaves_no_temp_files_and_overwrites_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(tmp.path());
    let key = ContentHash::of(b"m");
    cache.store(&engine(), &key, b"first").unwrap();
    let path = cache.store(&engine(), &key, b"second").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"second");
    let names: Vec<_> =
        fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "only the artifact remains: {names:?}");
}

#[test]
fn concurrent_writers_leave_one_valid_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(tmp.path());
    let key = ContentHash::of(b"m");
    let payload = vec![7u8; 1 << 20];
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| cache.store(&engine(), &key, &payload).unwrap());
        }
    });
    let hit = cache.artifact(&engine(), &key).unwrap();
    assert_eq!(fs::read(&hit.path).unwrap(), payload);
    assert_eq!(fs::read_dir(hit.path.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn discard_removes_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(tmp.path());
    let key = ContentHash::of(b"m");
    cache.store(&engine(), &key, b"garbage").unwrap();
    cache.discard(&engine(), &key);
    assert!(cache.artifact(&engine(), &key).is_none());
}

#[test]
fn fingerprint_maps_an_unchanged_file_to_its_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(&tmp.path().join("cache"));
    let module = tmp.path().join("m.wasm");
    fs::write(&module, b"contents").unwrap();
    let fp = Fingerprint::of(&fs::metadata(&module).unwrap());
    assert_eq!(cache.hash_for(&fp), None);
    let hash = ContentHash::of(b"contents");
    cache.remember(&fp, &hash);
    assert_eq!(cache.hash_for(&Fingerprint::of(&fs::metadata(&module).unwrap())), Some(hash));
}

#[test]
fn same_size_and_mtime_in_another_place_is_another_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(&tmp.path().join("cache"));
    let (a, b) = (tmp.path().join("a.wasm"), tmp.path().join("b.wasm"));
    fs::write(&a, b"aaaa").unwrap();
    fs::write(&b, b"bbbb").unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    set_mtime(&a, when);
    set_mtime(&b, when);
    let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
    assert_eq!((ma.len(), ma.mtime()), (mb.len(), mb.mtime()));
    cache.remember(&Fingerprint::of(&ma), &ContentHash::of(b"aaaa"));
    assert_ne!(Fingerprint::of(&ma), Fingerprint::of(&mb));
    assert_eq!(cache.hash_for(&Fingerprint::of(&mb)), None, "b must not inherit a's hash");
}

#[test]
fn rewrite_in_place_with_restored_size_and_mtime_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(&tmp.path().join("cache"));
    let module = tmp.path().join("m.wasm");
    fs::write(&module, b"version 1").unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    set_mtime(&module, when);
    let before = fs::metadata(&module).unwrap();
    cache.remember(&Fingerprint::of(&before), &ContentHash::of(b"version 1"));

    // Wait out the change-time clock's granularity, rewrite the same inode
    // with content of the same size, and put the mtime back.
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&module, b"version 2").unwrap();
    set_mtime(&module, when);
    let after = fs::metadata(&module).unwrap();
    assert_eq!(
        (before.ino(), before.len(), before.mtime_nsec()),
        (after.ino(), after.len(), after.mtime_nsec())
    );
    assert_ne!(Fingerprint::of(&before), Fingerprint::of(&after));
    assert_eq!(cache.hash_for(&Fingerprint::of(&after)), None);
}

#[test]
fn fingerprint_of_a_fresh_file_is_not_recorded_until_it_settles() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cache = ModuleCache::open(&tmp.path().join("cache")).unwrap();
    cache.set_fingerprint_settle_time(Duration::from_secs(3600));
    let module = tmp.path().join("m.wasm");
    fs::write(&module, b"contents").unwrap();
    let fp = Fingerprint::of(&fs::metadata(&module).unwrap());
    cache.remember(&fp, &ContentHash::of(b"contents"));
    assert_eq!(cache.hash_for(&fp), None);
}

#[test]
fn new_cache_directory_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("cache");
    open(&dir);
    assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn group_or_world_writable_directory_is_refused() {
    for mode in [0o770, 0o707, 0o777] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
        match ModuleCache::open(&dir) {
            Err(CacheError::Insecure { reason, .. }) => assert!(reason.contains("writable"), "{reason}"),
            other => panic!("mode {mode:o} must be refused, got {other:?}"),
        }
    }
}

#[test]
fn directory_owned_by_someone_else_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    // As root, give the directory away; as anyone else, use a directory
    // that root owns.
    let dir = if std::os::unix::fs::chown(&dir, Some(12345), Some(12345)).is_ok() {
        dir
    } else {
        Path::new("/").to_owned()
    };
    match ModuleCache::open(&dir) {
        Err(CacheError::Insecure { reason, .. }) => assert!(reason.contains("owned by uid"), "{reason}"),
        other => panic!("a foreign directory must be refused, got {other:?}"),
    }
}

#[test]
fn symlinks_inside_the_cache_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let cache = open(&dir);
    let key = ContentHash::of(b"m");
    let elsewhere = tmp.path().join("planted.cwasm");
    fs::write(&elsewhere, b"planted").unwrap();
    let path = cache.artifact_path(&engine(), &key);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert!(cache.artifact(&engine(), &key).is_none(), "a symlinked artifact must not be used");
    assert!(fs::symlink_metadata(&path).is_err(), "and it is removed");
    assert_eq!(fs::read(&elsewhere).unwrap(), b"planted", "its target is left alone");

    // A symlinked subdirectory makes the whole cache untrusted.
    let fingerprints = dir.join("v1").join("fingerprints");
    fs::remove_dir_all(&fingerprints).unwrap();
    std::os::unix::fs::symlink(tmp.path(), &fingerprints).unwrap();
    let opened = ModuleCache::open(&dir);
    assert!(matches!(opened, Err(CacheError::Insecure { .. })), "{opened:?}");
}

#[test]
fn artifact_writable_by_others_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(tmp.path());
    let key = ContentHash::of(b"m");
    let path = cache.store(&engine(), &key, b"artifact").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    assert!(cache.artifact(&engine(), &key).is_none());
}

/// Runs `f` on a thread and fails the test if it has not returned within
/// `limit`: what a planted file must never do is hang the cache.
fn within<T: Send + 'static>(limit: std::time::Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result.recv_timeout(limit).expect("the cache hung on a planted file")
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

const SOON: std::time::Duration = std::time::Duration::from_secs(10);

#[test]
fn an_engine_directory_replaced_by_a_symlink_is_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(&tmp.path().join("cache"));
    let key = ContentHash::of(b"m");
    cache.store(&engine(), &key, b"artifact").unwrap();
    let engine_dir = cache.artifact_path(&engine(), &key).parent().unwrap().to_owned();
    let moved = tmp.path().join("moved");
    fs::rename(&engine_dir, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &engine_dir).unwrap();
    assert!(cache.artifact(&engine(), &key).is_none(), "nothing is read through the symlink");
    assert!(moved.join(format!("{key}.cwasm")).exists(), "and nothing behind it is touched");
}

#[test]
fn prune_never_deletes_outside_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(&tmp.path().join("cache"));
    cache.store(&engine(), &ContentHash::of(b"m"), b"artifact").unwrap();
    // A directory outside the cache, with the kind of files prune removes,
    // old enough to count as abandoned.
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let long_ago = SystemTime::now() - std::time::Duration::from_secs(7200);
    for name in ["x.tmp", "y.lock", "z.cwasm"] {
        fs::write(outside.join(name), b"keep me").unwrap();
        set_mtime(&outside.join(name), long_ago);
    }
    let modules = tmp.path().join("cache").join("v1").join("modules");
    std::os::unix::fs::symlink(&outside, modules.join("planted")).unwrap();
    cache.prune(0).unwrap();
    cache.clear().unwrap();
    for name in ["x.tmp", "y.lock", "z.cwasm"] {
        assert!(outside.join(name).exists(), "{name} outside the cache was deleted");
    }
}

#[test]
fn a_planted_engine_tag_cannot_hang_or_flood_the_cache() {
    for plant in ["fifo", "zero"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = open(&tmp.path().join("cache"));
        cache.set_engine_tag("mimobox-test");
        let key = ContentHash::of(b"m");
        cache.store(&engine(), &key, b"artifact").unwrap();
        let tag = cache.artifact_path(&engine(), &key).parent().unwrap().join("ENGINE");
        fs::remove_file(&tag).unwrap();
        match plant {
            "fifo" => mkfifo(&tag),
            _ => std::os::unix::fs::symlink("/dev/zero", &tag).unwrap(),
        }
        let stats = within(SOON, move || {
            let stats = cache.stats().unwrap();
            cache.prune(u64::MAX).unwrap();
            stats
        });
        assert_eq!(stats.entries, 1, "{plant}");
        assert_eq!(stats.stale_entries, 1, "{plant}: an unreadable tag is another engine's");
    }
}

#[test]
fn a_planted_fifo_is_a_miss_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(&tmp.path().join("cache"));
    let key = ContentHash::of(b"m");
    cache.store(&engine(), &key, b"artifact").unwrap();
    let artifact = cache.artifact_path(&engine(), &key);
    fs::remove_file(&artifact).unwrap();
    mkfifo(&artifact);
    let probe = cache.clone();
    assert!(within(SOON, move || probe.artifact(&engine(), &key).is_none()));

    let module = tmp.path().join("m.wasm");
    fs::write(&module, b"module").unwrap();
    set_mtime(&module, SystemTime::now() - std::time::Duration::from_secs(60));
    let fingerprint = Fingerprint::of(&fs::metadata(&module).unwrap());
    cache.remember(&fingerprint, &key);
    let record = fs::read_dir(tmp.path().join("cache").join("v1").join("fingerprints"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::remove_file(&record).unwrap();
    mkfifo(&record);
    assert!(within(SOON, move || cache.hash_for(&fingerprint).is_none()));
}
