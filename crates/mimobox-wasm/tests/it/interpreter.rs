//! The code interpreter through the library: a turn's events as they come,
//! its results and error, and files in and out of a `python-sci` session.

use std::sync::{Arc, Mutex};

use mimobox_core::{ExecRequest, Session, TurnEvent, TurnRequest};
use mimobox_wasm::{EntryKind, FileError, FileOpError};

#[test]
fn a_turns_events_arrive_in_order_and_match_its_result() {
    let sandbox = crate::python_sci();
    let mut session = sandbox.open_session(ExecRequest::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let request = TurnRequest {
        events: Some(Box::new(move |event| sink.lock().unwrap().push(event))),
        ..TurnRequest::new("print('a')\ndisplay({'k': 1})\nimport sys; print('b', file=sys.stderr)\n2 + 2")
    };
    let turn = session.turn(request).unwrap();
    let events = seen.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            TurnEvent::Stdout(b"a\n".to_vec()),
            TurnEvent::Result(turn.results[0].clone()),
            TurnEvent::Stderr(b"b\n".to_vec()),
            TurnEvent::Result(turn.results[1].clone()),
        ]
    );
    assert_eq!(turn.results[1]["text/plain"], "4");
    assert_eq!(turn.result.stdout, b"a\n");
    assert!(turn.error.is_none() && !turn.results_truncated);
}

#[test]
fn the_error_of_a_turn_is_typed() {
    let sandbox = crate::python_sci();
    let mut session = sandbox.open_session(ExecRequest::default()).unwrap();
    let turn = session.turn(TurnRequest::new("raise KeyError('missing')")).unwrap();
    let error = turn.error.expect("an error");
    assert_eq!((error.name.as_str(), error.value.as_str()), ("KeyError", "'missing'"));
    assert_eq!(error.traceback.last().map(String::as_str), Some("KeyError: 'missing'"));
    assert!(turn.alive);
}

#[test]
fn files_move_through_the_session_under_its_rules() {
    let sandbox = crate::python_sci();
    let mut session = sandbox.open_session(ExecRequest::default()).unwrap();
    assert_eq!(session.write_file("/workspace/n.txt", b"41").unwrap(), 2);
    let turn = session
        .turn(TurnRequest::new("open('m.txt', 'w').write(str(int(open('n.txt').read()) + 1))"))
        .unwrap();
    assert_eq!(turn.result.exit_code(), Some(0), "{}", turn.result.stderr_lossy());
    assert_eq!(session.read_file("/workspace/m.txt").unwrap(), b"42");
    let listing = session.list_files("/workspace").unwrap();
    let names: Vec<(&str, EntryKind)> = listing.entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(names, [("m.txt", EntryKind::File), ("n.txt", EntryKind::File)]);
    assert!(matches!(
        session.read_file("/workspace/../../etc/passwd"),
        Err(FileOpError::File(FileError::InvalidPath { .. }))
    ));
    assert!(matches!(
        session.read_file("/proc/self/environ"),
        Err(FileOpError::File(FileError::Outside { .. }))
    ));
    // A fork has its own workspace, empty: files are not state that forks carry.
    let mut fork = session.fork(ExecRequest::default()).unwrap();
    assert!(fork.list_files("/workspace").unwrap().entries.is_empty());
    session.close();
    assert!(matches!(fork.read_file("/workspace/m.txt"), Err(FileOpError::File(FileError::NotFound { .. }))));
}
