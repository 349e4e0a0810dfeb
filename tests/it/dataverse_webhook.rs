//! The bridge's Dataverse webhook receiver, called by the Dataverse emulator.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kaizala_bridge::app::Components;
use kaizala_bridge::crm::CrmEventSink;
use kaizala_bridge::model::{ChangeKind, CrmEvent};
use kaizala_bridge::sim::dataverse::ServiceEndpoint;
use serde_json::json;
use tokio::sync::mpsc;

use crate::support::app::TestApp;
use crate::support::config::{ConfigDir, BASE};
use crate::support::dataverse::Dv;

/// The webhook key of source `d365` in [`BASE`].
const KEY: &str = "test-webhook-key-f6";

struct Channel {
    events: mpsc::UnboundedSender<CrmEvent>,
    failing: AtomicBool,
}

impl CrmEventSink for Channel {
    fn accept(
        &self,
        event: CrmEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let result = if self.failing.load(Ordering::SeqCst) {
            Err("queue unavailable".into())
        } else {
            self.events.send(event).map_err(|e| e.to_string())
        };
        Box::pin(async move { result })
    }
}

struct Fixture {
    dv: Dv,
    app: TestApp,
    sink: Arc<Channel>,
    events: mpsc::UnboundedReceiver<CrmEvent>,
    _dir: ConfigDir,
}

async fn fixture(extra: &str) -> Fixture {
    let dv = Dv::start().await;
    let dir = ConfigDir::new(&BASE.replace(
        "webhook_key = \"test-webhook-key-f6\"",
        &format!("webhook_key = \"{KEY}\"\n{extra}"),
    ));
    let (tx, events) = mpsc::unbounded_channel();
    let sink = Arc::new(Channel {
        events: tx,
        failing: AtomicBool::new(false),
    });
    let app = TestApp::spawn_with(
        &dir.load(),
        Components {
            crm_sink: Some(sink.clone()),
            ..Default::default()
        },
    )
    .await;
    Fixture {
        dv,
        app,
        sink,
        events,
        _dir: dir,
    }
}

fn registration(url: &str, message: &str, auth: serde_json::Value) -> ServiceEndpoint {
    let mut value = json!({ "url": url, "entity": "opportunity", "message": message });
    for (k, v) in auth.as_object().unwrap() {
        value[k] = v.clone();
    }
    serde_json::from_value(value).unwrap()
}

impl Fixture {
    async fn next(&mut self) -> CrmEvent {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("an event arrives")
            .unwrap()
    }

    async fn wait_for_delivery(&self, status: u16) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.dv.sim.state()["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["status"] == status)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}",
                self.dv.sim.state()["deliveries"]
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_created_opportunity_arrives_as_the_same_event_polling_gives() {
    let mut f = fixture("").await;
    let url = f.app.url("/webhooks/dataverse/d365");
    f.dv.sim
        .register_webhook(registration(
            &url,
            "Create",
            json!({ "auth": "WebhookKey", "key": KEY }),
        ))
        .unwrap();
    let id =
        f.dv.api()
            .await
            .create_opportunity(&json!({ "name": "Big deal", "estimatedvalue": 25000.0 }))
            .await;
    let event = f.next().await;
    assert_eq!(
        (
            event.kind,
            event.record.crm.as_str(),
            event.record.entity_set.as_str()
        ),
        (ChangeKind::Created, "d365", "opportunities")
    );
    assert_eq!(event.record.id, id);
    assert_eq!(event.attributes["name"], "Big deal");
    assert_eq!(
        event.attributes["estimatedvalue"], 25000.0,
        "Money unwrapped"
    );
    assert_eq!(event.attributes["opportunityid"], id.as_str());
    assert!(
        event.attributes["createdon"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "a /Date()/ becomes ISO"
    );
}

#[tokio::test]
async fn a_wrong_key_gets_401_and_nothing_is_handed_on() {
    let mut f = fixture("").await;
    let url = f.app.url("/webhooks/dataverse/d365");
    f.dv.sim
        .register_webhook(registration(
            &url,
            "Create",
            json!({ "auth": "WebhookKey", "key": "not-the-key" }),
        ))
        .unwrap();
    f.dv.api()
        .await
        .create_opportunity(&json!({ "name": "Deal" }))
        .await;
    f.wait_for_delivery(401).await;
    assert!(f.events.try_recv().is_err());
}

#[tokio::test]
async fn header_authentication_and_the_size_exceeded_variant() {
    let mut f = fixture("webhook_header = \"x-bridge-key\"").await;
    let url = f.app.url("/webhooks/dataverse/d365");
    let mut endpoint = registration(
        &url,
        "Create",
        json!({ "auth": "HttpHeader", "headers": { "x-bridge-key": KEY } }),
    );
    endpoint.size_exceeded = true;
    f.dv.sim.register_webhook(endpoint).unwrap();
    let id =
        f.dv.api()
            .await
            .create_opportunity(&json!({ "name": "Deal" }))
            .await;
    let event = f.next().await;
    assert_eq!(event.record.id, id);
    assert!(
        event.attributes.get("name").is_none(),
        "no Target: the record is to be re-read by id"
    );
}

#[tokio::test]
async fn a_sink_failure_is_503_and_bad_bodies_are_400() {
    let f = fixture("").await;
    f.sink.failing.store(true, Ordering::SeqCst);
    let url = f.app.url("/webhooks/dataverse/d365");
    f.dv.sim
        .register_webhook(registration(
            &url,
            "Create",
            json!({ "auth": "WebhookKey", "key": KEY }),
        ))
        .unwrap();
    f.dv.api()
        .await
        .create_opportunity(&json!({ "name": "Deal" }))
        .await;
    f.wait_for_delivery(503).await;

    let post = |body: String| {
        f.app
            .client
            .post(format!("{url}?code={KEY}"))
            .body(body)
            .send()
    };
    let response =
        post(json!({ "MessageName": "Create", "PrimaryEntityName": "opportunity" }).to_string())
            .await
            .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "PrimaryEntityId: missing"
    );
    let unwatched = json!({ "MessageName": "Create", "PrimaryEntityName": "account", "PrimaryEntityId": "00000000-0000-0000-0000-000000000001" });
    assert_eq!(
        post(unwatched.to_string()).await.unwrap().status(),
        200,
        "acknowledged, not acted on"
    );
    let other = f
        .app
        .client
        .post(f.app.url("/webhooks/dataverse/salesforce?code=x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        401,
        "an unknown source is answered as a wrong key is"
    );
    let hostile = json!({ "MessageName": "Create", "PrimaryEntityName": "opportunity", "PrimaryEntityId": "../../x\u{202e}\u{0}" });
    let response = post(hostile.to_string()).await.unwrap();
    assert_eq!(response.status(), 400);
    let error = response.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.starts_with("PrimaryEntityId: must be a GUID"),
        "{error}"
    );
    assert!(!error.contains('\u{202e}'), "shown escaped: {error}");
}
