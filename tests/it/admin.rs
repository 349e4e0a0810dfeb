//! `/admin/...`: the queue and its dead letters behind the bearer token.

use kaizala_bridge::queue::{DeadLetter, JobKind, Queue};
use serde_json::{json, Value};

use crate::support::app::TestApp;
use crate::support::config::{ConfigDir, BASE};

const TOKEN: &str = "test-admin-token-a1";

fn letter(id: &str) -> DeadLetter {
    DeadLetter {
        id: id.into(),
        kind: JobKind::RecordResponse,
        attempts: 8,
        last_error: "the CRM answered 400: bad column".into(),
        enqueued_ms: 1,
        dead_ms: 2,
        job: json!({
            "tenant": "contoso",
            "response": { "action_id": "not-ours", "group_id": "g-1", "response_id": id,
                          "responder": "", "responder_name": "", "is_update": false, "answers": [] }
        }),
    }
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_purged_with_the_token_only() {
    let dir = ConfigDir::new(BASE);
    let config = dir.load();
    let app = TestApp::spawn(&config).await;
    let backend = kaizala_bridge::backend::Backend::open(&config.queue)
        .await
        .unwrap();
    let store = kaizala_bridge::store::open(&backend).await.unwrap();
    let queue = Queue::open(&backend, &config.queue, store).await.unwrap();
    for id in ["d-1", "d-2", "d-3"] {
        queue.dead_letters().record(&letter(id)).await.unwrap();
    }

    for token in [None, Some("wrong-token")] {
        let response = app
            .client
            .get(app.url("/admin/dead-letters"))
            .bearer_auth(token.unwrap_or_default())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }

    let (status, body) = call(&app, reqwest::Method::GET, "/admin/jobs", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dead_letters"], 3);
    assert!(body["queues"]["send-action"]["ready"].is_u64(), "{body}");
    assert!(body["queues"]["record-response"].is_object(), "{body}");

    let (status, body) = call(
        &app,
        reqwest::Method::GET,
        "/admin/dead-letters",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let letters = body["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0]["last_error"], "the CRM answered 400: bad column");

    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/admin/dead-letters/d-2/replay",
        Some(TOKEN),
    )
    .await;
    assert_eq!((status, body), (200, json!({ "replayed": ["d-2"] })));
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/admin/dead-letters/d-2/replay",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 404, "a dead letter is replayed once");
    let left: Vec<String> = queue
        .dead_letters()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(left, vec!["d-1".to_string(), "d-3".to_string()]);

    let (status, body) = call(
        &app,
        reqwest::Method::DELETE,
        "/admin/dead-letters",
        Some(TOKEN),
    )
    .await;
    assert_eq!((status, body), (200, json!({ "purged": 2 })));
    queue.dead_letters().record(&letter("d-4")).await.unwrap();
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/admin/dead-letters/replay",
        Some(TOKEN),
    )
    .await;
    assert_eq!((status, body), (200, json!({ "replayed": 1 })));
    assert!(queue.dead_letters().list().await.unwrap().is_empty());
}

#[tokio::test]
async fn without_an_admin_token_the_routes_are_off() {
    let dir = ConfigDir::new(&BASE.replace("admin_token = \"test-admin-token-a1\"\n", ""));
    let app = TestApp::spawn(&dir.load()).await;
    let (status, _) = call(&app, reqwest::Method::GET, "/admin/jobs", Some(TOKEN)).await;
    assert_eq!(status, 404);
}
