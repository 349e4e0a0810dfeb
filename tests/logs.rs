//! What the logs say: every line of a request carries its id, and no secret from the
//! configuration ever appears, in logs or in a Debug print of the configuration.
//!
//! A test binary of its own: tracing caches each callsite's interest for the whole
//! process, so capturing subscribers installed per thread are only reliable when no
//! other test creates callsites at the same time. Here the tests also run one at a
//! time.

#[path = "it/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use kaizala_bridge::app::Components;
use kaizala_bridge::config::{LogConfig, LogFormat};
use kaizala_bridge::telemetry;
use tracing_subscriber::fmt::MakeWriter;

use support::app::TestApp;
use support::config::{ConfigDir, BASE, BASE_SECRETS};

/// One capturing subscriber at a time: tracing caches each callsite's interest for
/// the whole process, and thread-scoped subscribers of different levels installed by
/// tests running in parallel can leave a callsite switched off for one of them.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Runs the app from [`BASE`] under a capturing subscriber (this thread only: the
/// runtime of `#[tokio::test]` is single-threaded, so every task logs here), makes a
/// few requests, stops it, and returns what was logged.
async fn logs_of_a_session(format: LogFormat, request_id: &str) -> String {
    let capture = Capture::default();
    let config = LogConfig {
        level: "trace".into(),
        format,
    };
    let subscriber = telemetry::log_subscriber(&config, capture.clone(), false).unwrap();
    let _serial = SERIAL.lock().await;
    let _guard = tracing::subscriber::set_default(subscriber);
    // Callsite interest is cached process-wide; make it count this subscriber.
    tracing::callsite::rebuild_interest_cache();

    let dir = ConfigDir::new(BASE);
    let app = TestApp::spawn(&dir.load()).await;
    let response = app
        .client
        .get(app.url("/no-such-page"))
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.get("/metrics").await.status(), 200);
    app.stop().await.unwrap();
    capture.text()
}

#[tokio::test]
async fn every_json_line_of_a_request_carries_its_id() {
    let logs = logs_of_a_session(LogFormat::Json, "req-7f3a").await;
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of_request: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["path"] == "/no-such-page")
        .collect();
    assert!(!of_request.is_empty(), "the request was logged: {logs}");
    for line in &of_request {
        assert_eq!(line["span"]["request_id"], "req-7f3a", "{line}");
    }
    let answered = of_request
        .iter()
        .find(|l| l["message"] == "request answered")
        .expect("an answer line");
    assert_eq!(answered["status"], 404);
    assert_eq!(answered["level"], "INFO");
}

#[tokio::test]
async fn pretty_lines_of_a_request_carry_its_id() {
    let logs = logs_of_a_session(LogFormat::Pretty, "req-91bc").await;
    let answered = logs
        .lines()
        .find(|l| l.contains("request answered") && l.contains("/no-such-page"))
        .unwrap_or_else(|| panic!("an answer line in {logs}"));
    assert!(answered.contains("request_id=req-91bc"), "{answered}");
    assert!(answered.contains("status=404"), "{answered}");
}

#[tokio::test]
async fn no_secret_reaches_the_logs_in_either_format() {
    for format in [LogFormat::Json, LogFormat::Pretty] {
        let logs = logs_of_a_session(format, "req-secret-check").await;
        assert!(
            logs.contains("configuration loaded"),
            "the configuration itself was logged: {logs}"
        );
        for secret in BASE_SECRETS {
            assert!(
                !logs.contains(secret),
                "{secret} appears in the {format:?} logs"
            );
        }
    }
}

/// Lines that are about the process, not about a request.
const LIFECYCLE: &[&str] = &[
    "configuration loaded",
    "listening on http://",
    "no longer accepting connections; draining in-flight requests",
    "stopped",
];

#[tokio::test]
async fn at_info_level_every_line_is_lifecycle_or_carries_a_request_id() {
    let capture = Capture::default();
    let config = LogConfig {
        level: "info".into(),
        format: LogFormat::Json,
    };
    let subscriber = telemetry::log_subscriber(&config, capture.clone(), false).unwrap();
    let _serial = SERIAL.lock().await;
    let _guard = tracing::subscriber::set_default(subscriber);
    // Callsite interest is cached process-wide; make it count this subscriber.
    tracing::callsite::rebuild_interest_cache();

    let dir = ConfigDir::new(BASE);
    // The HTTP service alone: the bridge's background loops log lines of their own,
    // which carry no request id by nature.
    let components = Components::default();
    let app = TestApp::spawn_with(&dir.load(), components).await;
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    assert_eq!(
        app.get("/readyz").await.status(),
        503,
        "a 5xx on a probe route"
    );
    assert_eq!(app.get("/no-such-page").await.status(), 404);
    app.stop().await.unwrap();

    let logs = capture.text();
    let mut answered = 0;
    for line in logs.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        let message = line["message"].as_str().unwrap_or_default();
        if LIFECYCLE.iter().any(|m| message.starts_with(m)) {
            continue;
        }
        assert!(
            line["span"]["request_id"].is_string(),
            "a request line without its id: {line}"
        );
        answered += 1;
    }
    assert_eq!(
        answered, 1,
        "only the 404 is logged at info; the probe's 503 is debug: {logs}"
    );
}

#[test]
fn no_secret_appears_in_a_debug_print_of_the_configuration() {
    let dir = ConfigDir::new(BASE);
    let config = dir.load();
    for printed in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(
            printed.contains("app-1"),
            "the print shows the configuration"
        );
        for secret in BASE_SECRETS {
            assert!(!printed.contains(secret), "{secret} appears in {printed}");
        }
    }
}
