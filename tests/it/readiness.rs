//! Readiness with the Redis queue backend, against a private redis-server.

use crate::support::app::TestApp;
use crate::support::config::{ConfigDir, BASE};
use crate::support::redis::RedisServer;

#[tokio::test]
async fn readyz_follows_redis_going_away() {
    let redis = RedisServer::start();
    let toml = BASE.replace(
        "[queue]",
        &format!(
            "[queue]\nbackend = \"redis\"\nredis_url = \"{}\"",
            redis.url()
        ),
    );
    let dir = ConfigDir::new(&toml);
    let app = TestApp::spawn(&dir.load()).await;

    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["dependencies"][0]["kind"], "redis");
    assert_eq!(body["dependencies"][0]["state"], "up", "{body}");

    drop(redis);
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["dependencies"][0]["state"], "down");
    let error = body["dependencies"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("cannot connect"), "{error}");
}
