//! Groups, members, messages, sub-groups and public-group subscribers.

use serde_json::json;

use crate::support::kaizala::Sim;

#[tokio::test]
async fn a_connector_sees_only_its_groups() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let (status, body) = session.get("/groups").await;
    assert_eq!(status, 200);
    let mut ids: Vec<&str> = body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["groupId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["g-public", "g-sales"]);

    let (status, body) = session.get("/groups/g-sales").await;
    assert_eq!(status, 200);
    assert_eq!(body["groups"][0]["groupName"], "Sales West");
    assert_eq!(body["groups"][0]["currentLevelUserCount"], 3);

    let (status, body) = session.get("/groups/g-ops").await;
    assert_eq!(status, 403);
    assert_eq!(
        body["message"],
        "group \"g-ops\" is not granted to connector \"app-1\""
    );
    let (status, body) = session.get("/groups/g-nowhere").await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (404, "group \"g-nowhere\" does not exist")
    );
}

#[tokio::test]
async fn a_created_group_is_granted_to_its_creator() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let (status, body) = session
        .post(
            "/groups",
            &json!({ "name": "Launch", "welcomeMessage": "Hi", "members": ["+15550003"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["groupName"], "Launch");
    assert_eq!(body["membersAdded"], true);
    let id = body["groupId"].as_str().unwrap();
    let (status, body) = session.get(&format!("/groups/{id}/members")).await;
    assert_eq!(status, 200);
    let phones: Vec<&str> = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mobileNumber"].as_str().unwrap())
        .collect();
    assert_eq!(
        phones,
        ["+15550000", "+15550003"],
        "the connector's user is admin, then the members"
    );

    let (status, body) = session
        .post("/groups", &json!({ "welcomeMessage": "Hi" }))
        .await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "name: missing")
    );
    let (status, body) = session
        .post(
            "/groups",
            &json!({ "name": "x", "welcomeMessage": "Hi", "members": ["5550003"] }),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("members[0]: \"5550003\" is not a phone number"),
        "{body}"
    );
}

#[tokio::test]
async fn members_are_added_listed_and_removed() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let (status, body) = session
        .put(
            "/groups/g-sales/members",
            &json!({ "members": ["+15550009"] }),
        )
        .await;
    assert_eq!((status, body), (200, json!({ "result": true })));
    let (_, body) = session.get("/groups/g-sales/members").await;
    let added = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mobileNumber"] == "+15550009")
        .unwrap()
        .clone();
    assert_eq!(added["role"], "Member");

    let id = added["id"].as_str().unwrap();
    let (status, _) = session
        .delete(&format!("/groups/g-sales/members/{id}"))
        .await;
    assert_eq!(status, 200);
    let (_, body) = session.get("/groups/g-sales/members").await;
    assert!(body["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["mobileNumber"] != "+15550009"));
    let (status, _) = session
        .delete(&format!("/groups/g-sales/members/{id}"))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn text_messages_are_sent_and_bounded() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let (status, body) = session
        .post("/groups/g-sales/messages", &json!({ "message": "Hello" }))
        .await;
    assert_eq!(status, 200);
    assert!(body["referenceId"].is_string());
    let (status, body) = session
        .post(
            "/groups/g-sales/messages",
            &json!({ "message": "x".repeat(4001) }),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "message: longer than 4000 characters")
    );
    let (status, body) = session
        .post("/groups/g-sales/messages", &json!({ "text": "Hello" }))
        .await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (400, "message: missing")
    );
}

#[tokio::test]
async fn sub_groups_are_created_linked_and_unlinked() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let (status, body) = session.post("/groups/g-sales/subgroups", &json!({ "name": "West North", "welcomeMessage": "Hi", "members": [], "groupType": "Group" })).await;
    assert_eq!(status, 200, "{body}");
    let sub = body["groupId"].as_str().unwrap().to_string();
    let (status, body) = session.get("/groups/g-sales/subGroups").await;
    assert_eq!(status, 200);
    assert_eq!(body["hasSubGroups"], true);
    assert_eq!(body["subGroups"][0]["groupId"], sub.as_str());
    assert_eq!(body["subGroups"][0]["hasParentGroups"], true);

    let (status, _) = session
        .delete(&format!("/groups/g-sales/subGroups/{sub}"))
        .await;
    assert_eq!(status, 200);
    let (status, body) = session
        .put("/groups/g-sales/subGroups", &json!({ "subGroups": [sub] }))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = session
        .put(
            "/groups/g-sales/subGroups",
            &json!({ "subGroups": ["g-ops"] }),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("subGroups[0]: group \"g-ops\" is not granted"),
        "{body}"
    );
}

#[tokio::test]
async fn public_groups_have_subscribers_and_private_ones_do_not() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let (status, _) = session
        .put(
            "/groups/g-public/subscribers/add",
            &json!({ "subscribers": ["+15550101", "+15550102", "+15550103"] }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = session
        .post(
            "/groups/g-public/subscribers",
            &json!({ "count": 2, "cursor": "" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["subscribers"].as_array().unwrap().len(), 2);
    let cursor = body["cursor"].as_str().unwrap().to_string();
    let (_, body) = session
        .post(
            "/groups/g-public/subscribers",
            &json!({ "count": 2, "cursor": cursor }),
        )
        .await;
    assert_eq!(
        body["subscribers"],
        json!([{ "mobileNumber": "+15550103" }])
    );
    assert!(body.get("cursor").is_none());

    let (status, _) = session
        .put(
            "/groups/g-public/subscribers/remove",
            &json!({ "subscribers": ["+15550101"] }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = session
        .post(
            "/groups/g-sales/subscribers",
            &json!({ "count": 2, "cursor": "" }),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("is not a public group"),
        "{body}"
    );
}
