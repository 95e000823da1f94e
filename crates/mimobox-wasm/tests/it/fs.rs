//! Mounts: what the guest can read and write, and what it cannot reach.

use std::fs;

use mimobox_core::{Mount, Outcome};

use crate::run_with;

/// WASI errno values the file tool exits with.
const EBADF: i32 = 8;

fn mount(host: &std::path::Path, guest: &str) -> Mount {
    Mount { host: host.to_owned(), guest: guest.to_owned() }
}

#[test]
fn reads_a_file_from_a_read_only_mount() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("in.txt"), "from the host\n").unwrap();
    let result = run_with("fs", &["r", "3", "in.txt"], |c| c.fs_readonly = vec![mount(dir.path(), "/data")]);
    assert_eq!(result.outcome, Outcome::Exited { code: 0 });
    assert_eq!(result.stdout, b"from the host\n");
}

#[test]
fn write_to_read_only_fails_while_read_write_succeeds() {
    let (ro, rw) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let configure = |c: &mut mimobox_core::SandboxConfig| {
        c.fs_readonly = vec![mount(ro.path(), "/ro")];
        c.fs_readwrite = vec![mount(rw.path(), "/rw")];
    };
    // Read-only mounts are opened first (fd 3), read-write ones after (fd 4).
    let denied = run_with("fs", &["w", "3", "out.txt"], configure);
    assert_ne!(denied.outcome, Outcome::Exited { code: 0 });
    assert!(!ro.path().join("out.txt").exists(), "nothing was written on the host");

    let allowed = run_with("fs", &["w", "4", "out.txt"], configure);
    assert_eq!(allowed.outcome, Outcome::Exited { code: 0 });
    assert_eq!(fs::read_to_string(rw.path().join("out.txt")).unwrap(), "written by guest\n");
}

#[test]
fn dot_dot_cannot_leave_the_mount() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("secret.txt"), "secret").unwrap();
    let inner = root.path().join("inner");
    fs::create_dir(&inner).unwrap();
    let result =
        run_with("fs", &["r", "3", "../secret.txt"], |c| c.fs_readonly = vec![mount(&inner, "/data")]);
    assert!(matches!(result.outcome, Outcome::Exited { code } if code != 0), "{:?}", result.outcome);
    assert!(result.stdout.is_empty());
}

#[test]
fn symlink_cannot_leave_the_mount() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("secret.txt"), "secret").unwrap();
    let inner = root.path().join("inner");
    fs::create_dir(&inner).unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), inner.join("link.txt")).unwrap();
    let result = run_with("fs", &["r", "3", "link.txt"], |c| c.fs_readonly = vec![mount(&inner, "/data")]);
    assert!(matches!(result.outcome, Outcome::Exited { code } if code != 0), "{:?}", result.outcome);
    assert!(result.stdout.is_empty());
}

#[test]
fn mount_at_guest_root_works() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/motd"), "root mount\n").unwrap();
    let result = run_with("fs", &["r", "3", "etc/motd"], |c| c.fs_readonly = vec![mount(dir.path(), "/")]);
    assert_eq!(result.outcome, Outcome::Exited { code: 0 });
    assert_eq!(result.stdout, b"root mount\n");
}

#[test]
fn without_mounts_there_is_no_filesystem() {
    let result = run_with("fs", &["r", "3", "etc/passwd"], |_| {});
    assert_eq!(result.outcome, Outcome::Exited { code: EBADF });
}
