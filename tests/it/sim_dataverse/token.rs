//! The Entra token endpoint and the Web API's token checks and service protection.

use std::time::Duration;

use kaizala_bridge::sim::dataverse::SimOptions;

use crate::support::dataverse::Dv;

#[tokio::test]
async fn client_credentials_give_a_bearer_token_and_mistakes_get_entras_errors() {
    let dv = Dv::start().await;
    let scope = format!("{}/.default", dv.sim.base_url());
    let form = |secret: &'static str, scope: String| {
        vec![
            ("client_id", "bridge"),
            ("client_secret", secret),
            ("grant_type", "client_credentials"),
            ("scope", Box::leak(scope.into_boxed_str()) as &str),
        ]
    };
    let (status, body) = dv
        .token_raw("contoso", &form("bridge-secret", scope.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["token_type"].as_str(), body["expires_in"].as_u64()),
        (Some("Bearer"), Some(3599))
    );

    let (status, body) = dv.token_raw("contoso", &form("wrong", scope.clone())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(body["error_codes"][0], 7000215);
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS7000215: Invalid client secret provided."));

    let (status, body) = dv
        .token_raw("fabrikam", &form("bridge-secret", scope.clone()))
        .await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (400, Some(700016))
    );
    let (status, body) = dv
        .token_raw(
            "contoso",
            &form("bridge-secret", "https://other/.default".into()),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, _) = dv
        .token_raw(
            "contoso",
            &form("bridge-secret", format!("{}//.default", dv.sim.base_url())),
        )
        .await;
    assert_eq!(
        status, 200,
        "the double-slash scope of Microsoft's sample is accepted"
    );

    let response = dv
        .http
        .post(dv.sim.token_url("contoso"))
        .basic_auth("bridge", Some("bridge-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "the secret may come as HTTP Basic auth"
    );
}

#[tokio::test]
async fn the_web_api_wants_a_live_token() {
    let dv = Dv::start().await;
    let api = dv.api().await;
    assert_eq!(api.get("opportunities").await.status, 200);
    let mut forged = api.clone();
    forged.token = "made-up".into();
    assert_eq!(forged.get("opportunities").await.status, 401);
    dv.sim.advance_clock(Duration::from_secs(3600));
    let answer = api.get("opportunities").await;
    assert_eq!(
        (answer.status, answer.body["error"]["code"].as_str()),
        (401, Some("0x80041d52"))
    );
}

#[tokio::test]
async fn service_protection_answers_429_with_retry_after_and_the_documented_error() {
    let dv = Dv::start_with(SimOptions {
        requests_per_window: 5,
        ..SimOptions::default()
    })
    .await;
    let api = dv.api().await;
    for _ in 0..5 {
        assert_eq!(api.get("opportunities").await.status, 200);
    }
    let answer = api.get("opportunities").await;
    assert_eq!(answer.status, 429);
    let retry_after: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    assert_eq!(answer.body["error"]["code"], "0x80072322");
    assert_eq!(
        answer.body["error"]["message"],
        "Number of requests exceeded the limit of 5 over time window of 300 seconds."
    );
    assert_eq!(dv.sim.state()["applications"]["bridge"]["throttled"], 1);
    dv.sim.advance_clock(Duration::from_secs(300));
    assert_eq!(
        api.get("opportunities").await.status,
        200,
        "the window moved on"
    );
}
