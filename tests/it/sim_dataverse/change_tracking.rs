//! Change tracking: the baseline with its delta link, changes and deletions since,
//! paging, the forbidden query options, and tokens that expire.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::dataverse::{Answer, Api, Dv};

async fn track(api: &Api, path: &str) -> Answer {
    Api::send(
        api.request(reqwest::Method::GET, path)
            .header("Prefer", "odata.track-changes"),
    )
    .await
}

fn names(answer: &Answer) -> Vec<String> {
    answer.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_delta_link_returns_what_changed_then_what_was_deleted() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let baseline = track(&api, "opportunities?$select=name,estimatedvalue").await;
    assert_eq!(baseline.status, 200);
    assert_eq!(
        baseline.headers["preference-applied"],
        "odata.track-changes"
    );
    assert_eq!(names(&baseline), ["Existing deal"]);
    let delta = baseline.body["@odata.deltaLink"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(delta.contains("$deltatoken="), "{delta}");

    let nothing = api.get(&delta).await;
    assert_eq!(nothing.body["value"], json!([]), "nothing changed");
    assert!(nothing.body["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("/$delta"));

    let a = api
        .create_opportunity(&json!({ "name": "New A", "estimatedvalue": 20000 }))
        .await;
    let b = api.create_opportunity(&json!({ "name": "New B" })).await;
    api.patch(
        &format!("opportunities({a})"),
        &json!({ "estimatedvalue": 30000 }),
        &[("If-Match", "*")],
    )
    .await;
    api.delete(&format!("opportunities({b})")).await;
    let changes = api.get(&delta).await;
    let value = changes.body["value"].as_array().unwrap();
    assert_eq!(value.len(), 2, "{value:#?}");
    assert_eq!(
        (
            value[0]["name"].as_str(),
            value[0]["estimatedvalue"].as_f64()
        ),
        (Some("New A"), Some(30000.0))
    );
    assert_eq!(value[1]["reason"], "deleted");
    assert_eq!(
        value[1]["id"],
        b.as_str(),
        "created and deleted between polls: a deletion"
    );
    assert!(value[1]["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("$metadata#opportunities/$deletedEntity"));

    let next = changes.body["@odata.deltaLink"].as_str().unwrap();
    assert_eq!(
        api.get(next).await.body["value"],
        json!([]),
        "the newer link starts after them"
    );
}

#[tokio::test]
async fn the_baseline_pages_and_ends_with_the_delta_link() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    for n in 0..4 {
        api.create_opportunity(&json!({ "name": format!("Deal {n}") }))
            .await;
    }
    let mut path = "opportunities?$select=name".to_string();
    let mut all = Vec::new();
    let delta = loop {
        let answer = Api::send(
            api.request(reqwest::Method::GET, &path)
                .header("Prefer", "odata.track-changes,odata.maxpagesize=2"),
        )
        .await;
        all.extend(names(&answer));
        match (
            answer.body["@odata.nextLink"].as_str(),
            answer.body["@odata.deltaLink"].as_str(),
        ) {
            (Some(next), None) => path = next.to_string(),
            (None, Some(delta)) => break delta.to_string(),
            other => panic!("a page has exactly one of nextLink and deltaLink: {other:?}"),
        }
    };
    assert_eq!(all.len(), 5);
    assert_eq!(api.get(&delta).await.body["value"], json!([]));
}

#[tokio::test]
async fn filters_are_refused_with_change_tracking() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let answer = track(&api, "opportunities?$filter=name eq 'x'").await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body["error"]["message"],
        "The \"$filter\" query parameter isn't supported when Change Tracking is enabled."
    );
}

#[tokio::test]
async fn delta_tokens_expire_after_the_retention_or_when_told() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let delta = |answer: &Answer| {
        answer.body["@odata.deltaLink"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = delta(&track(&api, "opportunities").await);
    dv.sim
        .advance_clock(Duration::from_secs(7 * 24 * 3600 + 60));
    let api = dv.api().await;
    let expired = api.get(&first).await;
    assert_eq!(
        (expired.status, expired.body["error"]["code"].as_str()),
        (400, Some("0x80044352"))
    );
    assert_eq!(
        expired.body["error"]["message"],
        "Version stamp associated with the client has expired. Please perform a full sync."
    );

    let fresh = delta(&track(&api, "opportunities").await);
    assert_eq!(api.get(&fresh).await.status, 200);
    let response = dv
        .http
        .post(format!("{}/_sim/delta/expire", dv.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = api.get(&fresh).await.body;
    assert_eq!(answer["error"]["code"], "0x80044352");
}
