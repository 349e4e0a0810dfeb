//! Faults around the bridge that are not a dependency going away: a stderr nobody
//! reads, a hostile upstream answer. Each asserts the invariant, not only that
//! something happened: the process keeps serving and stops on SIGTERM within its
//! grace; a hostile value is capped, never a panic.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use kaizala_bridge::config::Secret;
use kaizala_bridge::kaizala::KaizalaClient;
use kaizala_bridge::kaizala::{ClientOptions, ConnectorCredentials, Credentials, KaizalaError};
use kaizala_bridge::ratelimit::{LocalGate, Quota, RateGate};
use serde_json::json;

use crate::support::redis::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_kaizala-bridge");

/// A bridge whose stderr is a pipe closed at once, logging every request at debug:
/// each log line meets EPIPE. It must keep answering, not spin, and stop on SIGTERM.
#[tokio::test]
async fn logs_to_a_closed_stderr_lose_lines_not_the_process() {
    logs_nobody_reads(false).await;
}

/// The same with the pipe held open and never read: after its 64 KiB fill, every
/// write to stderr would block; the daemon must not.
#[tokio::test]
async fn logs_to_a_full_stderr_lose_lines_not_the_process() {
    logs_nobody_reads(true).await;
}

/// Runs a bridge whose stderr nobody reads (`keep_open`: a full pipe; otherwise a
/// closed one) through 300 debug-logged requests, then SIGTERM.
async fn logs_nobody_reads(keep_open: bool) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"2s\"\n[log]\nlevel = \"debug\"\n[queue]\nsqlite_path = \"{}\"\n",
            dir.path().join("q.sqlite").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody will ever read either stream.
    let held = (child.stderr.take(), child.stdout.take());
    let _held = if keep_open {
        Some(held)
    } else {
        drop(held);
        None
    };
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    while client.get(&url).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..300 {
        let answer = client.get(&url).send().await.expect("still serving");
        assert_eq!(answer.status(), 200);
    }
    let cpu_before = cpu_ticks(child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_ticks = cpu_ticks(child.id()) - cpu_before;
    // 100 ticks a second: an idle process uses a few in two seconds, a spinning one
    // nearly 200.
    assert!(
        idle_ticks < 60,
        "{idle_ticks} ticks of CPU in 2 s while idle"
    );
    let readyz = client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200, "still ready");
    let stopped = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "SIGTERM did not stop it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after ") ".
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A fake Kaizala on loopback: tokens are handed out; every action POST is answered
/// 429 with the `Retry-After` given.
async fn hostile_kaizala(retry_after: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let endpoint = base.clone();
    let app = Router::new()
        .route(
            "/v1/accessToken",
            get(move || {
                let endpoint = endpoint.clone();
                async move {
                    axum::Json(json!({
                        "accessToken": "at-1",
                        "endpointUrl": endpoint,
                        "accessTokenExpiry": 4_102_444_800_000i64,
                    }))
                }
            }),
        )
        .route(
            "/v1/groups/{group}/actions",
            post(move || async move {
                let mut headers = HeaderMap::new();
                headers.insert("Retry-After", retry_after.parse().unwrap());
                (StatusCode::TOO_MANY_REQUESTS, headers, "slow down")
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// `Retry-After: 18446744073709551615` (and an HTTP-date far away) on a 429: the
/// client reports it cut to `max_retry_after`, the gate pauses for that long and no
/// longer, and nothing overflows.
#[tokio::test]
async fn a_hostile_retry_after_is_capped_never_an_overflow() {
    for hostile in ["18446744073709551615", "Fri, 31 Dec 9999 23:59:59 GMT"] {
        let base = hostile_kaizala(hostile).await;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(
            kaizala_bridge::store::SqliteStore::open(&dir.path().join("s.sqlite"))
                .await
                .unwrap(),
        );
        let credentials = ConnectorCredentials {
            key: "contoso/bot".into(),
            application_id: "app-1".into(),
            application_secret: Secret::new("s".to_string()),
            refresh_token: Secret::new("rt".to_string()),
            api_root: base.parse().unwrap(),
        };
        let options = ClientOptions {
            timeout: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(1),
            ..ClientOptions::default()
        };
        let gate: std::sync::Arc<dyn RateGate> = std::sync::Arc::new(LocalGate::new());
        let quotas = vec![Quota::connector(
            &kaizala_bridge::model::ConnectorRef::new("contoso", "bot"),
            6000,
            Duration::from_secs(60),
        )];
        let client = KaizalaClient::new(credentials, Credentials::new(store), &options)
            .unwrap()
            .with_gate(gate.clone(), quotas.clone());
        let body = json!({ "actionType": "Survey", "actionBody": { "title": "t" } });
        let error = client.post_action_body("g-1", &body).await.unwrap_err();
        assert!(
            matches!(error, KaizalaError::Throttled { retry_after } if retry_after == Duration::from_secs(1)),
            "{hostile}: {error:?}"
        );
        // The pause the 429 set is the capped one: the next permit comes within it.
        let started = Instant::now();
        gate.acquire(&quotas).await.unwrap();
        assert!(
            started.elapsed() <= Duration::from_millis(1500),
            "{hostile}: paused {:?}",
            started.elapsed()
        );
    }
}
