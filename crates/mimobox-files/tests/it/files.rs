//! `GuestFiles`: guest paths read, written and listed with the guest's
//! confinement, against a guest that has planted links, FIFOs and more.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use mimobox_files::{Entry, EntryKind, FileError, GuestFiles, GuestMount, PathProblem};
use tempfile::TempDir;

/// Mounts `/workspace` and `/tmp` (writable) and `/usr/local/lib`
/// (read-only), next to a directory `outside` that no operation may touch.
struct Fixture {
    _dir: TempDir,
    ws: PathBuf,
    tmp: PathBuf,
    lib: PathBuf,
    outside: PathBuf,
    files: GuestFiles,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let [ws, tmp, lib, outside] = ["mnt/ws", "mnt/tmp", "mnt/lib", "outside"].map(|d| dir.path().join(d));
    for d in [&ws, &tmp, &lib, &outside] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(outside.join("secret"), "outside").unwrap();
    fs::write(lib.join("libc.so"), "library").unwrap();
    let files = GuestFiles::new(vec![
        GuestMount::open("/workspace", &ws, true).unwrap(),
        GuestMount::open("/tmp", &tmp, true).unwrap(),
        GuestMount::open("/usr/local/lib", &lib, false).unwrap(),
    ]);
    Fixture { _dir: dir, ws, tmp, lib, outside, files }
}

impl Fixture {
    /// Asserts that `outside` still holds exactly its one file, unchanged.
    fn assert_outside_untouched(&self) {
        assert_eq!(fs::read_dir(&self.outside).unwrap().count(), 1);
        assert_eq!(fs::read_to_string(self.outside.join("secret")).unwrap(), "outside");
    }

    /// Asserts that no temp file is left in any mount.
    fn assert_no_temp_files(&self) {
        for dir in [&self.ws, &self.tmp, &self.lib] {
            assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
        }
    }
}

/// The `.mimobox-` files anywhere under `dir` (not following links).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().as_bytes().starts_with(b".mimobox-") {
            found.push(entry.path());
        }
        if entry.file_type().unwrap().is_dir() {
            found.extend(temp_files(&entry.path()));
        }
    }
    found
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from_bits_truncate(0o600)).unwrap();
}

fn is_outside<T: std::fmt::Debug>(result: Result<T, FileError>) -> bool {
    matches!(result, Err(FileError::Outside { .. }))
}

mod paths {
    use super::*;

    #[test]
    fn dotdot_is_refused_with_a_one_line_message() {
        let f = fixture();
        let path = "/workspace/../etc/passwd";
        let err = f.files.read(path, 100).unwrap_err();
        assert!(matches!(err, FileError::InvalidPath { reason: PathProblem::DotDot, .. }));
        assert_eq!(err.to_string(), r#"/workspace/../etc/passwd: a path may not contain "..""#);
        assert_eq!(err.path(), path);
        // Even a `..` that would stay inside is refused: there is no lexical
        // resolution.
        fs::create_dir(f.ws.join("sub")).unwrap();
        assert!(matches!(f.files.write("/workspace/sub/../x", b"x", 10), Err(FileError::InvalidPath { .. })));
        assert!(matches!(f.files.list("/workspace/sub/..", 10), Err(FileError::InvalidPath { .. })));
        assert!(!f.ws.join("x").exists());
    }

    #[test]
    fn relative_nul_and_overlong_paths_are_refused() {
        let f = fixture();
        let long = format!("/workspace/{}", "a/".repeat(3000));
        for (path, problem) in [
            ("workspace/a", PathProblem::NotAbsolute),
            ("", PathProblem::NotAbsolute),
            ("/workspace/a\0b", PathProblem::Nul),
            (long.as_str(), PathProblem::TooLong),
        ] {
            let err = f.files.write(path, b"x", 10).unwrap_err();
            assert!(matches!(err, FileError::InvalidPath { reason, .. } if reason == problem), "{err}");
        }
        assert_eq!(fs::read_dir(&f.ws).unwrap().count(), 0);
    }

    #[test]
    fn a_path_under_no_mount_is_outside() {
        let f = fixture();
        for path in ["/etc/passwd", "/", "/usr/local", "/usr/local/libx/a"] {
            assert!(is_outside(f.files.read(path, 100)), "{path}");
        }
        assert!(is_outside(f.files.write("/etc/passwd", b"x", 10)));
        assert!(is_outside(f.files.list("/", 10)));
    }

    #[test]
    fn mounts_match_whole_components_only() {
        let f = fixture();
        let err = f.files.write("/workspacex/a", b"x", 10).unwrap_err();
        assert!(matches!(err, FileError::Outside { .. }), "{err}");
        assert_eq!(err.to_string(), "/workspacex/a: is outside the session's files");
        assert_eq!(fs::read_dir(&f.ws).unwrap().count(), 0);
    }

    #[test]
    fn the_longest_mount_wins() {
        let f = fixture();
        let data = f._dir.path().join("data");
        fs::create_dir(&data).unwrap();
        let files = GuestFiles::new(vec![
            GuestMount::open("/workspace", &f.ws, true).unwrap(),
            GuestMount::open("/workspace/data/", &data, true).unwrap(),
        ]);
        files.write("/workspace/data/f", b"nested", 10).unwrap();
        assert_eq!(fs::read(data.join("f")).unwrap(), b"nested");
        assert!(!f.ws.join("data").exists());
        assert_eq!(files.mounts()[1].guest_path(), "/workspace/data");
    }

    #[test]
    fn empty_and_dot_components_are_skipped() {
        let f = fixture();
        f.files.write("//workspace/./f", b"x", 10).unwrap();
        assert_eq!(f.files.read("/workspace/.//f", 10).unwrap(), b"x");
        // A file's path may not end as a directory's does.
        let err = f.files.read("/workspace//f/.", 10).unwrap_err();
        assert!(matches!(err, FileError::InvalidPath { reason: PathProblem::DirectorySuffix, .. }), "{err}");
    }

    #[test]
    fn messages_escape_control_characters_and_are_bounded() {
        let f = fixture();
        let path = format!("/workspace/evil\nline\x1b[31m{}", "x".repeat(500));
        let message = f.files.read(&path, 10).unwrap_err().to_string();
        assert!(!message.contains('\n') && !message.contains('\x1b'), "{message}");
        assert!(message.starts_with("/workspace/evil\\u{a}line\\u{1b}[31m"), "{message}");
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn a_mount_point_must_be_absolute_and_without_dotdot() {
        let dir = tempfile::tempdir().unwrap();
        assert!(GuestMount::open("workspace", dir.path(), true).is_err());
        assert!(GuestMount::open("/a/../b", dir.path(), true).is_err());
        let mount = GuestMount::open("//a/./b/", dir.path(), false).unwrap();
        assert_eq!((mount.guest_path(), mount.is_writable()), ("/a/b", false));
    }
}

mod links {
    use super::*;

    #[test]
    fn an_absolute_symlink_out_is_refused_for_read_write_and_list() {
        let f = fixture();
        symlink(&f.outside, f.ws.join("out")).unwrap();
        assert!(is_outside(f.files.read("/workspace/out/secret", 100)));
        assert!(is_outside(f.files.write("/workspace/out/secret", b"pwned", 100)));
        assert!(is_outside(f.files.write("/workspace/out/new", b"pwned", 100)));
        fs::create_dir(f.outside.join("sub")).unwrap();
        assert!(is_outside(f.files.list("/workspace/out/sub", 100)));
        fs::remove_dir(f.outside.join("sub")).unwrap();
        // As the final component the link is not followed at all.
        let err = f.files.list("/workspace/out", 100).unwrap_err();
        assert!(matches!(err, FileError::NotADirectory { kind: Some(EntryKind::Symlink), .. }), "{err}");
        f.assert_outside_untouched();
        f.assert_no_temp_files();
    }

    #[test]
    fn a_relative_symlink_out_is_refused_for_read_write_and_list() {
        let f = fixture();
        // ws is <tmp>/mnt/ws, so ../../outside and ../../.. both lead out.
        symlink("../../outside", f.ws.join("rel")).unwrap();
        symlink("../../..", f.ws.join("up")).unwrap();
        fs::create_dir(f.ws.join("sub")).unwrap();
        symlink("../../../outside", f.ws.join("sub/deeper")).unwrap();
        let outside_name = f.outside.file_name().unwrap().to_str().unwrap().to_owned();
        let via_up = format!(
            "/workspace/up/{}/{outside_name}/secret",
            f._dir.path().file_name().unwrap().to_str().unwrap()
        );
        fs::create_dir(f.outside.join("sub")).unwrap();
        for path in ["/workspace/rel/secret", "/workspace/sub/deeper/secret", via_up.as_str()] {
            assert!(is_outside(f.files.read(path, 100)), "{path}");
            assert!(is_outside(f.files.write(path, b"pwned", 100)), "{path}");
            let sub = path.replace("/secret", "/sub");
            assert!(is_outside(f.files.list(&sub, 100)), "{sub}");
        }
        fs::remove_dir(f.outside.join("sub")).unwrap();
        f.assert_outside_untouched();
        f.assert_no_temp_files();
    }

    #[test]
    fn a_symlink_that_stays_inside_is_followed_for_directories() {
        let f = fixture();
        fs::create_dir(f.ws.join("real")).unwrap();
        symlink("real", f.ws.join("alias")).unwrap();
        f.files.write("/workspace/alias/f", b"through", 100).unwrap();
        assert_eq!(fs::read(f.ws.join("real/f")).unwrap(), b"through");
        assert_eq!(f.files.read("/workspace/alias/f", 100).unwrap(), b"through");
        fs::create_dir(f.ws.join("real/sub")).unwrap();
        assert_eq!(f.files.list("/workspace/alias/sub", 100).unwrap().entries, []);
        // The rule for the final component holds for listings too, and a
        // trailing `/.` is dropped like any `.` component.
        let err = f.files.list("/workspace/alias/.", 100).unwrap_err();
        assert!(matches!(err, FileError::NotADirectory { kind: Some(EntryKind::Symlink), .. }), "{err}");
    }

    #[test]
    fn a_final_symlink_is_refused_for_read_and_write() {
        let f = fixture();
        fs::write(f.ws.join("inside"), "kept").unwrap();
        symlink("inside", f.ws.join("to-inside")).unwrap();
        symlink(f.outside.join("secret"), f.ws.join("to-outside")).unwrap();
        for name in ["to-inside", "to-outside"] {
            let path = format!("/workspace/{name}");
            let read = f.files.read(&path, 100).unwrap_err();
            assert!(matches!(read, FileError::NotRegular { kind: EntryKind::Symlink, .. }), "{read}");
            let write = f.files.write(&path, b"pwned", 100).unwrap_err();
            assert!(matches!(write, FileError::NotRegular { kind: EntryKind::Symlink, .. }), "{write}");
            assert!(fs::symlink_metadata(f.ws.join(name)).unwrap().file_type().is_symlink());
        }
        assert_eq!(fs::read_to_string(f.ws.join("inside")).unwrap(), "kept");
        f.assert_outside_untouched();
        f.assert_no_temp_files();
    }

    #[test]
    fn a_write_replaces_a_hard_link_instead_of_writing_through_it() {
        let f = fixture();
        fs::write(f.ws.join("original"), "original").unwrap();
        fs::hard_link(f.ws.join("original"), f.ws.join("link")).unwrap();
        f.files.write("/workspace/link", b"new", 100).unwrap();
        assert_eq!(fs::read_to_string(f.ws.join("original")).unwrap(), "original");
        assert_eq!(fs::read_to_string(f.ws.join("link")).unwrap(), "new");
    }
}

mod special_files {
    use super::*;

    #[test]
    fn a_fifo_is_refused_for_read_without_blocking() {
        let f = fixture();
        mkfifo(&f.ws.join("fifo"));
        let ws = f.ws.clone();
        let (send, receive) = mpsc::channel();
        // Run the read on a thread so that a regression fails this test
        // instead of hanging it.
        std::thread::spawn(move || {
            let files = GuestFiles::new(vec![GuestMount::open("/workspace", &ws, true).unwrap()]);
            let _ = send.send(files.read("/workspace/fifo", 100));
        });
        let result = receive.recv_timeout(Duration::from_secs(10)).expect("read of a FIFO blocked");
        assert!(matches!(result, Err(FileError::NotRegular { kind: EntryKind::Other, .. })), "{result:?}");
    }

    #[test]
    fn a_fifo_is_refused_for_write() {
        let f = fixture();
        mkfifo(&f.ws.join("fifo"));
        let err = f.files.write("/workspace/fifo", b"data", 100).unwrap_err();
        assert!(matches!(err, FileError::NotRegular { kind: EntryKind::Other, .. }), "{err}");
        assert!(fs::symlink_metadata(f.ws.join("fifo")).unwrap().file_type().is_fifo());
        f.assert_no_temp_files();
    }

    #[test]
    fn a_device_is_never_read() {
        let files = GuestFiles::new(vec![GuestMount::open("/dev", Path::new("/dev"), false).unwrap()]);
        for path in ["/dev/zero", "/dev/null"] {
            let err = files.read(path, 100).unwrap_err();
            assert!(matches!(err, FileError::NotRegular { kind: EntryKind::Other, .. }), "{err}");
        }
    }

    #[test]
    fn a_directory_is_refused_for_read_and_write() {
        let f = fixture();
        fs::create_dir(f.ws.join("dir")).unwrap();
        for path in ["/workspace/dir", "/workspace"] {
            let read = f.files.read(path, 100).unwrap_err();
            assert!(matches!(read, FileError::NotRegular { kind: EntryKind::Dir, .. }), "{read}");
            let write = f.files.write(path, b"x", 100).unwrap_err();
            assert!(matches!(write, FileError::NotRegular { kind: EntryKind::Dir, .. }), "{write}");
        }
        assert!(f.ws.join("dir").is_dir());
        f.assert_no_temp_files();
    }
}

mod read {
    use super::*;

    #[test]
    fn a_file_larger_than_max_is_refused() {
        let f = fixture();
        fs::write(f.ws.join("big"), [7u8; 10]).unwrap();
        let err = f.files.read("/workspace/big", 9).unwrap_err();
        assert!(matches!(err, FileError::TooLarge { size: 10, limit: 9, .. }), "{err}");
        assert_eq!(f.files.read("/workspace/big", 10).unwrap(), [7u8; 10]);
        assert_eq!(f.files.read("/workspace/big", u64::MAX).unwrap(), [7u8; 10]);
    }

    #[test]
    fn a_missing_file_is_not_found_and_a_file_on_the_way_is_not_a_directory() {
        let f = fixture();
        assert!(matches!(f.files.read("/workspace/missing", 10), Err(FileError::NotFound { .. })));
        assert!(matches!(f.files.read("/workspace/missing/x", 10), Err(FileError::NotFound { .. })));
        fs::write(f.ws.join("file"), "x").unwrap();
        let err = f.files.read("/workspace/file/x", 10).unwrap_err();
        assert!(matches!(err, FileError::NotADirectory { kind: None, .. }), "{err}");
    }

    #[test]
    fn a_read_only_mount_can_be_read_and_listed() {
        let f = fixture();
        assert_eq!(f.files.read("/usr/local/lib/libc.so", 100).unwrap(), b"library");
        assert_eq!(f.files.list("/usr/local/lib", 10).unwrap().entries.len(), 1);
    }
}

mod write {
    use super::*;

    #[test]
    fn a_written_file_reads_back() {
        let f = fixture();
        assert_eq!(f.files.write("/workspace/out.txt", b"hello", 100).unwrap(), 5);
        assert_eq!(f.files.read("/workspace/out.txt", 100).unwrap(), b"hello");
        assert_eq!(fs::read(f.ws.join("out.txt")).unwrap(), b"hello");
        assert_eq!(fs::metadata(f.ws.join("out.txt")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(f.files.write("/tmp/empty", b"", 0).unwrap(), 0);
        assert_eq!(fs::read(f.tmp.join("empty")).unwrap(), b"");
        f.assert_no_temp_files();
    }

    #[test]
    fn a_write_replaces_the_whole_content() {
        let f = fixture();
        f.files.write("/workspace/f", b"a long first version", 100).unwrap();
        f.files.write("/workspace/f", b"short", 100).unwrap();
        assert_eq!(fs::read(f.ws.join("f")).unwrap(), b"short");
        f.assert_no_temp_files();
    }

    #[test]
    fn an_over_budget_write_changes_nothing() {
        let f = fixture();
        fs::write(f.ws.join("f"), "old").unwrap();
        let err = f.files.write("/workspace/f", b"0123456789", 9).unwrap_err();
        assert!(matches!(err, FileError::OverQuota { bytes: 10, budget: 9, .. }), "{err}");
        assert!(matches!(
            f.files.write("/workspace/new", b"0123456789", 9),
            Err(FileError::OverQuota { .. })
        ));
        assert_eq!(fs::read_to_string(f.ws.join("f")).unwrap(), "old");
        assert!(!f.ws.join("new").exists());
        f.assert_no_temp_files();
        // Exactly the budget is allowed.
        assert_eq!(f.files.write("/workspace/f", b"012345678", 9).unwrap(), 9);
    }

    #[test]
    fn a_write_to_a_read_only_mount_is_refused() {
        let f = fixture();
        let err = f.files.write("/usr/local/lib/libc.so", b"pwned", 100).unwrap_err();
        assert!(matches!(err, FileError::ReadOnly { .. }), "{err}");
        assert!(matches!(f.files.write("/usr/local/lib/new", b"x", 100), Err(FileError::ReadOnly { .. })));
        assert_eq!(fs::read_to_string(f.lib.join("libc.so")).unwrap(), "library");
        assert_eq!(fs::read_dir(&f.lib).unwrap().count(), 1);
    }

    #[test]
    fn a_write_needs_an_existing_parent() {
        let f = fixture();
        let err = f.files.write("/workspace/no/such/dir/f", b"x", 100).unwrap_err();
        assert!(matches!(err, FileError::NotFound { .. }), "{err}");
        assert_eq!(fs::read_dir(&f.ws).unwrap().count(), 0);
    }

    /// Helper for the test below: in a child process with a file-size limit
    /// of 1 KiB, a write of 4 KiB fails halfway through.
    #[test]
    fn helper_child_process_writing_past_its_file_size_limit() {
        let Some(dir) = std::env::var_os("MIMOBOX_FILES_TEST_FSIZE_DIR") else { return };
        // SAFETY: ignoring a signal installs no handler code; with SIGXFSZ
        // ignored, a write past the limit fails with EFBIG instead of
        // killing the process.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let limit = rustix::process::Rlimit { current: Some(1024), maximum: Some(1024) };
        rustix::process::setrlimit(rustix::process::Resource::Fsize, limit).unwrap();
        let files = GuestFiles::new(vec![GuestMount::open("/workspace", Path::new(&dir), true).unwrap()]);
        let err = files.write("/workspace/f", &[1u8; 4096], u64::MAX).unwrap_err();
        assert!(matches!(err, FileError::Io { .. }), "{err}");
    }

    #[test]
    fn a_write_that_fails_midway_leaves_the_old_file_and_no_temp_file() {
        let f = fixture();
        fs::write(f.ws.join("f"), "old").unwrap();
        let status = crate::child_test(
            "files::write::helper_child_process_writing_past_its_file_size_limit",
            "MIMOBOX_FILES_TEST_FSIZE_DIR",
            &f.ws,
        )
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
        assert!(status.success());
        assert_eq!(fs::read_to_string(f.ws.join("f")).unwrap(), "old");
        f.assert_no_temp_files();
        assert_eq!(fs::read_dir(&f.ws).unwrap().count(), 1);
    }
}

mod list {
    use super::*;

    fn entry(name: &str, kind: EntryKind, bytes: u64) -> Entry {
        Entry { name: name.to_owned(), kind, bytes }
    }

    #[test]
    fn a_listing_is_sorted_and_shows_kinds_and_sizes() {
        let f = fixture();
        fs::write(f.ws.join("b"), "abc").unwrap();
        fs::create_dir(f.ws.join("a")).unwrap();
        fs::write(f.ws.join("a/hidden"), "x").unwrap();
        symlink(&f.outside, f.ws.join("c")).unwrap();
        mkfifo(&f.ws.join("d"));
        fs::write(f.ws.join(OsStr::from_bytes(b"\xffz")), "").unwrap();

        let listing = f.files.list("/workspace", 100).unwrap();
        assert!(!listing.truncated);
        assert_eq!(
            listing.entries,
            [
                entry("a", EntryKind::Dir, 0),
                entry("b", EntryKind::File, 3),
                entry("c", EntryKind::Symlink, 0),
                entry("d", EntryKind::Other, 0),
                entry("\u{fffd}z", EntryKind::File, 0),
            ]
        );
        let kinds: Vec<&str> = listing.entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["dir", "file", "symlink", "other", "file"]);
        assert_eq!(f.files.list("/workspace/a", 100).unwrap().entries, [entry("hidden", EntryKind::File, 1)]);
    }

    #[test]
    fn a_listing_is_bounded_by_max_entries() {
        let f = fixture();
        for i in [7, 3, 9, 0, 5, 1, 8, 2, 6, 4] {
            fs::write(f.ws.join(format!("f{i}")), "").unwrap();
        }
        let listing = f.files.list("/workspace", 3).unwrap();
        assert!(listing.truncated);
        let names: Vec<&str> = listing.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["f0", "f1", "f2"]);
        let all = f.files.list("/workspace", 10).unwrap();
        assert!(!all.truncated);
        assert_eq!(all.entries.len(), 10);
        let none = f.files.list("/workspace", 0).unwrap();
        assert!(none.truncated && none.entries.is_empty());
    }

    #[test]
    fn listing_a_file_or_a_missing_directory_is_refused() {
        let f = fixture();
        fs::write(f.ws.join("file"), "x").unwrap();
        let err = f.files.list("/workspace/file", 10).unwrap_err();
        assert!(matches!(err, FileError::NotADirectory { kind: Some(EntryKind::File), .. }), "{err}");
        assert_eq!(err.to_string(), "/workspace/file: is a regular file, not a directory");
        assert!(matches!(f.files.list("/workspace/missing", 10), Err(FileError::NotFound { .. })));
    }
}
