//! `python-sci` sessions as a code interpreter: rich results, errors,
//! streaming, files in and out, the private workspace, and hostile guests
//! and agents against each.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::scientific::{Driven, cli};

fn results(answer: &Value) -> &Vec<Value> {
    answer["results"].as_array().unwrap_or_else(|| panic!("no results: {answer}"))
}

fn write_file(session: &mut Driven, path: &str, data: &[u8]) -> Value {
    session.send(&json!({"op": "write_file", "path": path, "data": STANDARD.encode(data)}).to_string())
}

fn read_file(session: &mut Driven, path: &str) -> Value {
    session.send(&json!({"op": "read_file", "path": path}).to_string())
}

/// The sessions directory of a CLI run in `dir` (see `Cli::command`).
fn sessions_dir(dir: &Path) -> PathBuf {
    dir.join(format!("mimobox-{}", rustix::process::geteuid().as_raw())).join("sessions")
}

#[test]
fn the_last_expression_is_a_result_and_a_dataframe_has_html() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    let two = session.turn("1+1");
    assert_eq!(results(&two), &vec![json!({"text/plain": "2"})], "{two}");
    assert_eq!(two["stdout"], "", "a result is not printed: {two}");
    assert_eq!(two["error"], Value::Null);
    let assigned = session.turn("x = 1");
    assert!(results(&assigned).is_empty(), "{assigned}");
    let frame = session.turn("import pandas as pd\npd.DataFrame({'a': [1, 2]})");
    let bundle = &results(&frame)[0];
    assert!(bundle["text/html"].as_str().unwrap().contains("<table"), "{bundle}");
    assert!(bundle["text/plain"].as_str().unwrap().contains('a'), "{bundle}");
    // `_` is the last value, as in Python's own REPL.
    assert_eq!(results(&session.turn("_.shape"))[0]["text/plain"], "(2, 1)");
    assert_eq!(session.finish(), Some(0));
}

#[test]
fn a_chart_comes_back_as_a_png_and_its_figure_is_closed() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    // Left open at the end of the turn.
    let open = session.turn("import matplotlib.pyplot as plt\nplt.plot(range(10))\nNone");
    let bundle = &results(&open)[0];
    let png = STANDARD.decode(bundle["image/png"].as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(bundle["text/plain"].as_str().unwrap().starts_with("<Figure"), "{bundle}");
    assert_eq!(session.turn("print(len(plt.get_fignums()))")["stdout"], "0\n", "closed once returned");
    // Shown with plt.show(), before the turn's own output ends.
    let shown = session.turn("plt.bar([1, 2], [3, 4]); plt.show(); print('after')");
    assert_eq!(results(&shown).len(), 1, "{shown}");
    assert_eq!(shown["stdout"], "after\n");
    assert!(results(&shown)[0].get("image/svg+xml").is_none(), "SVG only when asked for");
    // SVG too, when the request asks for it.
    let svg = session.send(&json!({"code": "plt.plot([1, 2]); None", "figure_formats": ["svg"]}).to_string());
    let bundle = &results(&svg)[0];
    assert!(bundle["image/svg+xml"].as_str().unwrap().contains("<svg"), "{svg}");
    assert!(bundle["image/png"].is_string());
    assert_eq!(session.finish(), Some(0));
}

#[test]
fn display_shows_what_an_object_offers() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    let code = r#"
class Rich:
    def _repr_html_(self): return "<b>rich</b>"
    def _repr_json_(self): return {"a": [1, 2]}
    def _repr_png_(self): return b"\x89PNG fake"
    def _repr_markdown_(self): return "**rich**"
    def __repr__(self): return "Rich()"
display(Rich(), 3)
print("done")
"#;
    let answer = session.turn(code);
    let shown = results(&answer);
    assert_eq!(shown.len(), 2, "{answer}");
    assert_eq!(shown[0]["text/html"], "<b>rich</b>");
    assert_eq!(shown[0]["application/json"], json!({"a": [1, 2]}));
    assert_eq!(STANDARD.decode(shown[0]["image/png"].as_str().unwrap()).unwrap(), b"\x89PNG fake");
    assert_eq!(shown[0]["text/markdown"], "**rich**");
    assert_eq!(shown[0]["text/plain"], "Rich()");
    assert_eq!(shown[1], json!({"text/plain": "3"}));
    assert_eq!(answer["stdout"], "done\n");
}

#[test]
fn an_object_may_give_its_whole_bundle() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    let code = r#"
class Bundle:
    def _repr_mimebundle_(self, **kw):
        return {"text/html": "<i>b</i>", "text/plain": "Bundle"}
Bundle()
"#;
    let answer = session.turn(code);
    assert_eq!(results(&answer), &vec![json!({"text/html": "<i>b</i>", "text/plain": "Bundle"})], "{answer}");
}

#[test]
fn an_exception_is_a_structured_error_beside_the_traceback() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    let failed = session.turn("def f():\n    return 1/0\nf()");
    assert_eq!((failed["exit_code"].as_i64(), failed["alive"].as_bool()), (Some(1), Some(true)));
    let error = &failed["error"];
    assert_eq!(error["name"], "ZeroDivisionError", "{failed}");
    assert_eq!(error["value"], "division by zero");
    let traceback: Vec<&str> =
        error["traceback"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(traceback.first(), Some(&"Traceback (most recent call last):"), "{traceback:?}");
    assert_eq!(traceback.last(), Some(&"ZeroDivisionError: division by zero"));
    assert!(traceback.iter().any(|l| l.contains("in f")), "{traceback:?}");
    // Only the caller's frames: none of the host's machinery.
    let stderr = failed["stderr"].as_str().unwrap();
    for text in [traceback.join("\n").as_str(), stderr] {
        assert!(!text.contains("<reactor>") && !text.contains("in turn"), "{text}");
    }
    assert!(stderr.contains("ZeroDivisionError: division by zero"), "{stderr}");
    // A syntax error too, and the next turn is clean.
    let syntax = session.turn("1 +");
    assert_eq!(syntax["error"]["name"], "SyntaxError", "{syntax}");
    assert_eq!(session.turn("2")["error"], Value::Null);
}

#[test]
fn what_a_guest_prints_or_forges_never_changes_the_hosts_fields() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    let printed = session.turn(r#"print('{"v":1,"op":"display","data":{"text/plain":"forged"}}')"#);
    assert!(results(&printed).is_empty(), "printed text is no result: {printed}");
    // A frame sent by hand is a result of the turn, and nothing more: it
    // cannot set the outcome, the status or the error of a turn that
    // succeeded.
    let code = r#"
import _host
_host.call(b'{"v":1,"op":"display","data":{"text/plain":"sent"},"outcome":"timed_out","exit_code":9,"alive":false}')
_host.call(b'{"v":1,"op":"error","name":"Forged","value":"x","traceback":[]}')
None
"#;
    let forged = session.turn(code);
    assert_eq!(
        (forged["outcome"].as_str(), forged["exit_code"].as_i64(), forged["alive"].as_bool()),
        (Some("exited"), Some(0), Some(true)),
        "{forged}"
    );
    assert_eq!(results(&forged), &vec![json!({"text/plain": "sent"})]);
    assert_eq!(forged["error"], Value::Null, "no error beside a turn that succeeded");
}

#[test]
fn hostile_results_are_capped_flagged_and_the_host_holds() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    // A 1 GB string: cut in the guest, flagged.
    let huge = session.turn("s = 'x' * 10**9\ndisplay(s)\ndel s");
    assert_eq!(huge["results_truncated"], true, "{}", huge["results_truncated"]);
    let text = results(&huge)[0]["text/plain"].as_str().unwrap();
    assert!(text.len() < 5 << 20, "{} bytes came back", text.len());
    // Ten thousand results: the first 64, flagged.
    let many = session.turn("for i in range(10_000): display(i)");
    assert_eq!((results(&many).len(), many["results_truncated"].as_bool()), (64, Some(true)));
    // A frame bigger than the turn's bound is never read; a note stands in
    // its place.
    let big = session.turn("import _host\n_host.call(b'{\"v\":1,\"op\":\"display\",\"data\":{\"image/png\":\"' + b'A' * (8 << 20) + b'\"}}')\nNone");
    let note = results(&big)[0]["text/plain"].as_str().unwrap();
    assert!(note.contains("dropped") && note.contains("session.max_result_bytes"), "{note}");
    assert_eq!(big["results_truncated"], true);
    // Invalid UTF-8 and invalid JSON become notes.
    let invalid = session
        .turn("_host.call(b'{\"v\":1,\"op\":\"display\",\"data\":{\"text/plain\":\"\\xff\\xfe\"}}')\nNone");
    assert!(results(&invalid)[0]["text/plain"].as_str().unwrap().contains("not valid JSON"), "{invalid}");
    // Many figures: drawn until the host takes no more, then all closed.
    let figures = session.turn("import matplotlib.pyplot as plt\nfor i in range(200): plt.figure()");
    assert_eq!((results(&figures).len(), figures["results_truncated"].as_bool()), (64, Some(true)));
    assert_eq!(session.turn("print(len(plt.get_fignums()))")["stdout"], "0\n");
    assert_eq!(session.finish(), Some(0));
}

#[test]
fn a_stream_keeps_the_order_of_output_and_results() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    let code = "import sys\nprint('one')\nprint('two', file=sys.stderr)\ndisplay(3)\nprint('four')\n1/0";
    let lines = session.stream(&json!({"code": code, "stream": true}).to_string());
    let mut kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    // The traceback may come in several pieces of stderr.
    kinds.dedup();
    // The error comes last, once the turn's outcome says it stands.
    assert_eq!(kinds, ["stdout", "stderr", "result", "stdout", "stderr", "error", "end"], "{lines:?}");
    assert_eq!(lines[0]["text"], "one\n");
    assert_eq!(lines[1]["text"], "two\n");
    assert_eq!(lines[2]["data"], json!({"text/plain": "3"}));
    let error = lines.iter().find(|l| l["type"] == "error").unwrap();
    assert_eq!(error["name"], "ZeroDivisionError");
    let end = lines.last().unwrap();
    assert_eq!((end["exit_code"].as_i64(), end["stdout"].as_str()), (Some(1), Some("one\nfour\n")));
    // Without `stream`, one line as before.
    let plain = session.turn("print(5)");
    assert!(plain.get("type").is_none(), "{plain}");
    assert_eq!(plain["stdout"], "5\n");
}

#[test]
fn files_go_in_and_out_of_the_workspace() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    let written = write_file(&mut session, "/workspace/in.csv", b"a,b\n1,2\n3,4\n");
    assert_eq!(written, json!({"ok": true, "bytes": 12}));
    let turn = session.turn("import pandas as pd\ndf = pd.read_csv('in.csv')\ndf['c'] = df.a + df.b\ndf.to_csv('out.csv', index=False)");
    assert_eq!(turn["exit_code"], 0, "{turn}");
    let read = read_file(&mut session, "/workspace/out.csv");
    assert_eq!(STANDARD.decode(read["data"].as_str().unwrap()).unwrap(), b"a,b,c\n1,2,3\n3,4,7\n", "{read}");
    assert_eq!(read["bytes"], 18);
    session.turn("import os; os.mkdir('sub'); os.symlink('in.csv', 'link')");
    let listing = session.send(r#"{"op": "list_files", "path": "/workspace"}"#);
    let entries: Vec<(&str, &str)> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        entries,
        [("in.csv", "file"), ("link", "symlink"), ("out.csv", "file"), ("sub", "dir")],
        "{listing}"
    );
    // /tmp is the session's too.
    assert_eq!(write_file(&mut session, "/tmp/t", b"x")["ok"], true);
    assert_eq!(session.turn("print(open('/tmp/t').read())")["stdout"], "x\n");
    // Read-only mounts may be read, never written.
    let zip = session.send(r#"{"op": "list_files", "path": "/usr/local/lib"}"#);
    assert!(zip["entries"].as_array().unwrap().iter().any(|e| e["name"] == "python315.zip"), "{zip}");
    let refused = write_file(&mut session, "/usr/local/lib/evil", b"x");
    assert!(refused["error"].as_str().unwrap().contains("read-only"), "{refused}");
    assert_eq!(session.finish(), Some(0));
}

#[test]
fn file_operations_refuse_every_way_out() {
    let cli = cli();
    let outside = tempfile::tempdir().unwrap();
    let fifo_dir = tempfile::tempdir().unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        fifo_dir.path().join("pipe"),
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    let mount = format!("{}::/data", fifo_dir.path().display());
    let mut session = Driven::open(&cli, &["--dir", &mount]);
    session.turn("open('secret', 'w').write('inside'); import os; os.symlink('secret', 'link')");
    let target = outside.path().join("target");
    for (request, problem) in [
        (json!({"op": "read_file", "path": "/workspace/../etc/passwd"}), "may not contain \"..\""),
        (json!({"op": "read_file", "path": "/etc/passwd"}), "outside"),
        (json!({"op": "write_file", "path": "/etc/mimobox-test", "data": "eA=="}), "outside"),
        // The guest's /tmp is its own, not the host's.
        (json!({"op": "write_file", "path": target.to_str().unwrap(), "data": "eA=="}), "no such"),
        (json!({"op": "read_file", "path": "workspace/secret"}), "absolute"),
        (json!({"op": "read_file", "path": "/workspacex/secret"}), "outside"),
        (json!({"op": "write_file", "path": "/workspace/link", "data": "eA=="}), "symbolic link"),
        (json!({"op": "read_file", "path": "/workspace/link"}), "symbolic link"),
        (json!({"op": "read_file", "path": "/data/pipe"}), "not a regular file"),
        (json!({"op": "write_file", "path": "/data/pipe", "data": "eA=="}), "not a regular file"),
        (json!({"op": "read_file", "path": "/workspace"}), "directory"),
        (json!({"op": "write_file", "path": "/workspace/nodir/x", "data": "eA=="}), "no such"),
    ] {
        let answer = session.send(&request.to_string());
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("{request} was not refused: {answer}"));
        assert!(error.to_lowercase().contains(problem), "{request}: {error}");
        assert!(!error.contains('\n'));
    }
    assert!(!target.exists(), "nothing outside was written");
    // The guest cannot make a link that leaves its mounts either.
    let escape = session.turn("import os; os.symlink('/etc', '/workspace/etc')");
    assert_eq!(escape["error"]["name"], "PermissionError", "{escape}");
    assert_eq!(session.turn("print(open('secret').read())")["stdout"], "inside\n");
    assert_eq!(session.finish(), Some(0));
}

#[test]
fn a_write_over_the_quota_changes_nothing() {
    let cli = cli();
    let mut session = Driven::open(&cli, &["--max-disk-write", "64KiB"]);
    assert_eq!(write_file(&mut session, "/workspace/f", b"old")["ok"], true);
    let refused = write_file(&mut session, "/workspace/f", &vec![b'x'; 100 << 10]);
    assert!(refused["error"].as_str().unwrap().contains("quota"), "{refused}");
    let listing = session.send(r#"{"op": "list_files", "path": "/workspace"}"#);
    assert_eq!(
        listing["entries"],
        json!([{"name": "f", "kind": "file", "bytes": 3}]),
        "no temp file is left"
    );
    assert_eq!(
        STANDARD.decode(read_file(&mut session, "/workspace/f")["data"].as_str().unwrap()).unwrap(),
        b"old"
    );
    // Host writes and guest writes share the quota; a file the host
    // creates costs its entry, as the guest's own do.
    assert_eq!(write_file(&mut session, "/workspace/g", &vec![b'y'; 50 << 10])["ok"], true);
    let guest = session.turn("open('h', 'wb').write(b'z' * 8192)");
    assert_eq!(guest["disk_quota_hit"], true, "{guest}");
}

#[test]
fn each_session_has_its_own_empty_workspace_removed_at_its_end() {
    let cli = cli();
    let mut first = Driven::open(&cli, &[]);
    let mut second = Driven::open(&cli, &[]);
    first.turn("open('mine', 'w').write('first')");
    let seen = second.turn("import os; print(os.listdir('/workspace'), os.listdir('/tmp'), os.getcwd())");
    assert_eq!(seen["stdout"], "[] [] /workspace\n", "{seen}");
    let sessions = sessions_dir(cli.path());
    let dirs = |dir: &Path| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(dirs(&sessions), 4, "two sessions, each a directory and a lock");
    assert_eq!(first.finish(), Some(0));
    assert_eq!(second.finish(), Some(0));
    assert_eq!(dirs(&sessions), 0, "removed when the sessions ended");
}

#[test]
fn a_killed_sessions_workspace_is_removed_at_the_next_start() {
    let cli = cli();
    let mut killed = Driven::open(&cli, &[]);
    killed.turn("open('left', 'w').write('behind')");
    let sessions = sessions_dir(cli.path());
    let leftover: Vec<PathBuf> = std::fs::read_dir(&sessions).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(leftover.len(), 2);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    assert!(leftover.iter().all(|p| p.exists()), "SIGKILL leaves them");
    let mut next = Driven::open(&cli, &[]);
    assert_eq!(next.turn("print(1)")["stdout"], "1\n");
    assert!(leftover.iter().all(|p| !p.exists()), "the next start removed them");
    assert_eq!(next.finish(), Some(0));
}

#[test]
fn a_tree_as_deep_as_the_quota_allows_is_removed_without_harm() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    // Renames are free: each level costs one directory's entry.
    let deep = session.turn("import os\nos.mkdir('t')\nfor i in range(20000):\n    os.mkdir('n'); os.rename('t', 'n/t'); os.rename('n', 't')");
    assert_eq!(deep["exit_code"], 0, "{}", deep["stderr"]);
    assert_eq!(session.finish(), Some(0), "closing removed the tree without overflowing a stack");
    let sessions = sessions_dir(cli.path());
    assert_eq!(std::fs::read_dir(&sessions).unwrap().count(), 0, "and nothing is left");
}

#[test]
fn an_error_stands_only_beside_a_failed_exit_and_is_streamed_last() {
    let cli = cli();
    let mut session = Driven::open(&cli, &["--timeout", "2s"]);
    let forge = r#"import _host
for i in range(3000):
    _host.call(b'{"v":1,"op":"error","name":"Forged","value":"x","traceback":["fake"]}')
print("done")"#;
    let lines = session.stream(&json!({"code": forge, "stream": true}).to_string());
    assert!(lines.iter().all(|l| l["type"] != "error"), "a forged error of a good turn is not streamed");
    assert_eq!(lines.last().unwrap()["error"], Value::Null);
    // A stop the host decided carries no guest-named cause.
    let timed_out = session.turn(
        r#"import _host
_host.call(b'{"v":1,"op":"error","name":"MemoryError","value":"the host ran out","traceback":[]}')
while True: pass"#,
    );
    assert_eq!((timed_out["outcome"].as_str(), &timed_out["error"]), (Some("timed_out"), &Value::Null));
}

#[test]
fn a_huge_exception_is_cut_to_fit_not_lost() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    for code in ["raise ValueError('x' * 300000)", "raise ValueError('é' * 300000)"] {
        let failed = session.turn(code);
        let error = &failed["error"];
        assert_eq!(error["name"], "ValueError", "{code}: {}", failed["error"]);
        assert!(error["value"].as_str().unwrap().chars().count() <= 16001);
    }
}

#[test]
fn a_file_path_that_ends_as_a_directory_is_refused() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    for path in ["/workspace/new/", "/workspace/new/."] {
        let answer = write_file(&mut session, path, b"x");
        assert!(answer["error"].as_str().unwrap().contains("may not end"), "{path}: {answer}");
    }
    assert_eq!(session.send(r#"{"op": "list_files", "path": "/workspace/"}"#)["entries"], json!([]));
}

#[test]
fn a_cell_shows_its_last_expression_and_nothing_else_whatever_its_shape() {
    let cli = cli();
    let mut session = Driven::open(&cli, &[]);
    // (cell, the text/plain shown or none, stdout, the error's name)
    let cells: &[(&str, Option<&str>, &str, Option<&str>)] = &[
        ("x = 1", None, "", None),
        ("x = 1\nx", Some("1"), "", None),
        ("x = 1\n42", Some("42"), "", None),
        ("'done'", Some("'done'"), "", None),
        ("x = 1\n'''doc'''", Some("'doc'"), "", None),
        ("'''doc'''\nx = 1", None, "", None),
        ("None", None, "", None),
        ("print('hi')", None, "hi\n", None),
        ("x = 1\nx;", Some("1"), "", None),
        ("x = 1\nx ;  # c", Some("1"), "", None),
        ("x = 1; 42", Some("42"), "", None),
        ("x = '#'; 42", Some("42"), "", None),
        ("y = 2\nx = y; y = 3", None, "", None),
        ("x: int = 1", None, "", None),
        ("x = 8\nx >>= 1", None, "", None),
        ("f = lambda a=1: a", None, "", None),
        ("(y := 3)", Some("3"), "", None),
        ("x = 1\nx == 1", Some("True"), "", None),
        ("def f(x):\n    return x + 1\nf(1)", Some("2"), "", None),
        ("for i in range(2):\n    i", None, "", None),
        ("if True:\n    5\nelse:\n    6", None, "", None),
        ("import math; math.floor(2.5)", Some("2"), "", None),
        ("import math\nmath.floor(\n  2.5\n)", Some("2"), "", None),
        ("d = {\n'a': 1,\n}", None, "", None),
        ("d = {\n'a': 1,\n}\nd", Some("{'a': 1}"), "", None),
        ("q = '''\nSELECT *\nFROM t\n'''", None, "", None),
        ("len('''\nfor x in y:\n    ''')", Some("17"), "", None),
        ("print(f'{1+1}')\n3", Some("3"), "2\n", None),
        ("d = {'k': 1}\nf\"{d['k']}\"", Some("'1'"), "", None),
        ("x = 1 + \\\n2\nx", Some("3"), "", None),
        ("x = 1  # note \\\nx", Some("1"), "", None),
        ("a = [1]\n*a, 2", Some("(1, 2)"), "", None),
        ("match = 1\nmatch", Some("1"), "", None),
        ("match 1:\n    case 1:\n        y = 1", None, "", None),
        ("x = 1\r\nx", Some("1"), "", None),
        ("# only a comment", None, "", None),
        ("1 +", None, "", Some("SyntaxError")),
        ("return 1", None, "", Some("SyntaxError")),
        ("print('ran')\nawait f()", None, "ran\n", Some("SyntaxError")),
        ("x = undefined_name", None, "", Some("NameError")),
        ("x = 1\n  y = 2", None, "", Some("IndentationError")),
    ];
    for (cell, shown, stdout, error) in cells {
        let answer = session.turn(cell);
        let texts: Vec<&str> = results(&answer).iter().filter_map(|b| b["text/plain"].as_str()).collect();
        assert_eq!(texts, shown.iter().copied().collect::<Vec<_>>(), "{cell:?}: {answer}");
        assert_eq!(answer["stdout"], *stdout, "{cell:?}: {answer}");
        assert_eq!(answer["error"]["name"].as_str(), *error, "{cell:?}: {answer}");
    }
    // A traceback names the cell's own lines, not the kernel's.
    let failed = session.turn("def f():\n    return 1/0\nf()");
    let traceback = failed["error"]["traceback"].as_array().unwrap();
    let text: String = traceback.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n");
    assert!(text.contains("line 3") && text.contains("line 2, in f"), "{text}");
    assert!(!text.contains("run_turn") && !text.contains("kernel"), "{text}");
    assert_eq!(session.finish(), Some(0));
}
