//! The session host through its public API, on the Wasmtime backend and the
//! counter fixture (a session guest that keeps a counter: `i` adds one and
//! prints it, `p` prints it, `x` exits, `l` loops forever, `g` grows memory
//! by 16 MiB).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mimobox_core::{Outcome, ResumeError, SandboxConfig, SandboxError, TurnRequest};
use mimobox_host::{
    HostConfig, HostError, LimitKind, Limits, LocalDir, PausedStore, Scope, SessionHost, SessionId,
    SessionState, StateName, TurnKey, WhenBusy,
};
use mimobox_wasm::WasmSandbox;

const KEY: [u8; 32] = [7; 32];

struct Setup {
    _dirs: tempfile::TempDir,
    host: SessionHost<WasmSandbox>,
    store: LocalDir,
}

fn sandbox(dir: &std::path::Path, adjust: impl FnOnce(&mut SandboxConfig)) -> WasmSandbox {
    let mut config = SandboxConfig::default();
    config.cache.dir = Some(dir.join("cache"));
    config.module = Some(mimobox_fixtures::path("counter"));
    config.timeout = Duration::from_secs(2);
    config.pool.size = 16;
    adjust(&mut config);
    WasmSandbox::create(config).unwrap()
}

fn setup(
    adjust_host: impl FnOnce(&mut HostConfig),
    adjust_sandbox: impl FnOnce(&mut SandboxConfig),
) -> Setup {
    let dirs = tempfile::tempdir().unwrap();
    let store = LocalDir::open(dirs.path().join("paused"), 64 << 20).unwrap();
    let mut config = HostConfig::new(KEY.to_vec());
    config.store = Some(Arc::new(store.clone()));
    adjust_host(&mut config);
    let counter = sandbox(dirs.path(), adjust_sandbox);
    let host = SessionHost::new(config, [("counter".to_string(), counter)]).unwrap();
    Setup { _dirs: dirs, host, store }
}

/// A host of the counter profile (its cache in `dir`) on `store`.
fn host_on(dir: &std::path::Path, store: Arc<dyn PausedStore>) -> SessionHost<WasmSandbox> {
    let mut config = HostConfig::new(KEY.to_vec());
    config.store = Some(store);
    SessionHost::new(config, [("counter".to_string(), sandbox(dir, |_| {}))]).unwrap()
}

/// The newest state of session `id` in the store, if it has one.
async fn current(store: &LocalDir, id: SessionId) -> Option<StateName> {
    store.list().await.unwrap().into_iter().filter(|state| state.id == id).max()
}

/// The bytes of the newest state of session `id`.
async fn state_of(store: &LocalDir, id: SessionId) -> (StateName, Vec<u8>) {
    let name = current(store, id).await.expect("the session has a state in the store");
    (name, store.get(name).await.unwrap())
}

async fn turn(host: &SessionHost<WasmSandbox>, owner: &str, id: SessionId, code: &str) -> String {
    let result = host.turn(owner, id, TurnRequest::new(code), WhenBusy::Refuse).await.unwrap();
    assert_eq!(result.result.outcome, Outcome::Exited { code: 0 }, "{result:?}");
    String::from_utf8(result.result.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_their_state_by_id_and_ids_are_unguessable() {
    let s = setup(|_| {}, |_| {});
    let a = s.host.open("alice", "counter").await.unwrap();
    let b = s.host.open("alice", "counter").await.unwrap();
    assert_ne!(a, b);
    assert_eq!(a.to_string().len(), 32);
    assert_eq!(turn(&s.host, "alice", a, "i").await, "1\n");
    assert_eq!(turn(&s.host, "alice", a, "i").await, "2\n");
    assert_eq!(turn(&s.host, "alice", b, "i").await, "1\n");
    let listed: Vec<SessionId> = s.host.list("alice").iter().map(|i| i.id).collect();
    assert_eq!(listed, vec![a, b]);
    assert_eq!(s.host.info("alice", a).unwrap().turns, 2);
    // An id nobody minted names nothing.
    let never = SessionId::random().unwrap();
    assert!(matches!(s.host.info("alice", never), Err(HostError::NotFound)));
    assert!(matches!(s.host.open("alice", "nope").await, Err(HostError::UnknownProfile { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owners_id_names_nothing_for_another() {
    let s = setup(|_| {}, |_| {});
    let a = s.host.open("alice", "counter").await.unwrap();
    turn(&s.host, "alice", a, "i").await;
    let never = SessionId::random().unwrap();
    // Mallory gets exactly what an id that never existed gets, for every
    // kind of call.
    for id in [a, never] {
        assert!(matches!(s.host.info("mallory", id), Err(HostError::NotFound)));
        let turned = s.host.turn("mallory", id, TurnRequest::new("i"), WhenBusy::Refuse).await;
        assert!(matches!(turned, Err(HostError::NotFound)));
        let read = s.host.read_file("mallory", id, "/tmp/x", WhenBusy::Refuse).await;
        assert!(matches!(read, Err(HostError::NotFound)));
        assert!(matches!(s.host.pause("mallory", id).await, Err(HostError::NotFound)));
        assert!(matches!(s.host.close("mallory", id).await, Err(HostError::NotFound)));
    }
    assert!(s.host.list("mallory").is_empty());
    // Alice's session is untouched.
    assert_eq!(turn(&s.host, "alice", a, "p").await, "1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_turn_limits_are_typed_errors_per_owner_and_in_total() {
    let s = setup(
        |c| {
            c.owner_limits = Limits { sessions: 2, running_turns: 1, memory: u64::MAX };
            c.limits = Limits { sessions: 3, running_turns: u64::MAX, memory: u64::MAX };
        },
        |_| {},
    );
    let a1 = s.host.open("alice", "counter").await.unwrap();
    s.host.open("alice", "counter").await.unwrap();
    let third = s.host.open("alice", "counter").await;
    assert!(
        matches!(third, Err(HostError::Limit { kind: LimitKind::Sessions, scope: Scope::Owner, limit: 2 })),
        "{third:?}"
    );
    s.host.open("bob", "counter").await.unwrap();
    let fourth = s.host.open("bob", "counter").await;
    assert!(
        matches!(fourth, Err(HostError::Limit { kind: LimitKind::Sessions, scope: Scope::Host, limit: 3 })),
        "{fourth:?}"
    );
    // Closing one makes room again.
    s.host.close("alice", a1).await.unwrap();
    let a3 = s.host.open("alice", "counter").await.unwrap();

    // One running turn per owner: a second of alice's, on another session,
    // is refused while the first loops until its timeout.
    let a4 = s.host.list("alice").into_iter().map(|i| i.id).find(|id| *id != a3).unwrap();
    let host = s.host.clone();
    let looping =
        tokio::spawn(async move { host.turn("alice", a3, TurnRequest::new("l"), WhenBusy::Refuse).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = s.host.turn("alice", a4, TurnRequest::new("i"), WhenBusy::Refuse).await;
    assert!(
        matches!(
            second,
            Err(HostError::Limit { kind: LimitKind::RunningTurns, scope: Scope::Owner, limit: 1 })
        ),
        "{second:?}"
    );
    let looped = looping.await.unwrap().unwrap();
    assert_eq!(looped.result.outcome, Outcome::TimedOut);
    assert!(!looped.alive);
    // The timed-out session is closed; the other one runs again.
    assert!(matches!(s.host.info("alice", a3), Err(HostError::NotFound)));
    assert_eq!(turn(&s.host, "alice", a4, "i").await, "1\n");
    assert_eq!(s.host.metrics().closed("ended"), 1);
    assert!(s.host.render_metrics().contains("mimobox_refusals_total{reason=\"running_turns\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_call_on_a_busy_session_waits_boundedly_or_is_refused() {
    let s = setup(|c| c.max_waiting = 1, |_| {});
    let id = s.host.open("alice", "counter").await.unwrap();
    let host = s.host.clone();
    let started = Instant::now();
    let looping =
        tokio::spawn(async move { host.turn("alice", id, TurnRequest::new("l"), WhenBusy::Refuse).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = s.host.turn("alice", id, TurnRequest::new("i"), WhenBusy::Refuse).await;
    assert!(matches!(refused, Err(HostError::Busy { waited: None })), "{refused:?}");
    // One waiter is allowed; it gives up after its own bound.
    let host = s.host.clone();
    let waiter = tokio::spawn(async move {
        host.turn("alice", id, TurnRequest::new("i"), WhenBusy::Wait(Duration::from_millis(500))).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A second waiter is past `max_waiting`: refused at once.
    let extra = s.host.turn("alice", id, TurnRequest::new("i"), WhenBusy::Wait(Duration::from_secs(5))).await;
    assert!(matches!(extra, Err(HostError::Busy { waited: None })), "{extra:?}");
    let waited = waiter.await.unwrap();
    assert!(matches!(waited, Err(HostError::Busy { waited: Some(_) })), "{waited:?}");
    // A waiter that outlasts the running turn gets the session after it
    // (here: gone, since the loop timed out and ended it).
    let after = s.host.turn("alice", id, TurnRequest::new("i"), WhenBusy::Wait(Duration::from_secs(5))).await;
    assert!(matches!(after, Err(HostError::NotFound)), "{after:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    looping.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_paused_then_closed_in_the_background_with_nobody_calling() {
    let s = setup(
        |c| {
            c.pause_idle_after = Some(Duration::from_millis(300));
            c.sweep_interval = Duration::from_millis(100);
        },
        |c| c.session.idle_timeout = Duration::from_secs(3),
    );
    let paused = s.host.open("alice", "counter").await.unwrap();
    turn(&s.host, "alice", paused, "i").await;
    turn(&s.host, "alice", paused, "i").await;
    // Paused by the sweep (due after 300 ms; allowed 5 s on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.host.info("alice", paused).unwrap().state != SessionState::Paused {
        assert!(Instant::now() < deadline, "the idle session was not paused in the background");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.host.gauges().paused, 1);
    assert!(current(&s.store, paused).await.is_some(), "the paused state is in the store");
    // The next turn resumes it, with its state.
    assert_eq!(turn(&s.host, "alice", paused, "i").await, "3\n");
    assert_eq!(s.host.info("alice", paused).unwrap().state, SessionState::Live);
    assert!(current(&s.store, paused).await.is_none(), "a resumed session's state is deleted");
    assert_eq!(s.host.metrics().resumes(), (1, 0));
    // Left alone past its idle timeout, it is closed, and its paused state
    // deleted.
    tokio::time::sleep(Duration::from_millis(3600)).await;
    assert!(matches!(s.host.info("alice", paused), Err(HostError::NotFound)));
    assert!(current(&s.store, paused).await.is_none());
    assert_eq!(s.host.metrics().closed("idle"), 1);
    assert!(s.host.list("alice").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifetime_closes_a_session_even_while_it_is_used() {
    let s = setup(
        |c| c.sweep_interval = Duration::from_millis(100),
        |c| c.session.lifetime = Duration::from_secs(1),
    );
    let id = s.host.open("alice", "counter").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let ended = loop {
        match s.host.turn("alice", id, TurnRequest::new("i"), WhenBusy::Refuse).await {
            Ok(result) if result.alive => {}
            other => break other,
        }
        assert!(Instant::now() < deadline, "still open past its lifetime");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(matches!(ended, Err(HostError::NotFound) | Err(HostError::Sandbox(_))), "{ended:?}");
    assert!(matches!(s.host.info("alice", id), Err(HostError::NotFound)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_pauses_the_least_recently_used_idle_session_first() {
    // Each session grows by 16 MiB on `g`; the host holds at most about two.
    let s = setup(|c| c.limits.memory = 40 << 20, |_| {});
    let old = s.host.open("alice", "counter").await.unwrap();
    let mid = s.host.open("alice", "counter").await.unwrap();
    turn(&s.host, "alice", old, "g").await;
    turn(&s.host, "alice", mid, "g").await;
    assert_eq!(s.host.info("alice", old).unwrap().state, SessionState::Live);
    let new = s.host.open("bob", "counter").await.unwrap();
    turn(&s.host, "bob", new, "g").await;
    assert_eq!(s.host.info("alice", old).unwrap().state, SessionState::Paused, "the oldest idle one");
    assert_eq!(s.host.info("alice", mid).unwrap().state, SessionState::Live);
    assert!(s.host.gauges().memory <= 40 << 20);
    // And it comes back when used, pausing the next least recent.
    turn(&s.host, "alice", old, "i").await;
    assert_eq!(s.host.info("alice", old).unwrap().state, SessionState::Live);
    assert_eq!(s.host.info("alice", mid).unwrap().state, SessionState::Paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_memory_pressure_refuses_new_sessions() {
    let s = setup(
        |c| {
            c.store = None;
            c.owner_limits.memory = 16 << 20;
        },
        |_| {},
    );
    let id = s.host.open("alice", "counter").await.unwrap();
    turn(&s.host, "alice", id, "g").await;
    let refused = s.host.open("alice", "counter").await;
    assert!(
        matches!(refused, Err(HostError::Limit { kind: LimitKind::Memory, scope: Scope::Owner, .. })),
        "{refused:?}"
    );
    // Other owners are not held to alice's limit.
    s.host.open("bob", "counter").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_state_altered_swapped_or_replayed_in_the_store_is_refused() {
    let s = setup(|_| {}, |_| {});
    let a = s.host.open("alice", "counter").await.unwrap();
    let b = s.host.open("alice", "counter").await.unwrap();
    turn(&s.host, "alice", a, "i").await;
    s.host.pause("alice", a).await.unwrap();
    s.host.pause("alice", b).await.unwrap();
    let (name_a, state_a) = state_of(&s.store, a).await;
    // One byte changed.
    let mut altered = state_a.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 1;
    s.store.put(name_a, altered).await.unwrap();
    let turned = s.host.turn("alice", a, TurnRequest::new("p"), WhenBusy::Refuse).await;
    assert!(matches!(turned, Err(HostError::Sandbox(_))), "{turned:?}");
    // Another session's state under this id.
    let (_, state_b) = state_of(&s.store, b).await;
    s.store.put(name_a, state_b).await.unwrap();
    let turned = s.host.turn("alice", a, TurnRequest::new("p"), WhenBusy::Refuse).await;
    assert!(matches!(turned, Err(HostError::Sandbox(_))), "{turned:?}");
    assert_eq!(s.host.metrics().resumes(), (0, 2));
    // The genuine one still resumes.
    s.store.put(name_a, state_a).await.unwrap();
    assert_eq!(turn(&s.host, "alice", a, "p").await, "1\n");
}

#[tokio::test]
async fn an_older_genuine_state_handed_back_by_the_store_is_refused() {
    let s = setup(|_| {}, |_| {});
    let a = s.host.open("alice", "counter").await.unwrap();
    turn(&s.host, "alice", a, "i").await;
    s.host.pause("alice", a).await.unwrap();
    let (_, older) = state_of(&s.store, a).await;
    // Resumed, one more turn, paused again.
    turn(&s.host, "alice", a, "i").await;
    s.host.pause("alice", a).await.unwrap();
    // Resumed without a turn (a listing), and paused again: its turn count
    // is the last pause's, its state need not be.
    let listed = s.host.list_files("alice", a, "/", WhenBusy::Refuse).await;
    assert!(!matches!(listed, Err(HostError::NotFound | HostError::Sandbox(_))), "{listed:?}");
    s.host.pause("alice", a).await.unwrap();
    let (newest_name, newest) = state_of(&s.store, a).await;
    assert_eq!(newest_name.pause, 3);
    // The store replays the state of the first pause under the newest
    // name: MAC and binding are genuine, the pause is not the session's
    // last.
    s.store.put(newest_name, older).await.unwrap();
    let turned = s.host.turn("alice", a, TurnRequest::new("p"), WhenBusy::Refuse).await;
    assert!(
        matches!(
            turned,
            Err(HostError::Sandbox(SandboxError::Resume(ResumeError::Stale { found: 1, expected: 3 })))
        ),
        "{turned:?}"
    );
    s.store.put(newest_name, newest).await.unwrap();
    assert_eq!(turn(&s.host, "alice", a, "p").await, "2\n");
}

#[tokio::test]
async fn a_closed_session_leaves_no_paused_state_for_a_later_host() {
    let s = setup(|_| {}, |_| {});
    let a = s.host.open("alice", "counter").await.unwrap();
    turn(&s.host, "alice", a, "i").await;
    s.host.pause("alice", a).await.unwrap();
    let (name, stale) = state_of(&s.store, a).await;
    // Resumed (its state deleted), then a stale copy comes back into the
    // store, as after a delete that failed.
    turn(&s.host, "alice", a, "i").await;
    s.store.put(name, stale).await.unwrap();
    // Closed while live: the copy goes with it.
    s.host.close("alice", a).await.unwrap();
    assert!(current(&s.store, a).await.is_none(), "a closed session's state stayed in the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_turns_finish_then_pauses_the_rest() {
    let s = setup(|_| {}, |c| c.timeout = Duration::from_secs(1));
    let idle = s.host.open("alice", "counter").await.unwrap();
    turn(&s.host, "alice", idle, "i").await;
    let busy = s.host.open("alice", "counter").await.unwrap();
    let host = s.host.clone();
    let running =
        tokio::spawn(async move { host.turn("alice", busy, TurnRequest::new("l"), WhenBusy::Refuse).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let report = s.host.shutdown(Duration::from_secs(5)).await;
    // The running turn finished (at its timeout, which ended its session)
    // before the rest was paused.
    assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());
    assert_eq!(running.await.unwrap().unwrap().result.outcome, Outcome::TimedOut);
    assert_eq!(report.paused, 1, "{report:?}");
    assert_eq!(report.still_running, 0);
    assert!(current(&s.store, idle).await.is_some());
    assert!(matches!(s.host.open("alice", "counter").await, Err(HostError::ShuttingDown)));
    let turned = s.host.turn("alice", idle, TurnRequest::new("p"), WhenBusy::Refuse).await;
    assert!(matches!(turned, Err(HostError::ShuttingDown)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sessions_take_turns_at_once_and_the_metrics_count_them() {
    let s = setup(|_| {}, |c| c.pool.size = 128);
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(s.host.open("alice", "counter").await.unwrap());
    }
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let host = s.host.clone();
        tasks.push(tokio::spawn(async move {
            for expected in 1..=5 {
                let result = host.turn("alice", id, TurnRequest::new("i"), WhenBusy::Refuse).await.unwrap();
                assert_eq!(result.result.stdout, format!("{expected}\n").into_bytes());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(s.host.metrics().turns("exited"), 500);
    let text = s.host.render_metrics();
    assert!(text.contains("mimobox_sessions{state=\"live\"} 100"), "{text}");
    assert!(text.contains("mimobox_turn_seconds_count 500"), "{text}");
    assert!(text.contains("mimobox_sessions_opened_total 100"));
    assert!(s.host.gauges().memory > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_owner_names_are_refused_in_one_line() {
    let s = setup(|_| {}, |_| {});
    for owner in ["", "a\nb", &"x".repeat(200)] {
        let opened = s.host.open(owner, "counter").await;
        let Err(error @ HostError::BadOwner { .. }) = opened else { panic!("{opened:?}") };
        assert!(!error.to_string().contains('\n'));
    }
}

#[test]
fn a_host_needs_a_runtime_and_a_long_enough_key() {
    let dirs = tempfile::tempdir().unwrap();
    let counter = sandbox(dirs.path(), |_| {});
    let outside = SessionHost::new(HostConfig::new(KEY.to_vec()), [("counter".to_string(), counter.clone())]);
    assert!(matches!(outside, Err(HostError::NoRuntime)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _inside = runtime.enter();
    let short = SessionHost::new(HostConfig::new(vec![1u8; 8]), [("counter".to_string(), counter)]);
    assert!(matches!(short, Err(HostError::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_store_refuses_symlinks_and_oversized_objects() {
    let dirs = tempfile::tempdir().unwrap();
    let store = LocalDir::open(dirs.path().join("paused"), 1024).unwrap();
    let id = StateName { id: SessionId::random().unwrap(), epoch: 0, pause: 1 };
    assert!(store.put(id, vec![0; 2048]).await.is_err());
    store.put(id, b"hello".to_vec()).await.unwrap();
    assert_eq!(store.get(id).await.unwrap(), b"hello");
    assert_eq!(store.list().await.unwrap(), vec![id]);
    // A symlink planted where an object would be is not followed.
    let other = StateName { id: SessionId::random().unwrap(), epoch: 2, pause: 5 };
    std::fs::write(dirs.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(dirs.path().join("secret"), store.dir().join(format!("{other}.paused")))
        .unwrap();
    assert!(store.get(other).await.is_err());
    // Names are spelled one way only.
    for bad in ["x.0.1", "{id}.00.1", "{id}.0", "{id}.0.1.2", "{id}.-1.1", "{id}.+1.1", "{id}..1"] {
        let bad = bad.replace("{id}", &id.id.to_string());
        assert!(bad.parse::<StateName>().is_err(), "{bad}");
    }
    assert_eq!(id.to_string().parse::<StateName>(), Ok(id));
    // A store directory that others may write to is refused.
    let open = dirs.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    assert!(LocalDir::open(&open, 1024).is_err());
    store.delete(id).await.unwrap();
    assert!(matches!(store.get(id).await, Err(mimobox_host::StoreError::Missing(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_on_a_session_that_is_closed_finds_it_gone_and_nothing_stays_counted() {
    let s = setup(|_| {}, |c| c.timeout = Duration::from_secs(1));
    let id = s.host.open("alice", "counter").await.unwrap();
    let host = s.host.clone();
    let looping =
        tokio::spawn(async move { host.turn("alice", id, TurnRequest::new("l"), WhenBusy::Refuse).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let host = s.host.clone();
    let waiter = tokio::spawn(async move {
        host.turn("alice", id, TurnRequest::new("i"), WhenBusy::Wait(Duration::from_secs(10))).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.host.close("alice", id).await.unwrap();
    assert!(matches!(waiter.await.unwrap(), Err(HostError::NotFound)));
    let _ = looping.await.unwrap();
    let gauges = s.host.gauges();
    assert_eq!((gauges.live, gauges.paused, gauges.memory, gauges.running_turns), (0, 0, 0, 0), "{gauges:?}");
    // Closed once, counted once.
    assert_eq!(s.host.metrics().closed("client") + s.host.metrics().closed("ended"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_gives_up_is_no_longer_counted() {
    let s = setup(|c| c.max_waiting = 1, |c| c.timeout = Duration::from_secs(2));
    let id = s.host.open("alice", "counter").await.unwrap();
    let host = s.host.clone();
    let _looping =
        tokio::spawn(async move { host.turn("alice", id, TurnRequest::new("l"), WhenBusy::Refuse).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A waiter whose caller drops it mid-wait.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        s.host.turn("alice", id, TurnRequest::new("i"), WhenBusy::Wait(Duration::from_secs(10))),
    )
    .await;
    assert!(abandoned.is_err());
    // Its place is free again: the next waiter waits (then gives up at its
    // own bound) instead of being refused at once.
    let next =
        s.host.turn("alice", id, TurnRequest::new("i"), WhenBusy::Wait(Duration::from_millis(200))).await;
    assert!(matches!(next, Err(HostError::Busy { waited: Some(_) })), "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifetime_counts_paused_time_and_holds_after_a_resume() {
    let s = setup(
        |c| c.sweep_interval = Duration::from_secs(3600),
        |c| c.session.lifetime = Duration::from_secs(1),
    );
    let id = s.host.open("alice", "counter").await.unwrap();
    turn(&s.host, "alice", id, "i").await;
    s.host.pause("alice", id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Past its lifetime (counted from its opening, paused time included),
    // it is not resumed: it is gone.
    let late = s.host.turn("alice", id, TurnRequest::new("p"), WhenBusy::Refuse).await;
    assert!(matches!(late, Err(HostError::NotFound)), "{late:?}");
    assert_eq!(s.host.metrics().closed("lifetime"), 1);
    assert!(current(&s.store, id).await.is_none(), "its paused state is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_whose_caller_gave_up_ends_the_session() {
    let s = setup(|_| {}, |c| c.timeout = Duration::from_secs(5));
    let id = s.host.open("alice", "counter").await.unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        s.host.turn("alice", id, TurnRequest::new("l"), WhenBusy::Refuse),
    )
    .await;
    assert!(abandoned.is_err());
    // The guest stopped at an arbitrary point is never given another turn.
    let next = s.host.turn("alice", id, TurnRequest::new("i"), WhenBusy::Refuse).await;
    assert!(
        matches!(next, Err(HostError::Sandbox(mimobox_core::SandboxError::SessionEnded { .. }))),
        "{next:?}"
    );
    assert!(matches!(s.host.info("alice", id), Err(HostError::NotFound)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_host_takes_up_the_sessions_an_earlier_one_paused() {
    let dirs = tempfile::tempdir().unwrap();
    let store = LocalDir::open(dirs.path().join("paused"), 64 << 20).unwrap();
    let host_with = |store: &LocalDir| host_on(dirs.path(), Arc::new(store.clone()));
    let first = host_with(&store);
    let kept = first.open("alice", "counter").await.unwrap();
    let forged = first.open("bob", "counter").await.unwrap();
    turn(&first, "alice", kept, "i").await;
    turn(&first, "alice", kept, "i").await;
    let report = first.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.paused, 2);
    drop(first);
    // A store that moves bob's state under another name is not believed.
    let (forged_name, mut moved) = state_of(&store, forged).await;
    let at = moved.len() - 40;
    moved[at] ^= 1;
    store.put(forged_name, moved).await.unwrap();
    // And an older state of alice's, under an older name, is passed over
    // for the newest.
    let (kept_name, kept_state) = state_of(&store, kept).await;
    let older = StateName { pause: 0, ..kept_name };
    store.put(older, kept_state).await.unwrap();

    let second = host_with(&store);
    let report = second.adopt_paused().await.unwrap();
    assert_eq!((report.adopted, report.refused), (1, 1));
    let info = second.info("alice", kept).unwrap();
    assert_eq!((info.state, info.turns), (SessionState::Paused, 2));
    assert!(matches!(second.info("bob", forged), Err(HostError::NotFound)));
    // Its next turn resumes it with its state, and its numbers go on.
    let result = second.turn("alice", kept, TurnRequest::new("i"), WhenBusy::Refuse).await.unwrap();
    assert_eq!((result.turn, result.result.stdout.as_slice()), (3, &b"3\n"[..]));
    // Another owner still cannot reach it.
    assert!(matches!(second.info("bob", kept), Err(HostError::NotFound)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_sent_again_under_its_key_is_answered_not_run_twice_also_after_a_move() {
    let dirs = tempfile::tempdir().unwrap();
    let store = LocalDir::open(dirs.path().join("paused"), 64 << 20).unwrap();
    let host_with = |store: &LocalDir| host_on(dirs.path(), Arc::new(store.clone()));
    let first = host_with(&store);
    let id = first.open("alice", "counter").await.unwrap();
    let unkeyed = first.info("alice", id).unwrap().memory;
    let keyed = |host: &SessionHost<WasmSandbox>, key: &str, code: &str| {
        let (host, key, code) = (host.clone(), TurnKey::new(key).unwrap(), code.to_owned());
        async move { host.turn_once("alice", id, Some(key), TurnRequest::new(code), WhenBusy::Refuse).await }
    };
    let ran = keyed(&first, "t1", "i").await.unwrap();
    assert_eq!((ran.turn, ran.result.stdout.as_slice(), ran.replayed), (1, &b"1\n"[..], false));
    // Sent again: the same answer, marked, and the counter did not move.
    let again = keyed(&first, "t1", "i").await.unwrap();
    assert_eq!((again.turn, again.result.stdout.as_slice(), again.replayed), (1, &b"1\n"[..], true));
    assert_eq!(first.metrics().replayed(), 1);
    // The same key for another request is refused, and runs nothing.
    assert!(matches!(keyed(&first, "t1", "p").await, Err(HostError::KeyReused { turn: 1 })));
    // Another owner's key names nothing of alice's.
    let bob = first.turn_once(
        "bob",
        id,
        Some(TurnKey::new("t1").unwrap()),
        TurnRequest::new("i"),
        WhenBusy::Refuse,
    );
    assert!(matches!(bob.await, Err(HostError::NotFound)));
    // The kept answer counts in the session's memory.
    let with_answer = first.info("alice", id).unwrap().memory;
    assert!(with_answer > unkeyed && with_answer - unkeyed < 4096, "{with_answer} vs {unkeyed}");
    // Also after a checkpoint, which goes on live with the answer kept.
    first.checkpoint("alice", id).await.unwrap();
    assert_eq!(first.info("alice", id).unwrap().memory, with_answer);
    // A new key runs a new turn; unkeyed turns run every time.
    let second = keyed(&first, "t2", "i").await.unwrap();
    assert_eq!((second.turn, second.result.stdout.as_slice()), (2, &b"2\n"[..]));
    // An earlier key's answer is not kept, but its turn is not run again.
    assert!(matches!(keyed(&first, "t1", "i").await, Err(HostError::AlreadyRan { turn: 1 })));
    assert_eq!(turn(&first, "alice", id, "p").await, "2\n");
    let third = keyed(&first, "t3", "i").await.unwrap();
    assert_eq!(third.turn, 4);
    // A paused session keeps its keys, not its answer.
    first.pause("alice", id).await.unwrap();
    assert!(matches!(keyed(&first, "t3", "i").await, Err(HostError::AlreadyRan { turn: 4 })));

    // The session moves to another host: the key goes with it, the answer
    // does not, so the turn sent again there is refused, not run again.
    let report = first.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.paused, 1);
    drop(first);
    let later = host_with(&store);
    assert_eq!(later.adopt_paused().await.unwrap().adopted, 1);
    assert!(matches!(keyed(&later, "t3", "i").await, Err(HostError::AlreadyRan { turn: 4 })));
    assert!(matches!(keyed(&later, "t3", "p").await, Err(HostError::KeyReused { turn: 4 })));
    assert!(matches!(keyed(&later, "t1", "i").await, Err(HostError::AlreadyRan { turn: 1 })));
    assert_eq!(turn(&later, "alice", id, "p").await, "3\n", "the turn under t3 ran once");
    let fresh = keyed(&later, "t4", "i").await.unwrap();
    assert_eq!((fresh.turn, fresh.result.stdout.as_slice()), (6, &b"4\n"[..]));
}

/// A store in front of a local one whose writes fail a number of times
/// first, and take `delay` each; it says when a write began and whether
/// one ended.
struct Flaky {
    inner: LocalDir,
    failures: std::sync::atomic::AtomicU32,
    delay: Duration,
    began: tokio::sync::Notify,
    ended: std::sync::atomic::AtomicBool,
}

impl Flaky {
    fn new(inner: LocalDir, failures: u32, delay: Duration) -> Flaky {
        Flaky {
            inner,
            failures: std::sync::atomic::AtomicU32::new(failures),
            delay,
            began: tokio::sync::Notify::new(),
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl PausedStore for Flaky {
    fn put(
        &self,
        name: StateName,
        bytes: Vec<u8>,
    ) -> mimobox_host::BoxFuture<'_, Result<(), mimobox_host::StoreError>> {
        let failing = self
            .failures
            .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
                n.checked_sub(1)
            })
            .is_ok();
        Box::pin(async move {
            if failing {
                return Err(mimobox_host::StoreError::Service {
                    action: "putting",
                    object: name.to_string(),
                    problem: "503 Slow Down".into(),
                });
            }
            self.began.notify_one();
            tokio::time::sleep(self.delay).await;
            let stored = self.inner.put(name, bytes).await;
            self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
            stored
        })
    }
    fn get(&self, name: StateName) -> mimobox_host::BoxFuture<'_, Result<Vec<u8>, mimobox_host::StoreError>> {
        self.inner.get(name)
    }
    fn delete(&self, name: StateName) -> mimobox_host::BoxFuture<'_, Result<(), mimobox_host::StoreError>> {
        self.inner.delete(name)
    }
    fn list(&self) -> mimobox_host::BoxFuture<'_, Result<Vec<StateName>, mimobox_host::StoreError>> {
        self.inner.list()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_for_a_moment_on_shutdown_is_tried_again_and_nothing_is_lost() {
    let dirs = tempfile::tempdir().unwrap();
    let local = LocalDir::open(dirs.path().join("paused"), 64 << 20).unwrap();
    let flaky = Arc::new(Flaky::new(local.clone(), 3, Duration::ZERO));
    let host = host_on(dirs.path(), flaky);
    let id = host.open("alice", "counter").await.unwrap();
    turn(&host, "alice", id, "i").await;
    let report = host.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.paused, report.closed, report.pause_retries), (1, 0, 3), "{report:?}");
    drop(host);
    let later = host_on(dirs.path(), Arc::new(local));
    assert_eq!(later.adopt_paused().await.unwrap().adopted, 1);
    assert_eq!(turn(&later, "alice", id, "i").await, "2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_waits_for_the_background_pause_under_way_and_none_outlives_it() {
    let dirs = tempfile::tempdir().unwrap();
    let local = LocalDir::open(dirs.path().join("paused"), 64 << 20).unwrap();
    let slow = Arc::new(Flaky::new(local.clone(), 0, Duration::from_millis(800)));
    let mut config = HostConfig::new(KEY.to_vec());
    config.store = Some(slow.clone());
    config.pause_idle_after = Some(Duration::from_millis(100));
    config.sweep_interval = Duration::from_millis(50);
    let host = SessionHost::new(config, [("counter".to_string(), sandbox(dirs.path(), |_| {}))]).unwrap();
    let id = host.open("alice", "counter").await.unwrap();
    turn(&host, "alice", id, "i").await;
    // The sweep pauses the idle session; its write is under way when the
    // shutdown begins.
    tokio::time::timeout(Duration::from_secs(10), slow.began.notified()).await.expect("the sweep pauses");
    // With no grace left, the session is still busy, and says so; a
    // second pass (the server's last one) waits for it.
    let hurried = host.shutdown(Duration::ZERO).await;
    assert_eq!(hurried.still_running, 1, "{hurried:?}");
    assert!(!slow.ended.load(std::sync::atomic::Ordering::SeqCst));
    let report = host.shutdown(Duration::from_secs(10)).await;
    assert!(
        slow.ended.load(std::sync::atomic::Ordering::SeqCst),
        "the sweep's write ended before the shutdown returned: {report:?}"
    );
    assert_eq!((report.still_running, report.paused), (0, 1), "{report:?}");
    drop(host);
    let later = host_on(dirs.path(), Arc::new(local));
    assert_eq!(later.adopt_paused().await.unwrap().adopted, 1);
    assert_eq!(turn(&later, "alice", id, "i").await, "2\n");
}

/// A host that keeps `ready` sessions opened ahead within `memory`.
fn keeping_ready(ready: usize, memory: u64) -> Setup {
    setup(
        |c| {
            c.ready_sessions = ready;
            c.limits.memory = memory;
        },
        |_| {},
    )
}

/// Waits (up to 20 s) until the host holds `count` sessions opened ahead.
async fn ready_reaches(host: &SessionHost<WasmSandbox>, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while host.gauges().ready != count {
        assert!(Instant::now() < deadline, "ready sessions stayed at {}, not {count}", host.gauges().ready);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_opened_ahead_are_handed_out_fresh_and_refilled_behind() {
    let s = setup(|c| c.ready_sessions = 2, |_| {});
    ready_reaches(&s.host, 2).await;
    let memory_ready = s.host.gauges().memory;
    assert!(memory_ready > 0, "sessions opened ahead count in the host's memory");
    assert_eq!(s.host.gauges().live, 0, "they are nobody's sessions");
    assert!(s.host.render_metrics().contains("mimobox_sessions{state=\"ready\"} 2"));

    let a = s.host.open("alice", "counter").await.unwrap();
    let b = s.host.open("bob", "counter").await.unwrap();
    // Each is a session of its own, fresh: no state is shared between
    // sessions that waited side by side.
    assert_eq!(turn(&s.host, "alice", a, "i").await, "1\n");
    assert_eq!(turn(&s.host, "alice", a, "i").await, "2\n");
    assert_eq!(turn(&s.host, "bob", b, "i").await, "1\n");
    assert!(matches!(s.host.info("bob", a), Err(HostError::NotFound)));
    // Two more are opened behind the two taken.
    ready_reaches(&s.host, 2).await;
    assert_eq!(s.host.gauges().live, 2);
    assert_eq!(s.host.render_metrics().matches("mimobox_sessions_opened_total 2\n").count(), 1);

    // A shutdown closes them with the rest.
    s.host.shutdown(Duration::from_secs(5)).await;
    assert_eq!(s.host.gauges().ready, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_opened_ahead_stay_within_the_hosts_memory_and_go_first_under_pressure() {
    // What one session holds, from a host that keeps one ready.
    let one = setup(|c| c.ready_sessions = 1, |_| {});
    ready_reaches(&one.host, 1).await;
    let each = one.host.gauges().memory;
    drop(one);

    // Room for three: a host asked to keep eight ready keeps three.
    let limit = 3 * each + each / 2;
    let s = keeping_ready(8, limit);
    ready_reaches(&s.host, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.host.gauges().ready, 3, "no more than fit in the host's memory");
    assert!(s.host.gauges().memory <= limit);
    drop(s);

    // Room for a session grown by 16 MiB (`g`) and three more: when alice's
    // session grows, one opened ahead is closed to make room, and alice's
    // own session is neither paused nor refused.
    let limit = (16 << 20) + 3 * each + each / 2;
    let s = keeping_ready(3, limit);
    ready_reaches(&s.host, 3).await;
    let a = s.host.open("alice", "counter").await.unwrap();
    ready_reaches(&s.host, 3).await;
    turn(&s.host, "alice", a, "g").await;
    assert_eq!(s.host.info("alice", a).unwrap().state, SessionState::Live);
    assert_eq!(s.host.gauges().ready, 2, "{:?}", s.host.gauges());
    assert!(s.host.gauges().memory <= limit);
    // And none is opened again while it would not fit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.host.gauges().ready, 2);
}

/// A host keeping one session opened ahead, swept every 50 ms, whose
/// session is taken after a second and must take a turn.
async fn waited_a_second_then_taken(
    adjust_host: impl FnOnce(&mut HostConfig),
    adjust_sandbox: impl FnOnce(&mut SandboxConfig),
) {
    let s = setup(
        |c| {
            c.ready_sessions = 1;
            c.sweep_interval = Duration::from_millis(50);
            adjust_host(c);
        },
        adjust_sandbox,
    );
    ready_reaches(&s.host, 1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ready_reaches(&s.host, 1).await;
    let a = s.host.open("alice", "counter").await.unwrap();
    assert_eq!(turn(&s.host, "alice", a, "i").await, "1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_waited_ahead_too_long_is_replaced_not_handed_out() {
    // Sessions live 700 ms in all; one waits ahead at most 300 ms. One
    // handed out after a second of waiting would be past its lifetime.
    waited_a_second_then_taken(
        |c| c.ready_max_age = Duration::from_millis(300),
        |c| c.session.lifetime = Duration::from_millis(700),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_waiting_ahead_is_replaced_well_within_its_idle_timeout() {
    // The session's own idle clock runs from its opening: one that waited
    // a second would be past its 400 ms idle timeout when handed out.
    waited_a_second_then_taken(|_| {}, |c| c.session.idle_timeout = Duration::from_millis(400)).await;
}
