//! The S3 store against a real S3 service on loopback (s3s's file-system
//! implementation, checking every request's signature): whole objects by
//! name, a listing of its own prefix only, bounds, and refusals in one
//! line.

use mimobox_fixtures::s3::{ACCESS_KEY, S3, SECRET_KEY};
use mimobox_fleet::{S3Location, S3Store};
use mimobox_host::{PausedStore, SessionId, StateName, StoreError};
use object_store::aws::AmazonS3Builder;

fn builder(s3: &S3, secret: &str) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_endpoint(&s3.endpoint)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(secret)
        .with_allow_http(true)
}

fn store(s3: &S3, prefix: &str, max_object: u64) -> S3Store {
    let location = format!("s3://{}/{prefix}", s3.bucket).parse::<S3Location>().unwrap();
    S3Store::with_builder(builder(s3, SECRET_KEY), location, max_object).unwrap()
}

fn name(epoch: u64, pause: u64) -> StateName {
    StateName { id: SessionId::random().unwrap(), epoch, pause }
}

#[tokio::test]
async fn the_store_keeps_objects_whole_by_name_and_lists_only_its_own_prefix() {
    let s3 = S3::start("paused");
    let fleet_a = store(&s3, "fleet/a", 1 << 20);
    let fleet_b = store(&s3, "fleet/b", 1 << 20);
    let (first, second) = (name(1, 1), name(2, 7));
    fleet_a.put(first, b"first state".to_vec()).await.unwrap();
    fleet_a.put(second, vec![7; 300_000]).await.unwrap();
    fleet_b.put(name(1, 1), b"another fleet's".to_vec()).await.unwrap();
    // Objects that are not states, or deeper under the prefix, are not
    // the store's and are not listed.
    std::fs::write(s3.object_file("fleet/a/notes.txt"), "x").unwrap();
    std::fs::create_dir_all(s3.object_file("fleet/a/deeper")).unwrap();
    std::fs::write(s3.object_file(&format!("fleet/a/deeper/{first}.paused")), "x").unwrap();
    std::fs::write(s3.object_file("fleet/a/x.1.1.paused"), "x").unwrap();

    assert_eq!(fleet_a.get(first).await.unwrap(), b"first state");
    assert_eq!(fleet_a.get(second).await.unwrap(), vec![7; 300_000]);
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(fleet_a.list().await.unwrap(), expected);
    assert_eq!(fleet_b.list().await.unwrap().len(), 1);
    // The object is where the name says, so an operator can find it.
    assert!(s3.object_file(&format!("fleet/a/{second}.paused")).is_file());

    // A new write under a name replaces the object whole.
    fleet_a.put(first, b"rewritten".to_vec()).await.unwrap();
    assert_eq!(fleet_a.get(first).await.unwrap(), b"rewritten");

    fleet_a.delete(first).await.unwrap();
    fleet_a.delete(first).await.unwrap();
    assert!(matches!(fleet_a.get(first).await, Err(StoreError::Missing(id)) if id == first.id));
    assert_eq!(fleet_a.list().await.unwrap(), vec![second]);
}

#[tokio::test]
async fn an_object_over_the_bound_is_refused_both_ways() {
    let s3 = S3::start("paused");
    let small = store(&s3, "p", 1024);
    let large = store(&s3, "p", 1 << 20);
    let state = name(1, 1);
    assert!(matches!(small.put(state, vec![0; 1025]).await, Err(StoreError::TooLarge { limit: 1024, .. })));
    assert!(!s3.object_file(&format!("p/{state}.paused")).exists(), "nothing was written");
    // An object that grew past the bound in the bucket is not read in.
    large.put(state, vec![0; 4096]).await.unwrap();
    assert!(matches!(small.get(state).await, Err(StoreError::TooLarge { limit: 1024, .. })));
    small.put(state, vec![1; 1024]).await.unwrap();
    assert_eq!(small.get(state).await.unwrap(), vec![1; 1024]);
}

#[tokio::test]
async fn a_wrong_secret_or_an_unallowed_plain_http_endpoint_is_refused_in_one_line() {
    let s3 = S3::start("paused");
    let location: S3Location = "s3://paused/p".parse().unwrap();
    let forged = S3Store::with_builder(builder(&s3, "not-the-secret"), location.clone(), 1024).unwrap();
    let state = name(1, 1);
    let error = forged.put(state, b"x".to_vec()).await.unwrap_err();
    let line = error.to_string();
    assert!(matches!(error, StoreError::Service { action: "writing", .. }), "{line}");
    assert!(line.contains(&format!("s3://paused/p/{state}.paused")) && !line.contains('\n'), "{line}");
    assert!(!s3.object_file(&format!("p/{state}.paused")).exists());
    assert!(forged.get(state).await.is_err());

    let plain = AmazonS3Builder::new()
        .with_endpoint(&s3.endpoint)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY);
    let Err(error) = S3Store::with_builder(plain, location.clone(), 1024) else { panic!("plain http taken") };
    assert!(error.to_string().contains("AWS_ALLOW_HTTP=true"), "{error}");
}

#[tokio::test]
async fn an_unreachable_store_is_an_error_soon_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nobody = AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true);
    let store = S3Store::with_builder(nobody, "s3://paused/p".parse().unwrap(), 1024).unwrap();
    let started = std::time::Instant::now();
    let error = store.get(name(1, 1)).await.unwrap_err();
    assert!(matches!(error, StoreError::Service { action: "reading", .. }), "{error}");
    // A few short retries, well inside the 15 s the store allows them.
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "{:?}", started.elapsed());
}
