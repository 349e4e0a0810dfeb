//! Property tests of every parser that reads outside input: the Kaizala and Dataverse
//! webhook bodies, the configuration loader (file and environment), the filter
//! language and the templates. Arbitrary bytes and arbitrary JSON never panic, and
//! what a parser accepts has the shape it promises (ids of their documented form).
//!
//! Each target runs `KB_PROPTEST_CASES` cases (2,000 by default);
//! `scripts/fuzz.sh` runs a million per target on the release profile.

use std::collections::HashMap;

use kaizala_bridge::config::Config;
use kaizala_bridge::crm::dataverse::webhook::parse as parse_dataverse;
use kaizala_bridge::kaizala::{EventData, KaizalaEvent};
use kaizala_bridge::model::ids;
use kaizala_bridge::rules::{Filter, Templates};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn cases() -> u32 {
    std::env::var("KB_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Failures are shrunk and shown; no regression files are written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, nested a few levels, with strings of any characters.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(".{0,12}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object whose keys are mostly `keys` (so parsers get past their first
/// checks) with any values.
fn object_of(keys: &'static [&'static str], values: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let key = prop_oneof![
        4 => prop::sample::select(keys).prop_map(str::to_string),
        1 => ".{0,12}",
    ];
    btree_map(key, values, 0..keys.len() + 2)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
        .boxed()
}

const EVENT_KEYS: &[&str] = &[
    "eventType",
    "eventId",
    "objectId",
    "objectType",
    "context",
    "fromUser",
    "fromUserName",
    "data",
];
const DATA_KEYS: &[&str] = &[
    "actionId",
    "groupId",
    "responseId",
    "responder",
    "responderName",
    "isUpdateResponse",
    "responseDetails",
    "text",
    "member",
    "title",
    "assignedTo",
];
const TYPES: &[&str] = &[
    "SurveyResponse",
    "ActionResponse",
    "JobResponse",
    "TextMessageCreated",
    "MemberAdded",
    "ActionCreated",
    "JobCreated",
    "Announcement",
    "GroupAdded",
];

/// Kaizala event bodies that look like events: known keys and types, answers lists,
/// with values of any shape.
fn kaizala_event() -> impl Strategy<Value = Value> {
    let answer = object_of(&["title", "type", "answer", "isInvisible"], json().boxed());
    let details = vec(answer, 0..4)
        .prop_map(|answers| serde_json::json!({ "responseWithQuestions": answers }));
    let data_value = prop_oneof![json(), details].boxed();
    let data = object_of(DATA_KEYS, data_value);
    let top_value = prop_oneof![
        json(),
        prop::sample::select(TYPES).prop_map(Value::from),
        data,
    ]
    .boxed();
    object_of(EVENT_KEYS, top_value)
}

const CONTEXT_KEYS: &[&str] = &[
    "MessageName",
    "PrimaryEntityName",
    "PrimaryEntityId",
    "InputParameters",
    "OperationCreatedOn",
];

/// Dataverse RemoteExecutionContext bodies with their keys and any values.
fn dataverse_context() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        json(),
        prop::sample::select(&["Create", "Update", "Delete", "opportunity"][..])
            .prop_map(Value::from),
        Just(Value::from("8c291050-9be8-45d6-97f5-bb7013930027")),
    ]
    .boxed();
    object_of(CONTEXT_KEYS, value)
}

fn ids_are_shaped(event: &KaizalaEvent) {
    ids::kaizala_id("eventId", &event.event_id).unwrap();
    ids::kaizala_id("objectId", &event.object_id).unwrap();
    if let EventData::Response {
        action_id,
        group_id,
        response_id,
        ..
    } = &event.data
    {
        for id in [action_id, group_id, response_id] {
            ids::kaizala_id("id", id).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn kaizala_bodies_of_any_bytes_never_panic(body in vec(any::<u8>(), 0..512)) {
        if let Ok(event) = KaizalaEvent::parse(&body) {
            ids_are_shaped(&event);
        }
    }

    #[test]
    fn kaizala_bodies_of_any_json_never_panic_and_accepted_ids_are_shaped(body in kaizala_event()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        if let Ok(event) = KaizalaEvent::parse(&bytes) {
            ids_are_shaped(&event);
            let _ = kaizala_bridge::jobs::intake::response_of(&event);
        }
    }

    #[test]
    fn dataverse_bodies_never_panic_and_accepted_ids_are_guids(
        body in dataverse_context(),
        bytes in vec(any::<u8>(), 0..256),
    ) {
        let _ = parse_dataverse("d365", &bytes);
        let text = serde_json::to_vec(&body).unwrap();
        if let Ok(Some(event)) = parse_dataverse("d365", &text) {
            prop_assert!(ids::guid("id", &event.record.id).is_ok(), "{:?}", event.record);
        }
    }

    #[test]
    fn filters_of_any_text_never_panic(text in ".{0,80}", attributes in json()) {
        if let Ok(filter) = Filter::parse(&text) {
            let attributes = match attributes {
                Value::Object(map) => map,
                other => Map::from_iter([("estimatedvalue".to_string(), other)]),
            };
            let _ = filter.matches(&attributes);
            let _ = filter.columns();
        }
    }

    #[test]
    fn templates_of_any_text_never_panic(source in ".{0,80}", context in json()) {
        let mut templates = Templates::new();
        if let Ok(id) = templates.add("t", &source, "t.toml", 1) {
            let _ = templates.render(&id, &context);
            let _ = templates.variables(&id);
        }
    }
}

/// Configuration values are read from files and the environment, which may hold
/// anything; the loader answers with problems, never a panic. Fewer cases: each
/// one writes and reads a file.
#[test]
fn configurations_of_any_text_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: (cases() / 10).max(100),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let keys = prop::sample::select(
        &[
            "SERVER__LISTEN",
            "QUEUE__CONCURRENCY",
            "SERVER__REQUEST_TIMEOUT",
            "LOG__LEVEL",
            "TENANTS",
            "QUEUE__BACKEND",
        ][..],
    );
    let strategy = (
        "(\\[[a-z\\[\\]]{0,12}\\]\n)?([a-z_]{1,12} = .{0,30}\n){0,6}",
        vec(any::<u8>(), 0..128),
        btree_map(keys, ".{0,30}", 0..3),
    );
    runner
        .run(&strategy, |(toml_text, bytes, env)| {
            for content in [toml_text.as_bytes(), &bytes[..]] {
                std::fs::write(&path, content).unwrap();
                let env: HashMap<String, String> = env
                    .iter()
                    .map(|(k, v)| (format!("KAIZALA_BRIDGE__{k}"), v.clone()))
                    .collect();
                let _ = Config::load(Some(&path), &env);
            }
            Ok(())
        })
        .unwrap();
}
