//! Running modules: output, exit codes, args, env, stdin, mounts.

use std::io::Write;
use std::process::Stdio;

use crate::{Cli, fixture, json, stderr, stdout};

#[test]
fn demo_runs_the_built_in_hello() {
    let cli = Cli::new();
    let out = cli.run(&["demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello, world\n");
}

#[test]
fn hello_prints_to_stdout() {
    let cli = Cli::new();
    let out = cli.run(&["run", &fixture("hello")]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "hello, world\n");
    assert_eq!(stderr(&out), "");
}

#[test]
fn guest_exit_code_is_the_exit_status() {
    let cli = Cli::new();
    assert_eq!(cli.run(&["run", &fixture("exit42")]).status.code(), Some(42));
    assert_eq!(cli.run(&["run", &fixture("main_export")]).status.code(), Some(7));
}

#[test]
fn json_reports_everything() {
    let cli = Cli::new();
    let out = cli.run(&["run", "--json", "--fuel", "10000000", &fixture("hello")]);
    assert_eq!(out.status.code(), Some(0));
    let value = json(&out);
    assert_eq!(value["outcome"], "exited");
    assert_eq!(value["exit_code"], 0);
    assert_eq!(value["stdout"], "hello, world\n");
    assert_eq!(value["stderr"], "");
    assert_eq!(value["stdout_truncated"], false);
    assert!(value["elapsed_ms"].as_f64().unwrap() >= 0.0);
    assert!(value["fuel_consumed"].as_u64().unwrap() > 0);
}

#[test]
fn args_and_env_reach_the_guest() {
    let cli = Cli::new();
    let out =
        cli.run(&["run", "--env", "A=1", "--env", "B=two words", &fixture("env_args"), "-x", "--flag", "v"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<_> = stdout(&out).lines().skip(1).map(str::to_owned).collect();
    assert_eq!(lines, ["-x", "--flag", "v", "A=1", "B=two words"]);
}

#[test]
fn stdin_is_passed_when_it_is_not_a_terminal() {
    let cli = Cli::new();
    let mut child =
        cli.command(&["run", &fixture("cat")]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"through the pipe\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "through the pipe\n");

    let file = cli.write("input.txt", "from a file\n");
    let out = cli.run(&["run", "--stdin", file.to_str().unwrap(), &fixture("cat")]);
    assert_eq!(stdout(&out), "from a file\n");
}

#[test]
fn endless_stdin_is_streamed_not_slurped() {
    let cli = Cli::new();
    let mut child = cli
        .command(&["run", "--timeout", "1s", "--max-output", "4KiB", &fixture("cat")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || while input.write_all(&[b'y'; 4096]).is_ok() {});
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), 4096, "the guest ran and its output was capped");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn a_guest_waiting_on_silent_stdin_still_times_out() {
    let cli = Cli::new();
    let mut child =
        cli.command(&["run", "--timeout", "1s", &fixture("cat")]).stdin(Stdio::piped()).spawn().unwrap();
    let _held_open = child.stdin.take();
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(124));
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn stdin_file_must_be_a_regular_file() {
    let cli = Cli::new();
    let out = cli.run(&["run", "--stdin", "/dev/zero", &fixture("cat")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a regular file"), "{}", stderr(&out));
}

#[test]
fn read_only_and_read_write_mounts() {
    let cli = Cli::new();
    std::fs::create_dir(cli.path().join("ro")).unwrap();
    std::fs::create_dir(cli.path().join("rw")).unwrap();
    cli.write("ro/in.txt", "mounted\n");

    let out = cli.run(&["run", "--ro-dir", "ro::/ro", &fixture("fs"), "r", "3", "in.txt"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "mounted\n"));

    let mounts = ["--ro-dir", "ro::/ro", "--dir", "rw::/rw"];
    let denied = cli.run(&[&["run"][..], &mounts, &[&fixture("fs"), "w", "3", "x.txt"]].concat());
    assert_ne!(denied.status.code(), Some(0));
    assert!(!cli.path().join("ro/x.txt").exists());
    let allowed = cli.run(&[&["run"][..], &mounts, &[&fixture("fs"), "w", "4", "x.txt"]].concat());
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    assert_eq!(std::fs::read_to_string(cli.path().join("rw/x.txt")).unwrap(), "written by guest\n");
}

#[test]
fn path_escapes_are_refused() {
    let cli = Cli::new();
    std::fs::create_dir(cli.path().join("jail")).unwrap();
    cli.write("secret.txt", "secret");
    std::os::unix::fs::symlink(cli.path().join("secret.txt"), cli.path().join("jail/link")).unwrap();
    for path in ["../secret.txt", "link"] {
        let out = cli.run(&["run", "--ro-dir", "jail::/", &fixture("fs"), "r", "3", path]);
        assert_ne!(out.status.code(), Some(0), "{path}");
        assert!(!stdout(&out).contains("secret"), "{path}");
    }
}

#[test]
fn profile_sets_limits_and_flags_override_it() {
    let cli = Cli::new();
    let profile = cli.write("p.toml", "timeout_secs = 60\nfuel = 1000\n[env]\nFROM = \"profile\"\n");
    let p = profile.to_str().unwrap();
    // fuel = 1000 from the profile is far too little for the counter.
    let out = cli.run(&["run", "--json", "--profile", p, &fixture("count")]);
    assert_eq!(json(&out)["outcome"], "out_of_fuel");
    let out = cli.run(&["run", "--json", "--profile", p, "--fuel", "100000000", &fixture("count")]);
    assert_eq!(json(&out)["outcome"], "exited");
    let out = cli.run(&["run", "--profile", p, "--fuel", "100000000", &fixture("env_args")]);
    assert!(stdout(&out).contains("FROM=profile"), "{}", stdout(&out));
}

#[test]
fn profile_show_prints_the_merged_config() {
    let cli = Cli::new();
    let profile = cli.write("p.toml", "timeout_secs = 5\nfs_readonly = [\"data::/data\"]\n");
    let out = cli.run(&["profile", "show", profile.to_str().unwrap(), "--memory", "128MiB"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("timeout_secs = \"5s\""), "{text}");
    assert!(text.contains("memory_limit_mb = \"128MiB\""), "{text}");
    assert!(text.contains(&format!("host = \"{}\"", cli.path().join("data").display())), "{text}");
    let check = cli.run(&["profile", "check", profile.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0));
}

#[test]
fn second_run_uses_the_disk_cache() {
    let cli = Cli::new();
    assert_eq!(cli.run(&["run", &fixture("hello")]).status.code(), Some(0));
    let artifacts: Vec<_> = mimobox_fixtures::files_under(&cli.cache())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let before = std::fs::metadata(&artifacts[0]).unwrap().modified().unwrap();
    assert_eq!(stdout(&cli.run(&["run", &fixture("hello")])), "hello, world\n");
    assert_eq!(std::fs::metadata(&artifacts[0]).unwrap().modified().unwrap(), before, "not rewritten");
}

#[test]
fn session_on_a_terminal_is_a_repl() {
    // `script` gives mimobox a pseudo-terminal; the counter fixture serves
    // the turns. A line ending in `:` opens a block that a blank line ends.
    let cli = Cli::new();
    let command = format!(
        "MIMOBOX_CACHE_DIR='{}' '{}' session '{}'",
        cli.cache().display(),
        env!("CARGO_BIN_EXE_mimobox"),
        crate::fixture("counter")
    );
    let mut child = std::process::Command::new("timeout")
        .args(["30", "script", "-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) runs");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"i\ni:\nmore\n\np\n").unwrap();
    let out = child.wait_with_output().unwrap();
    // Prompts are drawn in bold on a terminal.
    let text = stdout(&out).replace("\x1b[1m", "").replace("\x1b[0m", "");
    assert!(text.contains(">>> 1\r\n"), "{text:?}");
    assert!(text.contains("... "), "a block prompts for more: {text:?}");
    assert!(text.contains("... 2\r\n>>> 2\r\n"), "the block was one turn, then `p`: {text:?}");
    assert_eq!(out.status.code(), Some(0), "{text:?}");
}
