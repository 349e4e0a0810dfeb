//! Tenant isolation, boundary by boundary: what tenant B's token (or CRM source B's
//! key) can reach of tenant A's. B cannot create an activity on A's record, change
//! one (an updated answer), suppress A's events by reusing their ids, or reach A's
//! receiver; a CRM source's key cannot start another source's rules.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use kaizala_bridge::app::Components;
use kaizala_bridge::crm::CrmEventSink;
use kaizala_bridge::idempotency::key_marker;
use kaizala_bridge::kaizala::{EventSink, KaizalaEvent, SinkError};
use kaizala_bridge::model::CrmEvent;
use kaizala_bridge::queue::Handler;
use serde_json::json;

use crate::early_answers::{answer, bed_for, correlation, post_survey};
use crate::support::app::TestApp;
use crate::support::config::{ConfigDir, BASE};
use crate::support::kaizala::Sim;

/// `kaizala_bridge_events_rejected_total{reason}` as the process counts it now.
fn rejected(reason: &str) -> f64 {
    let wanted = format!("kaizala_bridge_events_rejected_total{{reason=\"{reason}\"}} ");
    kaizala_bridge::telemetry::render_metrics()
        .lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .map_or(0.0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn tenant_b_cannot_create_or_change_an_activity_on_tenant_a_s_record() {
    let sim = Sim::start().await;
    let bed = bed_for(sim.sim.base_url(), &["contoso", "fabrikam"]).await;
    let key = "qualify/d365/opportunities/aa/created";
    let action_id = post_survey(&bed.client, Some(key)).await;
    bed.correlations
        .sent(&action_id, &correlation(key))
        .await
        .unwrap();
    let before = rejected("tenant_mismatch");

    // Fabrikam's webhook reports an answer, and then an updated one, to contoso's survey.
    let mut forged = answer(&action_id, "fabrikam");
    bed.handler
        .handle(&forged, 1)
        .await
        .expect("dropped at once");
    forged.response.is_update = true;
    forged.response.response_id = "r-2".into();
    bed.handler
        .handle(&forged, 1)
        .await
        .expect("dropped at once");
    assert!(
        bed.sink.0.lock().unwrap().is_empty(),
        "nothing written on contoso's record"
    );
    assert!(rejected("tenant_mismatch") >= before + 2.0);
    assert_eq!(
        bed.correlations
            .action("fabrikam", &action_id)
            .await
            .unwrap(),
        None,
        "the action did not become fabrikam's"
    );

    // Contoso's own answer still lands.
    bed.handler
        .handle(&answer(&action_id, "contoso"), 1)
        .await
        .unwrap();
    assert_eq!(bed.sink.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_answer_naming_another_group_than_its_action_s_is_dropped() {
    let sim = Sim::start().await;
    let bed = bed_for(sim.sim.base_url(), &["contoso"]).await;
    let key = "qualify/d365/opportunities/cc/created";
    let action_id = post_survey(&bed.client, Some(key)).await;
    bed.correlations
        .sent(&action_id, &correlation(key))
        .await
        .unwrap();
    let before = rejected("group_mismatch");
    let mut elsewhere = answer(&action_id, "contoso");
    elsewhere.response.group_id = "g-other".into();
    bed.handler.handle(&elsewhere, 1).await.expect("dropped");
    assert!(bed.sink.0.lock().unwrap().is_empty());
    assert!(rejected("group_mismatch") >= before + 1.0);
}

#[tokio::test]
async fn tenant_b_s_survey_carrying_tenant_a_s_key_does_not_reach_a_s_record() {
    // Fabrikam posts a survey of its own whose invisible question names a key of
    // contoso's still being posted: an answer to it must not land on contoso's record.
    let sim = Sim::start().await;
    let bed = bed_for(sim.sim.base_url(), &["contoso", "fabrikam"]).await;
    let key = "qualify/d365/opportunities/dd/created";
    let state = kaizala_bridge::jobs::PostState::Posting {
        started_ms: 0,
        correlation: Some(Box::new(correlation(key))),
    };
    bed.correlations.set_state(key, &state).await.unwrap();
    let body = json!({ "actionType": "Survey", "actionBody": { "title": "Mine", "dueDate": 48,
        "questions": [ { "title": "Budget?", "type": "Text" },
                       { "title": key_marker(key), "type": "Text", "isInvisible": true } ] } });
    let lure = bed
        .client
        .post_action_body("g-sales", &body)
        .await
        .unwrap()
        .action_id;
    bed.handler
        .handle(&answer(&lure, "fabrikam"), 1)
        .await
        .expect("not ours for fabrikam");
    assert!(bed.sink.0.lock().unwrap().is_empty());
    assert_eq!(
        bed.correlations.state(key).await.unwrap(),
        Some(state),
        "contoso's post state is untouched"
    );
}

/// Hands received events to the test.
#[derive(Default)]
struct Taken {
    kaizala: Mutex<Vec<(String, String)>>,
    crm: Mutex<Vec<CrmEvent>>,
}

impl EventSink for Taken {
    fn accept(
        &self,
        tenant: &str,
        event: KaizalaEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        let taken = (tenant.to_string(), event.event_id);
        self.kaizala.lock().unwrap().push(taken);
        Box::pin(async { Ok(()) })
    }
}

impl CrmEventSink for Taken {
    fn accept(
        &self,
        event: CrmEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        self.crm.lock().unwrap().push(event);
        Box::pin(async { Ok(()) })
    }
}

/// [`BASE`] with a second tenant (`fabrikam`) and a second CRM source (`d365b`).
fn two_of_each() -> String {
    format!(
        r#"{BASE}
[[tenants]]
id = "fabrikam"
callback_token = "fabrikam-callback-token"
[[tenants.connectors]]
id = "bot"
application_id = "app-9"
application_secret = "fabrikam-secret"
refresh_token = "fabrikam-rt"
groups = ["g-9"]

[[crm]]
id = "d365b"
kind = "dataverse"
url = "https://fabrikam.crm.dynamics.com"
tenant_id = "tenant-9"
client_id = "client-9"
client_secret = "fabrikam-client-secret"
webhook_key = "fabrikam-webhook-key"

[[rules]]
id = "r2"
action = "survey.toml"
[rules.trigger]
crm = "d365b"
entity = "opportunities"
on = "created"
[rules.target]
tenant = "fabrikam"
connector = "bot"
group = "g-9"
[rules.write_back]
subject = "s"
description = "d"
"#
    )
}

async fn app(taken: &Arc<Taken>) -> (TestApp, ConfigDir) {
    let dir = ConfigDir::new(&two_of_each());
    let mut components = Components {
        kaizala_sink: Some(taken.clone()),
        ..Default::default()
    };
    components.crm_sink = Some(taken.clone());
    (TestApp::spawn_with(&dir.load(), components).await, dir)
}

#[tokio::test]
async fn tenant_b_cannot_suppress_tenant_a_s_events_by_reusing_their_ids() {
    let taken = Arc::new(Taken::default());
    let (app, _dir) = app(&taken).await;
    let deliver = |tenant: &'static str, token: &'static str| {
        let event = json!({ "eventType": "TextMessageCreated", "eventId": "3e49b367-acf6-48a7-a675-6bf4d372a070",
            "objectId": "g-1", "objectType": "Group", "data": { "text": "hi" } });
        app.client
            .post(app.url(&format!("/webhooks/kaizala/{tenant}")))
            .header("kz-callback-token", token)
            .body(event.to_string())
            .send()
    };
    let first = deliver("fabrikam", "fabrikam-callback-token")
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let second = deliver("contoso", "test-callback-token-b2").await.unwrap();
    assert_eq!(second.status(), 200);
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(
        body["status"], "accepted",
        "contoso's event is its own, not a duplicate of fabrikam's"
    );
    let tenants: Vec<String> = taken
        .kaizala
        .lock()
        .unwrap()
        .iter()
        .map(|(tenant, _)| tenant.clone())
        .collect();
    assert_eq!(tenants, ["fabrikam", "contoso"]);

    // Fabrikam's token on contoso's receiver is a wrong token.
    let crossed = deliver("contoso", "fabrikam-callback-token").await.unwrap();
    assert_eq!(crossed.status(), 401);
    assert_eq!(taken.kaizala.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_crm_source_s_key_reaches_only_its_own_source() {
    let taken = Arc::new(Taken::default());
    let (app, _dir) = app(&taken).await;
    let create = json!({ "MessageName": "Create", "PrimaryEntityName": "opportunity",
        "PrimaryEntityId": "8c291050-9be8-45d6-97f5-bb7013930027" })
    .to_string();
    let post = |path: &str, key: &str| {
        app.client
            .post(app.url(&format!("/webhooks/dataverse/{path}?code={key}")))
            .body(create.clone())
            .send()
    };
    let crossed = post("d365", "fabrikam-webhook-key").await.unwrap();
    assert_eq!(crossed.status(), 401, "d365b's key does not open d365");
    assert!(taken.crm.lock().unwrap().is_empty());
    let own = post("d365b", "fabrikam-webhook-key").await.unwrap();
    let status = own.status();
    let crm: Vec<String> = taken
        .crm
        .lock()
        .unwrap()
        .iter()
        .map(|event| event.record.crm.clone())
        .collect();
    assert_eq!(status, 200);
    assert_eq!(
        crm,
        ["d365b"],
        "the event is d365b's: only d365b's rules can act on it"
    );
}
