//! Graceful shutdown: stop accepting, report not ready, let in-flight requests finish
//! within the grace period, and no longer.
//!
//! A readiness probe against a Redis that accepts connections but never answers is
//! an in-flight request that lasts the probe timeout (2 s): long enough to stop the
//! app underneath it.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use kaizala_bridge::app::Components;

use crate::support::app::TestApp;
use crate::support::config::{ConfigDir, BASE};

/// A TCP server that accepts connections and never says a word; the receiver hears
/// of each connection, so a test knows when a readiness probe is under way.
async fn silent_server() -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let (accepted, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            let _ = accepted.send(());
        }
    });
    (url, receiver)
}

fn config_with_redis(url: &str, grace: &str) -> ConfigDir {
    let toml = BASE
        .replace(
            "shutdown_grace = \"5s\"",
            &format!("shutdown_grace = \"{grace}\""),
        )
        .replace(
            "[queue]",
            &format!("[queue]\nbackend = \"redis\"\nredis_url = \"{url}\""),
        );
    ConfigDir::new(&toml)
}

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown_starts() {
    let (url, mut accepted) = silent_server().await;
    let dir = config_with_redis(&url, "10s");
    let app = TestApp::spawn_with(&dir.load(), Components::default()).await;
    let in_flight = tokio::spawn(app.client.get(app.url("/readyz")).send());
    accepted.recv().await.expect("the probe connects");
    app.request_stop();

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "draining", "{body}");
    assert_eq!(body["dependencies"][0]["state"], "down", "{body}");

    let refused = reqwest::get(app.url("/healthz")).await;
    assert!(
        refused.is_err(),
        "no new connection is accepted after shutdown"
    );
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn shutdown_does_not_wait_past_the_grace_period() {
    let (url, mut accepted) = silent_server().await;
    let dir = config_with_redis(&url, "100ms");
    let app = TestApp::spawn_with(&dir.load(), Components::default()).await;
    let mut in_flight = tokio::spawn(app.client.get(app.url("/readyz")).send());
    accepted.recv().await.expect("the probe connects");
    app.request_stop();
    // The probe needs ~2 s; the app must be gone well before its answer.
    let stopped = tokio::select! {
        _ = &mut in_flight => app.has_stopped(),
        _ = async { while !app.has_stopped() { tokio::time::sleep(Duration::from_millis(10)).await } } => true,
    };
    assert!(
        stopped,
        "the app stopped before the in-flight request finished"
    );
    app.stop()
        .await
        .expect("stopping after the grace period is still a clean stop");
}

#[tokio::test]
async fn readiness_goes_false_at_once_and_the_listener_stays_open_for_the_drain_delay() {
    let toml = BASE.replace(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\ndrain_delay = \"1500ms\"",
    );
    let dir = ConfigDir::new(&toml);
    let app = TestApp::spawn(&dir.load()).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    let stopped_at = std::time::Instant::now();
    app.request_stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A fresh connection (the probe's client keeps none): still accepted, not ready.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let readyz = fresh.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(body["status"], "draining", "{body}");
    let healthz = fresh.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        healthz.status(),
        200,
        "still serving during the drain delay"
    );
    assert!(stopped_at.elapsed() < Duration::from_millis(1500));
    app.stop().await.expect("a clean stop");
    assert!(
        stopped_at.elapsed() >= Duration::from_millis(1500),
        "the listener closed only after the drain delay"
    );
}
