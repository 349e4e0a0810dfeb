//! The Dataverse activity sink against the emulator: one activity per answer however
//! often it is written, notes, throttling and permanent errors.

use std::time::Duration;

use kaizala_bridge::config::Secret;
use kaizala_bridge::crm::dataverse::{DataverseSink, EntraCredentials, WebApi};
use kaizala_bridge::crm::{CrmError, CrmSink, Written};
use kaizala_bridge::model::{Activity, ActivityKind, CrmRecordRef};
use kaizala_bridge::sim::dataverse::SimOptions;
use serde_json::json;

use crate::support::dataverse::Dv;

fn sink(dv: &Dv, secret: &str) -> DataverseSink {
    let credentials = EntraCredentials {
        token_url: dv.sim.token_url("contoso"),
        client_id: "bridge".into(),
        client_secret: Secret::new(secret),
        scope: format!("{}/.default", dv.sim.base_url()),
    };
    DataverseSink::new(
        "d365",
        WebApi::new(
            "d365",
            dv.sim.base_url(),
            credentials,
            Duration::from_secs(10),
        )
        .unwrap(),
    )
}

fn answer(opportunity: &str, key: &str, kind: ActivityKind) -> Activity {
    Activity {
        kind,
        regarding: CrmRecordRef {
            crm: "d365".into(),
            entity_set: "opportunities".into(),
            id: opportunity.into(),
        },
        subject: "Reply from Asha".into(),
        description: "Budget confirmed: yes".into(),
        source_key: key.into(),
    }
}

#[tokio::test]
async fn an_answer_written_twice_gives_one_task_regarding_its_opportunity() {
    let dv = Dv::start().await;
    let opportunity = dv
        .api()
        .await
        .create_opportunity(&json!({ "name": "Deal" }))
        .await;
    let sink = sink(&dv, "bridge-secret");
    let first = sink
        .write_activity(&answer(&opportunity, "response-1", ActivityKind::Task))
        .await
        .unwrap();
    let second = sink
        .write_activity(&answer(&opportunity, "response-1", ActivityKind::Task))
        .await
        .unwrap();
    let Written::Created(id) = first else {
        panic!("{first:?}")
    };
    assert_eq!(second, Written::AlreadyThere(id.clone()));
    let tasks = dv.sim.state()["tables"]["tasks"]["rows"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["activityid"], id.as_str());
    assert_eq!(tasks[0]["_regardingobjectid_value"], opportunity.as_str());
    assert_eq!(tasks[0]["subject"], "Reply from Asha");
    assert_eq!(tasks[0]["description"], "Budget confirmed: yes");

    sink.write_activity(&answer(&opportunity, "response-2", ActivityKind::Note))
        .await
        .unwrap();
    let notes = dv.sim.state()["tables"]["annotations"]["rows"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        (
            notes[0]["_objectid_value"].as_str(),
            notes[0]["notetext"].as_str()
        ),
        (Some(opportunity.as_str()), Some("Budget confirmed: yes"))
    );

    let mut long = answer(&opportunity, "response-3", ActivityKind::Task);
    long.subject = "s".repeat(250);
    sink.write_activity(&long).await.unwrap();
    let tasks = dv.sim.state()["tables"]["tasks"]["rows"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        tasks
            .iter()
            .any(|t| t["subject"].as_str().unwrap().chars().count() == 200),
        "held to the column's 200"
    );
}

#[tokio::test]
async fn throttling_is_retryable_with_its_wait_and_bad_credentials_are_permanent() {
    let dv = Dv::start_with(SimOptions {
        requests_per_window: 2,
        ..SimOptions::default()
    })
    .await;
    let opportunity = dv
        .api()
        .await
        .create_opportunity(&json!({ "name": "Deal" }))
        .await;
    let sink = sink(&dv, "bridge-secret");
    sink.write_activity(&answer(&opportunity, "r-1", ActivityKind::Task))
        .await
        .unwrap();
    let error = sink
        .write_activity(&answer(&opportunity, "r-2", ActivityKind::Task))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CrmError::Throttled { retry_after } if retry_after > Duration::ZERO),
        "{error}"
    );
    assert!(error.is_retryable());
    dv.sim.advance_clock(Duration::from_secs(300));
    sink.write_activity(&answer(&opportunity, "r-2", ActivityKind::Task))
        .await
        .unwrap();

    let error = self::sink(&dv, "wrong-secret")
        .write_activity(&answer(&opportunity, "r-3", ActivityKind::Task))
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("AADSTS7000215"), "{error}");
    assert!(!error.to_string().contains("wrong-secret"));

    let missing = answer(
        "00000000-0000-0000-0000-000000000009",
        "r-4",
        ActivityKind::Task,
    );
    let error = sink.write_activity(&missing).await.unwrap_err();
    assert!(
        !error.is_retryable(),
        "a missing opportunity stays missing: {error}"
    );
}
