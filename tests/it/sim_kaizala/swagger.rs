//! The swagger's request schemas: every request body it defines is accepted when
//! valid, and its documented samples are accepted, even the few that do not match
//! their own schema (the real service was lenient; so must the emulator be).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::support::kaizala::{answer, Callback, Mode, Session, Sim};

const SWAGGER: &str = include_str!("../../fixtures/kaizala_api_full_swagger.json");

/// Definitions that are parts of other request bodies, not bodies of their own.
const NESTED: &[&str] = &["Request - Action Body", "Request - SurveyActionBody"];

/// The swagger as JSON.
pub fn swagger() -> Value {
    // The file holds raw newlines inside strings (its samples were pasted from
    // Postman). Between tokens a control character is only whitespace, so turning
    // every one into a space makes it standard JSON without changing a value's shape.
    let cleaned: String = SWAGGER
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    serde_json::from_str(&cleaned).expect("the swagger parses")
}

/// A key a JSON pointer inside a URI can hold: the swagger's names have spaces,
/// brackets and parentheses.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Rewrites every `$ref` to the safe key of the definition it names.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(target) if key == "$ref" => {
                        let name = target.trim_start_matches("#/definitions/").to_string();
                        *target = format!("#/definitions/{}", safe(&name));
                    }
                    _ => rewrite_refs(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// A validator for the definition `name`.
pub fn validator(definitions: &Map<String, Value>, name: &str) -> jsonschema::Validator {
    let mut renamed: Map<String, Value> = definitions
        .iter()
        .map(|(k, v)| (safe(k), v.clone()))
        .collect();
    renamed.values_mut().for_each(rewrite_refs);
    let schema = json!({ "$ref": format!("#/definitions/{}", safe(name)), "definitions": renamed });
    jsonschema::draft4::new(&schema)
        .unwrap_or_else(|e| panic!("{name}: schema does not compile: {e}"))
}

/// The swagger's definitions.
pub fn definitions() -> Map<String, Value> {
    swagger()["definitions"].as_object().unwrap().clone()
}

/// Replaces the Postman placeholders of a sample with this emulator's values.
fn fill(sample: &Value, values: &[(&str, &str)]) -> Value {
    let mut text = sample.to_string();
    for (placeholder, value) in values {
        text = text.replace(&format!("{{{{{placeholder}}}}}"), value);
    }
    serde_json::from_str(&text).unwrap()
}

struct Fixture {
    sim: Sim,
    session: Session,
    callback: Callback,
    survey: String,
    location_survey: String,
    package_action: String,
    spare_group: String,
}

async fn fixture() -> Fixture {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let callback = Callback::start(Mode::Good).await;
    let post = |body: Value| {
        let session = session.clone();
        async move {
            let (status, body) = session.post("/groups/g-sales/actions", &body).await;
            assert_eq!(status, 200, "{body}");
            body["actionId"].as_str().unwrap().to_string()
        }
    };
    let survey = post(json!({ "actionType": "Survey", "actionBody": { "title": "s", "questions": [{ "title": "q", "type": "Text" }] } })).await;
    let location_survey = post(json!({ "actionType": "Survey", "actionBody": { "title": "where", "questions": [{ "title": "Where?", "type": "Location" }] } })).await;
    let package_action = post(json!({ "id": "25b39b30-0806-4d17-b6a7-a39f21fa52e9", "actionBody": { "title": "override title", "validity": 24 } })).await;
    let (_, body) = session
        .post(
            "/groups",
            &json!({ "name": "Spare", "welcomeMessage": "w" }),
        )
        .await;
    let spare_group = body["groupId"].as_str().unwrap().to_string();
    Fixture {
        sim,
        session,
        callback,
        survey,
        location_survey,
        package_action,
        spare_group,
    }
}

#[tokio::test]
async fn every_request_schema_and_documented_sample_is_accepted() {
    let swagger = swagger();
    let definitions = swagger["definitions"].as_object().unwrap().clone();
    let f = fixture().await;
    let base = f.sim.sim.base_url().to_string();
    let placeholders = [
        ("mobile-number", "+15550001"),
        ("mobile-number-2", "+15550002"),
        ("mobile-number-3", "+15550003"),
        ("application-id", "app-1"),
        ("test-group-id", "g-sales"),
        ("test-public-group-id", "g-public"),
        ("test-sub-group-id", f.spare_group.as_str()),
        ("test-action-id", f.survey.as_str()),
    ];
    let location_answer = json!({
        "actionType": "Survey",
        "actionBody": { "responseName": "API response", "responseLocation": { "latitude": 1, "longitude": 1, "name": "HQ" },
                        "Answers": [{ "lt": 1, "lg": 1, "n": "HQ" }] }
    });
    // Definition, method, path (None: the API root), and a body for definitions
    // that have no documented sample.
    let cases: Vec<(&str, &str, Option<String>, Option<Value>)> = vec![
        ("Request - Generate pin", "POST", None, None),
        ("Request - Refresh Token", "POST", None, None),
        (
            "Request - Create a managed public group",
            "POST",
            Some("/groups".into()),
            None,
        ),
        (
            "Request - Add group as a subGroup to another group",
            "PUT",
            Some("/groups/g-sales/subGroups".into()),
            None,
        ),
        (
            "Request - Add members to a group",
            "PUT",
            Some("/groups/g-sales/members".into()),
            None,
        ),
        (
            "Request - SendMessageOnAGroup",
            "POST",
            Some("/groups/g-sales/messages".into()),
            None,
        ),
        (
            "Request - SendMessageToSubscriber(s)InAPublicGroup",
            "POST",
            Some("/groups/g-public/messages".into()),
            None,
        ),
        (
            "Request - Subscribers of a public group",
            "POST",
            Some("/groups/g-public/subscribers".into()),
            Some(json!({ "count": 10, "cursor": "" })),
        ),
        (
            "Request - Remove subscribers",
            "PUT",
            Some("/groups/g-public/subscribers/remove".into()),
            None,
        ),
        (
            "Request - SendSurveyOnAGroup",
            "POST",
            Some("/groups/g-sales/actions".into()),
            None,
        ),
        (
            "Request - PostAJobOnAGroup",
            "POST",
            Some("/groups/g-sales/actions".into()),
            None,
        ),
        (
            "Request - SendImageOnAGroup",
            "POST",
            Some("/groups/g-sales/actions".into()),
            None,
        ),
        (
            "Request - PostCustomAnnouncementToAGroup",
            "POST",
            Some("/groups/g-sales/actions".into()),
            None,
        ),
        (
            "Request - PostCustomAnnouncementToAGroup[withImages]",
            "POST",
            Some("/groups/g-sales/actions".into()),
            None,
        ),
        (
            "Request - PostCustomActionOnAGroup",
            "POST",
            Some("/groups/g-sales/actions".into()),
            None,
        ),
        (
            "Request - PostCustomActionToAGroup[withProperties]",
            "POST",
            Some("/groups/g-sales/actions".into()),
            None,
        ),
        (
            "Request - Send Custom Action To Subscriber(s)",
            "POST",
            Some("/groups/g-public/actions".into()),
            None,
        ),
        (
            "Request - PostingAResponseToASurvey",
            "POST",
            Some(format!(
                "/groups/g-sales/actions/{}/responses",
                f.location_survey
            )),
            Some(location_answer),
        ),
        (
            "Request - PostingAResponseToAnAction",
            "POST",
            Some(format!(
                "/groups/g-sales/actions/{}/responses",
                f.package_action
            )),
            None,
        ),
        (
            "Request - SubscribeToAllEventsAtGroupLevel",
            "POST",
            Some("/webhook".into()),
            None,
        ),
        (
            "Request - SubscribeToAllEventsAtActionLevel",
            "POST",
            Some("/webhook".into()),
            None,
        ),
        (
            "Request - SubscribeToAllEventsAtActionLevelWithActionPackageId",
            "POST",
            Some("/webhook".into()),
            None,
        ),
    ];

    let request_bodies: BTreeSet<&str> = definitions
        .keys()
        .map(String::as_str)
        .filter(|name| name.starts_with("Request - ") && !NESTED.contains(name))
        .collect();
    let covered: BTreeSet<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(
        request_bodies, covered,
        "every request definition of the swagger has a case"
    );

    let mut conforming = 0;
    for (name, method, path, own_body) in cases {
        let definition = &definitions[name];
        let mut body = match own_body {
            Some(body) => body,
            None => fill(
                definition
                    .get("x-ms-example")
                    .unwrap_or_else(|| panic!("{name} has no sample")),
                &placeholders,
            ),
        };
        if let Some(url) = body.get_mut("callBackUrl") {
            *url = json!(f.callback.url); // the samples' requestb.in is unreachable here
        }
        if name == "Request - Refresh Token" {
            let pin_request = json!({ "mobileNumber": "+15550001", "applicationId": "app-1" });
            f.sim
                .http
                .post(format!("{base}/v1/generatePin"))
                .json(&pin_request)
                .send()
                .await
                .unwrap();
            body["pin"] = f.sim.sim.state()["connectors"]["app-1"]["pins"]["+15550001"].clone();
        }
        if validator(&definitions, name).is_valid(&body) {
            conforming += 1;
        }
        let (status, answer) = match path {
            None => {
                let url = if name == "Request - Generate pin" {
                    "generatePin"
                } else {
                    "loginWithPinAndApplicationId"
                };
                answer(
                    f.sim
                        .http
                        .post(format!("{base}/v1/{url}"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap(),
                )
                .await
            }
            Some(path) if method == "PUT" => f.session.put(&path, &body).await,
            Some(path) => f.session.post(&path, &body).await,
        };
        assert_eq!(status, 200, "{name}: {body} -> {answer}");
    }
    assert!(
        conforming >= 15,
        "most samples conform to their schema ({conforming} did): the check ran"
    );
}

#[tokio::test]
async fn a_schema_valid_survey_that_the_documentation_calls_invalid_is_refused() {
    // Valid per the swagger (SingleOption without options is allowed there), but the
    // reference says options are mandatory for SingleOption: the emulator follows
    // the reference and names the field.
    let swagger = swagger();
    let definitions = swagger["definitions"].as_object().unwrap().clone();
    let body = json!({ "actionType": "Survey", "actionBody": { "isAnonymous": false, "isSenderOnly": false,
        "acceptMultipleResponses": false, "dueDate": 1, "title": "t", "questions": [{ "title": "q", "type": "SingleOption" }] } });
    assert!(validator(&definitions, "Request - SendSurveyOnAGroup").is_valid(&body));
    let f = fixture().await;
    let (status, answer) = f.session.post("/groups/g-sales/actions", &body).await;
    assert_eq!(
        (status, answer["message"].as_str().unwrap()),
        (
            400,
            "actionBody.questions[0].options: required for question type SingleOption"
        )
    );
}
