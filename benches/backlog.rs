//! Benchmarks of the job queue and the rate gate with real `kaizala-bridge run`
//! processes (the release binary) against the Kaizala emulator in this process.
//!
//! - `ratelimit`: the real per-minute quotas (tenant 300, three connectors of 100) for
//!   a few minutes, with one replica on SQLite and with three on one Redis; prints the
//!   achieved rate against the tenant quota and the 429s Kaizala answered.
//! - `queue`: jobs per second through one replica on each backend, quotas out of the way.
//! - `soak`: a steady trickle for 30 minutes on each backend; prints jobs done, the
//!   oldest ready job's age, the replica's RSS and the SQLite file over time.
//! - `chaos`: three replicas on Redis through Kaizala errors and a replica killed
//!   every 5 s; prints the share of the tenant quota kept busy and keys posted twice.
//!
//! Run with `./scripts/bench.sh ratelimit|queue|soak` (which builds the release binary
//! first); `KB_BENCH_MINUTES` shortens or lengthens ratelimit and soak.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kaizala_bridge::config::Config;
use kaizala_bridge::jobs::SendAction;
use kaizala_bridge::model::{ActivityKind, CrmRecordRef};
use kaizala_bridge::queue::{JobKind, Queue};
use kaizala_bridge::sim::kaizala::{KaizalaSim, Seed, SimOptions};
use serde_json::json;

// The test suite's private redis-server (a free port, a temporary directory).
#[allow(dead_code)]
#[path = "../tests/it/support/redis.rs"]
mod redis;

use redis::RedisServer as Redis;

#[path = "support/replica.rs"]
mod replica;

use replica::Replica;

fn seed(tenant: u32, connector: u32) -> String {
    let mut text = format!("[[tenants]]\nid = \"contoso\"\nrate_limit_per_minute = {tenant}\n");
    for n in 1..=3 {
        text.push_str(&format!(
            "[[tenants.connectors]]\napplication_id = \"app-{n}\"\napplication_secret = \"secret-{n}\"\n\
             refresh_token = \"rt-{n}\"\nrate_limit_per_minute = {connector}\ngroups = [\"g-{n}\"]\n"
        ));
    }
    for n in 1..=3 {
        text.push_str(&format!(
            "[[groups]]\nid = \"g-{n}\"\nname = \"Group {n}\"\n"
        ));
    }
    text
}

fn config(sim: &str, queue: &str, tenant: u32, connector: u32) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n[queue]\n{queue}\n\
         [[tenants]]\nid = \"contoso\"\nrate_limit_per_minute = {tenant}\n"
    );
    for n in 1..=3 {
        text.push_str(&format!(
            "[[tenants.connectors]]\nid = \"app-{n}\"\napplication_id = \"app-{n}\"\n\
             application_secret = \"secret-{n}\"\nrefresh_token = \"rt-{n}\"\napi_root = \"{sim}\"\n\
             rate_limit_per_minute = {connector}\ngroups = [\"g-{n}\"]\n"
        ));
    }
    text
}

fn job(n: usize) -> SendAction {
    let c = n % 3 + 1;
    SendAction {
        rule: "bench".into(),
        tenant: "contoso".into(),
        connector: format!("app-{c}").into(),
        group: format!("g-{c}").into(),
        action: serde_json::from_value(json!({ "actionType": "Survey", "actionBody": {
            "title": format!("Deal {n}"), "dueDate": 48, "isAnonymous": false, "isSenderOnly": false,
            "acceptMultipleResponses": false, "questions": [{ "title": "Budget?", "type": "Text" }] } }))
            .expect("a valid action"),
        idempotency_key: format!("bench/{n}").into(),
        record: CrmRecordRef {
            crm: "d365".into(),
            entity_set: "opportunities".into(),
            id: n.to_string(),
        },
        activity: ActivityKind::Task,
    }
}

struct Bench {
    sim: KaizalaSim,
    dir: tempfile::TempDir,
    queue: Queue,
    _redis: Option<Redis>,
}

/// A bench on SQLite or Redis; `tuning` adds lines to the replica's `[queue]`.
async fn bench(redis: bool, tenant: u32, connector: u32, tuning: &str) -> Bench {
    let seed = Seed::parse(&seed(tenant, connector)).unwrap();
    let sim = KaizalaSim::start(&seed, SimOptions::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redis = redis.then(Redis::start);
    let queue_toml = match &redis {
        Some(redis) => format!("backend = \"redis\"\nredis_url = \"{}\"", redis.url()),
        None => format!(
            "sqlite_path = \"{}\"",
            dir.path().join("bridge.sqlite").display()
        ),
    };
    let queue_toml = format!("{queue_toml}\n{tuning}");
    let file = dir.path().join("bridge.toml");
    std::fs::write(
        &file,
        config(sim.base_url(), &queue_toml, tenant, connector),
    )
    .unwrap();
    let config = Config::load(Some(&file), &HashMap::new()).unwrap();
    let backend = kaizala_bridge::backend::Backend::open(&config.queue)
        .await
        .unwrap();
    let store = kaizala_bridge::store::open(&backend).await.unwrap();
    let queue = Queue::open(&backend, &config.queue, store).await.unwrap();
    Bench {
        sim,
        dir,
        queue,
        _redis: redis,
    }
}

impl Bench {
    fn replica(&self) -> Replica {
        Replica::start(&self.dir.path().join("bridge.toml"))
    }

    /// Post times (emulator ms), and 429s answered.
    fn posts(&self) -> (Vec<i64>, u64) {
        let state = self.sim.state();
        let mut times: Vec<i64> = state["groups"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|g| g["actions"].as_array().unwrap().iter())
            .map(|a| a["sentAt"].as_i64().unwrap())
            .collect();
        times.sort_unstable();
        let throttled = state["connectors"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|c| c["minutes"].as_object().unwrap().values())
            .map(|m| m["throttled"].as_u64().unwrap_or(0))
            .sum();
        (times, throttled)
    }
}

fn minutes(default: u64) -> u64 {
    std::env::var("KB_BENCH_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(default)
}

async fn ratelimit() {
    let run = Duration::from_secs(60 * minutes(3));
    println!("ratelimit: tenant 300/min, three connectors of 100/min, a backlog for {run:?}");
    println!("| replicas | backend | posts | minutes | achieved per minute | of the tenant quota | 429s |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for (replicas, redis) in [(1, false), (3, true)] {
        let bench = bench(redis, 300, 100, "").await;
        // More than the run can post, so the backlog lasts throughout.
        let jobs = (run.as_secs() * 6) as usize + 100;
        for n in 0..jobs {
            bench.queue.push(job(n)).await.unwrap();
        }
        let started = Instant::now();
        let fleet: Vec<Replica> = (0..replicas).map(|_| bench.replica()).collect();
        tokio::time::sleep(run).await;
        let (times, throttled) = bench.posts();
        drop(fleet);
        // The first and last 5% are the replicas starting and the sample's edges.
        let (first, last) = (times.len() / 20, times.len() * 19 / 20);
        let span_min = (times[last] - times[first]) as f64 / 60_000.0;
        let rate = (last - first) as f64 / span_min;
        println!(
            "| {replicas} | {} | {} | {:.1} | {rate:.1} | {:.1}% | {throttled} |",
            if redis { "redis" } else { "sqlite" },
            times.len(),
            started.elapsed().as_secs_f64() / 60.0,
            rate / 300.0 * 100.0
        );
    }
}

async fn queue() {
    let jobs = 3000;
    println!("queue: {jobs} SendAction jobs through one replica, quotas out of the way");
    println!("| backend | jobs | seconds | jobs/s |");
    println!("| --- | ---: | ---: | ---: |");
    for redis in [false, true] {
        let bench = bench(redis, 1_000_000, 1_000_000, "").await;
        for n in 0..jobs {
            bench.queue.push(job(n)).await.unwrap();
        }
        let started = Instant::now();
        let _replica = bench.replica();
        loop {
            // The emulator's state is read only once the queue looks empty: a snapshot
            // of thousands of actions holds it up.
            let depth = bench.queue.depth(JobKind::SendAction).await.unwrap();
            if depth.ready + depth.scheduled == 0 && bench.posts().0.len() >= jobs {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "| {} | {jobs} | {seconds:.1} | {:.0} |",
            if redis { "redis" } else { "sqlite" },
            jobs as f64 / seconds
        );
    }
}

/// The SQLite file and its WAL, in KiB (0 on Redis).
fn sqlite_kib(dir: &Path) -> u64 {
    ["bridge.sqlite", "bridge.sqlite-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len() / 1024)
        .sum()
}

/// A steady trickle per backend (`KB_SOAK_BACKENDS=sqlite|redis`, both by default),
/// with finished jobs kept 5 minutes and vacuumed every minute, so what is left to
/// grow is what the bridge keeps per survey (its correlation) and anything leaking.
async fn soak() {
    let run = Duration::from_secs(60 * minutes(30));
    let per_second = 2;
    let backends = std::env::var("KB_SOAK_BACKENDS").unwrap_or_else(|_| "sqlite,redis".into());
    println!(
        "soak: {per_second} jobs/s for {run:?} per backend ({backends}); RSS and SQLite file each 5 minutes"
    );
    for redis in [false, true] {
        let backend = if redis { "redis" } else { "sqlite" };
        if !backends.contains(backend) {
            continue;
        }
        // Correlations kept 10 minutes (400 days by default), so a run of an hour
        // shows the state levelling off where it would after 400 days.
        let tuning = "keep_finished = \"5m\"\nvacuum_interval = \"1m\"\n\
                      [kaizala]\ncorrelation_retention = \"10m\"\nresponse_poll_grace = \"1m\"";
        let bench = bench(redis, 1_000_000, 1_000_000, tuning).await;
        let replica = bench.replica();
        let started = Instant::now();
        let mut n = 0;
        let mut samples = Vec::new();
        let mut oldest_max = 0.0f64;
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / per_second));
        let sample = |n: usize| {
            (
                started.elapsed().as_secs() / 60,
                n,
                replica.rss_kib(),
                sqlite_kib(bench.dir.path()),
            )
        };
        while started.elapsed() < run {
            tick.tick().await;
            bench.queue.push(job(n)).await.unwrap();
            n += 1;
            if n % (per_second as usize * 10) == 0 {
                let depth = bench.queue.depth(JobKind::SendAction).await.unwrap();
                let age = depth.oldest_ready_age_seconds(kaizala_bridge::queue::now_ms());
                oldest_max = oldest_max.max(age);
            }
            if n % (per_second as usize * 300) == 1 {
                let taken = sample(n);
                // Also as it comes, so a soak cut short still says what it saw.
                eprintln!(
                    "soak {backend}: minute {}, {} pushed, RSS {:.1} MiB, file {:.1} MiB",
                    taken.0,
                    taken.1,
                    taken.2 as f64 / 1024.0,
                    taken.3 as f64 / 1024.0
                );
                samples.push(taken);
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let depth = bench.queue.depth(JobKind::SendAction).await.unwrap();
        let done = bench.posts().0.len();
        samples.push(sample(n));
        println!(
            "{backend}: pushed {n}, done {done}, waiting at the end {} (oldest ready job seen: {oldest_max:.1} s)",
            depth.ready + depth.scheduled
        );
        println!("| minute | jobs pushed | RSS MiB | SQLite file + WAL MiB |");
        println!("| ---: | ---: | ---: | ---: |");
        for (minute, jobs, rss, file) in samples {
            println!(
                "| {minute} | {jobs} | {:.1} | {:.1} |",
                rss as f64 / 1024.0,
                file as f64 / 1024.0
            );
        }
    }
}

/// Three replicas on one Redis work a backlog against real per-minute quotas (tenant
/// 300, three connectors of 100) while Kaizala fails 10% of calls (500/503) and loses
/// the answer of 5% more after carrying them out, and one replica is SIGKILLed and
/// started again every 5 s, in turn. Prints the posts per minute as a share of the
/// tenant quota, 429s, and keys posted more than once (exactly once means 0).
async fn chaos() {
    let run = Duration::from_secs(60 * minutes(3));
    let tuning = "backoff_initial = \"200ms\"\nbackoff_max = \"2s\"\nmax_attempts = 50";
    let bench = bench(true, 300, 100, tuning).await;
    bench
        .sim
        .set_faults(kaizala_bridge::sim::kaizala::Faults {
            error_rate: 0.10,
            lost_rate: 0.05,
            seed: 7,
            ..Default::default()
        })
        .unwrap();
    let jobs = (run.as_secs() * 6) as usize + 100;
    for n in 0..jobs {
        bench.queue.push(job(n)).await.unwrap();
    }
    println!("chaos: {jobs} jobs, 3 replicas on Redis, 15% of calls failing, a replica killed every 5 s, {run:?}");
    let started = Instant::now();
    let mut fleet: Vec<Replica> = (0..3).map(|_| bench.replica()).collect();
    let mut kills = 0;
    while started.elapsed() < run {
        tokio::time::sleep(Duration::from_secs(5)).await;
        // The new replica starts, then the old one is SIGKILLed (dropped).
        fleet[kills % 3] = bench.replica();
        kills += 1;
    }
    let (times, throttled) = bench.posts();
    drop(fleet);
    let (first, last) = (times.len() / 20, times.len() * 19 / 20);
    let span_min = (times[last] - times[first]) as f64 / 60_000.0;
    let rate = (last - first) as f64 / span_min;
    let state = bench.sim.state();
    let mut keys: HashMap<String, usize> = HashMap::new();
    for group in state["groups"].as_object().unwrap().values() {
        for action in group["actions"].as_array().unwrap() {
            for q in action["questions"].as_array().into_iter().flatten() {
                if q["isInvisible"] == true {
                    *keys.entry(q["title"].to_string()).or_default() += 1;
                }
            }
        }
    }
    let twice = keys.values().filter(|&&c| c > 1).count();
    // Every call Kaizala counted against the quota (posts, searches after a lost
    // answer, token fetches), per whole minute of the emulator's clock; the first
    // and last minutes are partial and left out.
    let mut per_minute: std::collections::BTreeMap<i64, u64> = Default::default();
    for connector in state["connectors"].as_object().unwrap().values() {
        for (minute, stats) in connector["minutes"].as_object().unwrap() {
            let minute = minute.parse::<i64>().unwrap_or_default();
            *per_minute.entry(minute).or_default() += stats["calls"].as_u64().unwrap_or(0);
        }
    }
    let whole: Vec<u64> = per_minute.values().copied().collect();
    let inner = if whole.len() > 2 {
        &whole[1..whole.len() - 1]
    } else {
        &whole[..]
    };
    let busy = inner.iter().sum::<u64>() as f64 / inner.len().max(1) as f64;
    println!("| posts | kills | posts per minute | calls per minute | calls of the tenant quota | 429s | keys posted twice |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {kills} | {rate:.1} | {busy:.1} | {:.1}% | {throttled} | {twice} |",
        times.len(),
        busy / 300.0 * 100.0
    );
}

#[tokio::main]
async fn main() {
    let mode = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "queue".into());
    match mode.as_str() {
        "ratelimit" => ratelimit().await,
        "queue" => queue().await,
        "soak" => soak().await,
        "chaos" => chaos().await,
        other => {
            eprintln!("unknown benchmark {other:?}: ratelimit, queue or soak");
            std::process::exit(2);
        }
    }
}
