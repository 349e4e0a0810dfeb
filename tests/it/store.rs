//! The state store's contract, run against both backends, and SQLite's durability.

use std::sync::Arc;
use std::time::Duration;

use kaizala_bridge::store::{DedupKeys, Entry, RedisStore, SqliteStore, Store};

use crate::support::redis::RedisServer;

/// What every backend must do.
async fn contract(store: Arc<dyn Store>) {
    assert_eq!(store.get("ns", "k").await.unwrap(), None);
    store.put("ns", "k", "v1", None).await.unwrap();
    store.put("ns", "k", "v2", None).await.unwrap();
    assert_eq!(
        store.get("ns", "k").await.unwrap().as_deref(),
        Some("v2"),
        "put replaces"
    );
    assert_eq!(
        store.get("other", "k").await.unwrap(),
        None,
        "namespaces are apart"
    );

    assert!(
        !store.put_if_absent("ns", "k", "v3", None).await.unwrap(),
        "a live key is kept"
    );
    assert_eq!(store.get("ns", "k").await.unwrap().as_deref(), Some("v2"));
    store.delete("ns", "k").await.unwrap();
    assert!(store.put_if_absent("ns", "k", "v3", None).await.unwrap());

    store
        .put("ns", "short", "v", Some(Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(!store
        .put_if_absent("ns", "short", "w", Some(Duration::from_millis(200)))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.get("ns", "short").await.unwrap(), None, "expired");
    assert!(
        store.put_if_absent("ns", "short", "w", None).await.unwrap(),
        "an expired key can be claimed again"
    );

    // Many concurrent claims of one key: exactly one wins.
    let claims: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.put_if_absent("ns", "race", "x", None).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for claim in claims {
        won += usize::from(claim.await.unwrap());
    }
    assert_eq!(won, 1);

    // One write of several entries, across namespaces, replacing and expiring.
    let entries = [
        Entry {
            namespace: "ns",
            key: "k",
            value: "all-1",
            ttl: None,
        },
        Entry {
            namespace: "other",
            key: "k",
            value: "all-2",
            ttl: None,
        },
        Entry {
            namespace: "ns",
            key: "brief",
            value: "all-3",
            ttl: Some(Duration::from_millis(200)),
        },
    ];
    store.put_all(&entries).await.unwrap();
    for entry in &entries {
        assert_eq!(
            store
                .get(entry.namespace, entry.key)
                .await
                .unwrap()
                .as_deref(),
            Some(entry.value),
            "put_all wrote {}/{}",
            entry.namespace,
            entry.key
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.get("ns", "brief").await.unwrap(),
        None,
        "its ttl held"
    );
    assert_eq!(
        store.get("ns", "k").await.unwrap().as_deref(),
        Some("all-1")
    );

    let dedup = DedupKeys::new(store.as_ref(), Duration::from_secs(60));
    assert!(dedup.claim("event-1").await.unwrap());
    assert!(!dedup.claim("event-1").await.unwrap());
    dedup.release("event-1").await.unwrap();
    assert!(
        dedup.claim("event-1").await.unwrap(),
        "released for the next delivery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_keeps_the_contract_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/bridge.sqlite");
    let store = SqliteStore::open(&path).await.unwrap();
    contract(Arc::new(store.clone())).await;
    store.put("durable", "delta", "link-1", None).await.unwrap();
    store
        .put("durable", "gone", "x", Some(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(store.purge_expired().await.unwrap() >= 1);
    drop(store);
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        reopened.get("durable", "delta").await.unwrap().as_deref(),
        Some("link-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_keeps_the_contract_and_is_shared_by_replicas() {
    let redis = RedisServer::start();
    let one = RedisStore::connect(&redis.url(), "test").await.unwrap();
    contract(Arc::new(one.clone())).await;
    let two = RedisStore::connect(&redis.url(), "test").await.unwrap();
    assert!(one.put_if_absent("dedup", "e-9", "1", None).await.unwrap());
    assert!(
        !two.put_if_absent("dedup", "e-9", "1", None).await.unwrap(),
        "the other replica sees the claim"
    );
}

/// The state stays bounded: what the bridge knows of a post lives for
/// `kaizala.correlation_retention` after its last write, then the purge removes it.
#[tokio::test]
async fn correlations_past_their_retention_are_purged() {
    use kaizala_bridge::jobs::{Correlation, Correlations, PostState};
    use kaizala_bridge::model::{ActivityKind, CrmRecordRef};

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("s.sqlite"))
            .await
            .unwrap(),
    );
    let correlations = Correlations::new(store.clone()).with_retention(Duration::from_millis(300));
    let correlation = Correlation {
        key: "r/d365/opportunities/1/created".into(),
        rule: "r".into(),
        tenant: "contoso".into(),
        connector: "bot".into(),
        group: "g-1".into(),
        title: "t".into(),
        record: CrmRecordRef {
            crm: "d365".into(),
            entity_set: "opportunities".into(),
            id: "1".into(),
        },
        activity: ActivityKind::Task,
        due_ms: Some(kaizala_bridge::queue::now_ms() + 48 * 3_600_000),
        polled_out: false,
    };
    correlations.sent("a-1", &correlation).await.unwrap();
    assert!(correlations
        .action("contoso", "a-1")
        .await
        .unwrap()
        .is_some());
    assert_eq!(correlations.open_actions().await.unwrap().len(), 1);
    assert_eq!(
        correlations.state(&correlation.key).await.unwrap(),
        Some(PostState::Sent {
            action_id: "a-1".into()
        })
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let purged = store.purge_expired().await.unwrap();
    assert_eq!(purged, 3, "the key's state, the action and its open entry");
    assert_eq!(correlations.state(&correlation.key).await.unwrap(), None);
    assert!(correlations
        .action("contoso", "a-1")
        .await
        .unwrap()
        .is_none());
    assert!(correlations.open_actions().await.unwrap().is_empty());
}
