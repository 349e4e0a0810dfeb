//! The job queue: apalis 1.x on SQLite (embedded, the default) or Redis (shared by
//! replicas) behind one face. Receivers push jobs and answer their sender only after
//! the push is durable; workers run them with our own retry budget, backoff and dead
//! letters (see `worker.rs` for why apalis's retries are not used).

mod backoff;
mod dead_letters;
mod group_commit;
mod job;
mod redis;
mod sqlite;
mod wake;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use self::redis::RedisBackend;
pub use backoff::Backoff;
pub use dead_letters::{DeadLetter, DeadLetters};
pub use job::{now_ms, Envelope, Handler, HandlerFuture, Job, JobError, JobKind};
pub use sqlite::SqliteBackend;
pub use worker::process_name;

use crate::config::QueueConfig;
use crate::store::Store;

/// `kaizala_bridge_jobs_total{queue,outcome}`: attempts by how they ended (`done`,
/// `retried`, `dead_lettered`).
pub const JOBS_TOTAL: &str = "kaizala_bridge_jobs_total";
/// `kaizala_bridge_job_duration_seconds{queue}`: time per attempt.
pub const JOB_SECONDS: &str = "kaizala_bridge_job_duration_seconds";
/// `kaizala_bridge_queue_jobs{queue,state}`: jobs waiting, `ready` or `scheduled`.
pub const QUEUE_JOBS: &str = "kaizala_bridge_queue_jobs";
/// `kaizala_bridge_queue_oldest_ready_age_seconds{queue}`: how long the oldest ready
/// job has waited to start.
pub const OLDEST_READY_SECONDS: &str = "kaizala_bridge_queue_oldest_ready_age_seconds";
/// `kaizala_bridge_dead_letters`: jobs in the dead letters.
pub const DEAD_LETTERS: &str = "kaizala_bridge_dead_letters";
/// `kaizala_bridge_queue_worker_restarts_total{queue}`: workers started again after
/// a backend error.
pub const WORKER_RESTARTS: &str = "kaizala_bridge_queue_worker_restarts_total";
/// `kaizala_bridge_queue_vacuumed_total`: finished jobs removed from the backend.
pub const VACUUMED_TOTAL: &str = "kaizala_bridge_queue_vacuumed_total";

/// How long after a failed push readiness stays down unless a push works: long
/// enough for a load balancer to notice, short enough that a quiet queue (nothing
/// pushed while senders are told 503) is tried again soon.
pub const PUSH_FAILING_FOR: Duration = Duration::from_secs(10);

/// The queue failed; what was being pushed was not taken.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The backend could not be reached or refused the write.
    #[error("the job queue failed: {0}")]
    Backend(String),
    /// The state store (dead letters) failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The whole second a job due at `ready_ms` is scheduled for, at `now_ms`: the
/// backends schedule by whole seconds. A job due now (or past due) gets the current
/// second, so it is taken at once; one due later gets its second rounded up, so it
/// is never early (a Retry-After is honoured) and the worker sleeps off the part
/// of a second that remains.
fn run_at_second(ready_ms: i64, now_ms: i64) -> u64 {
    let ready = ready_ms.max(0) as u64;
    if ready_ms <= now_ms {
        ready / 1000
    } else {
        ready.div_ceil(1000)
    }
}

/// When a job waiting for its turn at `turn_ms` is due: the start of that second, not
/// the next one. The backends schedule by whole seconds, and a job that came back
/// after its turn would leave its slot of the quota unused (91.8% of the tenant quota
/// on SQLite); its handler waits out the rest of the second for its permit.
fn turn_start(turn_ms: i64) -> i64 {
    turn_ms - turn_ms.rem_euclid(1000)
}

/// When a fetch first finds a job scheduled for second `run_at`, at `now_ms`: the
/// start of that second, a few milliseconds late so that the clock has surely passed it.
fn due_ms(run_at: u64, now_ms: i64) -> i64 {
    let second = run_at as i64 * 1000;
    if second <= now_ms {
        second
    } else {
        second + 5
    }
}

/// Jobs waiting in one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Due now, not yet started.
    pub ready: u64,
    /// Due later (retries after a backoff).
    pub scheduled: u64,
    /// Since when the oldest ready job has been due (epoch ms).
    pub oldest_ready_ms: Option<i64>,
}

impl Depth {
    /// Seconds the oldest ready job has waited at `now_ms` (0 when none is ready).
    pub fn oldest_ready_age_seconds(&self, now_ms: i64) -> f64 {
        self.oldest_ready_ms
            .map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0)
    }
}

/// How jobs are run, from `[queue]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Retry policy.
    pub backoff: Backoff,
    /// Longest time one attempt may take.
    pub attempt_timeout: Duration,
    /// How often an idle worker looks for work.
    pub poll_interval: Duration,
    /// Worker heartbeat; two missed ones hand a worker's jobs to others.
    pub heartbeat: Duration,
    /// How often finished jobs are removed.
    pub vacuum_interval: Duration,
    /// How long finished jobs stay.
    pub keep_finished: Duration,
    /// How long ready jobs may wait with nothing finishing before the queue counts as
    /// stalled.
    pub stall_after: Duration,
    /// Jobs at once per kind.
    pub concurrency: HashMap<JobKind, u32>,
}

impl Settings {
    /// The settings `[queue]` describes.
    pub fn from_config(queue: &QueueConfig) -> Self {
        Self {
            backoff: Backoff {
                initial: queue.backoff_initial,
                max: queue.backoff_max,
                max_attempts: queue.max_attempts,
            },
            attempt_timeout: queue.attempt_timeout,
            poll_interval: queue.poll_interval,
            heartbeat: queue.heartbeat,
            vacuum_interval: queue.vacuum_interval,
            keep_finished: queue.keep_finished,
            stall_after: queue.stall_after,
            concurrency: HashMap::from([
                (
                    JobKind::SendAction,
                    queue.send_action_concurrency.unwrap_or(queue.concurrency),
                ),
                (
                    JobKind::RecordResponse,
                    queue
                        .record_response_concurrency
                        .unwrap_or(queue.concurrency),
                ),
            ]),
        }
    }

    /// Jobs of `kind` at once.
    pub fn concurrency(&self, kind: JobKind) -> u32 {
        self.concurrency.get(&kind).copied().unwrap_or(1).max(1)
    }
}

/// Which storage holds the jobs: the queue's side of the [`crate::backend::Backend`].
#[derive(Clone)]
pub enum Storage {
    /// The embedded SQLite file.
    Sqlite(SqliteBackend),
    /// A Redis server.
    Redis(RedisBackend),
}

/// When work last finished, and the last depth seen, per kind: what stall detection
/// reads.
struct Progress {
    started_ms: i64,
    /// When a push last failed, and the error; cleared by a push that works.
    push_failed: Mutex<Option<(i64, String)>>,
    finished_ms: [AtomicI64; 2],
    depth: Mutex<HashMap<JobKind, Depth>>,
}

impl Progress {
    fn index(kind: JobKind) -> usize {
        match kind {
            JobKind::SendAction => 0,
            JobKind::RecordResponse => 1,
        }
    }

    fn finished(&self, kind: JobKind) {
        self.finished_ms[Self::index(kind)].store(now_ms(), Ordering::Relaxed);
    }
}

struct Inner {
    storage: Storage,
    wakeups: wake::Wakeups,
    dead: DeadLetters,
    settings: Settings,
    progress: Progress,
}

/// The job queue; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl Queue {
    /// The queue on `backend`, set as `config` says, with its dead letters in `store`.
    pub async fn open(
        backend: &crate::backend::Backend,
        config: &QueueConfig,
        store: Arc<dyn Store>,
    ) -> Result<Self, QueueError> {
        use crate::backend::Backend;
        let storage = match backend {
            Backend::Sqlite(sqlite) => {
                Storage::Sqlite(SqliteBackend::on(sqlite.writes().clone()).await?)
            }
            Backend::Redis(redis) => Storage::Redis(RedisBackend::on(redis)),
        };
        Ok(Self::new(storage, store, Settings::from_config(config)))
    }

    /// A queue on `storage`.
    pub fn new(storage: Storage, store: Arc<dyn Store>, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                storage,
                wakeups: wake::Wakeups::default(),
                dead: DeadLetters::new(store),
                settings,
                progress: Progress {
                    started_ms: now_ms(),
                    push_failed: Mutex::new(None),
                    finished_ms: [AtomicI64::new(0), AtomicI64::new(0)],
                    depth: Mutex::new(HashMap::new()),
                },
            }),
        }
    }

    /// Where the jobs are kept (tests and tools reach the backend's own queries).
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The dead letters.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.inner.dead
    }

    /// Queues `job` to run at once; returns its id. Durable when it returns.
    pub async fn push<J: Job>(&self, job: J) -> Result<String, QueueError> {
        let envelope = Envelope::new(job);
        self.push_envelope(J::KIND, &envelope).await?;
        Ok(envelope.id)
    }

    /// Queues `job` for its turn at `turn_ms` (epoch ms) in its connector's line; see
    /// `turn_start`. Returns its id. Durable when it returns.
    pub async fn push_for_turn<J: Job>(&self, job: J, turn_ms: i64) -> Result<String, QueueError> {
        let mut envelope = Envelope::new(job);
        envelope.ready_ms = turn_start(turn_ms);
        self.push_envelope(J::KIND, &envelope).await?;
        Ok(envelope.id)
    }

    /// Why pushes are failing, when the last one failed within [`PUSH_FAILING_FOR`]
    /// and none worked since (readiness reports it).
    pub fn push_failing(&self) -> Option<String> {
        let failed = self.inner.progress.push_failed.lock().unwrap().clone();
        let (at, error) = failed?;
        (now_ms() - at < PUSH_FAILING_FOR.as_millis() as i64)
            .then(|| format!("the last push failed: {error}"))
    }

    /// Queues `envelope` in `kind`'s queue, to run at its `ready_ms`, and wakes the
    /// worker (this process's at once, replicas' through Redis) once it is durable.
    pub(crate) async fn push_envelope<T>(
        &self,
        kind: JobKind,
        envelope: &Envelope<T>,
    ) -> Result<(), QueueError>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static,
    {
        let now = now_ms();
        let run_at = run_at_second(envelope.ready_ms, now);
        let due = due_ms(run_at, now);
        let pushed = self.push_to_backend(kind, envelope, run_at, due).await;
        if pushed.is_ok() {
            self.inner.wakeups.pushed(kind, due);
        }
        let mut failed = self.inner.progress.push_failed.lock().unwrap();
        *failed = match &pushed {
            Ok(()) => None,
            Err(error) => Some((now_ms(), error.to_string())),
        };
        pushed
    }

    async fn push_to_backend<T>(
        &self,
        kind: JobKind,
        envelope: &Envelope<T>,
        run_at: u64,
        due_ms: i64,
    ) -> Result<(), QueueError>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static,
    {
        let failed = |e: &dyn std::fmt::Display| QueueError::Backend(e.to_string());
        match &self.inner.storage {
            Storage::Sqlite(sqlite) => {
                let job = serde_json::to_vec(envelope).map_err(|e| failed(&e))?;
                sqlite.push(kind, job, run_at).await
            }
            Storage::Redis(redis) => {
                let job = serde_json::to_vec(envelope).map_err(|e| failed(&e))?;
                let wake = self.inner.wakeups.message(due_ms);
                redis.push(kind, job, run_at, wake).await
            }
        }
    }

    /// Jobs waiting in `kind`'s queue.
    pub async fn depth(&self, kind: JobKind) -> Result<Depth, QueueError> {
        match &self.inner.storage {
            Storage::Sqlite(sqlite) => sqlite.depth(kind).await,
            Storage::Redis(redis) => redis.depth(kind).await,
        }
    }

    /// Moves due scheduled jobs where a fetch takes them, in batches (Redis; see
    /// [`RedisBackend::promote_due`]); SQLite needs nothing of the kind.
    pub async fn promote_due(&self) -> Result<u64, QueueError> {
        let Storage::Redis(redis) = &self.inner.storage else {
            return Ok(0);
        };
        let mut moved = 0;
        for kind in JobKind::ALL {
            moved += redis.promote_due(kind).await?;
        }
        Ok(moved)
    }

    /// Removes jobs that finished more than `keep` ago; returns how many.
    pub async fn vacuum(&self, keep: Duration) -> Result<u64, QueueError> {
        let mut removed = 0;
        for kind in JobKind::ALL {
            removed += match &self.inner.storage {
                Storage::Sqlite(sqlite) => sqlite.vacuum(kind, keep).await?,
                Storage::Redis(redis) => redis.vacuum(kind, keep).await?,
            };
        }
        metrics::counter!(VACUUMED_TOTAL).increment(removed);
        Ok(removed)
    }

    /// Puts dead letter `id` back in its queue as a fresh job (attempts start again);
    /// false when there is no such dead letter.
    pub async fn replay(&self, id: &str) -> Result<bool, QueueError> {
        let Some(letter) = self.inner.dead.get(id).await? else {
            return Ok(false);
        };
        self.replay_letter(letter).await?;
        Ok(true)
    }

    /// Replays every dead letter; returns how many.
    pub async fn replay_all(&self) -> Result<usize, QueueError> {
        let letters = self.inner.dead.list().await?;
        let count = letters.len();
        for letter in letters {
            self.replay_letter(letter).await?;
        }
        Ok(count)
    }

    async fn replay_letter(&self, letter: DeadLetter) -> Result<(), QueueError> {
        let now = now_ms();
        let envelope = Envelope {
            id: letter.id.clone(),
            attempt: 1,
            enqueued_ms: now,
            ready_ms: now,
            last_error: Some(letter.last_error),
            job: letter.job,
        };
        // Queued before it is forgotten: a crash in between leaves both, and the job's
        // handler is idempotent, so nothing is lost and nothing happens twice.
        self.push_envelope(letter.kind, &envelope).await?;
        self.inner.dead.remove(&letter.id).await?;
        Ok(())
    }

    /// Forgets every dead letter; returns how many.
    pub async fn purge(&self) -> Result<usize, QueueError> {
        let letters = self.inner.dead.list().await?;
        for letter in &letters {
            self.inner.dead.remove(&letter.id).await?;
        }
        Ok(letters.len())
    }

    /// Why the queue counts as stalled, if it does: a ready job has waited longer than
    /// `stall_after` and no job of its kind finished in that time. Read from the depth
    /// the maintenance loop last measured.
    pub fn stalled(&self) -> Option<String> {
        let stall_ms = self.inner.settings.stall_after.as_millis() as i64;
        let now = now_ms();
        let depth = self.inner.progress.depth.lock().unwrap().clone();
        for kind in JobKind::ALL {
            let Some(oldest) = depth.get(&kind).and_then(|d| d.oldest_ready_ms) else {
                continue;
            };
            let finished = self.inner.progress.finished_ms[Progress::index(kind)]
                .load(Ordering::Relaxed)
                .max(self.inner.progress.started_ms);
            if now - oldest > stall_ms && now - finished > stall_ms {
                return Some(format!(
                    "the {} queue is stalled: a job has waited {} s and none finished in {} s",
                    kind.queue(),
                    (now - oldest) / 1000,
                    (now - finished) / 1000
                ));
            }
        }
        None
    }

    /// Measures depths (metrics, stall detection) every few seconds and vacuums
    /// finished jobs every `vacuum_interval`, until `shutdown`.
    pub async fn maintain(&self, shutdown: CancellationToken) {
        let settings = &self.inner.settings;
        let mut measure = tokio::time::interval(Duration::from_secs(5));
        let mut vacuum = tokio::time::interval(settings.vacuum_interval);
        let mut promote = tokio::time::interval(Duration::from_secs(1));
        measure.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        vacuum.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        promote.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = measure.tick() => self.measure().await,
                _ = promote.tick() => {
                    if let Err(error) = self.promote_due().await {
                        tracing::debug!(%error, "cannot move due jobs to their queue");
                    }
                }
                _ = vacuum.tick() => {
                    match self.vacuum(settings.keep_finished).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(removed = n, "vacuumed finished jobs"),
                        Err(error) => tracing::warn!(%error, "cannot vacuum finished jobs"),
                    }
                }
            }
        }
    }

    /// Measures every queue's depth once, into the metrics and stall detection.
    pub async fn measure(&self) {
        let now = now_ms();
        for kind in JobKind::ALL {
            match self.depth(kind).await {
                Ok(depth) => {
                    let queue = kind.queue();
                    metrics::gauge!(QUEUE_JOBS, "queue" => queue, "state" => "ready")
                        .set(depth.ready as f64);
                    metrics::gauge!(QUEUE_JOBS, "queue" => queue, "state" => "scheduled")
                        .set(depth.scheduled as f64);
                    let age = depth.oldest_ready_age_seconds(now);
                    metrics::gauge!(OLDEST_READY_SECONDS, "queue" => queue).set(age);
                    self.inner
                        .progress
                        .depth
                        .lock()
                        .unwrap()
                        .insert(kind, depth);
                }
                Err(error) => {
                    tracing::warn!(%error, queue = kind.queue(), "cannot measure the queue")
                }
            }
        }
        if let Ok(letters) = self.inner.dead.list().await {
            metrics::gauge!(DEAD_LETTERS).set(letters.len() as f64);
        }
    }
}
