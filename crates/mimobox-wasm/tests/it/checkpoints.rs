//! Checkpoints and forks of the scientific CPython: state is carried,
//! while each session keeps its own randomness and environment, and state
//! that cannot be carried is refused. (The mechanism itself is tested on
//! the counter fixture in `sessions.rs`.)

use mimobox_core::{ExecRequest, Outcome, SandboxError, Session, TurnRequest};
use mimobox_wasm::WasmSession;

fn turn(session: &mut WasmSession, code: &str) -> String {
    let turn = session.turn(TurnRequest::new(code)).unwrap();
    assert_eq!(turn.result.outcome, Outcome::Exited { code: 0 }, "{}", turn.result.stderr_lossy());
    turn.result.stdout_lossy().to_string()
}

const PROBE: &str = "import os, random, numpy\n\
    print(x, os.environ.get('WHO'), random.random(), numpy.random.rand(), os.urandom(8).hex())";

#[test]
fn python_forks_carry_the_state_with_their_own_randomness_and_environment() {
    let sandbox = crate::python_sci();
    let mut session = sandbox.open_session(ExecRequest::default()).unwrap();
    turn(&mut session, "x = [1, 2, 3]");
    let env = vec![("WHO".to_owned(), "fork".to_owned())];
    let mut fork = session.fork(ExecRequest { env, ..ExecRequest::default() }).unwrap();

    let original = turn(&mut session, PROBE);
    let forked = turn(&mut fork, PROBE);
    let (original, forked): (Vec<&str>, Vec<&str>) =
        (original.split_whitespace().collect(), forked.split_whitespace().collect());
    assert_eq!(original[..4], ["[1,", "2,", "3]", "None"], "{original:?}");
    assert_eq!(forked[..4], ["[1,", "2,", "3]", "fork"], "{forked:?}");
    for (i, what) in [(4, "random"), (5, "numpy.random"), (6, "os.urandom")] {
        assert_ne!(original[i], forked[i], "{what} is the same in the fork");
    }
    // Each goes its own way.
    turn(&mut fork, "x.append(4)");
    assert_eq!(turn(&mut session, "print(x)"), "[1, 2, 3]\n");
    assert_eq!(turn(&mut fork, "print(x)"), "[1, 2, 3, 4]\n");
}

#[test]
fn a_python_session_holding_a_file_open_is_not_forked() {
    let sandbox = crate::python_sci();
    let mut session = sandbox.open_session(ExecRequest::default()).unwrap();
    turn(&mut session, "f = open('/usr/local/lib/python315.zip', 'rb')");
    let error = session.fork(ExecRequest::default()).unwrap_err();
    assert!(matches!(error, SandboxError::StateNotCarried { .. }), "{error}");
    assert!(error.to_string().contains("holds 1 file open"), "{error}");
    // The session is unharmed, and once the file is closed it forks.
    turn(&mut session, "f.close()");
    let mut fork = session.fork(ExecRequest::default()).unwrap();
    assert_eq!(turn(&mut fork, "print(open('/usr/local/lib/python315.zip', 'rb').read(2))"), "b'PK'\n");
    // A session opened from the profile's preload is not checkpointed
    // again; it says so.
    let error = session.checkpoint().unwrap_err();
    assert!(error.to_string().contains("fork it instead"), "{error}");
}
