//! Webhooks: the RemoteExecutionContext a service endpoint receives, its
//! authentication, the single retry on 502/503/504, and the size-exceeded variant.

use std::collections::BTreeMap;

use kaizala_bridge::sim::dataverse::ServiceEndpoint;
use serde_json::{json, Value};

use crate::support::dataverse::{Dv, Receiver};

fn endpoint(url: &str, message: &str, auth: Value) -> ServiceEndpoint {
    let mut value = json!({ "url": url, "entity": "opportunity", "message": message });
    for (k, v) in auth.as_object().unwrap() {
        value[k] = v.clone();
    }
    serde_json::from_value(value).unwrap()
}

fn attribute<'a>(context: &'a Value, key: &str) -> Option<&'a Value> {
    context["InputParameters"][0]["value"]["Attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[tokio::test]
async fn a_create_sends_the_remote_execution_context_with_the_webhook_key() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let receiver = Receiver::start(200).await;
    dv.sim
        .register_webhook(endpoint(
            &receiver.url,
            "Create",
            json!({ "auth": "WebhookKey", "key": "s3cret-key" }),
        ))
        .unwrap();
    let id = api
        .create_opportunity(&json!({ "name": "Big deal", "estimatedvalue": 25000.0 }))
        .await;

    let call = receiver.wait_for(1).await.remove(0);
    assert_eq!(
        call.query.get("code").map(String::as_str),
        Some("s3cret-key")
    );
    assert_eq!(call.headers["x-ms-dynamics-entity-name"], "opportunity");
    assert_eq!(call.headers["x-ms-dynamics-request-name"], "Create");
    assert!(
        call.headers.contains_key("x-ms-dynamics-organization")
            && call.headers.contains_key("x-ms-correlation-request-id")
    );
    let context = &call.body;
    assert_eq!(
        (
            context["MessageName"].as_str(),
            context["PrimaryEntityName"].as_str()
        ),
        (Some("Create"), Some("opportunity"))
    );
    assert_eq!(context["PrimaryEntityId"], id.as_str());
    assert_eq!(context["Stage"], 40);
    assert_eq!(
        context["OutputParameters"],
        json!([{ "key": "id", "value": id }])
    );
    let target = &context["InputParameters"][0]["value"];
    assert_eq!(
        target["__type"],
        "Entity:http://schemas.microsoft.com/xrm/2011/Contracts"
    );
    assert_eq!(target["LogicalName"], "opportunity");
    assert_eq!(attribute(context, "name"), Some(&json!("Big deal")));
    assert_eq!(
        attribute(context, "estimatedvalue").unwrap()["__type"],
        "Money:http://schemas.microsoft.com/xrm/2011/Contracts"
    );
    assert!(attribute(context, "createdon")
        .unwrap()
        .as_str()
        .unwrap()
        .starts_with("/Date("));
}

#[tokio::test]
async fn an_update_carries_only_what_changed_and_headers_can_authenticate() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let receiver = Receiver::start(200).await;
    let headers: BTreeMap<String, String> =
        [("x-bridge-key".to_string(), "h-secret".to_string())].into();
    dv.sim
        .register_webhook(endpoint(
            &receiver.url,
            "Update",
            json!({ "auth": "HttpHeader", "headers": headers }),
        ))
        .unwrap();
    let id = api
        .create_opportunity(&json!({ "name": "Deal", "description": "long text" }))
        .await;
    api.patch(
        &format!("opportunities({id})"),
        &json!({ "estimatedvalue": 99 }),
        &[("If-Match", "*")],
    )
    .await;
    let call = receiver.wait_for(1).await.remove(0);
    assert_eq!(call.headers["x-bridge-key"], "h-secret");
    assert_eq!(call.body["MessageName"], "Update");
    assert!(attribute(&call.body, "estimatedvalue").is_some());
    assert!(
        attribute(&call.body, "description").is_none(),
        "not the full record"
    );
    assert_eq!(receiver.calls().len(), 1, "the Create was not subscribed");
}

#[tokio::test]
async fn only_502_503_and_504_get_a_second_attempt() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let unavailable = Receiver::start(503).await;
    let broken = Receiver::start(500).await;
    let key = json!({ "auth": "HttpQueryString", "query": { "k": "v" } });
    dv.sim
        .register_webhook(endpoint(&unavailable.url, "Create", key.clone()))
        .unwrap();
    dv.sim
        .register_webhook(endpoint(&broken.url, "Create", key))
        .unwrap();
    api.create_opportunity(&json!({ "name": "Deal" })).await;
    assert_eq!(unavailable.wait_for(2).await.len(), 2);
    assert_eq!(
        broken.wait_for(1).await[0]
            .query
            .get("k")
            .map(String::as_str),
        Some("v")
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!((unavailable.calls().len(), broken.calls().len()), (2, 1));
}

#[tokio::test]
async fn the_size_exceeded_variant_drops_the_contexts_and_says_so() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    let receiver = Receiver::start(200).await;
    let mut registration = endpoint(
        &receiver.url,
        "Create",
        json!({ "auth": "WebhookKey", "key": "k" }),
    );
    registration.size_exceeded = true;
    dv.sim.register_webhook(registration).unwrap();
    let id = api.create_opportunity(&json!({ "name": "Deal" })).await;
    let call = receiver.wait_for(1).await.remove(0);
    assert!(call.headers.contains_key("x-ms-dynamics-msg-size-exceeded"));
    assert!(call.body.get("InputParameters").is_none() && call.body.get("ParentContext").is_none());
    assert_eq!(
        call.body["PrimaryEntityId"],
        id.as_str(),
        "enough to re-read the record"
    );
}

#[tokio::test]
async fn faults_fail_web_api_calls_with_an_error_body() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    dv.sim
        .set_faults(kaizala_bridge::sim::faults::Faults {
            error_rate: 1.0,
            error_statuses: vec![503],
            ..Default::default()
        })
        .unwrap();
    let answer = api.get("opportunities").await;
    assert_eq!(answer.status, 503);
    assert!(answer.body["error"]["message"].is_string());
}
