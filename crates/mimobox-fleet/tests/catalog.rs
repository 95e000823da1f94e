//! The Redis catalog against a real `redis-server` on loopback (Debian's,
//! installed by `.ci/run`): claims, leases, fencing epochs and the order
//! of paused states, each as a hostile or unlucky worker would meet it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mimobox_fixtures::redis::Redis;
use mimobox_fleet::{Catalog, Claim, PausedRef, RedisCatalog};

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_session_is_held_by_one_worker_and_another_owner_finds_nothing() {
    let redis = Redis::start();
    let catalog = RedisCatalog::connect(&redis.url, "t:").await.unwrap();
    let lease = catalog.create("s1", "alice", "python", "w1:8800", LEASE).await.unwrap().unwrap();
    assert_eq!(lease.epoch, 1);
    assert!(lease.is_current());
    // The id is never overwritten.
    assert_eq!(catalog.create("s1", "bob", "python", "w2:8800", LEASE).await.unwrap(), None);
    // Another worker is told who holds it; another owner is told nothing.
    assert_eq!(
        catalog.claim("s1", "alice", "w2:8800", LEASE).await.unwrap(),
        Claim::HeldBy { worker: "w1:8800".into(), epoch: 1 }
    );
    assert_eq!(catalog.claim("s1", "bob", "w2:8800", LEASE).await.unwrap(), Claim::NotFound);
    assert_eq!(catalog.claim("never", "alice", "w2:8800", LEASE).await.unwrap(), Claim::NotFound);
    // The holder claims only a session it let go of (its own deadline
    // passed before its lease in the catalog): it gets a new epoch, which
    // fences off anything of its earlier hold, and the loss is said.
    let Claim::Granted(again) = catalog.claim("s1", "alice", "w1:8800", LEASE).await.unwrap() else {
        panic!()
    };
    assert_eq!(again.epoch, 2);
    let record = catalog.lookup("s1").await.unwrap().unwrap();
    assert_eq!(
        (record.owner.as_str(), record.worker.as_deref(), record.epoch, record.last_holder_lost),
        ("alice", Some("w1:8800"), 2, true)
    );
    assert_eq!(catalog.renew("s1", "w1:8800", 1, LEASE).await.unwrap(), None, "the earlier hold is fenced");
    assert!(record.lease_left > Duration::from_secs(25));
}

#[tokio::test]
async fn an_expired_lease_passes_the_session_on_and_fences_its_old_holder() {
    let redis = Redis::start();
    let catalog = RedisCatalog::connect(&redis.url, "t:").await.unwrap();
    let short = Duration::from_millis(300);
    let old = catalog.create("s1", "alice", "python", "w1", short).await.unwrap().unwrap();
    catalog.record_paused("s1", "w1", &PausedRef { epoch: 1, turn: 3, key: "s1/1-3".into() }).await.unwrap();
    // The old holder's own deadline passes before the catalog's.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(!old.is_current());
    let Claim::Granted(new) = catalog.claim("s1", "alice", "w2", LEASE).await.unwrap() else { panic!() };
    assert_eq!(new.epoch, 2);
    // The old holder can neither renew, nor record a state, nor release
    // or remove the session: it is fenced off.
    assert_eq!(catalog.renew("s1", "w1", 1, LEASE).await.unwrap(), None);
    let stale = PausedRef { epoch: 1, turn: 9, key: "s1/1-9".into() };
    assert!(!catalog.record_paused("s1", "w1", &stale).await.unwrap());
    assert!(!catalog.release("s1", "w1", 1).await.unwrap());
    assert_eq!(catalog.remove("s1", "w1", 1).await.unwrap(), None);
    // The new holder resumes from what was recorded, and goes on.
    let record = catalog.lookup("s1").await.unwrap().unwrap();
    assert_eq!(record.paused, Some(PausedRef { epoch: 1, turn: 3, key: "s1/1-3".into() }));
    assert!(catalog.renew("s1", "w2", 2, LEASE).await.unwrap().is_some());
}

#[tokio::test]
async fn a_lost_holder_stays_said_until_a_new_holder_records_a_state() {
    let redis = Redis::start();
    let catalog = RedisCatalog::connect(&redis.url, "t:").await.unwrap();
    let short = Duration::from_millis(200);
    catalog.create("s1", "alice", "python", "w1", short).await.unwrap().unwrap();
    catalog.record_paused("s1", "w1", &PausedRef { epoch: 1, turn: 3, key: "s1/1-3".into() }).await.unwrap();
    // w1 is lost; w2 claims the session, but cannot take it up (full, or
    // its store failing) and lets it go.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let Claim::Granted(w2) = catalog.claim("s1", "alice", "w2", LEASE).await.unwrap() else { panic!() };
    assert!(catalog.lookup("s1").await.unwrap().unwrap().last_holder_lost);
    assert!(catalog.release("s1", "w2", w2.epoch).await.unwrap());
    // The next claimant still learns that turns were lost.
    let Claim::Granted(w3) = catalog.claim("s1", "alice", "w3", LEASE).await.unwrap() else { panic!() };
    assert!(catalog.lookup("s1").await.unwrap().unwrap().last_holder_lost, "the loss is not forgotten");
    // Once a holder records a state of its own, a release is a clean hand-over.
    let paused = PausedRef { epoch: w3.epoch, turn: 4, key: "s1/3-4".into() };
    assert!(catalog.record_paused("s1", "w3", &paused).await.unwrap());
    assert!(catalog.release("s1", "w3", w3.epoch).await.unwrap());
    let Claim::Granted(_) = catalog.claim("s1", "alice", "w4", LEASE).await.unwrap() else { panic!() };
    assert!(!catalog.lookup("s1").await.unwrap().unwrap().last_holder_lost);
}

#[tokio::test]
async fn an_older_paused_state_never_replaces_a_newer_one() {
    let redis = Redis::start();
    let catalog = RedisCatalog::connect(&redis.url, "t:").await.unwrap();
    catalog.create("s1", "alice", "python", "w1", LEASE).await.unwrap().unwrap();
    let newer = PausedRef { epoch: 1, turn: 7, key: "s1/1-7".into() };
    assert!(catalog.record_paused("s1", "w1", &newer).await.unwrap());
    // A delayed write of an earlier turn arrives late: refused.
    let older = PausedRef { epoch: 1, turn: 5, key: "s1/1-5".into() };
    assert!(!catalog.record_paused("s1", "w1", &older).await.unwrap());
    assert_eq!(catalog.lookup("s1").await.unwrap().unwrap().paused, Some(newer.clone()));
    // Released, the session stays with its state for any worker.
    assert!(catalog.release("s1", "w1", 1).await.unwrap());
    let record = catalog.lookup("s1").await.unwrap().unwrap();
    assert_eq!((record.worker, record.lease_left), (None, Duration::ZERO));
    let Claim::Granted(lease) = catalog.claim("s1", "alice", "w3", LEASE).await.unwrap() else { panic!() };
    assert_eq!(lease.epoch, 2);
    // Closed: removed by its holder, which learns the object to delete.
    assert_eq!(catalog.remove("s1", "w3", 2).await.unwrap(), Some(Some(newer)));
    assert_eq!(catalog.lookup("s1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_workers_claiming_at_once_exactly_one_wins() {
    let redis = Redis::start();
    let catalog = Arc::new(RedisCatalog::connect(&redis.url, "t:").await.unwrap());
    for round in 0..20 {
        let id = format!("s{round}");
        let lease =
            catalog.create(&id, "alice", "python", "w0", Duration::from_millis(50)).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!lease.is_current());
        let claims: Vec<_> = (1..=16)
            .map(|w| {
                let (catalog, id) = (catalog.clone(), id.clone());
                tokio::spawn(
                    async move { catalog.claim(&id, "alice", &format!("w{w}"), LEASE).await.unwrap() },
                )
            })
            .collect();
        let mut granted = 0;
        for claim in claims {
            match claim.await.unwrap() {
                Claim::Granted(lease) => {
                    granted += 1;
                    assert_eq!(lease.epoch, 2);
                }
                Claim::HeldBy { epoch, .. } => assert_eq!(epoch, 2),
                Claim::NotFound => panic!("the session vanished"),
            }
        }
        assert_eq!(granted, 1, "round {round}");
    }
}

#[tokio::test]
async fn an_unreachable_catalog_is_an_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        RedisCatalog::connect(&format!("redis://127.0.0.1:{port}"), "t:"),
    )
    .await
    .expect("connecting gives up by itself");
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn an_owners_sessions_are_listed_from_any_worker_and_only_its_own() {
    let redis = Redis::start();
    let catalog = RedisCatalog::connect(&redis.url, "t:").await.unwrap();
    catalog.create("a1", "alice", "python-sci", "w1", LEASE).await.unwrap().unwrap();
    catalog.create("a2", "alice", "python", "w2", LEASE).await.unwrap().unwrap();
    catalog.create("b1", "bob", "python", "w1", LEASE).await.unwrap().unwrap();
    // An owner whose name would spell another's key if it were not hex.
    catalog.create("c1", "alice:x", "python", "w1", LEASE).await.unwrap().unwrap();
    catalog.record_paused("a2", "w2", &PausedRef { epoch: 1, turn: 4, key: "a2/1-4".into() }).await.unwrap();
    assert!(catalog.release("a2", "w2", 1).await.unwrap());
    let mut listed = catalog.sessions_of("alice", 100).await.unwrap();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let ids: Vec<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2"]);
    let (a1, a2) = (&listed[0].1, &listed[1].1);
    assert_eq!((a1.profile.as_str(), a1.worker.as_deref(), a1.paused_ago), ("python-sci", Some("w1"), None));
    assert_eq!((a2.profile.as_str(), a2.worker.as_deref()), ("python", None));
    assert_eq!(a2.paused.as_ref().map(|p| p.turn), Some(4));
    assert!(a2.paused_ago.is_some_and(|ago| ago < Duration::from_secs(5)));
    assert!(a1.age < Duration::from_secs(5));
    // Bounded, and a closed session leaves the listing.
    assert_eq!(catalog.sessions_of("alice", 1).await.unwrap().len(), 1);
    assert_eq!(catalog.remove("a1", "w1", 1).await.unwrap(), Some(None));
    let ids: Vec<String> =
        catalog.sessions_of("alice", 100).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["a2"]);
    assert_eq!(catalog.sessions_of("nobody", 100).await.unwrap(), vec![]);
}
