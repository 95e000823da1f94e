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
    let lease = catalog.create("s1", "alice", "w1:8800", LEASE).await.unwrap().unwrap();
    assert_eq!(lease.epoch, 1);
    assert!(lease.is_current());
    // The id is never overwritten.
    assert_eq!(catalog.create("s1", "bob", "w2:8800", LEASE).await.unwrap(), None);
    // Another worker is told who holds it; another owner is told nothing.
    assert_eq!(
        catalog.claim("s1", "alice", "w2:8800", LEASE).await.unwrap(),
        Claim::HeldBy { worker: "w1:8800".into(), epoch: 1 }
    );
    assert_eq!(catalog.claim("s1", "bob", "w2:8800", LEASE).await.unwrap(), Claim::NotFound);
    assert_eq!(catalog.claim("never", "alice", "w2:8800", LEASE).await.unwrap(), Claim::NotFound);
    // The holder claiming again keeps its epoch.
    let Claim::Granted(again) = catalog.claim("s1", "alice", "w1:8800", LEASE).await.unwrap() else {
        panic!()
    };
    assert_eq!(again.epoch, 1);
    let record = catalog.lookup("s1").await.unwrap().unwrap();
    assert_eq!(
        (record.owner.as_str(), record.worker.as_deref(), record.epoch),
        ("alice", Some("w1:8800"), 1)
    );
    assert!(record.lease_left > Duration::from_secs(25));
}

#[tokio::test]
async fn an_expired_lease_passes_the_session_on_and_fences_its_old_holder() {
    let redis = Redis::start();
    let catalog = RedisCatalog::connect(&redis.url, "t:").await.unwrap();
    let short = Duration::from_millis(300);
    let old = catalog.create("s1", "alice", "w1", short).await.unwrap().unwrap();
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
async fn an_older_paused_state_never_replaces_a_newer_one() {
    let redis = Redis::start();
    let catalog = RedisCatalog::connect(&redis.url, "t:").await.unwrap();
    catalog.create("s1", "alice", "w1", LEASE).await.unwrap().unwrap();
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
        let lease = catalog.create(&id, "alice", "w0", Duration::from_millis(50)).await.unwrap().unwrap();
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
