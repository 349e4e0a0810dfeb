//! Webhooks: registration through the validation handshake, delivery with the
//! callback token and context, retries then disabling, re-enabling, and faults.

use serde_json::{json, Value};

use crate::support::kaizala::{Callback, Mode, Session, Sim};

fn registration(url: &str, events: &[&str]) -> Value {
    json!({
        "objectId": "g-sales",
        "objectType": "Group",
        "eventTypes": events,
        "callBackUrl": url,
        "callBackToken": "cb-secret",
        "callBackContext": "bridge:contoso",
    })
}

async fn register(session: &Session, url: &str, events: &[&str]) -> String {
    let (status, body) = session.post("/webhook", &registration(url, events)).await;
    assert_eq!(status, 200, "{body}");
    body["webhookId"].as_str().unwrap().to_string()
}

async fn post_message(session: &Session, text: &str) {
    let (status, _) = session
        .post("/groups/g-sales/messages", &json!({ "message": text }))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn registration_runs_the_handshake_and_a_wrong_echo_fails_it() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let wrong = Callback::start(Mode::WrongEcho).await;
    let (status, body) = session
        .post(
            "/webhook",
            &registration(&wrong.url, &["TextMessageCreated"]),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "callBackUrl: validation failed: it answered \"not-the-token\", not the validation token"
    );
    assert!(sim.sim.state()["webhooks"].as_array().unwrap().is_empty());

    let (status, body) = session
        .post(
            "/webhook",
            &registration("http://example.com/hook", &["TextMessageCreated"]),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("callBackUrl: must be an https URL"),
        "{body}"
    );
    let (status, body) = session
        .post(
            "/webhook",
            &registration("http://127.0.0.1:9/hook", &["Nonsense"]),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "eventTypes[0]: \"Nonsense\" is not a supported event")
    );

    let good = Callback::start(Mode::Good).await;
    let id = register(&session, &good.url, &["TextMessageCreated"]).await;
    let (status, body) = session
        .get("/webhook?objectId=g-sales&objectType=Group")
        .await;
    assert_eq!(status, 200);
    let listed = &body["webhooks"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["callbackUrl"], good.url.as_str());
    assert_eq!(listed["events"], json!(["TextMessageCreated"]));
    assert_eq!(listed["active"], true);
}

#[tokio::test]
async fn events_arrive_in_the_documented_schema_with_token_and_context() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let callback = Callback::start(Mode::Good).await;
    register(
        &session,
        &callback.url,
        &[
            "SurveyCreated",
            "SurveyResponse",
            "TextMessageCreated",
            "MemberAdded",
        ],
    )
    .await;

    post_message(&session, "Hello").await;
    let survey = json!({ "actionType": "Survey", "actionBody": { "title": "Q", "questions": [{ "title": "Why?", "type": "Text" }] } });
    let (_, body) = session.post("/groups/g-sales/actions", &survey).await;
    let action = body["actionId"].as_str().unwrap().to_string();
    let (_, body) = session
        .respond(
            "g-sales",
            &action,
            "+15550001",
            &json!({ "actionType": "Survey", "actionBody": { "answers": ["Because"] } }),
        )
        .await;
    let response_id = body["responseId"].as_str().unwrap().to_string();
    session
        .put(
            "/groups/g-sales/members",
            &json!({ "members": ["+15550077"] }),
        )
        .await;
    let (status, _) = session
        .post(
            "/groups/g-public/messages",
            &json!({ "message": "not subscribed" }),
        )
        .await;
    assert_eq!(status, 200, "a granted group without a webhook");

    let events = callback.wait_for(4).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e.body["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "TextMessageCreated",
            "SurveyCreated",
            "SurveyResponse",
            "MemberAdded"
        ],
        "in order"
    );
    for event in &events {
        assert_eq!(event.token.as_deref(), Some("cb-secret"));
        assert_eq!(event.body["context"], "bridge:contoso");
        assert_eq!(event.body["objectId"], "g-sales");
        assert_eq!(event.body["objectType"], "Group");
        assert!(event.body["eventId"].is_string());
    }
    assert_eq!(events[0].body["data"]["text"], "Hello");
    assert_eq!(events[0].body["fromUser"], "+15550000");
    let response = &events[2].body;
    assert_eq!(response["fromUser"], "+15550001");
    assert_eq!(response["data"]["actionId"], action.as_str());
    assert_eq!(response["data"]["responseId"], response_id.as_str());
    assert_eq!(response["data"]["responderName"], "Asha");
    assert_eq!(
        response["data"]["responseDetails"]["responseWithQuestions"][0]["answer"],
        "Because"
    );
    assert_eq!(events[3].body["data"]["member"], "+15550077");
    let created = &events[1].body["data"];
    assert_eq!(
        (created["actionId"].as_str(), created["groupId"].as_str()),
        (Some(action.as_str()), Some("g-sales"))
    );
    assert_eq!(created["questions"][0]["title"], "Why?");
    let data = &response["data"];
    assert_eq!(
        (
            data["groupId"].as_str(),
            data["isAnonymous"].as_bool(),
            data["isUpdateResponse"].as_bool()
        ),
        (Some("g-sales"), Some(false), Some(false))
    );
    assert_eq!(response["fromUserName"], "Asha");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        callback.received().len(),
        4,
        "nothing from the group without a webhook"
    );
}

#[tokio::test]
async fn every_event_type_carries_its_documented_data() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let callback = Callback::start(Mode::Good).await;
    let all: Vec<&str> = vec![
        "ActionCreated",
        "ActionResponse",
        "JobCreated",
        "JobResponse",
        "Announcement",
        "MemberRemoved",
        "AttachmentCreated",
    ];
    register(&session, &callback.url, &all).await;

    let job = json!({ "actionType": "Job", "actionBody": { "title": "Visit", "assignedTo": ["+15550001"] } });
    let (_, body) = session.post("/groups/g-sales/actions", &job).await;
    let job_id = body["actionId"].as_str().unwrap().to_string();
    session
        .respond(
            "g-sales",
            &job_id,
            "+15550001",
            &json!({ "actionType": "Job", "actionBody": { "isCompleted": true } }),
        )
        .await;
    let poll = json!({ "actionType": "Poll", "actionBody": { "question": "Lunch?", "choices": [{ "title": "Yes" }, { "title": "No" }] } });
    session.post("/groups/g-sales/actions", &poll).await;
    let package = json!({ "id": "com.contoso.check", "actionBody": { "properties": [{ "name": "n", "value": "v", "type": "Text" }] } });
    let (_, body) = session.post("/groups/g-sales/actions", &package).await;
    let package_action = body["actionId"].as_str().unwrap().to_string();
    session
        .respond(
            "g-sales",
            &package_action,
            "+15550002",
            &json!({ "id": "com.contoso.check", "actionBody": { "Answers": ["done"] } }),
        )
        .await;
    session.post("/groups/g-sales/actions", &json!({ "actionType": "Announcement", "actionBody": { "Title": "News", "Message": "We won" } })).await;
    session.post("/groups/g-sales/actions", &json!({ "actionType": "Image", "actionBody": { "caption": "Site", "mediaResource": "eyJ9" } })).await;
    let (_, members) = session.get("/groups/g-sales/members").await;
    let ben = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mobileNumber"] == "+15550002")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    session
        .delete(&format!("/groups/g-sales/members/{ben}"))
        .await;

    let events = callback.wait_for(8).await;
    let by_type = |t: &str| {
        events
            .iter()
            .find(|e| e.body["eventType"] == t)
            .unwrap_or_else(|| panic!("no {t}"))
            .body["data"]
            .clone()
    };
    let job_created = by_type("JobCreated");
    assert_eq!(
        (
            job_created["actionId"].as_str(),
            job_created["assignedTo"].clone()
        ),
        (Some(job_id.as_str()), json!(["+15550001"]))
    );
    assert!(job_created["dueDate"].as_str().unwrap().ends_with('Z'));
    let job_response = by_type("JobResponse");
    assert_eq!(
        job_response["responseDetails"]["response"]["isCompleted"],
        true
    );
    assert_eq!(
        job_response["responseDetails"]["response"]["assigneeName"],
        "Asha"
    );
    let action_created: Vec<&Value> = events
        .iter()
        .filter(|e| e.body["eventType"] == "ActionCreated")
        .map(|e| &e.body["data"])
        .collect();
    assert_eq!(action_created.len(), 2, "the poll and the package");
    let action_response = by_type("ActionResponse");
    assert_eq!(
        (
            action_response["actionId"].as_str(),
            action_response["responder"].as_str()
        ),
        (Some(package_action.as_str()), Some("+15550002"))
    );
    assert_eq!(
        action_response["responseDetails"]["responseWithQuestions"][0]["answer"], "done",
        "a package's answers are kept by index"
    );
    assert_eq!(
        by_type("Announcement"),
        json!({ "title": "News", "text": "We won", "media": [] })
    );
    assert_eq!(by_type("AttachmentCreated")["caption"], "Site");
    assert_eq!(by_type("MemberRemoved")["member"], "+15550002");
}

#[tokio::test]
async fn an_action_level_webhook_hears_only_its_action() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let survey = json!({ "actionType": "Survey", "actionBody": { "title": "Q", "questions": [{ "title": "Why?", "type": "Text" }] } });
    let (_, body) = session.post("/groups/g-sales/actions", &survey).await;
    let watched = body["actionId"].as_str().unwrap().to_string();
    let (_, body) = session.post("/groups/g-sales/actions", &survey).await;
    let other = body["actionId"].as_str().unwrap().to_string();
    let callback = Callback::start(Mode::Good).await;
    let mut request = registration(&callback.url, &["SurveyResponse"]);
    request["objectId"] = json!(watched);
    request["objectType"] = json!("Action");
    let (status, body) = session.post("/webhook", &request).await;
    assert_eq!(status, 200, "{body}");
    let answer = json!({ "actionType": "Survey", "actionBody": { "answers": ["x"] } });
    session
        .respond("g-sales", &other, "+15550001", &answer)
        .await;
    session
        .respond("g-sales", &watched, "+15550002", &answer)
        .await;
    let events = callback.wait_for(1).await;
    assert_eq!(events[0].body["objectType"], "Action");
    assert_eq!(events[0].body["data"]["actionId"], watched.as_str());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(callback.received().len(), 1);
}

#[tokio::test]
async fn a_connector_cannot_delete_another_tenants_webhook() {
    let sim = Sim::start().await;
    let owner = sim.session(1).await;
    let callback = Callback::start(Mode::Good).await;
    let id = register(&owner, &callback.url, &["TextMessageCreated"]).await;
    let stranger = sim.session(9).await;
    let (status, body) = stranger.delete(&format!("/webhook/{id}")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not granted"),
        "{body}"
    );
    assert_eq!(sim.sim.state()["webhooks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn failing_callbacks_are_retried_then_disabled_and_put_re_enables() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let callback = Callback::start(Mode::FailEvents).await;
    let id = register(&session, &callback.url, &["TextMessageCreated"]).await;

    post_message(&session, "first").await;
    let attempts = callback.wait_for(7).await;
    assert!(attempts.iter().all(|a| a.body["data"]["text"] == "first"));
    let event_id = &attempts[0].body["eventId"];
    assert!(
        attempts.iter().all(|a| &a.body["eventId"] == event_id),
        "the same event each time"
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while sim.sim.state()["webhooks"][0]["active"] != false {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook was not disabled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let deliveries = sim.sim.state()["deliveries"].as_array().unwrap().clone();
    assert_eq!(
        deliveries.len(),
        7,
        "one attempt and six retries: {deliveries:#?}"
    );
    assert_eq!(deliveries.last().unwrap()["outcome"], "disabled");

    callback.set_mode(Mode::Good);
    post_message(&session, "while disabled").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        callback.received().len(),
        7,
        "nothing is sent to a disabled webhook"
    );
    assert_eq!(
        sim.sim.state()["deliveries"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["outcome"],
        "skipped"
    );

    let (status, body) = session
        .put(&format!("/webhook/{id}"), &json!({ "Active": "true" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true);
    post_message(&session, "again").await;
    let received = callback.wait_for(8).await;
    assert_eq!(received[7].body["data"]["text"], "again");
}

#[tokio::test]
async fn a_webhook_can_be_updated_and_deleted() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let first = Callback::start(Mode::Good).await;
    let id = register(&session, &first.url, &["TextMessageCreated"]).await;
    let wrong = Callback::start(Mode::WrongEcho).await;
    let (status, _) = session
        .put(
            &format!("/webhook/{id}"),
            &json!({ "callBackUrl": wrong.url }),
        )
        .await;
    assert_eq!(status, 400, "a new callback passes the handshake first");
    let second = Callback::start(Mode::Good).await;
    let (status, body) = session
        .put(
            &format!("/webhook/{id}"),
            &json!({ "callBackUrl": second.url, "eventTypes": ["MemberAdded"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"], json!(["MemberAdded"]));

    let (status, _) = session.delete(&format!("/webhook/{id}")).await;
    assert_eq!(status, 200);
    let (_, body) = session
        .get("/webhook?objectId=g-sales&objectType=Group")
        .await;
    assert_eq!(body["webhooks"], json!([]));
    let (status, _) = session.delete(&format!("/webhook/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn faults_duplicate_deliveries_and_fail_calls_deterministically() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let callback = Callback::start(Mode::Good).await;
    register(&session, &callback.url, &["TextMessageCreated"]).await;

    let status = sim
        .control("faults", json!({ "duplicate_rate": 1.0 }))
        .await
        .status();
    assert_eq!(status, 200);
    post_message(&session, "twice").await;
    let events = callback.wait_for(2).await;
    assert_eq!(
        events[0].body["eventId"], events[1].body["eventId"],
        "the same event delivered twice"
    );

    let (status, body) = crate::support::kaizala::answer(
        sim.control("faults", json!({ "reorder_rate": 2.0 })).await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "reorder_rate: must be between 0 and 1, not 2"
    );

    sim.control("faults", json!({ "error_rate": 0.5, "seed": 42 }))
        .await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(session.get("/groups").await.0);
    }
    assert!(
        statuses.contains(&200) && statuses.iter().any(|s| *s == 500 || *s == 503),
        "{statuses:?}"
    );
    sim.control("faults", json!({ "error_rate": 0.5, "seed": 42 }))
        .await;
    let mut again = Vec::new();
    for _ in 0..20 {
        again.push(session.get("/groups").await.0);
    }
    assert_eq!(statuses, again, "the same seed gives the same faults");
}

#[tokio::test]
async fn reordered_deliveries_swap_neighbours() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let callback = Callback::start(Mode::Good).await;
    register(&session, &callback.url, &["TextMessageCreated"]).await;
    sim.control("faults", json!({ "reorder_rate": 1.0 })).await;
    post_message(&session, "one").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    post_message(&session, "two").await;
    let events = callback.wait_for(2).await;
    let texts: Vec<&str> = events
        .iter()
        .map(|e| e.body["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["two", "one"]);
}

#[tokio::test]
async fn latency_and_hanging_requests_outlast_a_short_client_timeout() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    for faults in [json!({ "latency_ms": 5000 }), json!({ "hang_rate": 1.0 })] {
        sim.control("faults", faults.clone()).await;
        let result = session
            .request(reqwest::Method::GET, "/groups")
            .timeout(std::time::Duration::from_millis(200))
            .send()
            .await;
        assert!(
            result.is_err_and(|e| e.is_timeout()),
            "{faults}: the call is held"
        );
    }
    sim.control("faults", json!({})).await;
    assert_eq!(session.get("/groups").await.0, 200, "faults off again");
}

#[tokio::test]
async fn the_control_routes_work_over_http() {
    let sim = Sim::start().await;
    let base = sim.sim.base_url().to_string();
    let state: Value = sim
        .http
        .get(format!("{base}/_sim/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let before = state["now"].as_i64().unwrap();
    assert_eq!(state["groups"]["g-sales"]["members"][1]["name"], "Asha");
    assert_eq!(state["connectors"]["app-1"]["tenant"], "contoso");

    let (status, body) = crate::support::kaizala::answer(
        sim.control("clock/advance", json!({ "seconds": 3600 }))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["now"].as_i64().unwrap() >= before + 3_600_000);
    let (status, body) = crate::support::kaizala::answer(
        sim.control("clock/advance", json!({ "seconds": -5 })).await,
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "seconds: missing or not a whole number of seconds")
    );

    sim.control("faults", json!({ "latency_ms": 1, "seed": 9 }))
        .await;
    let faults: Value = sim
        .http
        .get(format!("{base}/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (faults["latency_ms"].as_u64(), faults["seed"].as_u64()),
        (Some(1), Some(9))
    );
    let (status, _) = crate::support::kaizala::answer(
        sim.control("connectors/no-such-app/move", json!({})).await,
    )
    .await;
    assert_eq!(status, 404);
}
