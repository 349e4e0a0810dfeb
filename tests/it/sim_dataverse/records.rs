//! Creating, reading, listing, updating and deleting rows; binds; idempotent creates.

use serde_json::json;

use crate::support::dataverse::{Api, Dv};

#[tokio::test]
async fn opportunities_are_created_read_and_listed_in_the_odata_shapes() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let answer = api
        .post(
            "opportunities",
            &json!({ "name": "Big deal", "estimatedvalue": 25000.0 }),
        )
        .await;
    assert_eq!(answer.status, 204);
    let entity = answer.headers["odata-entityid"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        entity.starts_with(&format!("{}/opportunities(", api.base)),
        "{entity}"
    );
    let id = entity.rsplit('(').next().unwrap().trim_end_matches(')');

    let answer = api
        .get(&format!("opportunities({id})?$select=name,estimatedvalue"))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["name"], "Big deal");
    assert_eq!(
        answer.body["opportunityid"], id,
        "the key always comes back"
    );
    assert!(answer.body["@odata.etag"]
        .as_str()
        .unwrap()
        .starts_with("W/\""));
    assert!(
        answer.body.get("createdon").is_none(),
        "only what $select asked for"
    );
    assert!(answer.body["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("$metadata#opportunities(name,estimatedvalue)/$entity"));

    let request = api
        .request(reqwest::Method::POST, "opportunities")
        .header("Prefer", "return=representation")
        .json(&json!({ "name": "Shown" }));
    let answer = Api::send(request).await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.body["name"], "Shown");
    assert_eq!(
        answer.headers["preference-applied"],
        "return=representation"
    );

    let answer = api.get("opportunities?$filter=name eq 'Big deal'").await;
    assert_eq!(answer.body["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.get("opportunities").await.body["value"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "with the seeded one"
    );
}

#[tokio::test]
async fn mistakes_get_dataverse_errors() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let cases = [
        (
            api.post("opportunities", &json!({ "estimatedvalue": 1 }))
                .await,
            400,
            "0x0",
            "A required attribute 'name' of entity 'opportunity' is missing.",
        ),
        (
            api.post("opportunities", &json!({ "name": "x", "colour": "red" }))
                .await,
            400,
            "0x0",
            "Invalid property 'colour' was found in entity 'Microsoft.Dynamics.CRM.opportunity'.",
        ),
        (
            api.get("opportunities?$select=Name").await,
            400,
            "0x0",
            "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.opportunity'.",
        ),
        (
            api.get("Opportunities").await,
            404,
            "0x8006088a",
            "Resource not found for the segment 'Opportunities'.",
        ),
        (
            api.get("opportunities(00000000-0000-0000-0000-000000000009)")
                .await,
            404,
            "0x80040217",
            "opportunity With Id = 00000000-0000-0000-0000-000000000009 Does Not Exist",
        ),
    ];
    for (answer, status, code, message) in cases {
        assert_eq!(
            (
                answer.status,
                answer.body["error"]["code"].as_str(),
                answer.body["error"]["message"].as_str()
            ),
            (status, Some(code), Some(message))
        );
    }
    let answer = api.delete("opportunities").await;
    assert_eq!(answer.status, 404, "a method the collection does not take");
}

#[tokio::test]
async fn tasks_and_notes_bind_to_their_opportunity_by_the_documented_names() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let opportunity = api.create_opportunity(&json!({ "name": "Deal" })).await;
    for nav in [
        "regardingobjectid_opportunity_task",
        "regardingobjectid_opportunity",
    ] {
        let body = json!({ "subject": format!("via {nav}"), format!("{nav}@odata.bind"): format!("/opportunities({opportunity})") });
        assert_eq!(api.post("tasks", &body).await.status, 204, "{nav}");
    }
    let answer = api
        .get(&format!(
            "tasks?$filter=_regardingobjectid_value eq {opportunity}"
        ))
        .await;
    assert_eq!(answer.body["value"].as_array().unwrap().len(), 2);
    assert_eq!(answer.body["value"][0]["statecode"], 0);

    let note = json!({ "subject": "Reply", "notetext": "Budget confirmed", "objectid_opportunity@odata.bind": format!("opportunities({opportunity})") });
    assert_eq!(api.post("annotations", &note).await.status, 204);
    let answer = api
        .get(&format!(
            "annotations?$filter=_objectid_value eq {opportunity}&$select=subject,notetext"
        ))
        .await;
    assert_eq!(answer.body["value"][0]["notetext"], "Budget confirmed");

    let answer = api.post("tasks", &json!({ "subject": "x", "regardingobjectid@odata.bind": format!("/opportunities({opportunity})") })).await;
    assert_eq!(
        (answer.status, answer.body["error"]["code"].as_str()),
        (400, Some("0x80048d19"))
    );
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("An undeclared property 'regardingobjectid'"));
    let answer = api.post("tasks", &json!({ "subject": "x", "regardingobjectid_opportunity_task@odata.bind": "/opportunities(00000000-0000-0000-0000-000000000009)" })).await;
    assert_eq!(answer.status, 404);
    let answer = api
        .post("tasks", &json!({ "subject": "x", "statecode": 1 }))
        .await;
    assert_eq!(answer.status, 400, "a task cannot be created completed");
    let answer = api
        .post("tasks", &json!({ "subject": "x".repeat(201) }))
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum allowed length of '200'"));
}

#[tokio::test]
async fn a_create_only_upsert_written_twice_gives_one_task() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let opportunity = api.create_opportunity(&json!({ "name": "Deal" })).await;
    let id = "6f0c4b4e-1a7f-5d35-9c55-2b4a0c1d9e01";
    let body = json!({ "subject": "Reply from Asha", "regardingobjectid_opportunity_task@odata.bind": format!("/opportunities({opportunity})") });
    let first = api
        .patch(&format!("tasks({id})"), &body, &[("If-None-Match", "*")])
        .await;
    assert_eq!(first.status, 204);
    assert!(first.headers["odata-entityid"]
        .to_str()
        .unwrap()
        .ends_with(&format!("tasks({id})")));
    let second = api
        .patch(&format!("tasks({id})"), &body, &[("If-None-Match", "*")])
        .await;
    assert_eq!(
        (second.status, second.body["error"]["code"].as_str()),
        (412, Some("0x80040237"))
    );
    assert_eq!(
        second.body["error"]["message"],
        "A record with matching key values already exists."
    );
    assert_eq!(
        dv.sim.state()["tables"]["tasks"]["rows"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let answer = api
        .post("tasks", &json!({ "activityid": id, "subject": "again" }))
        .await;
    assert_eq!(
        (answer.status, answer.body["error"]["code"].as_str()),
        (412, Some("0x80040237")),
        "a POST with an existing key"
    );
    let missing = api
        .patch(
            "tasks(00000000-0000-0000-0000-000000000009)",
            &json!({ "subject": "x" }),
            &[("If-Match", "*")],
        )
        .await;
    assert_eq!(missing.status, 404, "update-only on a missing row");
    let update = api
        .patch(
            &format!("tasks({id})"),
            &json!({ "statecode": 1, "statuscode": 5 }),
            &[("If-Match", "*")],
        )
        .await;
    assert_eq!(update.status, 204, "completing a task");
    assert_eq!(api.get(&format!("tasks({id})")).await.body["statuscode"], 5);
    assert_eq!(api.delete(&format!("tasks({id})")).await.status, 204);
    assert_eq!(api.delete(&format!("tasks({id})")).await.status, 404);
}

#[tokio::test]
async fn lists_page_through_next_links() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    for n in 0..4 {
        api.create_opportunity(&json!({ "name": format!("Deal {n}") }))
            .await;
    }
    let mut seen = 0;
    let mut next = Some("opportunities?$select=name".to_string());
    let mut pages = 0;
    while let Some(path) = next {
        let answer = Api::send(
            api.request(reqwest::Method::GET, &path)
                .header("Prefer", "odata.maxpagesize=2"),
        )
        .await;
        assert_eq!(answer.status, 200);
        seen += answer.body["value"].as_array().unwrap().len();
        next = answer.body["@odata.nextLink"].as_str().map(str::to_string);
        pages += 1;
    }
    assert_eq!((seen, pages), (5, 3));
}
