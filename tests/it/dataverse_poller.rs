//! Change-tracking polls against the Dataverse emulator.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kaizala_bridge::config::Secret;
use kaizala_bridge::crm::dataverse::poller::{poll_once, Baseline, CrmEventSink, PollError, Watch};
use kaizala_bridge::crm::dataverse::{EntraCredentials, WebApi};
use kaizala_bridge::model::{ChangeKind, CrmEvent};
use kaizala_bridge::store::{SqliteStore, Store};
use serde_json::json;

use crate::support::dataverse::Dv;

/// Collects events; refuses them once `fail_after` were taken.
#[derive(Default)]
struct Collect {
    events: Mutex<Vec<CrmEvent>>,
    fail_after: AtomicUsize,
}

impl CrmEventSink for Collect {
    fn accept(
        &self,
        event: CrmEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let mut events = self.events.lock().unwrap();
        let limit = self.fail_after.load(Ordering::SeqCst);
        let result = if limit > 0 && events.len() >= limit {
            Err("queue unavailable".to_string())
        } else {
            events.push(event);
            Ok(())
        };
        Box::pin(async move { result })
    }
}

impl Collect {
    fn take(&self) -> Vec<(ChangeKind, String)> {
        let events = std::mem::take(&mut *self.events.lock().unwrap());
        events
            .into_iter()
            .map(|e| {
                (
                    e.kind,
                    e.attributes
                        .get("name")
                        .and_then(|n| n.as_str())
                        .unwrap_or(&e.record.id)
                        .to_string(),
                )
            })
            .collect()
    }
}

fn api(dv: &Dv) -> WebApi {
    let credentials = EntraCredentials {
        token_url: dv.sim.token_url("contoso"),
        client_id: "bridge".into(),
        client_secret: Secret::new("bridge-secret"),
        scope: format!("{}/.default", dv.sim.base_url()),
    };
    WebApi::new(
        "d365",
        dv.sim.base_url(),
        credentials,
        Duration::from_secs(10),
    )
    .unwrap()
}

fn watch(baseline: Baseline) -> Watch {
    Watch {
        crm: "d365".into(),
        entity_set: "opportunities".into(),
        select: vec!["name".into(), "estimatedvalue".into()],
        baseline,
    }
}

#[tokio::test]
async fn polls_find_new_changed_and_deleted_records_once_each() {
    let dv = Dv::start().await;
    let dir = tempfile::tempdir().unwrap();
    let links = SqliteStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap();
    let (api, sink, watch) = (api(&dv), Collect::default(), watch(Baseline::ExistingAsNew));

    let report = poll_once(&api, &links, &sink, &watch).await.unwrap();
    assert!(report.baseline && !report.expired);
    assert_eq!(
        sink.take(),
        [(ChangeKind::Created, "Existing deal".to_string())],
        "existing records count as new"
    );
    assert!(links
        .get("delta", "d365/opportunities")
        .await
        .unwrap()
        .unwrap()
        .contains("$deltatoken="));

    dv.sim.advance_clock(Duration::from_secs(1));
    let web = dv.api().await;
    let existing = web
        .get("opportunities?$filter=name eq 'Existing deal'")
        .await
        .body["value"][0]["opportunityid"]
        .as_str()
        .unwrap()
        .to_string();
    web.create_opportunity(&json!({ "name": "New A" })).await;
    let b = web.create_opportunity(&json!({ "name": "New B" })).await;
    web.patch(
        &format!("opportunities({existing})"),
        &json!({ "estimatedvalue": 6000 }),
        &[("If-Match", "*")],
    )
    .await;
    web.delete(&format!("opportunities({b})")).await;
    dv.sim.advance_clock(Duration::from_secs(1));

    let report = poll_once(&api, &links, &sink, &watch).await.unwrap();
    assert!(!report.baseline);
    let events = sink.take();
    assert!(
        events.contains(&(ChangeKind::Created, "New A".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&(ChangeKind::Updated, "Existing deal".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&(ChangeKind::Deleted, b.clone())),
        "{events:?}"
    );
    assert_eq!(events.len(), 3);
    poll_once(&api, &links, &sink, &watch).await.unwrap();
    assert!(sink.take().is_empty(), "nothing twice");
}

#[tokio::test]
async fn a_changes_only_baseline_sends_nothing_old() {
    let dv = Dv::start().await;
    let dir = tempfile::tempdir().unwrap();
    let links = SqliteStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap();
    let (api, sink, watch) = (api(&dv), Collect::default(), watch(Baseline::ChangesOnly));
    assert_eq!(
        poll_once(&api, &links, &sink, &watch).await.unwrap().events,
        0
    );
    dv.api()
        .await
        .create_opportunity(&json!({ "name": "Fresh" }))
        .await;
    poll_once(&api, &links, &sink, &watch).await.unwrap();
    assert_eq!(sink.take(), [(ChangeKind::Created, "Fresh".to_string())]);
}

#[tokio::test]
async fn when_the_sink_fails_the_link_stays_and_the_next_poll_reads_the_same_changes() {
    let dv = Dv::start().await;
    let dir = tempfile::tempdir().unwrap();
    let links = SqliteStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap();
    let (api, sink, watch) = (api(&dv), Collect::default(), watch(Baseline::ChangesOnly));
    poll_once(&api, &links, &sink, &watch).await.unwrap();
    let saved = links.get("delta", "d365/opportunities").await.unwrap();
    let web = dv.api().await;
    web.create_opportunity(&json!({ "name": "One" })).await;
    web.create_opportunity(&json!({ "name": "Two" })).await;

    sink.fail_after.store(1, Ordering::SeqCst);
    let error = poll_once(&api, &links, &sink, &watch).await.unwrap_err();
    assert!(matches!(error, PollError::Sink(_)), "{error}");
    assert_eq!(
        links.get("delta", "d365/opportunities").await.unwrap(),
        saved,
        "the link was not advanced"
    );
    assert_eq!(sink.take().len(), 1, "one was taken before the failure");

    sink.fail_after.store(0, Ordering::SeqCst);
    poll_once(&api, &links, &sink, &watch).await.unwrap();
    let again = sink.take();
    assert_eq!(
        again.len(),
        2,
        "both are read again (at least once; idempotency keys make the repeat harmless): {again:?}"
    );
}

#[tokio::test]
async fn an_expired_delta_token_leads_to_a_fresh_baseline() {
    let dv = Dv::start().await;
    let dir = tempfile::tempdir().unwrap();
    let links = SqliteStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap();
    let (api, sink, watch) = (api(&dv), Collect::default(), watch(Baseline::ExistingAsNew));
    poll_once(&api, &links, &sink, &watch).await.unwrap();
    sink.take();
    dv.sim.expire_delta_tokens();
    let report = poll_once(&api, &links, &sink, &watch).await.unwrap();
    assert!(report.expired && report.baseline, "{report:?}");
    assert_eq!(
        sink.take(),
        [(ChangeKind::Created, "Existing deal".to_string())],
        "sent again; the idempotency keys keep it from acting twice"
    );
    assert!(
        !poll_once(&api, &links, &sink, &watch)
            .await
            .unwrap()
            .baseline
    );
}

#[tokio::test]
async fn a_record_edited_right_after_its_creation_still_counts_as_new() {
    let dv = Dv::start().await;
    let dir = tempfile::tempdir().unwrap();
    let links = SqliteStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap();
    let (api, sink, watch) = (api(&dv), Collect::default(), watch(Baseline::ChangesOnly));
    poll_once(&api, &links, &sink, &watch).await.unwrap();

    dv.sim.advance_clock(Duration::from_secs(5));
    let web = dv.api().await;
    let id = web
        .create_opportunity(&json!({ "name": "Edited at once" }))
        .await;
    // A plugin, or the sales rep, changes it a few seconds later, before the next poll.
    dv.sim.advance_clock(Duration::from_secs(5));
    web.patch(
        &format!("opportunities({id})"),
        &json!({ "estimatedvalue": 12000 }),
        &[("If-Match", "*")],
    )
    .await;
    poll_once(&api, &links, &sink, &watch).await.unwrap();
    assert_eq!(
        sink.take(),
        [(ChangeKind::Created, "Edited at once".to_string())],
        "created after everything read before: new, whatever happened since"
    );

    // Changed again later: now it is an update.
    dv.sim.advance_clock(Duration::from_secs(5));
    web.patch(
        &format!("opportunities({id})"),
        &json!({ "estimatedvalue": 13000 }),
        &[("If-Match", "*")],
    )
    .await;
    poll_once(&api, &links, &sink, &watch).await.unwrap();
    assert_eq!(
        sink.take(),
        [(ChangeKind::Updated, "Edited at once".to_string())]
    );
}
