//! Quotas: 100 calls a minute per connector, 300 per tenant across its connectors.

use std::time::Duration;

use crate::support::kaizala::Sim;

#[tokio::test]
async fn call_101_of_a_minute_gets_429_with_retry_after() {
    let sim = Sim::start().await;
    let session = sim.session(1).await;
    for i in 0..100 {
        assert_eq!(session.get("/groups").await.0, 200, "call {}", i + 1);
    }
    let response = session
        .request(reqwest::Method::GET, "/groups")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("connector quota of 100"),
        "{body}"
    );

    let minutes = &sim.sim.state()["connectors"]["app-1"]["minutes"];
    let (calls, throttled) = minutes
        .as_object()
        .unwrap()
        .values()
        .fold((0, 0), |(c, t), m| {
            (
                c + m["calls"].as_u64().unwrap(),
                t + m["throttled"].as_u64().unwrap(),
            )
        });
    assert_eq!((calls, throttled), (100, 1), "{minutes}");

    sim.sim.advance_clock(Duration::from_secs(60));
    assert_eq!(
        session.get("/groups").await.0,
        200,
        "a minute later there is room again"
    );
}

#[tokio::test]
async fn connectors_of_one_tenant_are_held_by_the_tenant_quota() {
    let sim = Sim::start().await;
    for n in 2..=4 {
        let session = sim.session(n).await;
        for _ in 0..100 {
            assert_eq!(session.get("/groups").await.0, 200);
        }
    }
    let first = sim.session(1).await;
    let response = first
        .request(reqwest::Method::GET, "/groups")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        429,
        "app-1 has made no call, but contoso made 300"
    );
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("tenant quota of 300"),
        "{body}"
    );

    let other_tenant = sim.session(9).await;
    assert_eq!(
        other_tenant.get("/groups").await.0,
        200,
        "another tenant is not held"
    );
}
