//! What a client on the public port can do to the process: the connection limits
//! (slow heads, idle keep-alive connections, too many connections, oversized heads),
//! metric labels it cannot grow, the answers' headers, and the admin routes on a
//! listener of their own.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::app::TestApp;
use crate::support::config::{ConfigDir, BASE};

async fn app(server: &str) -> (TestApp, ConfigDir) {
    let dir = ConfigDir::new(&BASE.replace("[server]", &format!("[server]\n{server}")));
    (TestApp::spawn(&dir.load()).await, dir)
}

/// Reads until the server closes the connection or `within` passes; true when it
/// closed (EOF or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed_while_health_keeps_answering() {
    let (app, _dir) = app("header_read_timeout = \"1s\"\nidle_timeout = \"2s\"").await;
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(app.address).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    let mut silent = TcpStream::connect(app.address).await.unwrap();
    let mut idle = TcpStream::connect(app.address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 256];
    let read = idle.read(&mut answer).await.unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));

    // Health answers while the slow heads are held open. Each check on a connection
    // of its own: a pooled one may be closed by the idle timeout under test.
    let health = || async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let response = client.get(app.url("/healthz")).send().await;
        response
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    };
    assert_eq!(health().await, Ok(200));

    // Bounds are generous (a slow machine may be late; it cannot be early).
    for stream in &mut slow {
        assert!(
            closed_within(stream, Duration::from_secs(6)).await,
            "a head unfinished after header_read_timeout is closed"
        );
    }
    assert!(
        closed_within(&mut silent, Duration::from_secs(6)).await,
        "a connection that never sends a head is closed"
    );
    let started = Instant::now();
    assert!(
        closed_within(&mut idle, Duration::from_secs(8)).await,
        "an idle keep-alive connection is closed after idle_timeout"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "kept alive for a while first: {:?}",
        started.elapsed()
    );
    assert_eq!(health().await, Ok(200));
}

#[tokio::test]
async fn connections_beyond_the_maximum_get_503_and_the_slot_comes_back() {
    let (app, _dir) = app("max_connections = 4\nheader_read_timeout = \"30s\"").await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(app.address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(app.address).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match app.client.get(app.url("/healthz")).send().await {
            Ok(response) if response.status() == 200 => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("the freed slots serve again: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_oversized_head_gets_431() {
    let (app, _dir) = app("max_header_bytes = 8192").await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-big", "a".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
}

#[tokio::test]
async fn invented_methods_and_paths_do_not_grow_the_metrics() {
    let (app, _dir) = app("").await;
    let size = || async { app.get("/metrics").await.text().await.unwrap() };
    // Every label value a request can produce, once, before measuring.
    for method in ["GET", "XGET"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let _ = app.client.request(method, app.url("/x")).send().await;
    }
    let before = size().await;
    for n in 0..10_000 {
        let method = reqwest::Method::from_bytes(format!("M{n}").as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url(&format!("/p{n}/{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let after = size().await;
    // Other tests in this process add a few series of their own meanwhile (the
    // recorder is shared); 10,000 new series would add megabytes.
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("kaizala_bridge_http_"))
            .count()
    };
    assert!(
        series(&after) < series(&before) + 200 && after.len() < before.len() + 64 * 1024,
        "/metrics grew from {} to {} bytes ({} to {} request series)",
        before.len(),
        after.len(),
        series(&before),
        series(&after)
    );
    assert!(!after.contains("M9999") && !after.contains("/p9999"));
    assert!(after.contains("method=\"other\",route=\"unmatched\",status=\"404\""));
}

#[tokio::test]
async fn answers_are_never_sniffed_and_admin_answers_never_stored() {
    let (app, _dir) = app("").await;
    let health = app.get("/healthz").await;
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    let jobs = app
        .client
        .get(app.url("/admin/jobs"))
        .bearer_auth("test-admin-token-a1")
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.headers()["cache-control"], "no-store");
    assert_eq!(jobs.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn with_an_admin_listener_the_public_port_serves_only_webhooks_and_health() {
    let dir = ConfigDir::new(&BASE.replace("[server]", "[server]\nadmin_listen = \"127.0.0.1:0\""));
    let app = kaizala_bridge::app::Application::build(&dir.load())
        .await
        .unwrap();
    let (public, admin) = (app.address(), app.admin_address().expect("bound"));
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    let client = reqwest::Client::new();
    let get = |address: std::net::SocketAddr, path: &'static str| {
        let client = client.clone();
        async move {
            let request = client
                .get(format!("http://{address}{path}"))
                .bearer_auth("test-admin-token-a1");
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(get(public, "/healthz").await, 200);
    assert_eq!(get(public, "/metrics").await, 404);
    assert_eq!(get(public, "/admin/jobs").await, 404);
    assert_eq!(get(admin, "/metrics").await, 200);
    assert_eq!(get(admin, "/admin/jobs").await, 200);
    assert_eq!(get(admin, "/webhooks/kaizala/contoso").await, 404);
    stop.cancel();
    running.await.unwrap().unwrap();
}
