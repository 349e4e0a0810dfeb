//! Readiness: whether this process can do its work right now.
//!
//! `GET /readyz` answers 200 only when every dependency the configuration needs
//! answers, and 503 (`draining`) from the moment shutdown begins. Each dependency is
//! probed with a short timeout on every request, so the answer is current, not cached.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// `kaizala_bridge_ready`: 1 while every dependency answers (what `/readyz` says),
/// published every 15 s so an alert needs no one probing.
pub const READY: &str = "kaizala_bridge_ready";
/// `kaizala_bridge_dependency_up{name,kind}`: 1 while that dependency answers.
pub const DEPENDENCY_UP: &str = "kaizala_bridge_dependency_up";

/// How long one probe may take before its dependency counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Something the process needs in order to work.
enum Dependency {
    /// The embedded SQLite queue: its directory must be writable.
    SqliteQueue { path: PathBuf },
    /// The Redis queue: the server must answer PING.
    RedisQueue { client: redis::Client },
}

/// The dependencies of this process and whether it is shutting down.
pub struct Readiness {
    dependencies: Vec<Dependency>,
    draining: AtomicBool,
    workers: std::sync::OnceLock<crate::queue::Queue>,
}

/// The answer of `GET /readyz`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `ready`, `not_ready` or `draining`.
    pub status: &'static str,
    /// Each dependency and its state.
    pub dependencies: Vec<DependencyReport>,
}

/// One dependency in a [`Report`].
#[derive(Debug, Serialize)]
pub struct DependencyReport {
    /// What the dependency is for, e.g. `queue`.
    pub name: &'static str,
    /// What it is, e.g. `sqlite` or `redis`.
    pub kind: &'static str,
    /// `up` or `down`.
    pub state: &'static str,
    /// How long the probe took, in milliseconds.
    pub latency_ms: u64,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// True when the process can take work.
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

impl Readiness {
    /// The dependencies of a process on `backend`.
    pub fn for_backend(backend: &crate::backend::Backend) -> Self {
        use crate::backend::Backend;
        let queue = match backend {
            Backend::Sqlite(sqlite) => Dependency::SqliteQueue {
                path: sqlite.path().to_path_buf(),
            },
            Backend::Redis(redis) => Dependency::RedisQueue {
                client: redis.client().clone(),
            },
        };
        Self {
            dependencies: vec![queue],
            draining: AtomicBool::new(false),
            workers: std::sync::OnceLock::new(),
        }
    }

    /// From now on a stalled queue (ready jobs ageing while none finishes) makes the
    /// process not ready, so an orchestrator restarts it.
    pub fn watch_workers(&self, queue: crate::queue::Queue) {
        let _ = self.workers.set(queue);
    }

    /// Why the job queue counts as stalled, if it does (and is watched).
    pub fn stalled(&self) -> Option<String> {
        self.workers.get().and_then(|queue| queue.stalled())
    }

    /// Publishes the readiness report as metrics every `every`, until `shutdown`.
    pub async fn publish(
        self: std::sync::Arc<Self>,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let report = self.report().await;
            metrics::gauge!(READY).set(if report.is_ready() { 1.0 } else { 0.0 });
            for dependency in &report.dependencies {
                let up = if dependency.state == "up" { 1.0 } else { 0.0 };
                metrics::gauge!(DEPENDENCY_UP, "name" => dependency.name, "kind" => dependency.kind)
                    .set(up);
            }
        }
    }

    /// From now on the process reports itself not ready: it is shutting down.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Probes every dependency.
    pub async fn report(&self) -> Report {
        let mut dependencies = Vec::with_capacity(self.dependencies.len());
        for dependency in &self.dependencies {
            dependencies.push(dependency.probe().await);
        }
        if let Some(queue) = self.workers.get() {
            // A push that failed moments ago (disk full) and none that worked since:
            // a probe row may still fit where a job no longer does.
            let failing = queue.push_failing();
            dependencies.push(DependencyReport {
                name: "queue_writes",
                kind: "queue",
                state: if failing.is_none() { "up" } else { "down" },
                latency_ms: 0,
                error: failing,
            });
            let stalled = queue.stalled();
            dependencies.push(DependencyReport {
                name: "workers",
                kind: "queue",
                state: if stalled.is_none() { "up" } else { "down" },
                latency_ms: 0,
                error: stalled,
            });
        }
        let status = if self.draining.load(Ordering::SeqCst) {
            "draining"
        } else if dependencies.iter().all(|d| d.state == "up") {
            "ready"
        } else {
            "not_ready"
        };
        Report {
            status,
            dependencies,
        }
    }
}

impl Dependency {
    async fn probe(&self) -> DependencyReport {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, self.check()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        let (name, kind) = match self {
            Dependency::SqliteQueue { .. } => ("queue", "sqlite"),
            Dependency::RedisQueue { .. } => ("queue", "redis"),
        };
        DependencyReport {
            name,
            kind,
            state: if outcome.is_ok() { "up" } else { "down" },
            latency_ms: started.elapsed().as_millis() as u64,
            error: outcome.err(),
        }
    }

    async fn check(&self) -> Result<(), String> {
        match self {
            Dependency::SqliteQueue { path } => {
                probe_writable_dir(path).await?;
                probe_database_write(path).await
            }
            Dependency::RedisQueue { client } => {
                let mut connection = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("cannot connect: {e}"))?;
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .map(drop)
                    .map_err(|e| format!("PING failed: {e}"))
            }
        }
    }
}

/// The database file's directory must accept a new file: a missing volume or a
/// read-only mount shows up here before the queue fails on it. Creating and removing
/// the file happen in one blocking task, which runs to the end even when the probe's
/// timeout gives up on it, so no probe file is left behind.
async fn probe_writable_dir(database: &std::path::Path) -> Result<(), String> {
    let dir = match database.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // One name per probe: concurrent probes must not remove each other's file.
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let probe = dir.join(format!(".kaizala-bridge-ready-{}-{n}", std::process::id()));
    let outcome = tokio::task::spawn_blocking(move || {
        std::fs::write(&probe, b"")
            .map_err(|e| format!("directory {} is not writable: {e}", dir.display()))?;
        std::fs::remove_file(&probe)
            .map_err(|e| format!("cannot remove probe file {}: {e}", probe.display()))
    })
    .await;
    outcome.unwrap_or_else(|e| Err(format!("the probe task failed: {e}")))
}

/// A real write to the database, undone: take the write lock (`BEGIN IMMEDIATE`, so a
/// lock held for good shows here), write a row the size of a large job (so a database
/// at its `max_page_count` or an unwritable file shows here), roll back. Nothing is
/// committed, so a probe never grows the file or costs an fsync. Its own connection,
/// opened per probe: a probe must not queue behind, or wedge, the pool's.
async fn probe_database_write(database: &std::path::Path) -> Result<(), String> {
    use sqlx::{ConnectOptions, Connection};
    if !database.exists() {
        // Created by the store at start; before then, the directory probe speaks.
        return Ok(());
    }
    // One probe at a time: concurrent probes would only meet each other's write lock.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(database)
        .busy_timeout(Duration::from_millis(1500))
        .connect()
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    let outcome = sqlx::raw_sql(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS bridge_ready_probe (b BLOB);
         INSERT INTO bridge_ready_probe VALUES (randomblob(16384));",
    )
    .execute(&mut connection)
    .await;
    let _ = sqlx::query("ROLLBACK").execute(&mut connection).await;
    let _ = connection.close().await;
    outcome
        .map(drop)
        .map_err(|e| format!("the database cannot take writes: {e}"))
}
