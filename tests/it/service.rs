//! The HTTP surface of `run`: health, readiness, metrics, and what every request gets.

use crate::support::app::TestApp;
use crate::support::config::{ConfigDir, BASE};

#[tokio::test]
async fn healthz_says_alive() {
    let dir = ConfigDir::new(BASE);
    let app = TestApp::spawn(&dir.load()).await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok\n");
}

#[tokio::test]
async fn readyz_lists_the_sqlite_queue_and_answers_200_when_it_is_up() {
    let dir = ConfigDir::new(BASE);
    let app = TestApp::spawn(&dir.load()).await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let queue = &body["dependencies"][0];
    assert_eq!(queue["name"], "queue");
    assert_eq!(queue["kind"], "sqlite");
    assert_eq!(queue["state"], "up");
    assert!(queue.get("error").is_none(), "{body}");
}

#[tokio::test]
async fn readyz_answers_503_naming_the_queue_when_its_directory_is_gone() {
    let dir = ConfigDir::new(BASE);
    let app = TestApp::spawn(&dir.load()).await;
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["dependencies"][0]["state"], "down");
    let error = body["dependencies"][0]["error"].as_str().unwrap();
    assert!(error.contains("is not writable"), "{error}");
}

#[tokio::test]
async fn metrics_show_build_info_uptime_and_requests_per_route() {
    let dir = ConfigDir::new(BASE);
    let app = TestApp::spawn(&dir.load()).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/no-such-page").await.status(), 404);
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!(
            "kaizala_bridge_build_info{{version=\"{version}\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains("# TYPE kaizala_bridge_uptime_seconds gauge"),
        "{text}"
    );
    assert!(
        text.contains(
            "kaizala_bridge_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "kaizala_bridge_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("# TYPE kaizala_bridge_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("kaizala_bridge_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",status=\"200\",le=\"0.005\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn a_body_over_the_configured_limit_is_refused_with_413() {
    let dir = ConfigDir::new(&BASE.replace("[server]", "[server]\nbody_limit_bytes = 1024"));
    let app = TestApp::spawn(&dir.load()).await;
    let response = app
        .client
        .post(app.url("/healthz"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let dir = ConfigDir::new(BASE);
    let app = TestApp::spawn(&dir.load()).await;
    let response = app.get("/healthz").await;
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a fresh UUID: {id}");
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "from-the-caller")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "from-the-caller");
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let dir = ConfigDir::new(BASE);
    let first = TestApp::spawn(&dir.load()).await;
    let mut config = dir.load();
    config.server.listen = first.address;
    let error = kaizala_bridge::app::Application::build(&config)
        .await
        .err()
        .expect("the bind fails");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "server.listen: cannot listen on {}",
            first.address
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readiness_probes_do_not_disturb_each_other() {
    let dir = ConfigDir::new(BASE);
    let app = TestApp::spawn(&dir.load()).await;
    let probes: Vec<_> = (0..64)
        .map(|_| tokio::spawn(app.client.get(app.url("/readyz")).send()))
        .collect();
    for probe in probes {
        let response = probe.await.unwrap().unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    // The queue's own database lives there too; only probe files must be gone.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with(".kaizala-bridge-ready"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "probe files are removed: {leftovers:?}"
    );
}

#[tokio::test]
async fn every_metric_served_has_help_and_a_wait_is_a_histogram() {
    use kaizala_bridge::ratelimit::{LocalGate, Quota, RateGate};
    let dir = ConfigDir::new(BASE);
    let app = TestApp::spawn(&dir.load()).await;
    let gate = LocalGate::new();
    let quota = Quota::tenant("help-test", 100, std::time::Duration::from_secs(60));
    gate.acquire(std::slice::from_ref(&quota)).await.unwrap();
    assert_eq!(app.get("/healthz").await.status(), 200);
    let text = app.get("/metrics").await.text().await.unwrap();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    assert!(families.len() >= 4, "{text}");
    for family in &families {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP:\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE kaizala_bridge_rate_gate_wait_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains(
            "kaizala_bridge_rate_gate_wait_seconds_bucket{key=\"tenant:help-test\",le=\"0.0005\"}"
        ),
        "{text}"
    );
}
