//! `mimobox session --pause-to FILE` and `--resume FILE`: an interpreter
//! saved and carried on in another process, and every paused state that
//! must be refused.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::scientific::{cli, profile};
use crate::{Cli, stderr};

/// Runs one `mimobox session` process over `lines`, with `extra` flags.
fn session(cli: &Cli, extra: &[&str], lines: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let profile = profile();
    let mut args = vec!["session", "--profile", profile.as_str()];
    args.extend_from_slice(extra);
    let mut child = cli
        .command(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    for line in lines {
        writeln!(input, "{line}").unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let answers = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (out.status.code(), answers, stderr(&out))
}

fn turn(code: &str) -> String {
    serde_json::json!({ "code": code }).to_string()
}

fn pause_once(cli: &Cli, file: &Path, key: &[&str]) {
    let file = file.to_str().unwrap();
    let mut flags = vec!["--pause-to", file];
    flags.extend_from_slice(key);
    let (status, answers, err) = session(
        cli,
        &flags,
        &[
            &turn("import pandas\ndf = pandas.DataFrame({'a': range(10**5)})\nsecret = 41"),
            &turn(
                "open('notes.txt', 'w').write('kept')\nimport os; os.mkdir('sub'); os.symlink('notes.txt', 'link')",
            ),
        ],
    );
    assert_eq!(status, Some(0), "{err}");
    assert!(answers.iter().all(|a| a["exit_code"] == 0), "{answers:?}");
}

#[test]
fn a_paused_session_resumes_in_another_process_with_its_variables_and_files() {
    let cli = cli();
    let file = cli.path().join("paused.mimobox");
    pause_once(&cli, &file, &[]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the paused state is the user's alone");
    let key = cli.cache().parent().unwrap().join("mimobox-state.key");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(key_mode & 0o777, 0o600, "a key of the user's own was made on first use");

    let (status, answers, err) = session(
        &cli,
        &["--resume", file.to_str().unwrap()],
        &[&turn(
            "print(secret + 1, len(df), open('notes.txt').read(), os.readlink('link'), os.path.isdir('sub'), os.getcwd())",
        )],
    );
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(answers[0]["stdout"], "42 100000 kept notes.txt True /workspace\n", "{}", answers[0]);
    assert_eq!(answers[0]["turn"], 3, "turn numbers carry on");
}

#[test]
fn an_altered_truncated_or_foreign_paused_state_is_refused_and_nothing_runs() {
    let cli = cli();
    let file = cli.path().join("paused.mimobox");
    pause_once(&cli, &file, &[]);
    let good = std::fs::read(&file).unwrap();
    let other_key = cli.write("other.key", &"k".repeat(40));
    std::fs::set_permissions(&other_key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("one byte altered", flipped, vec![]),
        ("truncated", good[..good.len() - 100].to_vec(), vec![]),
        ("empty", Vec::new(), vec![]),
        ("another key", good.clone(), vec!["--state-key", other_key.to_str().unwrap()]),
    ];
    for (what, bytes, extra) in cases {
        let bad = cli.path().join("bad.mimobox");
        std::fs::write(&bad, &bytes).unwrap();
        let mut flags = vec!["--resume", bad.to_str().unwrap()];
        flags.extend(extra);
        let (status, answers, err) = session(&cli, &flags, &[&turn("open('/workspace/ran', 'w')")]);
        assert_eq!(status, Some(2), "{what}: {err}");
        assert!(answers.is_empty(), "{what}: nothing ran: {answers:?}");
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(err.contains("pause") || err.contains("paused"), "{what}: {err}");
    }
}

#[test]
fn a_session_holding_a_file_open_says_why_it_cannot_pause() {
    let cli = cli();
    let file = cli.path().join("paused.mimobox");
    let (status, _, err) = session(
        &cli,
        &["--pause-to", file.to_str().unwrap()],
        &[&turn("f = open('/usr/local/lib/python315.zip', 'rb')")],
    );
    assert_eq!(status, Some(2), "{err}");
    assert!(err.contains("holds 1 file open"), "{err}");
    assert!(!file.exists(), "nothing was written");
}
