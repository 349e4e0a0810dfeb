//! The bridge's Kaizala webhook receiver, registered with the emulator for real:
//! the handshake, events handed on with the right token only, duplicates dropped,
//! and 400/401/404/413/503 as documented.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kaizala_bridge::app::Components;
use kaizala_bridge::kaizala::{EventData, EventSink, KaizalaEvent, SinkError};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::support::app::TestApp;
use crate::support::config::{ConfigDir, BASE};
use crate::support::kaizala::{Session, Sim};

/// The callback token of tenant `contoso` in [`BASE`].
const TOKEN: &str = "test-callback-token-b2";

/// A sink that hands events to the test, or refuses them while `failing`.
struct ChannelSink {
    events: mpsc::UnboundedSender<(String, KaizalaEvent)>,
    failing: AtomicBool,
}

impl EventSink for ChannelSink {
    fn accept(
        &self,
        tenant: &str,
        event: KaizalaEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        let result = if self.failing.load(Ordering::SeqCst) {
            Err(SinkError("queue unavailable".into()))
        } else {
            self.events
                .send((tenant.to_string(), event))
                .map_err(|e| SinkError(e.to_string()))
        };
        Box::pin(async move { result })
    }
}

struct Fixture {
    sim: Sim,
    session: Session,
    app: TestApp,
    sink: Arc<ChannelSink>,
    events: mpsc::UnboundedReceiver<(String, KaizalaEvent)>,
    _dir: ConfigDir,
}

async fn fixture() -> Fixture {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let dir = ConfigDir::new(&BASE.replace("[server]", "[server]\nbody_limit_bytes = 4096"));
    let (tx, events) = mpsc::unbounded_channel();
    let sink = Arc::new(ChannelSink {
        events: tx,
        failing: AtomicBool::new(false),
    });
    let app = TestApp::spawn_with(
        &dir.load(),
        Components {
            kaizala_sink: Some(sink.clone()),
            ..Default::default()
        },
    )
    .await;
    Fixture {
        sim,
        session,
        app,
        sink,
        events,
        _dir: dir,
    }
}

impl Fixture {
    async fn register(&self, token: &str) -> (u16, Value) {
        let request = json!({
            "objectId": "g-sales", "objectType": "Group", "eventTypes": ["TextMessageCreated", "SurveyResponse"],
            "callBackUrl": self.app.url("/webhooks/kaizala/contoso"), "callBackToken": token, "callBackContext": "bridge",
        });
        self.session.post("/webhook", &request).await
    }

    async fn say(&self, text: &str) {
        let (status, _) = self
            .session
            .post("/groups/g-sales/messages", &json!({ "message": text }))
            .await;
        assert_eq!(status, 200);
    }

    async fn next_event(&mut self) -> (String, KaizalaEvent) {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("an event arrives")
            .unwrap()
    }

    fn deliveries(&self) -> Vec<Value> {
        self.sim.sim.state()["deliveries"]
            .as_array()
            .unwrap()
            .clone()
    }
}

#[tokio::test]
async fn the_handshake_passes_through_the_real_registration_and_events_arrive() {
    let mut f = fixture().await;
    let (status, body) = f.register(TOKEN).await;
    assert_eq!(
        status, 200,
        "the emulator's handshake against the bridge: {body}"
    );
    f.say("hello").await;
    let (tenant, event) = f.next_event().await;
    assert_eq!(tenant, "contoso");
    assert_eq!(event.event_type, "TextMessageCreated");
    assert_eq!(event.context, "bridge");
    assert_eq!(
        event.data,
        EventData::TextMessageCreated {
            text: "hello".into()
        }
    );

    let survey = json!({ "actionType": "Survey", "actionBody": { "title": "Q", "questions": [{ "title": "Why?", "type": "Text" }] } });
    let (_, body) = f.session.post("/groups/g-sales/actions", &survey).await;
    let action = body["actionId"].as_str().unwrap().to_string();
    f.session
        .respond(
            "g-sales",
            &action,
            "+15550001",
            &json!({ "actionType": "Survey", "actionBody": { "answers": ["Because"] } }),
        )
        .await;
    let (_, event) = f.next_event().await;
    let EventData::Response {
        action_id,
        responder_name,
        answers,
        ..
    } = event.data
    else {
        panic!("{event:?}")
    };
    assert_eq!(
        (action_id.as_str(), responder_name.as_str()),
        (action.as_str(), "Asha")
    );
    assert_eq!(answers[0].value, json!("Because"));
}

#[tokio::test]
async fn the_validation_echo_is_plain_text_never_sniffed_and_tells_no_tenant_names() {
    let f = fixture().await;
    let response = f
        .app
        .get("/webhooks/kaizala/contoso?validationToken=abc-123")
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.text().await.unwrap(), "abc-123");
    // No callback token comes with the handshake: every tenant name is answered
    // alike, so the answer tells a scanner nothing.
    let unknown = f
        .app
        .get("/webhooks/kaizala/fabrikam?validationToken=abc")
        .await;
    assert_eq!(unknown.status(), 200);
    let hostile = f
        .app
        .get("/webhooks/kaizala/contoso?validationToken=%3Cscript%3E%0A")
        .await;
    assert_eq!(hostile.status(), 400, "a control character is not echoed");
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_nothing_is_handed_on() {
    let mut f = fixture().await;
    let (status, _) = f.register("not-the-token").await;
    assert_eq!(
        status, 200,
        "the handshake carries no token, so registration passes"
    );
    f.say("hello").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f.deliveries().iter().any(|d| d["status"] == 401) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            f.deliveries()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(f.events.try_recv().is_err(), "nothing was handed on");

    let unsigned = f
        .app
        .client
        .post(f.app.url("/webhooks/kaizala/contoso"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
}

#[tokio::test]
async fn a_duplicate_delivery_is_handed_on_once() {
    let mut f = fixture().await;
    f.register(TOKEN).await;
    f.sim
        .sim
        .set_faults(kaizala_bridge::sim::kaizala::Faults {
            duplicate_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    f.say("once").await;
    let (_, first) = f.next_event().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f
        .deliveries()
        .iter()
        .filter(|d| d["eventId"] == first.event_id.as_str())
        .count()
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        f.deliveries().iter().all(|d| d["outcome"] == "delivered"),
        "both acknowledged"
    );
    assert!(
        f.events.try_recv().is_err(),
        "the second delivery was dropped"
    );
}

#[tokio::test]
async fn when_the_sink_cannot_take_an_event_kaizala_is_told_503_and_its_retry_goes_through() {
    let mut f = fixture().await;
    f.register(TOKEN).await;
    f.sink.failing.store(true, Ordering::SeqCst);
    f.say("later").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f.deliveries().iter().any(|d| d["status"] == 503) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f.sink.failing.store(false, Ordering::SeqCst);
    let (_, event) = f.next_event().await;
    assert_eq!(
        event.data,
        EventData::TextMessageCreated {
            text: "later".into()
        },
        "the retry was not taken for a duplicate"
    );
}

#[tokio::test]
async fn malformed_oversized_and_misaddressed_deliveries_get_their_status() {
    let f = fixture().await;
    let post = |tenant: &str, body: String| {
        f.app
            .client
            .post(f.app.url(&format!("/webhooks/kaizala/{tenant}")))
            .header("kz-callback-token", TOKEN)
            .body(body)
            .send()
    };
    let response = post("contoso", json!({ "eventType": "SurveyResponse", "eventId": "e", "objectId": "g", "objectType": "Group", "data": { "actionId": "a", "groupId": "g", "responseDetails": { "responseWithQuestions": [] } } }).to_string()).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "data.responseId: missing"
    );
    assert_eq!(
        post("contoso", "x".repeat(8192)).await.unwrap().status(),
        413
    );
    let unknown_tenant = post("fabrikam", "{}".into()).await.unwrap();
    assert_eq!(
        unknown_tenant.status(),
        401,
        "an unknown tenant is answered as a wrong token is"
    );
    assert_eq!(
        unknown_tenant.json::<Value>().await.unwrap()["error"],
        "missing or wrong kz-callback-token"
    );
    let response = post("bad%20name", "{}".into()).await.unwrap();
    assert_eq!(response.status(), 400);
    let unknown = json!({ "eventType": "ReactionAdded", "eventId": "r1", "objectId": "g", "objectType": "Group" });
    let response = post("contoso", unknown.to_string()).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "an unknown type is acknowledged, not retried forever"
    );
}

#[tokio::test]
async fn with_only_the_service_the_receiver_is_off() {
    let dir = ConfigDir::new(BASE);
    let components = Components::default();
    let app = TestApp::spawn_with(&dir.load(), components).await;
    assert_eq!(
        app.get("/webhooks/kaizala/contoso?validationToken=x")
            .await
            .status(),
        404
    );
    let response = app
        .client
        .post(app.url("/webhooks/kaizala/contoso"))
        .header("kz-callback-token", TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        404,
        "nothing is acknowledged that nothing would keep"
    );
}

#[tokio::test]
async fn in_run_the_receiver_hands_answers_to_the_durable_queue() {
    // Kaizala at a port nobody listens on: reading the action fails at once (the
    // default api_root would wait on a name lookup with no network).
    let dir = ConfigDir::new(&BASE.replace(
        "groups = [\"g-1\"]",
        "groups = [\"g-1\"]\napi_root = \"http://127.0.0.1:1\"",
    ));
    let config = dir.load();
    let app = TestApp::spawn(&config).await;
    assert_eq!(
        app.get("/webhooks/kaizala/contoso?validationToken=x")
            .await
            .status(),
        200
    );
    let event = json!({
        "subscriptionId": "s", "objectId": "g-1", "objectType": "Group", "eventType": "SurveyResponse",
        "eventId": "e-queued-1", "data": { "actionId": "a-1", "groupId": "g-1", "responseId": "r-1",
        "responder": "+15550001", "responderName": "Asha", "isAnonymous": false,
        "responseDetails": { "responseWithQuestions": [
            { "title": "Budget?", "type": "Text", "answer": "Yes", "isInvisible": false } ] } } });
    let response = app
        .client
        .post(app.url("/webhooks/kaizala/contoso"))
        .header("kz-callback-token", TOKEN)
        .json(&event)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, 200, "{}", response.text().await.unwrap());
    // The answer is a RecordResponse job now. Its action has no correlation, so the
    // bridge reads the action's key question from Kaizala, which is unreachable here:
    // the job is retried (never dropped as not ours while that is unknown).
    let backend = kaizala_bridge::backend::Backend::open(&config.queue)
        .await
        .unwrap();
    let store = kaizala_bridge::store::open(&backend).await.unwrap();
    let queue = kaizala_bridge::queue::Queue::open(&backend, &config.queue, store)
        .await
        .unwrap();
    // This app's own queue shows it: the answer waits, scheduled for its next
    // attempt (the metrics are shared by every test in the process, the queue not).
    let started = std::time::Instant::now();
    loop {
        let depth = queue
            .depth(kaizala_bridge::queue::JobKind::RecordResponse)
            .await
            .unwrap();
        if depth.scheduled >= 1 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the answer was never kept for another attempt: {depth:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
