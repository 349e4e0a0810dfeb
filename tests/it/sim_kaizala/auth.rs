//! Onboarding (PIN, login), access tokens, their expiry and refresh-token rotation.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::kaizala::{answer, Sim};

const DAY: u64 = 24 * 3600;

#[tokio::test]
async fn an_access_token_comes_with_its_endpoint_and_expiry() {
    let sim = Sim::start().await;
    let (status, body) = answer(sim.access_token_raw("app-1", "secret-1", "rt-1").await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["accessToken"].as_str().is_some_and(|t| !t.is_empty()));
    let endpoint = body["endpointUrl"].as_str().unwrap();
    assert!(
        endpoint.starts_with(sim.sim.base_url()) && endpoint.contains("/ep/"),
        "{endpoint}"
    );
    let now = sim.sim.state()["now"].as_i64().unwrap();
    let expiry = body["accessTokenExpiry"].as_i64().unwrap();
    assert!(
        (expiry - now - 24 * 3600 * 1000).abs() < 60_000,
        "24 h from now: {expiry} vs {now}"
    );
    assert_eq!(
        body["refreshToken"], "",
        "no new refresh token before 90% of its validity"
    );
    assert_eq!(body["scope"], "token.write");
}

#[tokio::test]
async fn wrong_credentials_get_401_with_a_json_error_naming_the_header() {
    let sim = Sim::start().await;
    for (app, secret, refresh, named) in [
        ("app-1", "wrong", "rt-1", "applicationSecret"),
        ("app-1", "secret-1", "rt-unknown", "refreshToken"),
        ("app-404", "secret-1", "rt-1", "applicationId"),
    ] {
        let (status, body) = answer(sim.access_token_raw(app, secret, refresh).await).await;
        assert_eq!(status, 401);
        assert_eq!(body["code"], "Unauthorized");
        assert!(
            body["message"].as_str().unwrap().starts_with(named),
            "{body}"
        );
    }
    let session = sim.session(1).await;
    let mut stale = session.clone();
    stale.token = "at-made-up".into();
    let (status, body) = stale.get("/groups").await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (401, "accessToken: unknown token")
    );
}

#[tokio::test]
async fn access_tokens_expire_on_the_emulator_clock() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    assert_eq!(session.get("/groups").await.0, 200);
    sim.sim.advance_clock(Duration::from_secs(DAY + 1));
    let (status, body) = session.get("/groups").await;
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    assert_eq!(
        sim.session(1).await.get("/groups").await.0,
        200,
        "the refresh token still works"
    );
}

#[tokio::test]
async fn the_refresh_token_rotates_after_90_percent_and_the_old_one_lasts_its_year() {
    let sim = Sim::start().await;
    sim.sim.advance_clock(Duration::from_secs(328 * DAY));
    let (_, body) = answer(sim.access_token_raw("app-1", "secret-1", "rt-1").await).await;
    assert_eq!(
        body["refreshToken"], "",
        "328 days is just under 90% of 365"
    );

    sim.sim.advance_clock(Duration::from_secs(DAY));
    let (_, body) = answer(sim.access_token_raw("app-1", "secret-1", "rt-1").await).await;
    let successor = body["refreshToken"].as_str().unwrap().to_string();
    assert!(!successor.is_empty() && successor != "rt-1", "{body}");
    let (_, again) = answer(sim.access_token_raw("app-1", "secret-1", "rt-1").await).await;
    assert_eq!(
        again["refreshToken"],
        successor.as_str(),
        "the same successor, not a new one each time"
    );

    let (status, body) = answer(sim.access_token_raw("app-1", "secret-1", &successor).await).await;
    assert_eq!(
        (status, &body["refreshToken"]),
        (200, &json!("")),
        "the successor starts a fresh year"
    );

    sim.sim.advance_clock(Duration::from_secs(37 * DAY));
    let (status, body) = answer(sim.access_token_raw("app-1", "secret-1", "rt-1").await).await;
    assert_eq!(status, 401, "the old one expired after 365 days: {body}");
    assert!(body["message"].as_str().unwrap().contains("expired"));
    assert_eq!(
        sim.access_token_raw("app-1", "secret-1", &successor)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_pin_onboards_a_connector_with_a_new_refresh_token() {
    let sim = Sim::start().await;
    let base = sim.sim.base_url().to_string();
    let pin_request = json!({ "mobileNumber": "+15550001", "applicationId": "app-1" });
    let (status, body) = answer(
        sim.http
            .post(format!("{base}/v1/generatePin"))
            .json(&pin_request)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    let pin = sim.sim.state()["connectors"]["app-1"]["pins"]["+15550001"]
        .as_u64()
        .unwrap();

    let login =
        |pin: Value| json!({ "mobileNumber": "+15550001", "applicationId": "app-1", "pin": pin });
    let wrong = if pin == 1000 { 1001 } else { 1000 };
    let (status, body) = answer(
        sim.http
            .post(format!("{base}/v1/loginWithPinAndApplicationId"))
            .json(&login(json!(wrong)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["message"], "pin: wrong PIN for this mobileNumber");

    let (status, body) = answer(
        sim.http
            .post(format!("{base}/v1/loginWithPinAndApplicationId"))
            .json(&login(json!(pin)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refreshToken"].as_str().unwrap();
    assert!(body["grantedScope"]
        .as_str()
        .unwrap()
        .contains("action.write"));
    assert!(
        body["refreshTokenExpiry"].as_i64().unwrap() > sim.sim.state()["now"].as_i64().unwrap()
    );
    assert_eq!(
        sim.access_token_raw("app-1", "secret-1", refresh)
            .await
            .status(),
        200
    );

    let (status, _) = answer(
        sim.http
            .post(format!("{base}/v1/loginWithPinAndApplicationId"))
            .json(&login(json!(pin)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "a PIN works once");
    let old = sim
        .access_token_raw("app-1", "secret-1", "rt-1")
        .await
        .status();
    assert_eq!(old, 401, "a new login invalidates earlier refresh tokens");
}

#[tokio::test]
async fn a_moved_connector_gets_308_to_its_new_endpoint() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    let (status, body) = answer(sim.control("connectors/app-1/move", json!({})).await).await;
    assert_eq!(status, 200);
    let new_endpoint = body["endpointUrl"].as_str().unwrap().to_string();
    assert_ne!(new_endpoint, session.endpoint);

    let response = session
        .request(reqwest::Method::GET, "/groups")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["location"], new_endpoint.as_str());

    let mut moved = session.clone();
    moved.endpoint = new_endpoint.clone();
    assert_eq!(
        moved.get("/groups").await.0,
        200,
        "the same token works at the new endpoint"
    );
    let fresh = sim.session(1).await;
    assert_eq!(
        fresh.endpoint, new_endpoint,
        "new tokens name the new endpoint"
    );
}
