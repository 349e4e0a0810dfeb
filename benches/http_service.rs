//! Throughput and latency of the HTTP service on loopback: the bridge in-process on a
//! free port, a fixed number of requests per endpoint at a fixed concurrency.
//!
//! Prints requests/s and p50/p99/max latency per endpoint. Run with
//! `./scripts/bench.sh` (or `cargo bench --bench http_service`); figures go to
//! docs/benchmarks.md with the command and the machine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaizala_bridge::app::Application;
use kaizala_bridge::config::Config;
use tokio_util::sync::CancellationToken;

const CONCURRENCY: usize = 32;
const REQUESTS: usize = 20_000;
const WARM_UP: usize = 500;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.toml");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n[queue]\nsqlite_path = \"{}\"\n",
        dir.path().join("queue.sqlite").display()
    );
    std::fs::write(&file, toml).unwrap();
    let config = Config::load(Some(&file), &HashMap::new()).expect("bench configuration");
    let app = Application::build(&config)
        .await
        .expect("the application builds");
    let base = format!("http://{}", app.address());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    println!("kaizala-bridge HTTP service on loopback: {REQUESTS} requests per endpoint, concurrency {CONCURRENCY}");
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10}",
        "endpoint", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    for path in ["/healthz", "/readyz", "/metrics"] {
        let url = Arc::new(format!("{base}{path}"));
        load(&url, WARM_UP).await;
        let started = Instant::now();
        let mut latencies = load(&url, REQUESTS).await;
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let at =
            |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "{:<10} {:>10.0} {:>10.3} {:>10.3} {:>10.3}",
            path,
            REQUESTS as f64 / elapsed.as_secs_f64(),
            at(0.50),
            at(0.99),
            at(1.0)
        );
    }
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

/// Sends `total` GETs to `url` from `CONCURRENCY` clients; returns each latency.
async fn load(url: &Arc<String>, total: usize) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let per_client = total / CONCURRENCY;
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let started = Instant::now();
                let response = client.get(url.as_str()).send().await.expect("answered");
                assert!(
                    response.status().is_success(),
                    "{} answered {}",
                    url,
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
