//! The change-tracking loop `run` starts for each CRM source: it waits out a 429 for
//! its Retry-After instead of hammering, and with two replicas on one store only the
//! holder of the lease polls.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kaizala_bridge::app::loops::{poll_crm, CrmPolling};
use kaizala_bridge::config::Secret;
use kaizala_bridge::crm::dataverse::poller::{Baseline, CrmEventSink, Watch};
use kaizala_bridge::crm::dataverse::source::DataverseSource;
use kaizala_bridge::crm::dataverse::{EntraCredentials, WebApi};
use kaizala_bridge::model::CrmEvent;
use kaizala_bridge::sim::dataverse::SimOptions;
use kaizala_bridge::store::{RedisStore, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::dataverse::Dv;
use crate::support::redis::RedisServer;

#[derive(Default)]
struct Collect(Mutex<Vec<CrmEvent>>);

impl CrmEventSink for Collect {
    fn accept(
        &self,
        event: CrmEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        self.0.lock().unwrap().push(event);
        Box::pin(async { Ok(()) })
    }
}

fn polling(dv: &Dv, store: Arc<dyn Store>, sink: Arc<Collect>, holder: &str) -> CrmPolling {
    let credentials = EntraCredentials {
        token_url: dv.sim.token_url("contoso"),
        client_id: "bridge".into(),
        client_secret: Secret::new("bridge-secret"),
        scope: format!("{}/.default", dv.sim.base_url()),
    };
    let api = WebApi::new(
        "d365",
        dv.sim.base_url(),
        credentials,
        Duration::from_secs(5),
    )
    .unwrap();
    let watches = vec![Watch {
        crm: "d365".into(),
        entity_set: "opportunities".into(),
        select: vec!["name".into()],
        baseline: Baseline::ExistingAsNew,
    }];
    CrmPolling {
        crm: "d365".into(),
        source: Arc::new(DataverseSource::new(Arc::new(api), watches, store.clone())),
        interval: Duration::from_millis(100),
        sink,
        store,
        holder: holder.into(),
    }
}

fn application(dv: &Dv) -> serde_json::Value {
    dv.sim.state()["applications"]["bridge"].clone()
}

#[tokio::test]
async fn a_429_is_waited_out_not_hammered() {
    let options = SimOptions {
        requests_per_window: 4,
        ..SimOptions::default()
    };
    let dv = Dv::start_with(options).await;
    let redis = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&redis.url(), "t").await.unwrap());
    let sink = Arc::new(Collect::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(poll_crm(
        std::sync::Arc::new(polling(&dv, store, sink.clone(), "a")),
        stop.clone(),
    ));
    // Ten intervals: a loop that ignored Retry-After would be refused again and again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    task.await.unwrap();
    let app = application(&dv);
    assert_eq!(app["requestsInWindow"], 4, "{app}");
    assert_eq!(
        app["throttled"], 1,
        "one 429, then a wait of its Retry-After: {app}"
    );
    assert_eq!(
        sink.0.lock().unwrap().len(),
        1,
        "the seeded opportunity, once"
    );
}

#[tokio::test]
async fn with_two_replicas_only_the_lease_holder_polls() {
    let dv = Dv::start().await;
    let redis = RedisServer::start();
    let stop = CancellationToken::new();
    let mut sinks = Vec::new();
    let mut tasks = Vec::new();
    for holder in ["replica-a", "replica-b"] {
        let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&redis.url(), "t").await.unwrap());
        let sink = Arc::new(Collect::default());
        tasks.push(tokio::spawn(poll_crm(
            std::sync::Arc::new(polling(&dv, store, sink.clone(), holder)),
            stop.clone(),
        )));
        sinks.push(sink);
    }
    let api = dv.api().await;
    for n in 0..3 {
        api.create_opportunity(&json!({ "name": format!("Deal {n}") }))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
    let counts: Vec<usize> = sinks.iter().map(|s| s.0.lock().unwrap().len()).collect();
    // The seeded opportunity and the three new ones, each seen once, by one replica.
    assert!(counts.contains(&0), "one replica never polled: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 4, "{counts:?}");
}

/// A stopped poller gives its lease up, so the next process (a restart, another
/// replica) polls at once instead of waiting out the lease's ttl; on a store of the
/// process's own (SQLite) no lease is written at all, so a killed predecessor's
/// cannot exist. Polling goes on after the hand-over.
#[tokio::test]
async fn a_stopped_poller_releases_its_lease_and_sqlite_takes_none() {
    let dv = Dv::start().await;
    let redis = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&redis.url(), "t").await.unwrap());
    let first = CancellationToken::new();
    let sink = Arc::new(Collect::default());
    let task = tokio::spawn(poll_crm(
        Arc::new(polling(&dv, store.clone(), sink.clone(), "old-process")),
        first.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.get("lease", "crm/d365").await.unwrap().as_deref(),
        Some("old-process")
    );
    first.cancel();
    task.await.unwrap();
    assert_eq!(
        store.get("lease", "crm/d365").await.unwrap(),
        None,
        "released"
    );
    // The next process polls on its first round.
    let next = CancellationToken::new();
    let new_sink = Arc::new(Collect::default());
    let task = tokio::spawn(poll_crm(
        Arc::new(polling(&dv, store.clone(), new_sink.clone(), "new-process")),
        next.clone(),
    ));
    let api = dv.api().await;
    api.create_opportunity(&json!({ "name": "After the restart" }))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    next.cancel();
    task.await.unwrap();
    assert!(
        new_sink
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.attributes["name"] == "After the restart"),
        "the new process polled at once"
    );

    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(
        kaizala_bridge::store::SqliteStore::open(&dir.path().join("s.sqlite"))
            .await
            .unwrap(),
    );
    let stop = CancellationToken::new();
    let sink = Arc::new(Collect::default());
    let task = tokio::spawn(poll_crm(
        Arc::new(polling(&dv, sqlite.clone(), sink.clone(), "only-process")),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sqlite.get("lease", "crm/d365").await.unwrap(), None);
    assert!(!sink.0.lock().unwrap().is_empty(), "polled without a lease");
    stop.cancel();
    task.await.unwrap();
}
