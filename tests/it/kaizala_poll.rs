//! Responses found by polling, with no webhook at all.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kaizala_bridge::config::Secret;
use kaizala_bridge::kaizala::api::*;
use kaizala_bridge::kaizala::poll::{poll_once, Outstanding};
use kaizala_bridge::kaizala::{
    ClientOptions, ConnectorCredentials, Credentials, EventData, EventSink, KaizalaClient,
    KaizalaEvent, Receiver, SinkError,
};
use kaizala_bridge::store::{SqliteStore, Store};
use serde_json::json;
use tokio::sync::mpsc;

use crate::support::kaizala::Sim;

struct Channel(mpsc::UnboundedSender<KaizalaEvent>);

impl EventSink for Channel {
    fn accept(
        &self,
        _: &str,
        event: KaizalaEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        let result = self.0.send(event).map_err(|e| SinkError(e.to_string()));
        Box::pin(async move { result })
    }
}

#[tokio::test]
async fn polling_finds_each_new_or_changed_response_once_and_stops_after_the_due_date() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = ConnectorCredentials {
        key: "contoso/app-1".into(),
        application_id: "app-1".into(),
        application_secret: Secret::new("secret-1"),
        refresh_token: Secret::new("rt-1"),
        api_root: sim.sim.base_url().parse().unwrap(),
    };
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("state.sqlite"))
            .await
            .unwrap(),
    );
    let client = KaizalaClient::new(
        credentials,
        Credentials::new(store.clone()),
        &ClientOptions::default(),
    )
    .unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let receiver = Receiver::new(
        Default::default(),
        store,
        Duration::from_secs(3600),
        Arc::new(Channel(tx)),
    );

    let survey = Action::Survey(SurveyBody {
        title: "Qualify".into(),
        due_date: 48,
        is_anonymous: false,
        is_sender_only: false,
        accept_multiple_responses: false,
        questions: vec![Question {
            title: "Budget?".into(),
            kind: QuestionType::Text,
            options: vec![],
            is_invisible: false,
        }],
    });
    let posted = client.post_action("g-sales", &survey).await.unwrap();
    assert!(
        sim.sim.state()["webhooks"].as_array().unwrap().is_empty(),
        "no webhook at all"
    );
    let now = sim.sim.state()["now"].as_i64().unwrap();
    let outstanding = [Outstanding {
        group_id: "g-sales".into(),
        action_id: posted.action_id.clone(),
        due_ms: now + 48 * 3_600_000,
    }];
    let grace = Duration::from_secs(3600);

    let session = sim.session(1).await;
    let answer =
        |text: &str| json!({ "actionType": "Survey", "actionBody": { "answers": [text] } });
    session
        .respond("g-sales", &posted.action_id, "+15550001", &answer("yes"))
        .await;
    let report = poll_once(&client, &receiver, "contoso", &outstanding, now, grace)
        .await
        .unwrap();
    assert_eq!((report.handed_on, report.finished.len()), (1, 0));
    let event = events.try_recv().unwrap();
    let EventData::Response {
        responder_name,
        answers,
        is_update,
        ..
    } = event.data
    else {
        panic!()
    };
    assert_eq!(
        (responder_name.as_str(), answers[0].value.clone(), is_update),
        ("Asha", json!("yes"), false)
    );

    let report = poll_once(&client, &receiver, "contoso", &outstanding, now, grace)
        .await
        .unwrap();
    assert_eq!(report.handed_on, 0, "nothing new");
    assert!(events.try_recv().is_err());

    sim.sim.advance_clock(Duration::from_secs(1));
    session
        .respond("g-sales", &posted.action_id, "+15550001", &answer("no"))
        .await;
    session
        .respond("g-sales", &posted.action_id, "+15550002", &answer("maybe"))
        .await;
    let report = poll_once(&client, &receiver, "contoso", &outstanding, now, grace)
        .await
        .unwrap();
    assert_eq!(report.handed_on, 2, "Asha's change and Ben's answer");
    let changed = events.try_recv().unwrap();
    assert!(
        matches!(
            changed.data,
            EventData::Response {
                is_update: true,
                ..
            }
        ),
        "{changed:?}"
    );

    let later = now + 50 * 3_600_000;
    let report = poll_once(&client, &receiver, "contoso", &outstanding, later, grace)
        .await
        .unwrap();
    assert_eq!(
        report.finished,
        vec![posted.action_id],
        "past due plus grace: stop polling it"
    );
}
