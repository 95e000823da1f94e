//! `Workspace`: private directories, removed on drop and swept after a crash.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use mimobox_files::{FileError, GuestFiles, GuestMount, Workspace, WorkspaceError, default_base};

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn root_of(workspace: &Workspace) -> PathBuf {
    workspace.workspace_dir().parent().unwrap().to_owned()
}

/// A leftover as a dead process leaves it: an unlocked lock file and a tree.
fn leftover(base: &Path, id: &str) {
    fs::write(base.join(format!("{id}.lock")), "").unwrap();
    fs::create_dir_all(base.join(id).join("workspace/deep/er")).unwrap();
    fs::create_dir(base.join(id).join("tmp")).unwrap();
    fs::write(base.join(id).join("workspace/deep/er/file"), "data").unwrap();
}

/// A directory outside the base, with a file that must survive.
fn outside(dir: &Path) -> PathBuf {
    let outside = dir.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep"), "precious").unwrap();
    outside
}

#[test]
fn create_makes_empty_private_dirs_and_a_locked_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("sessions");
    let ws = Workspace::create(&base).unwrap();

    assert_eq!(ws.id().len(), 32);
    assert!(ws.id().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(mode(&base), 0o700);
    assert_eq!(root_of(&ws), base.join(ws.id()));
    assert_eq!(ws.workspace_dir(), base.join(ws.id()).join("workspace"));
    assert_eq!(ws.tmp_dir(), base.join(ws.id()).join("tmp"));
    for d in [root_of(&ws), ws.workspace_dir().to_owned(), ws.tmp_dir().to_owned()] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    assert_eq!(fs::read_dir(ws.workspace_dir()).unwrap().count(), 0);
    assert_eq!(fs::read_dir(ws.tmp_dir()).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root_of(&ws)).unwrap().count(), 2);
    let lock = base.join(format!("{}.lock", ws.id()));
    assert_eq!(mode(&lock), 0o600);
    // The lock is held: another open file description cannot take it.
    let probe = fs::File::open(&lock).unwrap();
    assert!(rustix::fs::flock(&probe, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err());
}

#[test]
fn create_makes_a_missing_base_and_its_parents_with_mode_0700() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("a/b/sessions");
    let _ws = Workspace::create(&base).unwrap();
    for d in [dir.path().join("a"), dir.path().join("a/b"), base] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
}

#[test]
fn two_workspaces_differ_and_cannot_reach_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("sessions");
    let a = Workspace::create(&base).unwrap();
    let b = Workspace::create(&base).unwrap();
    assert_ne!(a.id(), b.id());
    assert_ne!(a.workspace_dir(), b.workspace_dir());

    let files_a = GuestFiles::new(vec![GuestMount::open("/workspace", a.workspace_dir(), true).unwrap()]);
    let files_b = GuestFiles::new(vec![GuestMount::open("/workspace", b.workspace_dir(), true).unwrap()]);
    files_a.write("/workspace/secret", b"a's", 100).unwrap();
    assert!(fs::read_dir(b.workspace_dir()).unwrap().next().is_none());

    // b's guest tries to reach a's files by path and by links it made.
    let by_path = format!("/workspace/../../{}/workspace/secret", a.id());
    assert!(matches!(files_b.read(&by_path, 100), Err(FileError::InvalidPath { .. })));
    symlink(a.workspace_dir(), b.workspace_dir().join("abs")).unwrap();
    symlink(format!("../../{}/workspace", a.id()), b.workspace_dir().join("rel")).unwrap();
    for path in ["/workspace/abs/secret", "/workspace/rel/secret"] {
        assert!(matches!(files_b.read(path, 100), Err(FileError::Outside { .. })), "{path}");
        assert!(matches!(files_b.write(path, b"b's", 100), Err(FileError::Outside { .. })), "{path}");
    }
    assert_eq!(fs::read(a.workspace_dir().join("secret")).unwrap(), b"a's");
}

#[test]
fn drop_removes_the_tree_and_the_lock_file_without_following_links() {
    let dir = tempfile::tempdir().unwrap();
    let outside = outside(dir.path());
    let base = dir.path().join("sessions");
    let ws = Workspace::create(&base).unwrap();
    fs::create_dir_all(ws.workspace_dir().join("a/b/c")).unwrap();
    fs::write(ws.workspace_dir().join("a/b/c/file"), "x").unwrap();
    fs::write(ws.tmp_dir().join("scratch"), "y").unwrap();
    // Links the guest made to things outside: dropping must not follow them.
    symlink(&outside, ws.workspace_dir().join("out-dir")).unwrap();
    symlink(outside.join("keep"), ws.tmp_dir().join("out-file")).unwrap();
    let root = root_of(&ws);
    drop(ws);

    assert!(!root.exists());
    assert_eq!(fs::read_dir(&base).unwrap().count(), 0, "no tree and no lock file left");
    assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "precious");
}

#[test]
fn sweep_leaves_a_live_workspace_alone() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("sessions");
    let ws = Workspace::create(&base).unwrap();
    fs::write(ws.workspace_dir().join("work"), "in progress").unwrap();

    assert_eq!(Workspace::sweep(&base).unwrap(), 0);
    assert_eq!(fs::read_to_string(ws.workspace_dir().join("work")).unwrap(), "in progress");
    assert!(base.join(format!("{}.lock", ws.id())).exists());
}

#[test]
fn sweep_removes_a_leftover_whose_lock_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let outside = outside(dir.path());
    let base = dir.path().join("sessions");
    let live = Workspace::create(&base).unwrap();
    let id = "0123456789abcdef0123456789abcdef";
    leftover(&base, id);
    symlink(&outside, base.join(id).join("workspace/escape")).unwrap();

    assert_eq!(Workspace::sweep(&base).unwrap(), 1);
    assert!(!base.join(id).exists());
    assert!(!base.join(format!("{id}.lock")).exists());
    assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "precious");
    assert!(live.workspace_dir().is_dir(), "the live one is untouched");
    assert_eq!(Workspace::sweep(&base).unwrap(), 0, "nothing is left to sweep");
}

#[test]
fn sweep_unlinks_a_symlinked_id_without_following_it() {
    let dir = tempfile::tempdir().unwrap();
    let outside = outside(dir.path());
    let base = dir.path().join("sessions");
    fs::create_dir(&base).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
    let id = "ffffffffffffffffffffffffffffffff";
    fs::write(base.join(format!("{id}.lock")), "").unwrap();
    symlink(&outside, base.join(id)).unwrap();

    assert_eq!(Workspace::sweep(&base).unwrap(), 1);
    assert!(fs::symlink_metadata(base.join(id)).is_err());
    assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "precious");
}

#[test]
fn sweep_leaves_entries_that_are_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("sessions");
    fs::create_dir(&base).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
    let upper = "0123456789ABCDEF0123456789ABCDEF";
    let short = "0123456789abcdef";
    let lockless = "00000000000000000000000000000000";
    for name in [upper, short] {
        leftover(&base, name);
    }
    fs::create_dir(base.join(lockless)).unwrap();
    fs::write(base.join("notes.txt"), "mine").unwrap();
    // A lock file that is a symlink is not ours either.
    let target = "11111111111111111111111111111111";
    fs::create_dir(base.join(target)).unwrap();
    symlink(dir.path().join("nowhere"), base.join(format!("{target}.lock"))).unwrap();

    assert_eq!(Workspace::sweep(&base).unwrap(), 0);
    assert_eq!(fs::read_dir(&base).unwrap().count(), 8);
}

#[test]
fn sweep_of_a_missing_base_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Workspace::sweep(&dir.path().join("missing")).unwrap(), 0);
    assert_eq!(Workspace::sweep(&dir.path().join("missing/too")).unwrap(), 0);
}

#[test]
fn sweep_refuses_a_base_open_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("sessions");
    fs::create_dir(&base).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o777)).unwrap();
    leftover(&base, "0123456789abcdef0123456789abcdef");
    assert!(Workspace::sweep(&base).is_err());
    assert!(base.join("0123456789abcdef0123456789abcdef").exists());
}

/// Helper for the test below: in a child process, creates a workspace,
/// prints its id and waits to be killed.
#[test]
fn helper_child_process_holding_a_workspace() {
    let Some(base) = std::env::var_os("MIMOBOX_FILES_TEST_HOLD_BASE") else { return };
    let ws = Workspace::create(Path::new(&base)).unwrap();
    println!("workspace-id {}", ws.id());
    loop {
        std::thread::park();
    }
}

#[test]
fn sweep_removes_the_leftover_of_a_killed_process() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("sessions");
    let mut child = crate::child_test(
        "workspace::helper_child_process_holding_a_workspace",
        "MIMOBOX_FILES_TEST_HOLD_BASE",
        &base,
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    // libtest may print its own text before ours on the same line; and a
    // child that never prints must fail this test, not hang it.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let id = stdout
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.split_once("workspace-id ").map(|(_, id)| id.trim().to_owned()));
        let _ = send.send(id);
    });
    let id = match receive.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(Some(id)) => id,
        other => {
            let _ = child.kill();
            panic!("the child did not report its workspace id: {other:?}");
        }
    };
    fs::write(base.join(&id).join("workspace/output"), "left behind").unwrap();

    assert_eq!(Workspace::sweep(&base).unwrap(), 0, "the child is alive");
    assert!(base.join(&id).join("workspace/output").exists());

    child.kill().unwrap(); // SIGKILL: no destructor runs.
    child.wait().unwrap();
    assert!(base.join(&id).exists(), "the killed child left its workspace");
    assert_eq!(Workspace::sweep(&base).unwrap(), 1);
    assert_eq!(fs::read_dir(&base).unwrap().count(), 0);
}

#[test]
fn create_refuses_a_base_that_is_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let base = dir.path().join("sessions");
    symlink(&real, &base).unwrap();

    let err = Workspace::create(&base).unwrap_err();
    assert!(matches!(&err, WorkspaceError::Symlink { path } if *path == base), "{err}");
    assert_eq!(fs::read_dir(&real).unwrap().count(), 0, "nothing was made through the link");
}

#[test]
fn create_refuses_a_base_open_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("sessions");
    fs::create_dir(&base).unwrap();
    for bits in [0o777, 0o750, 0o701] {
        fs::set_permissions(&base, fs::Permissions::from_mode(bits)).unwrap();
        let err = Workspace::create(&base).unwrap_err();
        assert!(matches!(err, WorkspaceError::OpenToOthers { mode, .. } if mode == bits), "{err}");
    }
    assert_eq!(fs::read_dir(&base).unwrap().count(), 0);
}

#[test]
fn create_refuses_a_base_that_belongs_to_another_user() {
    let dir = tempfile::tempdir().unwrap();
    let base = if rustix::process::geteuid().is_root() {
        let base = dir.path().join("sessions");
        fs::create_dir(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&base, Some(65534), Some(65534)).unwrap();
        base
    } else {
        // Not root, so a directory of root's stands in for another user's.
        PathBuf::from("/usr")
    };
    let err = Workspace::create(&base).unwrap_err();
    assert!(matches!(err, WorkspaceError::NotOurs { .. }), "{err}");
}

#[test]
fn create_refuses_a_base_below_a_directory_others_may_write() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    let err = Workspace::create(&shared.join("sessions")).unwrap_err();
    assert!(matches!(&err, WorkspaceError::UnsafeParent { path } if *path == shared), "{err}");

    // The sticky bit (as on /tmp) stops others from replacing our entries.
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    Workspace::create(&shared.join("sessions")).unwrap();
}

#[test]
fn create_refuses_a_base_that_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("sessions");
    fs::write(&base, "").unwrap();
    let err = Workspace::create(&base).unwrap_err();
    assert!(matches!(err, WorkspaceError::NotADirectory { .. }), "{err}");
}

#[test]
fn default_base_ends_in_sessions_below_an_existing_private_dir() {
    let base = default_base();
    assert!(base.is_absolute());
    assert_eq!(base.file_name().unwrap(), "sessions");
    assert!(base.parent().unwrap().is_dir());
}

/// A guest can nest directories as deep as its quota allows (renames are
/// free): removing them must neither recurse nor hold a descriptor per
/// level. 30,000 levels overflow a recursive walk's stack and exceed a
/// 1,024-descriptor limit many times over.
#[test]
fn a_tree_deeper_than_the_stack_or_the_descriptor_limit_is_removed() {
    use std::os::fd::AsFd;
    let scratch = tempfile::tempdir().unwrap();
    let base = scratch.path().join("sessions");
    let workspace = mimobox_files::Workspace::create(&base).unwrap();
    let mut current = rustix::fs::open(
        workspace.workspace_dir(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    for _ in 0..30_000 {
        rustix::fs::mkdirat(current.as_fd(), "d", rustix::fs::Mode::RWXU).unwrap();
        current = rustix::fs::openat(
            current.as_fd(),
            "d",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
    }
    rustix::fs::openat(
        current.as_fd(),
        "leaf",
        rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY,
        rustix::fs::Mode::RUSR,
    )
    .unwrap();
    drop(current);
    // Removed on a thread with a small stack, as a recursion could not be.
    let removed =
        std::thread::Builder::new().stack_size(256 << 10).spawn(move || drop(workspace)).unwrap().join();
    assert!(removed.is_ok(), "the removal overflowed its stack");
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0, "everything was removed");
}

/// Another user's symlink where the base's parent should be (planted in a
/// shared sticky temp directory) is refused, not followed.
#[test]
fn a_symlink_another_user_planted_on_the_way_is_refused() {
    if !rustix::process::geteuid().is_root() {
        return; // Needs a second user to own the link.
    }
    let scratch = tempfile::tempdir().unwrap();
    let shared = scratch.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = scratch.path().join("victim");
    fs::create_dir(&victim).unwrap();
    let planted = shared.join("mimobox-0");
    symlink(&victim, &planted).unwrap();
    rustix::fs::chownat(
        rustix::fs::CWD,
        &planted,
        Some(rustix::process::Uid::from_raw(65534)),
        Some(rustix::process::Gid::from_raw(65534)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    let error = Workspace::create(&planted.join("sessions")).unwrap_err();
    assert!(matches!(error, WorkspaceError::UnsafeParent { .. }), "{error}");
    assert!(!victim.join("sessions").exists(), "nothing was made where the link points");
}
