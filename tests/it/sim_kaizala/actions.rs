//! Posting actions of every type, listing them, reading details, and answering.

use serde_json::{json, Value};

use crate::support::kaizala::{Session, Sim};

fn survey() -> Value {
    json!({
        "actionType": "Survey",
        "actionBody": {
            "title": "Qualify Contoso",
            "dueDate": 48,
            "questions": [
                { "title": "Budget confirmed?", "type": "SingleOption", "options": [{ "title": "Yes" }, { "title": "No" }] },
                { "title": "Decision maker", "type": "Text" },
                { "title": "Weeks to close", "type": "Numeric" },
                { "title": "kb:rule-1:opp-1:created", "type": "Text", "isInvisible": true }
            ]
        }
    })
}

async fn post_survey(session: &Session) -> String {
    let (status, body) = session.post("/groups/g-sales/actions", &survey()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["referenceId"].is_string());
    body["actionId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_action_type_is_accepted() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    for body in [
        survey(),
        json!({ "actionType": "Job", "actionBody": { "title": "Visit", "assignedTo": ["+15550001"], "dueDate": 10 } }),
        json!({ "actionType": "Poll", "actionBody": { "question": "Lunch?", "choices": [{ "title": "Yes" }, { "title": "No" }], "expiryInHours": 10 } }),
        json!({ "actionType": "Announcement", "actionBody": { "title": "News", "message": "We won" } }),
        json!({ "actionType": "LetsMeet", "actionBody": { "title": "Catch up", "startingTime": "2018-01-01T00:00:00Z", "durationInMins": 45,
                 "place": { "latitude": 15.0, "longitude": 96.0, "name": "B3" }, "agenda": "none" } }),
        json!({ "actionType": "Image", "actionBody": { "caption": "Site", "mediaResource": "eyJUaHVtYm5haWwiOiIifQ==" } }),
        json!({ "id": "com.contoso.checklist.1", "actionBody": { "properties": [{ "name": "name", "value": "Site A", "type": "Text" }] } }),
    ] {
        let (status, answer) = session.post("/groups/g-sales/actions", &body).await;
        assert_eq!(status, 200, "{body} -> {answer}");
        assert!(answer["actionId"].is_string());
    }
    let actions = sim.sim.state()["groups"]["g-sales"]["actions"]
        .as_array()
        .unwrap()
        .clone();
    let types: Vec<&str> = actions
        .iter()
        .map(|a| a["actionType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "Survey",
            "Job",
            "Poll",
            "Announcement",
            "LetsMeet",
            "Image",
            "Custom"
        ]
    );
}

#[tokio::test]
async fn invalid_action_bodies_get_400_naming_the_field() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let cases = [
        (json!({ "actionType": "Survey", "actionBody": { "questions": [{ "title": "q", "type": "Text" }] } }), "actionBody.title: missing"),
        (json!({ "actionType": "Survey", "actionBody": { "title": "t", "questions": [{ "title": "q", "type": "Essay" }] } }),
         "actionBody.questions[0].type: \"Essay\" is not one of SingleOption, MultiOption, Text, Image, Numeric, Date, DateTime, Location, AttachmentList"),
        (json!({ "actionType": "Survey", "actionBody": { "title": "t", "questions": [{ "title": "q", "type": "SingleOption" }] } }),
         "actionBody.questions[0].options: required for question type SingleOption"),
        (json!({ "actionType": "Survey", "actionBody": { "title": "t", "questions": [] } }), "actionBody.questions: at least one question is required"),
        (json!({ "actionType": "Quiz", "actionBody": {} }), "actionType: \"Quiz\" is not one of Survey, Job, Poll, Announcement, LetsMeet, Image"),
        (json!({ "actionBody": { "title": "t" } }), "actionType or id: one of them is required"),
        (json!({ "actionType": "Job", "actionBody": { "title": "t", "assignedTo": [] } }), "actionBody.assignedTo: at least one assignee is required"),
        (json!({ "actionType": "Poll", "actionBody": { "question": "q", "choices": [{ "title": "only" }] } }), "actionBody.choices: at least two choices are required"),
        (json!({ "actionType": "Survey" }), "actionBody: missing"),
    ];
    for (body, message) in cases {
        let (status, answer) = session.post("/groups/g-sales/actions", &body).await;
        assert_eq!(
            (status, answer["message"].as_str().unwrap()),
            (400, message),
            "{body}"
        );
    }
    let (status, answer) = session.post("/groups/g-ops/actions", &survey()).await;
    assert_eq!(status, 403);
    assert_eq!(
        answer["message"],
        "group \"g-ops\" is not granted to connector \"app-1\""
    );
}

#[tokio::test]
async fn keys_are_read_case_insensitively_as_the_documented_samples_need() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let body = json!({ "actiontype": "Announcement", "actionBody": { "Message": "Lets test", "Title": "T" } });
    let (status, answer) = session.post("/groups/g-sales/actions", &body).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn actions_are_listed_by_type_from_a_date_with_has_more() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let first = post_survey(&session).await;
    let sent_at = sim.sim.state()["groups"]["g-sales"]["actions"][0]["sentAt"]
        .as_i64()
        .unwrap();
    sim.sim.advance_clock(std::time::Duration::from_secs(60));
    let second = post_survey(&session).await;
    session
        .post(
            "/groups/g-sales/actions",
            &json!({ "actionType": "Announcement", "actionBody": { "message": "m" } }),
        )
        .await;

    let (status, body) = session
        .get("/groups/g-sales/actions?actionType=Survey")
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["actionBody"]["actionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    assert_eq!(body["hasMore"], false);
    assert_eq!(body["actions"][0]["actionBody"]["title"], "Qualify Contoso");
    assert_eq!(body["actions"][0]["sender"], "+15550000");

    let (_, body) = session
        .get("/groups/g-sales/actions?actionType=Survey&count=1")
        .await;
    assert_eq!(
        (body["actions"].as_array().unwrap().len(), &body["hasMore"]),
        (1, &json!(true))
    );
    let (_, body) = session
        .get(&format!(
            "/groups/g-sales/actions?actionType=Survey&fromDate={}",
            sent_at + 1
        ))
        .await;
    assert_eq!(
        body["actions"][0]["actionBody"]["actionId"],
        second.as_str(),
        "fromDate in ms"
    );
    let (_, body) = session
        .get(&format!(
            "/groups/g-sales/actions?actionType=Survey&fromDate={}",
            sent_at / 1000 + 1
        ))
        .await;
    assert_eq!(
        body["actions"].as_array().unwrap().len(),
        1,
        "fromDate in seconds"
    );
    let (status, body) = session.get("/groups/g-sales/actions").await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "actionType: missing query parameter")
    );
}

#[tokio::test]
async fn answers_are_validated_recorded_and_shown_in_the_details() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let action = post_survey(&session).await;
    let answer =
        |answers: Value| json!({ "actionType": "Survey", "actionBody": { "answers": answers } });

    let (status, body) = session
        .respond(
            "g-sales",
            &action,
            "+15550001",
            &answer(json!(["Maybe", "Dana", 6])),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "actionBody.answers[0]: must be the title of one of its options for \"SingleOption\" question \"Budget confirmed?\"");
    let (status, body) = session
        .respond(
            "g-sales",
            &action,
            "+15550001",
            &answer(json!(["Yes", "Dana", "six"])),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (
            400,
            "actionBody.answers[2]: must be a number for \"Numeric\" question \"Weeks to close\""
        )
    );
    let (status, body) = session
        .respond("g-sales", &action, "+19999999", &answer(json!(["Yes"])))
        .await;
    assert_eq!(status, 403, "{body}");

    let (status, body) = session
        .respond(
            "g-sales",
            &action,
            "+15550001",
            &answer(json!(["Yes", "Dana", 6])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let first = body["responseId"].as_str().unwrap().to_string();
    let (_, body) = session
        .respond(
            "g-sales",
            &action,
            "+15550002",
            &answer(json!(["No", "Eli", 12])),
        )
        .await;
    assert!(body["responseId"].is_string());
    let (_, body) = session
        .respond(
            "g-sales",
            &action,
            "+15550001",
            &answer(json!(["No", "Dana", 8])),
        )
        .await;
    assert_eq!(
        body["responseId"],
        first.as_str(),
        "a second answer without acceptMultipleResponses updates the first"
    );

    let (status, body) = session
        .get(&format!("/groups/g-sales/actions/{action}?getDetails=true"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["actionType"], "Survey");
    let details = &body["actionDetails"];
    assert_eq!(details["responseCount"], 2);
    assert_eq!(details["questions"][3]["isInvisible"], true);
    let responses = details["responses"].as_array().unwrap();
    assert_eq!(responses[0]["responder"], "+15550001");
    assert_eq!(responses[0]["responderName"], "Asha");
    assert_eq!(responses[0]["isUpdateResponse"], true);
    assert_eq!(
        responses[0]["responseWithQuestions"][0],
        json!({ "title": "Budget confirmed?", "type": "SingleOption", "options": [{ "title": "Yes" }, { "title": "No" }], "answer": "No" })
    );
    assert_eq!(responses[1]["responderName"], "Ben");

    let (_, body) = session
        .get(&format!("/groups/g-sales/actions/{action}"))
        .await;
    assert!(
        body["actionDetails"].get("responses").is_none(),
        "responses only with getDetails"
    );
    let (status, _) = session.get("/groups/g-sales/actions/no-such-action").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn jobs_are_completed_by_their_assignees() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let job = json!({ "actionType": "Job", "actionBody": { "title": "Visit", "assignedTo": ["+15550001"] } });
    let (_, body) = session.post("/groups/g-sales/actions", &job).await;
    let action = body["actionId"].as_str().unwrap().to_string();
    let done = json!({ "actionType": "Job", "actionBody": { "isCompleted": true } });
    let (status, _) = session
        .respond("g-sales", &action, "+15550002", &done)
        .await;
    assert_eq!(status, 403, "Ben is not assigned");
    let (status, _) = session
        .respond("g-sales", &action, "+15550001", &done)
        .await;
    assert_eq!(status, 200);
    let (_, body) = session
        .get(&format!("/groups/g-sales/actions/{action}?getDetails=true"))
        .await;
    assert_eq!(body["actionDetails"]["isCompleted"], true);
    assert_eq!(body["actionDetails"]["responses"][0]["isCompleted"], true);
}

#[tokio::test]
async fn absurd_numbers_are_held_or_refused_and_the_emulator_lives_on() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let far = json!({ "actionType": "Survey", "actionBody": { "title": "t", "dueDate": 1e16, "questions": [{ "title": "q", "type": "Text" }] } });
    assert_eq!(
        session.post("/groups/g-sales/actions", &far).await.0,
        200,
        "held to ten years"
    );
    let (status, body) = session
        .get("/groups/g-sales/actions?actionType=Survey&fromDate=-9223372036854775808")
        .await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (
            400,
            "fromDate: \"-9223372036854775808\" is not an epoch time"
        )
    );
    let (status, _) = session
        .post(
            "/groups/g-public/subscribers",
            &json!({ "count": 10, "cursor": "18446744073709551615" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = crate::support::kaizala::answer(
        sim.control("clock/advance", json!({ "seconds": u64::MAX / 2 }))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(session.get("/groups").await.0, 200, "still serving");
}
