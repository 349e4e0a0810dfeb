//! Throughput and latency of the HTTP service on loopback: the bridge in-process on a
//! free port, a fixed number of requests per endpoint at a fixed concurrency.
//!
//! Prints requests/s and p50/p99/max latency for the probe endpoints and for the
//! Kaizala webhook receiver (distinct events with the right token, through the real
//! event-id dedup, into a sink that takes them). Run with `./scripts/bench.sh` (or
//! `cargo bench --bench http_service`); figures go to docs/benchmarks.md with the
//! command and the machine.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaizala_bridge::app::{Application, Components};
use kaizala_bridge::config::Config;
use kaizala_bridge::kaizala::{EventSink, KaizalaEvent, SinkError};
use tokio_util::sync::CancellationToken;

const CONCURRENCY: usize = 32;
const REQUESTS: usize = 20_000;
const WARM_UP: usize = 500;
const TOKEN: &str = "bench-callback-token";

/// Counts the events it takes.
#[derive(Default)]
struct CountingSink(AtomicUsize);

impl EventSink for CountingSink {
    fn accept(
        &self,
        _: &str,
        _: KaizalaEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

/// What one request of a run sends.
#[derive(Clone)]
enum Load {
    Get(Arc<String>),
    /// POSTs a distinct survey-response event each time.
    Event(Arc<String>),
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.toml");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n[queue]\nsqlite_path = \"{}\"\n\
         [[tenants]]\nid = \"contoso\"\ncallback_token = \"{TOKEN}\"\n[[tenants.connectors]]\nid = \"bot\"\n\
         application_id = \"a\"\napplication_secret = \"s\"\nrefresh_token = \"r\"\n",
        dir.path().join("queue.sqlite").display()
    );
    std::fs::write(&file, toml).unwrap();
    let config = Config::load(Some(&file), &HashMap::new()).expect("bench configuration");
    let sink = Arc::new(CountingSink::default());
    let components = Components {
        kaizala_sink: Some(sink.clone()),
        ..Default::default()
    };
    let app = Application::with_receivers(&config, components)
        .await
        .expect("the application builds");
    let base = format!("http://{}", app.address());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    println!("kaizala-bridge HTTP service on loopback: {REQUESTS} requests per endpoint, concurrency {CONCURRENCY}");
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "endpoint", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    let runs = [
        (
            "GET /healthz",
            Load::Get(Arc::new(format!("{base}/healthz"))),
        ),
        ("GET /readyz", Load::Get(Arc::new(format!("{base}/readyz")))),
        (
            "GET /metrics",
            Load::Get(Arc::new(format!("{base}/metrics"))),
        ),
        (
            "POST /webhooks/kaizala/{t}",
            Load::Event(Arc::new(format!("{base}/webhooks/kaizala/contoso"))),
        ),
    ];
    let next_event = Arc::new(AtomicUsize::new(0));
    for (name, load) in runs {
        run(&load, WARM_UP, &next_event).await;
        let started = Instant::now();
        let mut latencies = run(&load, REQUESTS, &next_event).await;
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let at =
            |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        let rate = REQUESTS as f64 / elapsed.as_secs_f64();
        println!(
            "{name:<28} {rate:>10.0} {:>10.3} {:>10.3} {:>10.3}",
            at(0.50),
            at(0.99),
            at(1.0)
        );
    }
    let sent = next_event.load(Ordering::Relaxed);
    assert_eq!(
        sink.0.load(Ordering::Relaxed),
        sent,
        "every distinct event was taken once"
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

/// Sends `total` requests from `CONCURRENCY` clients; returns each latency.
async fn run(load: &Load, total: usize, next_event: &Arc<AtomicUsize>) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let per_client = total / CONCURRENCY;
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, load, next_event) = (client.clone(), load.clone(), next_event.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let request = match &load {
                    Load::Get(url) => client.get(url.as_str()),
                    Load::Event(url) => {
                        let n = next_event.fetch_add(1, Ordering::Relaxed);
                        client
                            .post(url.as_str())
                            .header("kz-callback-token", TOKEN)
                            .body(event(n))
                    }
                };
                let started = Instant::now();
                let response = request.send().await.expect("answered");
                assert!(
                    response.status().is_success(),
                    "answered {}",
                    response.status()
                );
                response.bytes().await.expect("a body");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// A survey-response event in the documented schema, with a distinct event id.
fn event(n: usize) -> String {
    serde_json::json!({
        "objectId": "g-sales", "objectType": "Group", "eventType": "SurveyResponse", "eventId": format!("bench-{n}"),
        "context": "kaizala-bridge:contoso", "fromUser": "+15550001", "fromUserName": "Asha",
        "data": { "actionId": "a-1", "groupId": "g-sales", "responseId": format!("r-{n}"), "isUpdateResponse": false,
                  "responder": "+15550001", "responderName": "Asha", "isAnonymous": false,
                  "responseDetails": { "responseWithQuestions": [
                      { "title": "Budget confirmed?", "type": "SingleOption", "options": [], "answer": "Yes" },
                      { "title": "kb:rule:opp:created", "type": "Text", "options": [], "answer": "", "isInvisible": true } ] } }
    })
    .to_string()
}
