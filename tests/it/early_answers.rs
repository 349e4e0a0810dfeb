//! An answer that comes before the bridge knows its action: the survey was created
//! but the POST's answer was lost, so only the post state (`Posting`, with what it
//! was sent for) is recorded. The answer is resolved through the survey's invisible
//! key question and recorded at once; an action without our key is ignored; an
//! action that cannot be read is retried, never dropped.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kaizala_bridge::config::Secret;
use kaizala_bridge::crm::{CrmError, CrmSink, Written};
use kaizala_bridge::idempotency::key_marker;
use kaizala_bridge::jobs::{
    Correlation, Correlations, PostState, RecordResponse, RecordResponseHandler,
};
use kaizala_bridge::kaizala::{ClientOptions, ConnectorCredentials, Credentials, KaizalaClient};
use kaizala_bridge::model::{
    Activity, ActivityKind, AnsweredQuestion, ConnectorRef, CrmRecordRef, ResponseEvent,
};
use kaizala_bridge::queue::{Handler, JobError};
use kaizala_bridge::store::{SqliteStore, Store};
use serde_json::json;

use crate::support::kaizala::Sim;

/// Keeps what it is asked to write.
#[derive(Default)]
pub(crate) struct Recorded(pub(crate) Mutex<Vec<Activity>>);

impl CrmSink for Recorded {
    fn write_activity<'a>(
        &'a self,
        activity: &'a Activity,
    ) -> Pin<Box<dyn Future<Output = Result<Written, CrmError>> + Send + 'a>> {
        self.0.lock().unwrap().push(activity.clone());
        Box::pin(async { Ok(Written::Created("t-1".into())) })
    }
}

/// A `RecordResponse` handler for CRM `d365`, reading Kaizala as `tenant/app-1`
/// (every tenant of `tenants`) and writing into [`Recorded`].
pub(crate) struct Bed {
    pub(crate) client: Arc<KaizalaClient>,
    pub(crate) correlations: Correlations,
    pub(crate) sink: Arc<Recorded>,
    pub(crate) handler: RecordResponseHandler,
    _dir: tempfile::TempDir,
}

async fn bed(api_root: &str) -> Bed {
    bed_for(api_root, &["contoso"]).await
}

pub(crate) async fn bed_for(api_root: &str, tenants: &[&str]) -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("s.sqlite"))
            .await
            .unwrap(),
    );
    let credentials = ConnectorCredentials {
        key: "contoso/app-1".into(),
        application_id: "app-1".into(),
        application_secret: Secret::new("secret-1".to_string()),
        refresh_token: Secret::new("rt-1".to_string()),
        api_root: api_root.parse().unwrap(),
    };
    let options = ClientOptions {
        timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    let client = Arc::new(
        KaizalaClient::new(credentials, Credentials::new(store.clone()), &options).unwrap(),
    );
    let correlations = Correlations::new(store);
    let sink = Arc::new(Recorded::default());
    let sinks: HashMap<String, Arc<dyn CrmSink>> =
        HashMap::from([("d365".into(), sink.clone() as _)]);
    let clients = tenants
        .iter()
        .map(|tenant| (ConnectorRef::new(*tenant, "app-1"), client.clone()))
        .collect();
    let handler = RecordResponseHandler::new(sinks, correlations.clone()).with_kaizala(clients);
    Bed {
        client,
        correlations,
        sink,
        handler,
        _dir: dir,
    }
}

pub(crate) fn correlation(key: &str) -> Correlation {
    Correlation {
        key: key.into(),
        rule: "qualify".into(),
        tenant: "contoso".into(),
        connector: "app-1".into(),
        group: "g-sales".into(),
        title: "Qualify Deal".into(),
        record: CrmRecordRef {
            crm: "d365".into(),
            entity_set: "opportunities".into(),
            id: "00000000-0000-0000-0000-0000000000aa".into(),
        },
        activity: ActivityKind::Task,
        due_ms: None,
        polled_out: false,
    }
}

/// Posts a survey to g-sales; with `key`, carrying it in an invisible question.
pub(crate) async fn post_survey(client: &KaizalaClient, key: Option<&str>) -> String {
    let mut questions = vec![json!({ "title": "Budget?", "type": "Text" })];
    if let Some(key) = key {
        questions.push(json!({ "title": key_marker(key), "type": "Text", "isInvisible": true }));
    }
    let body = json!({ "actionType": "Survey", "actionBody": {
        "title": "Qualify Deal", "dueDate": 48, "questions": questions } });
    client
        .post_action_body("g-sales", &body)
        .await
        .unwrap()
        .action_id
}

pub(crate) fn answer(action_id: &str, tenant: &str) -> RecordResponse {
    RecordResponse {
        tenant: tenant.into(),
        response: ResponseEvent {
            action_id: action_id.into(),
            group_id: "g-sales".into(),
            response_id: "r-1".into(),
            responder: "+15550101".into(),
            responder_name: "Asha".into(),
            is_update: false,
            answers: vec![AnsweredQuestion {
                question: "Budget?".into(),
                answer: "Yes".into(),
            }],
        },
        time: "2026-12-01T10:00:00Z".into(),
    }
}

#[tokio::test]
async fn an_answer_before_the_post_was_recorded_lands_at_once_through_the_key_question() {
    let sim = Sim::start().await;
    let bed = bed(sim.sim.base_url()).await;
    let key = "qualify/d365/opportunities/aa/created";
    let sent_for = correlation(key);
    // The POST went out and created the survey; its answer never came back.
    let state = PostState::Posting {
        started_ms: 0,
        correlation: Some(Box::new(sent_for.clone())),
    };
    bed.correlations.set_state(key, &state).await.unwrap();
    let action_id = post_survey(&bed.client, Some(key)).await;

    bed.handler
        .handle(&answer(&action_id, "contoso"), 1)
        .await
        .expect("recorded on the first attempt");
    let written = bed.sink.0.lock().unwrap().clone();
    assert_eq!(written.len(), 1, "one activity");
    assert_eq!(written[0].regarding, sent_for.record);
    assert_eq!(
        bed.correlations.state(key).await.unwrap(),
        Some(PostState::Sent {
            action_id: action_id.clone()
        }),
        "the sending job will find its survey sent"
    );
    assert_eq!(
        bed.correlations
            .action("contoso", &action_id)
            .await
            .unwrap(),
        Some(sent_for)
    );
}

#[tokio::test]
async fn an_answer_to_an_action_without_our_key_is_ignored_and_another_tenants_is_not_ours() {
    let sim = Sim::start().await;
    let bed = bed(sim.sim.base_url()).await;
    let foreign = post_survey(&bed.client, None).await;
    bed.handler
        .handle(&answer(&foreign, "contoso"), 1)
        .await
        .expect("ignored, not retried");
    // Our key, but the answer arrived for another tenant: not applied to contoso's.
    let key = "qualify/d365/opportunities/bb/created";
    let state = PostState::Posting {
        started_ms: 0,
        correlation: Some(Box::new(correlation(key))),
    };
    bed.correlations.set_state(key, &state).await.unwrap();
    let ours = post_survey(&bed.client, Some(key)).await;
    let mut elsewhere = bed;
    elsewhere.handler = RecordResponseHandler::new(HashMap::new(), elsewhere.correlations.clone())
        .with_kaizala(HashMap::from([(
            ConnectorRef::new("fabrikam", "app-1"),
            elsewhere.client.clone(),
        )]));
    elsewhere
        .handler
        .handle(&answer(&ours, "fabrikam"), 1)
        .await
        .expect("ignored, not retried");
    assert!(
        elsewhere.sink.0.lock().unwrap().is_empty(),
        "nothing written"
    );
    assert_eq!(
        elsewhere
            .correlations
            .action("fabrikam", &ours)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn an_answer_whose_action_cannot_be_read_is_retried_not_dropped() {
    // Nothing listens on port 1: Kaizala cannot be read.
    let bed = bed("http://127.0.0.1:1").await;
    let outcome = bed.handler.handle(&answer("a-unknown", "contoso"), 1).await;
    assert!(
        matches!(outcome, Err(JobError::Retry { .. })),
        "{outcome:?}"
    );
    assert!(bed.sink.0.lock().unwrap().is_empty());
}
