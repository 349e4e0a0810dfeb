//! The job queue on both backends, against the Kaizala emulator: exactly-once sends
//! through faults, dead letters and replay, Retry-After, timeouts, vacuum, durability.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaizala_bridge::config::Secret;
use kaizala_bridge::idempotency::key_marker;
use kaizala_bridge::jobs::{Correlations, SendAction, SendActionHandler};
use kaizala_bridge::kaizala::{
    ClientOptions, Clients, ConnectorCredentials, Credentials, KaizalaClient,
};
use kaizala_bridge::model::{ActivityKind, ConnectorRef, CrmRecordRef};
use kaizala_bridge::queue::{
    Backoff, Handler, HandlerFuture, Job, JobError, JobKind, Queue, RedisBackend, Settings,
    SqliteBackend, Storage,
};
use kaizala_bridge::ratelimit::{LocalGate, Quota, RateGate, RedisGate};
use kaizala_bridge::store::{RedisStore, SqliteStore, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::kaizala::{Sim, SEED};
use crate::support::redis::RedisServer;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    Redis,
}

/// A queue with its store, on a fresh backend.
struct Bed {
    queue: Queue,
    store: Arc<dyn Store>,
    gate: Arc<dyn RateGate>,
    _dir: tempfile::TempDir,
    _redis: Option<RedisServer>,
}

fn settings() -> Settings {
    Settings {
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
            max_attempts: 12,
        },
        attempt_timeout: Duration::from_secs(3),
        poll_interval: Duration::from_millis(20),
        heartbeat: Duration::from_secs(1),
        vacuum_interval: Duration::from_secs(3600),
        keep_finished: Duration::ZERO,
        stall_after: Duration::from_secs(60),
        concurrency: HashMap::from([(JobKind::SendAction, 8), (JobKind::RecordResponse, 8)]),
    }
}

async fn bed(kind: Kind, settings: Settings) -> Bed {
    let dir = tempfile::tempdir().unwrap();
    match kind {
        Kind::Sqlite => {
            let path = dir.path().join("bridge.sqlite");
            let backend = SqliteBackend::open(&path).await.unwrap();
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
            Bed {
                queue: Queue::new(Storage::Sqlite(backend), store.clone(), settings),
                store,
                gate: Arc::new(LocalGate::new()),
                _dir: dir,
                _redis: None,
            }
        }
        Kind::Redis => {
            let redis = RedisServer::start();
            let url = redis.url();
            let backend = RedisBackend::connect(&url, "kb").await.unwrap();
            let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&url, "kb").await.unwrap());
            Bed {
                queue: Queue::new(Storage::Redis(backend), store.clone(), settings),
                store,
                gate: Arc::new(RedisGate::connect(&url, "kb").await.unwrap()),
                _dir: dir,
                _redis: Some(redis),
            }
        }
    }
}

/// Starts workers of `J` on `bed`'s queue; cancelled when the token is dropped.
fn work<J: Job>(bed: &Bed, handler: Arc<dyn Handler<J>>) -> tokio_util::sync::DropGuard {
    let token = CancellationToken::new();
    let queue = bed.queue.clone();
    let stop = token.clone();
    tokio::spawn(async move { queue.work(handler, stop, Duration::from_secs(5)).await });
    token.drop_guard()
}

/// A client of seeded connector `app-N` (tenant contoso) on `bed`'s store and gate.
fn client(
    sim: &Sim,
    bed: &Bed,
    n: u32,
    timeout: Duration,
    quotas: Option<(u32, u32, Duration)>,
) -> Arc<KaizalaClient> {
    let credentials = ConnectorCredentials {
        key: format!("contoso/app-{n}"),
        application_id: format!("app-{n}"),
        application_secret: Secret::new(format!("secret-{n}")),
        refresh_token: Secret::new(format!("rt-{n}")),
        api_root: sim.sim.base_url().parse().unwrap(),
    };
    let options = ClientOptions {
        timeout,
        ..ClientOptions::default()
    };
    let client =
        KaizalaClient::new(credentials, Credentials::new(bed.store.clone()), &options).unwrap();
    let client = match quotas {
        Some((connector, tenant, period)) => client.with_gate(
            bed.gate.clone(),
            vec![
                Quota::connector(
                    &ConnectorRef::new("contoso", format!("app-{n}")),
                    connector,
                    period,
                ),
                Quota::tenant("contoso", tenant, period),
            ],
        ),
        None => client,
    };
    Arc::new(client)
}

fn survey_job(n: usize, connector: u32, group: &str) -> SendAction {
    SendAction {
        rule: "qualify".into(),
        tenant: "contoso".into(),
        connector: format!("app-{connector}").into(),
        group: group.into(),
        action: serde_json::from_value(json!({
            "actionType": "Survey",
            "actionBody": {
                "title": format!("Qualify deal {n}"),
                "dueDate": 48,
                "isAnonymous": false,
                "isSenderOnly": false,
                "acceptMultipleResponses": false,
                "questions": [{ "title": "Budget?", "type": "Text" }]
            }
        }))
        .expect("a valid action"),
        idempotency_key: format!("qualify/d365/opportunities/{n}/created").into(),
        record: CrmRecordRef {
            crm: "d365".into(),
            entity_set: "opportunities".into(),
            id: format!("{n}"),
        },
        activity: ActivityKind::Task,
    }
}

/// Idempotency keys of every survey in the emulator, with how often each was posted.
fn posted_keys(sim: &Sim) -> HashMap<String, usize> {
    let state = sim.sim.state();
    let mut keys = HashMap::new();
    for group in state["groups"].as_object().unwrap().values() {
        for action in group["actions"].as_array().unwrap() {
            for question in action["questions"].as_array().into_iter().flatten() {
                if question["isInvisible"] == true {
                    let title = question["title"].as_str().unwrap_or_default().to_string();
                    *keys.entry(title).or_default() += 1;
                }
            }
        }
    }
    keys
}

async fn settled(bed: &Bed, deadline: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    loop {
        let depth = bed.queue.depth(JobKind::SendAction).await.unwrap();
        if done() && depth.ready == 0 && depth.scheduled == 0 {
            return;
        }
        assert!(
            started.elapsed() < deadline,
            "not settled within {deadline:?}: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn backlog_through_faults(kind: Kind) {
    let sim = Sim::start_with(SEED, kaizala_bridge::sim::kaizala::SimOptions::fast()).await;
    let bed = bed(kind, settings()).await;
    let timeout = Duration::from_millis(700);
    let clients: Clients = (1..=3)
        .map(|n| {
            (
                ConnectorRef::new("contoso", format!("app-{n}")),
                client(&sim, &bed, n, timeout, None),
            )
        })
        .collect();
    let handler = Arc::new(SendActionHandler::new(
        clients,
        Correlations::new(bed.store.clone()),
    ));
    sim.control(
        "faults",
        json!({ "error_rate": 0.1, "lost_rate": 0.07, "hang_rate": 0.03, "seed": 7 }),
    )
    .await;
    let jobs = 150;
    for n in 0..jobs {
        let (connector, group) = [(1, "g-sales"), (2, "g-ops"), (3, "g-ops")][n % 3];
        bed.queue
            .push(survey_job(n, connector, group))
            .await
            .unwrap();
    }
    // app-1 is not granted g-ops: a permanent 403.
    let forbidden = bed.queue.push(survey_job(999, 1, "g-ops")).await.unwrap();
    let _workers = work::<SendAction>(&bed, handler);

    settled(&bed, Duration::from_secs(120), || {
        posted_keys(&sim).len() >= jobs
    })
    .await;
    let posted = posted_keys(&sim);
    for n in 0..jobs {
        let marker = key_marker(&format!("qualify/d365/opportunities/{n}/created"));
        assert_eq!(
            posted.get(&marker),
            Some(&1),
            "survey {n} posted exactly once"
        );
    }
    assert_eq!(posted.len(), jobs, "nothing else was posted");
    let letters = bed.queue.dead_letters().list().await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].id, forbidden);
    assert!(
        letters[0].last_error.contains("not granted"),
        "dead-lettered at the permanent error: {}",
        letters[0].last_error
    );

    sim.control("faults", json!({})).await;
    sim.control("connectors/app-1/groups/g-ops", json!({}))
        .await;
    assert!(bed.queue.replay(&forbidden).await.unwrap());
    let marker = key_marker("qualify/d365/opportunities/999/created");
    settled(&bed, Duration::from_secs(30), || {
        posted_keys(&sim).contains_key(&marker)
    })
    .await;
    assert_eq!(posted_keys(&sim)[&marker], 1, "sent after the replay");
    assert!(bed.queue.dead_letters().list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sends_a_backlog_exactly_once_through_faults_and_replays_a_dead_letter() {
    backlog_through_faults(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sends_a_backlog_exactly_once_through_faults_and_replays_a_dead_letter() {
    backlog_through_faults(Kind::Redis).await;
}

/// A test job whose handler does what the test says per attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Probe {
    n: u32,
}

impl Job for Probe {
    const KIND: JobKind = JobKind::RecordResponse;
}

type Script = dyn Fn(u32, u32) -> Result<Duration, JobError> + Send + Sync;

/// Runs `script(job, attempt)`: sleeps the duration it returns, or fails.
struct Scripted {
    script: Box<Script>,
    calls: AtomicU32,
    times: std::sync::Mutex<Vec<(u32, u32, Instant)>>,
}

impl Scripted {
    fn new(
        script: impl Fn(u32, u32) -> Result<Duration, JobError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            script: Box::new(script),
            calls: AtomicU32::new(0),
            times: Default::default(),
        })
    }
}

impl Handler<Probe> for Scripted {
    fn handle<'a>(&'a self, job: &'a Probe, attempt: u32) -> HandlerFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.times
                .lock()
                .unwrap()
                .push((job.n, attempt, Instant::now()));
            let sleep = (self.script)(job.n, attempt)?;
            tokio::time::sleep(sleep).await;
            Ok(())
        })
    }
}

async fn until(deadline: Duration, what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn retry_after_timeout_and_permanent(kind: Kind) {
    let mut settings = settings();
    settings.attempt_timeout = Duration::from_millis(300);
    let bed = bed(kind, settings).await;
    let handler = Scripted::new(|n, attempt| match (n, attempt) {
        // Throttled: the server says 1.5 s.
        (1, 1) => Err(JobError::Retry {
            reason: "429".into(),
            after: Some(Duration::from_millis(1500)),
        }),
        // The first attempt hangs past the attempt timeout.
        (2, 1) => Ok(Duration::from_secs(10)),
        (3, _) => Err(JobError::Permanent("400 bad request".into())),
        _ => Ok(Duration::ZERO),
    });
    let _workers = work::<Probe>(&bed, handler.clone());
    for n in 1..=3 {
        bed.queue.push(Probe { n }).await.unwrap();
    }
    until(Duration::from_secs(20), "all settled", || {
        let times = handler.times.lock().unwrap();
        times.iter().any(|t| t.0 == 1 && t.1 == 2) && times.iter().any(|t| t.0 == 2 && t.1 == 2)
    })
    .await;
    let times = handler.times.lock().unwrap().clone();
    let at = |n, a| times.iter().find(|t| t.0 == n && t.1 == a).unwrap().2;
    assert!(
        at(1, 2) - at(1, 1) >= Duration::from_millis(1500),
        "the retry waited for Retry-After: {:?}",
        at(1, 2) - at(1, 1)
    );
    assert!(at(2, 2) > at(2, 1), "the timed-out attempt ran again");
    let letters = bed.queue.dead_letters().list().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 1);
    assert_eq!(letters[0].last_error, "400 bad request");
    assert_eq!(
        times.iter().filter(|t| t.0 == 3).count(),
        1,
        "a permanent error is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_honours_retry_after_reruns_timeouts_and_dead_letters_permanent_errors() {
    retry_after_timeout_and_permanent(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_honours_retry_after_reruns_timeouts_and_dead_letters_permanent_errors() {
    retry_after_timeout_and_permanent(Kind::Redis).await;
}

#[tokio::test]
async fn every_sqlite_connection_that_writes_jobs_is_synchronous_full() {
    let bed = bed(Kind::Sqlite, settings()).await;
    let Storage::Sqlite(sqlite) = bed.queue.storage() else {
        unreachable!()
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut connection = sqlite.pool().acquire().await.unwrap();
        let (mode,): (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        assert_eq!(mode, 2, "FULL");
        let (journal,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        held.push(connection);
    }
}

async fn vacuum(kind: Kind, jobs: u32) {
    let bed = bed(kind, settings()).await;
    let handler = Scripted::new(|_, _| Ok(Duration::ZERO));
    let _workers = work::<Probe>(&bed, handler.clone());
    for n in 0..jobs {
        bed.queue.push(Probe { n }).await.unwrap();
    }
    // No speed is asserted here (benchmarks measure it): on two shared cores, beside
    // the other tests, 10,000 jobs can take minutes.
    until(Duration::from_secs(600), "all done", || {
        handler.calls.load(Ordering::SeqCst) >= jobs
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let removed = bed.queue.vacuum(Duration::ZERO).await.unwrap();
    assert_eq!(removed, u64::from(jobs), "every finished job was removed");
    assert_eq!(bed.queue.vacuum(Duration::ZERO).await.unwrap(), 0);
    match bed.queue.storage() {
        Storage::Sqlite(sqlite) => {
            let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM Jobs")
                .fetch_one(sqlite.pool())
                .await
                .unwrap();
            assert_eq!(left, 0);
        }
        Storage::Redis(redis) => {
            let mut connection = redis.connection();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("kb:record-response:*")
                .query_async(&mut connection)
                .await
                .unwrap();
            let leftover: Vec<&String> = keys
                .iter()
                .filter(|key| {
                    key.contains(":meta:") || key.ends_with(":done") || key.ends_with(":data")
                })
                .collect();
            assert!(leftover.is_empty(), "{leftover:?}");
        }
    }
}

/// Two thousand on SQLite: its `DELETE` has no batch limit to cross (Redis's script
/// takes 500 at a time, hence ten thousand there), and every job costs a few fsyncs,
/// which on a loaded CI disk made ten thousand take over ten minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_vacuums_every_finished_job() {
    vacuum(Kind::Sqlite, 2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_vacuums_ten_thousand_finished_jobs() {
    vacuum(Kind::Redis, 10_000).await;
}

/// With the safety-net poll a minute away (and the heartbeat, which also makes the
/// worker look, half a minute), a push wakes an idle worker of its own
/// process, and on Redis one of another replica (a second queue on the same server);
/// a job retried one second later runs after that second, not at the next poll.
async fn pushes_wake_idle_workers(kind: Kind) {
    let mut settings = settings();
    settings.poll_interval = Duration::from_secs(60);
    settings.heartbeat = Duration::from_secs(30);
    settings.backoff.initial = Duration::from_secs(1);
    let bed = bed(kind, settings.clone()).await;
    let handler = Scripted::new(|n, attempt| match (n, attempt) {
        (2, 1) => Err(JobError::Retry {
            reason: "once more".into(),
            after: Some(Duration::from_secs(1)),
        }),
        _ => Ok(Duration::ZERO),
    });
    let _workers = work::<Probe>(&bed, handler.clone());
    // Let the worker start, fetch nothing, and settle into waiting for its poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pushed = Instant::now();
    bed.queue.push(Probe { n: 1 }).await.unwrap();
    until(Duration::from_secs(5), "the pushed job ran", || {
        handler.calls.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert!(pushed.elapsed() < Duration::from_secs(5));
    bed.queue.push(Probe { n: 2 }).await.unwrap();
    until(Duration::from_secs(10), "the retry ran", || {
        let times = handler.times.lock().unwrap();
        times.iter().any(|t| t.0 == 2 && t.1 == 2)
    })
    .await;
    let times = handler.times.lock().unwrap().clone();
    let at = |n, a| times.iter().find(|t| t.0 == n && t.1 == a).unwrap().2;
    assert!(
        at(2, 2) - at(2, 1) >= Duration::from_secs(1),
        "not before its time"
    );
    if let Kind::Redis = kind {
        // A second process on the same Redis pushes; our worker hears it.
        let Storage::Redis(redis) = bed.queue.storage() else {
            unreachable!()
        };
        let replica = Queue::new(Storage::Redis(redis.clone()), bed.store.clone(), settings);
        let before = handler.calls.load(Ordering::SeqCst);
        replica.push(Probe { n: 3 }).await.unwrap();
        until(Duration::from_secs(5), "the replica's job ran", || {
            handler.calls.load(Ordering::SeqCst) > before
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pushes_wake_idle_workers_long_before_their_poll() {
    pushes_wake_idle_workers(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pushes_wake_idle_workers_of_every_replica_long_before_their_poll() {
    pushes_wake_idle_workers(Kind::Redis).await;
}

/// A connector's backlog waiting for its quota gives the workers back: another
/// connector's survey, queued behind twenty that can go out only one a second, goes
/// out while most of the backlog still waits, and every survey goes out once.
async fn backlog_leaves_the_workers_free(kind: Kind) {
    let sim = Sim::start_with(SEED, kaizala_bridge::sim::kaizala::SimOptions::fast()).await;
    // Attempts long enough to wait out the whole backlog: a timeout must not be what
    // frees a worker.
    let mut settings = settings();
    settings.attempt_timeout = Duration::from_secs(60);
    let bed = bed(kind, settings).await;
    let period = Duration::from_secs(2);
    let timeout = Duration::from_secs(3);
    let clients: Clients = HashMap::from([
        (
            ConnectorRef::new("contoso", "app-1"),
            client(&sim, &bed, 1, timeout, Some((2, 1000, period))),
        ),
        (
            ConnectorRef::new("contoso", "app-2"),
            client(&sim, &bed, 2, timeout, Some((1000, 1000, period))),
        ),
    ]);
    let handler = Arc::new(SendActionHandler::new(
        clients,
        Correlations::new(bed.store.clone()),
    ));
    for n in 0..20 {
        bed.queue.push(survey_job(n, 1, "g-sales")).await.unwrap();
    }
    let _workers = work(&bed, handler);
    // Eight workers, twenty jobs: without deferral the backlog holds every worker.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bed.queue.push(survey_job(100, 2, "g-ops")).await.unwrap();
    let other = key_marker("qualify/d365/opportunities/100/created");
    until(
        Duration::from_secs(15),
        "the other connector's survey",
        || posted_keys(&sim).contains_key(&other),
    )
    .await;
    let ahead = posted_keys(&sim).len() - 1;
    assert!(
        ahead <= 8,
        "the other connector's survey waited for {ahead} of the backlog's 20"
    );
    settled(&bed, Duration::from_secs(90), || {
        posted_keys(&sim).len() == 21
    })
    .await;
    let keys = posted_keys(&sim);
    assert!(
        keys.values().all(|n| *n == 1),
        "every survey exactly once: {keys:?}"
    );
    assert!(
        bed.queue.dead_letters().list().await.unwrap().is_empty(),
        "a survey put off to its turn is not a failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backlog_waiting_for_its_quota_leaves_the_workers_free() {
    backlog_leaves_the_workers_free(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backlog_waiting_for_its_quota_leaves_the_workers_free() {
    backlog_leaves_the_workers_free(Kind::Redis).await;
}

/// Eight jobs asking at once for a connector's permit, one a second, each willing to
/// wait 1.5 s: they do not all wait out their patience for the one permit; those that
/// would queue behind it are told at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_queued_behind_a_connector_s_next_permits_are_told_at_once() {
    let sim = Sim::start_with(SEED, kaizala_bridge::sim::kaizala::SimOptions::fast()).await;
    let bed = bed(Kind::Sqlite, settings()).await;
    let period = Duration::from_secs(1);
    let client = client(
        &sim,
        &bed,
        1,
        Duration::from_secs(3),
        Some((1, 1000, period)),
    );
    let started = Instant::now();
    let asks: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let answer = client.reserve_within(Duration::from_millis(1500)).await;
                (answer.unwrap().is_ok(), started.elapsed())
            })
        })
        .collect();
    let mut refused_at_once = 0;
    let mut granted = 0;
    for ask in asks {
        let (ok, at) = ask.await.unwrap();
        granted += usize::from(ok);
        refused_at_once += usize::from(!ok && at < Duration::from_millis(700));
    }
    assert!(
        (1..=2).contains(&granted),
        "{granted} permits in 1.5 s at one a second"
    );
    assert!(
        refused_at_once >= 5,
        "only {refused_at_once} of 8 were told at once"
    );
}

/// A new survey whose connector's line of turns already reaches past what a worker
/// waits is queued by the intake straight for its turn (scheduled, not ready), so a
/// burst past the quota is never fetched only to be put off; with a short line it is
/// queued due now and meets the gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_queues_a_survey_behind_its_connector_s_long_line_for_its_turn() {
    use kaizala_bridge::crm::CrmEventSink;
    use kaizala_bridge::jobs::{Intake, Turns};
    use kaizala_bridge::model::{ChangeKind, CrmEvent};

    let sim = Sim::start_with(SEED, kaizala_bridge::sim::kaizala::SimOptions::fast()).await;
    let files = crate::support::config::ConfigDir::new(crate::support::config::BASE);
    let rules = Arc::new(kaizala_bridge::rules::Rules::compile(&files.load()).unwrap());
    let bed = bed(Kind::Sqlite, settings()).await;
    let connector = ConnectorRef::new("contoso", "bot");
    let client = client(
        &sim,
        &bed,
        1,
        Duration::from_secs(3),
        Some((100, 300, Duration::from_secs(60))),
    );
    let pacing = client.pacing();
    let turns = Arc::new(Turns::default());
    let intake = Intake::new(bed.queue.clone(), rules)
        .with_turns(turns.clone(), HashMap::from([(connector.clone(), client)]));
    let event = |id: &str| CrmEvent {
        record: CrmRecordRef {
            crm: "d365".into(),
            entity_set: "opportunities".into(),
            id: id.into(),
        },
        kind: ChangeKind::Created,
        attributes: serde_json::Map::from_iter([("name".to_string(), json!("Deal"))]),
        partial: false,
    };

    intake.accept(event("o-1")).await.unwrap();
    let depth = bed.queue.depth(JobKind::SendAction).await.unwrap();
    assert_eq!(
        (depth.ready, depth.scheduled),
        (1, 0),
        "an empty line: due now"
    );

    // Surveys already put off reach 30 s ahead: the next one goes behind them.
    let last = turns.next(&connector, Duration::from_secs(30), pacing);
    intake.accept(event("o-2")).await.unwrap();
    let depth = bed.queue.depth(JobKind::SendAction).await.unwrap();
    assert_eq!(
        (depth.ready, depth.scheduled),
        (1, 1),
        "queued for its turn behind the line"
    );
    // The line moved on by one call's spacing.
    let after = turns.next(&connector, Duration::ZERO, pacing);
    assert_eq!(after, last + 2 * pacing.as_millis() as i64);
}

/// More jobs due at once than apalis-redis's fetch can move in one `unpack` (about
/// 8,000: a backlog pushed in a burst, or a replica back after its turns came due):
/// the worker still takes them, instead of failing every fetch until the stall check
/// ends the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_takes_a_burst_of_ten_thousand_due_jobs() {
    let bed = bed(Kind::Redis, settings()).await;
    let pushes: Vec<_> = (0..10)
        .map(|batch| {
            let queue = bed.queue.clone();
            tokio::spawn(async move {
                for n in 0..1000 {
                    queue
                        .push(Probe {
                            n: batch * 1000 + n,
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for push in pushes {
        push.await.unwrap();
    }
    let handler = Scripted::new(|_, _| Ok(Duration::ZERO));
    let _workers = work::<Probe>(&bed, handler.clone());
    let maintenance = CancellationToken::new();
    let _maintained = {
        let (queue, stop) = (bed.queue.clone(), maintenance.clone());
        tokio::spawn(async move { queue.maintain(stop).await });
        maintenance.drop_guard()
    };
    until(
        Duration::from_secs(30),
        "the worker takes jobs of the burst",
        || handler.calls.load(Ordering::SeqCst) >= 200,
    )
    .await;
}
