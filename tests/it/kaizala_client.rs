//! The bridge's Kaizala client against the emulator, over real HTTP: token
//! lifecycle, endpoint moves, error classes, and request bodies that match the
//! swagger's schemas.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kaizala_bridge::config::Secret;
use kaizala_bridge::kaizala::api::*;
use kaizala_bridge::kaizala::{
    ClientOptions, Clock, ConnectorCredentials, Credentials, KaizalaClient, KaizalaError,
};
use kaizala_bridge::model::ConnectorRef;
use kaizala_bridge::store::SqliteStore;
use serde_json::json;

use crate::support::kaizala::Sim;

const DAY: u64 = 24 * 3600;

/// The system clock plus an offset a test advances together with the emulator's.
#[derive(Default)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        kaizala_bridge::kaizala::SystemClock.now_ms() + self.0.load(Ordering::SeqCst)
    }
}

struct Fixture {
    sim: Sim,
    clock: Arc<TestClock>,
    credentials: Credentials,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.sqlite"))
            .await
            .unwrap();
        Self {
            sim: Sim::start().await,
            clock: Arc::default(),
            credentials: Credentials::new(Arc::new(store)),
            _dir: dir,
        }
    }

    /// The durable store's credentials, shared by every client built here, as by a
    /// process that restarts on the same data directory.
    fn store(&self) -> Credentials {
        self.credentials.clone()
    }

    /// A client of `app-N` as configured, on a store that survives "restarts".
    fn client(&self, n: u32) -> KaizalaClient {
        self.client_with(n, ClientOptions::default())
    }

    fn client_with(&self, n: u32, options: ClientOptions) -> KaizalaClient {
        let credentials = ConnectorCredentials {
            key: format!("contoso/app-{n}"),
            application_id: format!("app-{n}"),
            application_secret: Secret::new(format!("secret-{n}")),
            refresh_token: Secret::new(format!("rt-{n}")),
            api_root: self.sim.sim.base_url().parse().unwrap(),
        };
        KaizalaClient::with_clock(credentials, self.store(), &options, self.clock.clone()).unwrap()
    }

    /// Advances the emulator's clock, and the bridge's when `both`.
    fn advance(&self, by: Duration, both: bool) {
        self.sim.sim.advance_clock(by);
        if both {
            self.clock
                .0
                .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }

    fn tokens_issued(&self, app: &str) -> u64 {
        self.sim.sim.state()["connectors"][app]["tokensIssued"]
            .as_u64()
            .unwrap()
    }
}

fn survey(title: &str) -> Action {
    Action::Survey(SurveyBody {
        title: title.into(),
        due_date: 48,
        is_anonymous: false,
        is_sender_only: false,
        accept_multiple_responses: false,
        questions: vec![
            Question {
                title: "Budget confirmed?".into(),
                kind: QuestionType::SingleOption,
                options: vec![
                    QuestionOption {
                        title: "Yes".into(),
                    },
                    QuestionOption { title: "No".into() },
                ],
                is_invisible: false,
            },
            Question {
                title: "kb:key-1".into(),
                kind: QuestionType::Text,
                options: vec![],
                is_invisible: true,
            },
        ],
    })
}

#[tokio::test]
async fn a_survey_posted_by_the_client_lands_with_its_fields_and_its_answers_come_back() {
    let f = Fixture::new().await;
    let client = f.client(1);
    let posted = client
        .post_action("g-sales", &survey("Qualify Contoso"))
        .await
        .unwrap();
    let stored = &f.sim.sim.state()["groups"]["g-sales"]["actions"][0];
    assert_eq!(stored["actionId"], posted.action_id.as_str());
    assert_eq!(stored["title"], "Qualify Contoso");
    assert_eq!(stored["questions"][1]["isInvisible"], true);

    let session = f.sim.session(1).await;
    let answer = json!({ "actionType": "Survey", "actionBody": { "answers": ["Yes"] } });
    assert_eq!(
        session
            .respond("g-sales", &posted.action_id, "+15550001", &answer)
            .await
            .0,
        200
    );
    let details = client
        .action_details("g-sales", &posted.action_id)
        .await
        .unwrap();
    assert_eq!(details.action_type, "Survey");
    assert_eq!(details.action_details.questions[1].title, "kb:key-1");
    let response = &details.action_details.responses[0];
    assert_eq!(
        (
            response.responder.as_str(),
            response.responder_name.as_str()
        ),
        ("+15550001", "Asha")
    );
    assert_eq!(response.response_with_questions[0].answer, json!("Yes"));

    let list = client
        .list_actions("g-sales", "Survey", None, Some(10))
        .await
        .unwrap();
    assert_eq!(list.actions[0].action_id(), Some(posted.action_id.as_str()));
    assert!(!list.has_more);
    assert_eq!(client.groups().await.unwrap().len(), 2);
    assert_eq!(
        client.group("g-sales").await.unwrap().group_name,
        "Sales West"
    );
    client.send_message("g-sales", "hello").await.unwrap();
}

#[tokio::test]
async fn one_token_serves_many_calls_and_concurrent_callers_share_one_fetch() {
    let f = Fixture::new().await;
    let client = Arc::new(f.client(1));
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.groups().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    client.groups().await.unwrap();
    assert_eq!(f.tokens_issued("app-1"), 1);
}

#[tokio::test]
async fn the_token_is_refreshed_ahead_of_its_expiry() {
    let f = Fixture::new().await;
    let client = f.client(1);
    client.groups().await.unwrap();
    f.advance(Duration::from_secs(DAY - 120), true);
    client.groups().await.unwrap();
    assert_eq!(
        f.tokens_issued("app-1"),
        2,
        "refreshed within the 5-minute margin, before any 401"
    );
    let minutes = f.sim.sim.state()["connectors"]["app-1"]["minutes"].clone();
    let calls: u64 = minutes
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, 2, "no call was refused: {minutes}");
}

#[tokio::test]
async fn a_401_gets_one_fresh_token_and_the_call_succeeds() {
    let f = Fixture::new().await;
    let client = f.client(1);
    client.groups().await.unwrap();
    f.advance(Duration::from_secs(DAY + 60), false);
    assert_eq!(client.groups().await.unwrap().len(), 2);
    assert_eq!(f.tokens_issued("app-1"), 2);
}

#[tokio::test]
async fn a_rotated_refresh_token_is_saved_and_used_after_a_restart() {
    let f = Fixture::new().await;
    f.advance(Duration::from_secs(329 * DAY), true);
    f.client(1).groups().await.unwrap();
    let saved = f
        .store()
        .load("contoso/app-1")
        .await
        .unwrap()
        .refresh_token
        .expect("the rotated token was saved");
    assert_ne!(saved.expose(), "rt-1");

    f.advance(Duration::from_secs(40 * DAY), true);
    let refused = f
        .sim
        .access_token_raw("app-1", "secret-1", "rt-1")
        .await
        .status();
    assert_eq!(refused, 401, "the configured token has expired by now");
    let restarted = f.client(1);
    assert_eq!(
        restarted.groups().await.unwrap().len(),
        2,
        "the saved token is preferred over the configured one"
    );
}

#[tokio::test]
async fn a_308_is_followed_and_the_new_endpoint_remembered_after_a_restart() {
    let f = Fixture::new().await;
    let client = f.client(1);
    client.groups().await.unwrap();
    let moved_to = f.sim.sim.move_connector("app-1").unwrap();
    assert_eq!(client.groups().await.unwrap().len(), 2, "followed");
    assert_eq!(
        client.endpoint().await.unwrap().as_deref(),
        Some(moved_to.as_str())
    );
    assert_eq!(
        f.store()
            .load("contoso/app-1")
            .await
            .unwrap()
            .endpoint_url
            .as_deref(),
        Some(moved_to.as_str())
    );

    let restarted = f.client(1);
    assert_eq!(
        restarted.endpoint().await.unwrap().as_deref(),
        Some(moved_to.as_str()),
        "known before any call"
    );
    assert_eq!(restarted.groups().await.unwrap().len(), 2);
}

#[tokio::test]
async fn each_error_class_is_mapped_and_marked() {
    let f = Fixture::new().await;
    let client = f.client(1);

    let bad = Action::Survey(SurveyBody {
        questions: vec![],
        ..match survey("x") {
            Action::Survey(s) => s,
            _ => unreachable!(),
        }
    });
    let error = client.post_action("g-sales", &bad).await.unwrap_err();
    assert!(
        matches!(&error, KaizalaError::BadRequest(m) if m.contains("actionBody.questions")),
        "{error}"
    );
    assert!(!error.is_retryable());

    let error = client.post_action("g-ops", &survey("x")).await.unwrap_err();
    assert!(
        matches!(&error, KaizalaError::Forbidden(m) if m.contains("g-ops")),
        "{error}"
    );
    let error = client
        .action_details("g-sales", "no-such-action")
        .await
        .unwrap_err();
    assert!(matches!(error, KaizalaError::NotFound(_)), "{error}");

    f.sim
        .sim
        .set_faults(kaizala_bridge::sim::kaizala::Faults {
            error_rate: 1.0,
            error_statuses: vec![503],
            ..Default::default()
        })
        .unwrap();
    let error = client.groups().await.unwrap_err();
    assert!(
        matches!(error, KaizalaError::Server { status: 503, .. }) && error.is_retryable(),
        "{error}"
    );

    f.sim
        .sim
        .set_faults(kaizala_bridge::sim::kaizala::Faults {
            hang_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    let impatient = f.client_with(
        2,
        ClientOptions {
            timeout: Duration::from_millis(300),
            ..ClientOptions::default()
        },
    );
    let error = impatient.groups().await.unwrap_err();
    assert!(
        matches!(error, KaizalaError::Timeout) && error.is_retryable(),
        "{error}"
    );
    f.sim.sim.set_faults(Default::default()).unwrap();

    let busy = f.client(3);
    for _ in 0..100 {
        busy.groups().await.unwrap();
    }
    let error = busy.groups().await.unwrap_err();
    assert!(
        error.retry_after().is_some_and(|d| d > Duration::ZERO) && error.is_retryable(),
        "{error}"
    );

    let nowhere = ConnectorCredentials {
        key: "contoso/gone".into(),
        application_id: "app-1".into(),
        application_secret: Secret::new("secret-1"),
        refresh_token: Secret::new("rt-1"),
        api_root: format!("http://127.0.0.1:{}", crate::support::redis::free_port())
            .parse()
            .unwrap(),
    };
    let error = KaizalaClient::new(nowhere, f.store(), &ClientOptions::default())
        .unwrap()
        .groups()
        .await
        .unwrap_err();
    assert!(
        matches!(error, KaizalaError::Transport(_)) && error.is_retryable(),
        "{error}"
    );

    let wrong = ConnectorCredentials {
        key: "contoso/wrong".into(),
        application_id: "app-1".into(),
        application_secret: Secret::new("not-the-secret"),
        refresh_token: Secret::new("rt-1"),
        api_root: f.sim.sim.base_url().parse().unwrap(),
    };
    let error = KaizalaClient::new(wrong, f.store(), &ClientOptions::default())
        .unwrap()
        .groups()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, KaizalaError::Unauthorized(m) if m.contains("applicationSecret"))
            && !error.is_retryable(),
        "{error}"
    );
    assert!(
        !error.to_string().contains("not-the-secret"),
        "no secret in the error"
    );
}

#[tokio::test]
async fn webhooks_are_created_listed_updated_and_deleted() {
    let f = Fixture::new().await;
    let client = f.client(1);
    let callback =
        crate::support::kaizala::Callback::start(crate::support::kaizala::Mode::Good).await;
    let request = WebhookRequest {
        object_id: "g-sales".into(),
        object_type: "Group".into(),
        event_types: vec!["SurveyResponse".into()],
        call_back_url: callback.url.clone(),
        call_back_token: "cb".into(),
        call_back_context: "kaizala-bridge".into(),
    };
    let created = client.create_webhook(&request).await.unwrap();
    let listed = client.list_webhooks("g-sales", "Group").await.unwrap();
    assert_eq!(
        (listed[0].id.as_str(), listed[0].active),
        (created.webhook_id.as_str(), true)
    );
    assert_eq!(listed[0].callback_context, "kaizala-bridge");
    client
        .update_webhook(
            &created.webhook_id,
            &json!({ "eventTypes": ["SurveyResponse", "JobResponse"] }),
        )
        .await
        .unwrap();
    assert_eq!(
        client.list_webhooks("g-sales", "Group").await.unwrap()[0]
            .events
            .len(),
        2
    );
    client.delete_webhook(&created.webhook_id).await.unwrap();
    assert!(client
        .list_webhooks("g-sales", "Group")
        .await
        .unwrap()
        .is_empty());
}

#[test]
fn request_bodies_match_the_swagger_schemas() {
    use crate::sim_kaizala::swagger::{definitions, validator};
    let definitions = definitions();
    let job = Action::Job(JobBody {
        title: "Visit".into(),
        assigned_to: vec!["+15550001".into()],
        due_date: 24,
    });
    let announcement = Action::Announcement(AnnouncementBody {
        title: "T".into(),
        message: "M".into(),
        media_resources: vec![],
    });
    let package = Action::Package {
        id: "com.contoso.checklist".into(),
        body: PackageBody {
            properties: vec![PackageProperty {
                name: "site".into(),
                kind: "Text".into(),
                value: "A".into(),
            }],
        },
    };
    let webhook = WebhookRequest {
        object_id: "g".into(),
        object_type: "Group".into(),
        event_types: vec!["SurveyResponse".into()],
        call_back_url: "https://bridge.example.com/webhooks/kaizala/contoso".into(),
        call_back_token: "t".into(),
        call_back_context: "c".into(),
    };
    for (definition, body) in [
        ("Request - SendSurveyOnAGroup", survey("t").request_body()),
        ("Request - PostAJobOnAGroup", job.request_body()),
        (
            "Request - PostCustomAnnouncementToAGroup[withImages]",
            announcement.request_body(),
        ),
        (
            "Request - PostCustomActionToAGroup[withProperties]",
            package.request_body(),
        ),
        (
            "Request - SubscribeToAllEventsAtGroupLevel",
            serde_json::to_value(&webhook).unwrap(),
        ),
        (
            "Request - SendMessageOnAGroup",
            json!({ "message": "hello" }),
        ),
    ] {
        let errors: Vec<String> = validator(&definitions, definition)
            .iter_errors(&body)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{definition}: {body} -> {errors:?}");
    }
}

/// Records what the client asks of its gate.
#[derive(Default)]
struct RecordingGate {
    acquired: std::sync::Mutex<Vec<Vec<String>>>,
    paused: std::sync::Mutex<Vec<(String, Duration)>>,
}

impl kaizala_bridge::ratelimit::RateGate for RecordingGate {
    fn acquire<'a>(
        &'a self,
        quotas: &'a [kaizala_bridge::ratelimit::Quota],
    ) -> kaizala_bridge::ratelimit::GateFuture<'a> {
        self.acquired
            .lock()
            .unwrap()
            .push(quotas.iter().map(|q| q.key.clone()).collect());
        Box::pin(async { Ok(()) })
    }
    fn pause<'a>(
        &'a self,
        key: &'a str,
        duration: Duration,
    ) -> kaizala_bridge::ratelimit::GateFuture<'a> {
        self.paused
            .lock()
            .unwrap()
            .push((key.to_string(), duration));
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn every_call_passes_the_gate_and_a_429_pauses_the_connector_for_everyone() {
    use kaizala_bridge::ratelimit::Quota;
    let f = Fixture::new().await;
    let gate = Arc::new(RecordingGate::default());
    let quotas = vec![
        Quota::connector(
            &ConnectorRef::new("contoso", "app-1"),
            100,
            Duration::from_secs(60),
        ),
        Quota::tenant("contoso", 300, Duration::from_secs(60)),
    ];
    let client = f.client(1).with_gate(gate.clone(), quotas);
    for _ in 0..100 {
        client.groups().await.unwrap();
    }
    assert_eq!(gate.acquired.lock().unwrap().len(), 100);
    assert_eq!(
        gate.acquired.lock().unwrap()[0],
        ["connector:contoso/app-1", "tenant:contoso"]
    );
    let error = client.groups().await.unwrap_err();
    let paused = gate.paused.lock().unwrap().clone();
    assert_eq!(paused.len(), 1, "{error}");
    assert_eq!(paused[0].0, "connector:contoso/app-1");
    assert_eq!(
        Some(paused[0].1),
        error.retry_after(),
        "for the Retry-After Kaizala gave"
    );
}
