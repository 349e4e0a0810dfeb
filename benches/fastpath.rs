//! The fast path, with the release binary (`kaizala-bridge run`) on loopback and the
//! Kaizala emulator in this process, on SQLite and on Redis:
//!
//! - `ingest`: durable ingest of Dataverse webhooks. `wrk -t1` at 1, 16 and 64
//!   connections, 15 s each after a 5 s warm-up, POSTs a 1.5 KB
//!   RemoteExecutionContext of a Create with a new opportunity id per request; each
//!   goes through the rules and its `SendAction` is pushed durably before the 2xx.
//!   Prints requests/s, p50/p99/max, errors (non-2xx or failed), the bridge's RSS and
//!   CPU, and the time from start to the first 2xx.
//! - `latency`: 60 webhooks, one a second, each timed from sending it to the emulator
//!   receiving the survey's POST (the emulator stamps what it receives), once on an
//!   idle bridge and once while another tenant has 10,000 jobs waiting for its quota.
//!   Prints p50/p90/p99/max.
//!
//! Run with `./scripts/bench.sh ingest|latency` (which builds the release binary and
//! installs wrk when missing); `KB_BENCH_BACKENDS=sqlite|redis` picks one backend.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kaizala_bridge::config::Config;
use kaizala_bridge::jobs::SendAction;
use kaizala_bridge::model::{ActivityKind, CrmRecordRef};
use kaizala_bridge::queue::{now_ms, JobKind, Queue};
use kaizala_bridge::sim::kaizala::{KaizalaSim, Seed, SimOptions};
use serde_json::json;

#[allow(dead_code)]
#[path = "../tests/it/support/redis.rs"]
mod redis;

#[path = "support/replica.rs"]
mod replica;

use redis::{free_port, RedisServer as Redis};
use replica::Replica;

const KEY: &str = "bench-webhook-key";

const SEED: &str = r#"
[[tenants]]
id = "contoso"
[[tenants.connectors]]
application_id = "app-1"
application_secret = "secret-1"
refresh_token = "rt-1"
groups = ["g-1"]
[[tenants]]
id = "fabrikam"
[[tenants.connectors]]
application_id = "app-2"
application_secret = "secret-2"
refresh_token = "rt-2"
groups = ["g-2"]
[[groups]]
id = "g-1"
name = "Contoso sales"
[[groups]]
id = "g-2"
name = "Fabrikam sales"
"#;

const SURVEY: &str = r#"
action_type = "Survey"
title = "Qualify {{ name }}"
due_in_hours = 48
[[questions]]
title = "Budget?"
type = "Text"
"#;

fn config_text(kaizala: &str, queue: &str, port: u16) -> String {
    let connector = |tenant: &str, n: u32| {
        format!(
            "[[tenants]]\nid = \"{tenant}\"\nresponses = \"poll\"\n[[tenants.connectors]]\n\
             id = \"app-{n}\"\napplication_id = \"app-{n}\"\napplication_secret = \"secret-{n}\"\n\
             refresh_token = \"rt-{n}\"\napi_root = \"{kaizala}\"\ngroups = [\"g-{n}\"]\n"
        )
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[log]
level = "warn"
[queue]
{queue}
[kaizala]
response_sweep_interval = "0s"
{contoso}
{fabrikam}
[[crm]]
id = "d365"
kind = "dataverse"
url = "http://127.0.0.1:1"
tenant_id = "dir"
client_id = "bridge"
client_secret = "bridge-secret"
poll = false
webhook_key = "{KEY}"
[[rules]]
id = "qualify"
action = "survey.toml"
[rules.trigger]
crm = "d365"
entity = "opportunities"
on = "created"
[rules.target]
tenant = "contoso"
connector = "app-1"
group = "g-1"
[rules.write_back]
subject = "s"
description = "d"
"#,
        contoso = connector("contoso", 1),
        fabrikam = connector("fabrikam", 2),
    )
}

/// A Dataverse RemoteExecutionContext of a Create of opportunity `id` (about 1.5 KB,
/// as Dataverse sends it), with `{ID}` where the id goes when `id` is `None`.
fn webhook_body(id: Option<&str>) -> String {
    let id = id.unwrap_or("{ID}");
    let user = "75c2dd85-e89e-e711-8122-000d3aa2331c";
    let body = json!({
        "BusinessUnitId": "e2b9dd85-e89e-e711-8122-000d3aa2331c",
        "CorrelationId": "9e0ab0d4-2b5e-4d1c-9c65-6a3b0f5f4c11",
        "Depth": 1, "InitiatingUserAgent": "",
        "InitiatingUserAzureActiveDirectoryObjectId": "00000000-0000-0000-0000-000000000000",
        "InitiatingUserId": user,
        "InputParameters": [{ "key": "Target", "value": {
            "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
            "Attributes": [
                { "key": "name", "value": format!("Deal {id}") },
                { "key": "estimatedvalue", "value": { "__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 25000.0 } },
                { "key": "statecode", "value": { "__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 0 } },
                { "key": "ownerid", "value": { "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts", "Id": user, "LogicalName": "systemuser", "Name": null } },
                { "key": "opportunityid", "value": id }
            ],
            "EntityState": null, "FormattedValues": [], "Id": id, "KeyAttributes": [],
            "LogicalName": "opportunity", "RelatedEntities": [], "RowVersion": null } }],
        "IsExecutingOffline": false, "IsInTransaction": false, "IsOfflinePlayback": false, "IsolationMode": 1,
        "MessageName": "Create", "Mode": 1, "OperationCreatedOn": "/Date(1700000000000)/",
        "OperationId": "5b1d3f4e-7a9c-4f0e-8d2b-3c4a5b6c7d8e",
        "OrganizationId": "b2c9dd85-e89e-e711-8122-000d3aa2331c", "OrganizationName": "contoso",
        "OutputParameters": [{ "key": "id", "value": id }],
        "OwningExtension": { "Id": "c3d4e5f6-0000-4000-8000-000000000001", "KeyAttributes": [],
                             "LogicalName": "sdkmessageprocessingstep", "Name": "kaizala-bridge: Create of opportunity", "RowVersion": null },
        "ParentContext": null, "PostEntityImages": [], "PreEntityImages": [],
        "PrimaryEntityId": id, "PrimaryEntityName": "opportunity",
        "RequestId": "5b1d3f4e-7a9c-4f0e-8d2b-3c4a5b6c7d8e", "SecondaryEntityName": "none",
        "SharedVariables": [], "Stage": 40, "UserAzureActiveDirectoryObjectId": "00000000-0000-0000-0000-000000000000",
        "UserId": user
    });
    body.to_string()
}

/// A fresh opportunity id (a GUID, as Dataverse makes them).
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A bridge configuration on one backend, with its emulator and files.
struct Bed {
    sim: KaizalaSim,
    dir: tempfile::TempDir,
    port: u16,
    config: Config,
    _redis: Option<Redis>,
}

impl Bed {
    async fn new(redis: bool) -> Self {
        let seed = Seed::parse(SEED).unwrap();
        let sim = KaizalaSim::start(&seed, SimOptions::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let redis = redis.then(Redis::start);
        let queue = match &redis {
            Some(redis) => format!("backend = \"redis\"\nredis_url = \"{}\"", redis.url()),
            None => format!(
                "sqlite_path = \"{}\"",
                dir.path().join("bridge.sqlite").display()
            ),
        };
        let port = free_port();
        std::fs::write(dir.path().join("survey.toml"), SURVEY).unwrap();
        let file = dir.path().join("bridge.toml");
        std::fs::write(&file, config_text(sim.base_url(), &queue, port)).unwrap();
        let config = Config::load(Some(&file), &HashMap::new()).unwrap();
        Self {
            sim,
            dir,
            port,
            config,
            _redis: redis,
        }
    }

    fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/webhooks/dataverse/d365?code={KEY}",
            self.port
        )
    }

    /// Starts the bridge and waits for its first 2xx to a webhook; returns the
    /// process and that time.
    async fn start(&self, http: &reqwest::Client) -> (Replica, Duration) {
        let started = Instant::now();
        let replica = Replica::start(&self.dir.path().join("bridge.toml"));
        let body = webhook_body(Some(&new_id()));
        loop {
            let sent = http
                .post(self.url())
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                return (replica, started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no 2xx in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// When the emulator received each survey, by the record id in its title (ms).
    fn received(&self) -> HashMap<String, i64> {
        let state = self.sim.state();
        let mut at = HashMap::new();
        for group in state["groups"].as_object().unwrap().values() {
            for action in group["actions"].as_array().unwrap() {
                let title = action["title"].as_str().unwrap_or_default();
                if let Some(id) = title.strip_prefix("Qualify Deal ") {
                    at.insert(id.to_string(), action["sentAt"].as_i64().unwrap_or(0));
                }
            }
        }
        at
    }
}

fn backends() -> Vec<bool> {
    let chosen = std::env::var("KB_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,redis".into());
    [false, true]
        .into_iter()
        .filter(|&redis| chosen.contains(if redis { "redis" } else { "sqlite" }))
        .collect()
}

fn name(redis: bool) -> &'static str {
    if redis {
        "redis"
    } else {
        "sqlite"
    }
}

/// wrk's script: a new GUID per request (a per-run tag, then a counter), and a line
/// of figures at the end for this program to read.
const WRK_SCRIPT: &str = r#"
local template, tag, counter = nil, "00000000", 0
function init(args)
  tag = args[1]
  local file = io.open(args[2], "r")
  template = file:read("*a")
  file:close()
end
function request()
  counter = counter + 1
  local id = string.format("%s-0000-4000-8000-%012x", tag, counter)
  local body = template:gsub("{ID}", id)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FIGURES %d %d %d %.3f %.3f %.3f\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"#;

/// What one wrk run measured.
struct Figures {
    requests: u64,
    errors: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn wrk(dir: &Path, url: &str, connections: u32, seconds: u32, tag: u32) -> Figures {
    let script = dir.join("ingest.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();
    let body = dir.join("body.json");
    std::fs::write(&body, webhook_body(None)).unwrap();
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .arg("-s")
        .arg(&script)
        .arg(url)
        .arg("--")
        .arg(format!("{tag:08x}"))
        .arg(&body)
        .output()
        .expect("wrk runs (./scripts/bench.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("FIGURES "))
        .unwrap_or_else(|| panic!("wrk printed no figures:\n{text}"));
    let v: Vec<f64> = line.split(' ').map(|f| f.parse().unwrap()).collect();
    Figures {
        requests: v[0] as u64,
        errors: v[1] as u64,
        seconds: v[2] / 1e6,
        p50_ms: v[3],
        p99_ms: v[4],
        max_ms: v[5],
    }
}

async fn ingest() {
    let http = reqwest::Client::new();
    println!("ingest: wrk -t1, 15 s per concurrency after a 5 s warm-up, a 1.5 KB Dataverse Create per request, each a durable SendAction");
    println!("| backend | connections | requests/s | p50 ms | p99 ms | max ms | errors | RSS MiB | CPU % | start → first 2xx ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for redis in backends() {
        let bed = Bed::new(redis).await;
        let (replica, first) = bed.start(&http).await;
        let mut tag = rand::random::<u32>() & 0x0fff_ffff;
        wrk(bed.dir.path(), &bed.url(), 16, 5, tag);
        for connections in [1, 16, 64] {
            tag += 1;
            let cpu = replica.cpu_seconds();
            let figures = wrk(bed.dir.path(), &bed.url(), connections, 15, tag);
            let cpu = (replica.cpu_seconds() - cpu) / figures.seconds * 100.0;
            println!(
                "| {} | {connections} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {cpu:.0} | {} |",
                name(redis),
                figures.requests as f64 / figures.seconds,
                figures.p50_ms,
                figures.p99_ms,
                figures.max_ms,
                figures.errors,
                replica.rss_kib() as f64 / 1024.0,
                first.as_millis()
            );
        }
    }
}

/// `jobs` surveys for fabrikam, whose connector allows 100 a minute: a backlog that
/// waits for its quota for the whole run.
async fn backlog(config: &Config, jobs: usize) -> Queue {
    let backend = kaizala_bridge::backend::Backend::open(&config.queue)
        .await
        .unwrap();
    let store = kaizala_bridge::store::open(&backend).await.unwrap();
    let queue = Queue::open(&backend, &config.queue, store).await.unwrap();
    for n in 0..jobs {
        let id = format!("backlog-{n}");
        let job = SendAction {
            rule: "qualify".into(),
            tenant: "fabrikam".into(),
            connector: "app-2".into(),
            group: "g-2".into(),
            action: serde_json::from_value(json!({ "actionType": "Survey", "actionBody": {
                "title": format!("Backlog {n}"), "dueDate": 48, "isAnonymous": false, "isSenderOnly": false,
                "acceptMultipleResponses": false, "questions": [{ "title": "Budget?", "type": "Text" }] } }))
            .expect("a valid action"),
            idempotency_key: format!("backlog/{n}").into(),
            record: CrmRecordRef {
                crm: "d365".into(),
                entity_set: "opportunities".into(),
                id,
            },
            activity: ActivityKind::Task,
        };
        queue.push(job).await.unwrap();
    }
    queue
}

/// Waits until no more than a few jobs are due at once: the backlog, taken once each
/// and put off to its turns, now waits for its quota; returns how long that took.
async fn spread(queue: &Queue) -> Duration {
    let started = Instant::now();
    loop {
        let depth = queue.depth(JobKind::SendAction).await.unwrap();
        if depth.ready <= 5 || started.elapsed() > Duration::from_secs(600) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn latency() {
    let http = reqwest::Client::new();
    let events = 60;
    println!(
        "latency: {events} webhooks, one a second, from sent to the emulator receiving the survey"
    );
    println!("| backend | another tenant's backlog | put off to its turns in | events | p50 ms | p90 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for redis in backends() {
        for jobs in [0, 10_000] {
            let bed = Bed::new(redis).await;
            let queue = backlog(&bed.config, jobs).await;
            let (_replica, _) = bed.start(&http).await;
            // The backlog arrived all at once: each job is taken once and put off to
            // its turn; measured is the bridge with a backlog waiting for its quota.
            let spreading = spread(&queue).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut sent = HashMap::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            for _ in 0..events {
                tick.tick().await;
                let id = new_id();
                let at = now_ms();
                let answer = http
                    .post(bed.url())
                    .header("content-type", "application/json")
                    .body(webhook_body(Some(&id)))
                    .send()
                    .await
                    .expect("the bridge answers");
                let status = answer.status();
                assert!(
                    status.is_success(),
                    "the webhook was answered {status}: {}",
                    answer.text().await.unwrap_or_default()
                );
                sent.insert(id, at);
            }
            let waited = Instant::now();
            let received = loop {
                let received = bed.received();
                if sent.keys().all(|id| received.contains_key(id))
                    || waited.elapsed() > Duration::from_secs(120)
                {
                    break received;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            let mut times: Vec<i64> = sent
                .iter()
                .map(|(id, at)| received.get(id).map_or(i64::MAX, |got| got - at))
                .collect();
            times.sort_unstable();
            let at = |q: f64| {
                let t = times[((times.len() - 1) as f64 * q).round() as usize];
                if t == i64::MAX {
                    "never".to_string()
                } else {
                    t.to_string()
                }
            };
            println!(
                "| {} | {jobs} | {:.1} s | {events} | {} | {} | {} | {} |",
                name(redis),
                spreading.as_secs_f64(),
                at(0.5),
                at(0.9),
                at(0.99),
                at(1.0)
            );
        }
    }
}

#[tokio::main]
async fn main() {
    let mode = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "latency".into());
    match mode.as_str() {
        "ingest" => ingest().await,
        "latency" => latency().await,
        other => {
            eprintln!("unknown benchmark {other:?}: ingest or latency");
            std::process::exit(2);
        }
    }
}
