//! Running jobs: one apalis worker per job type, each attempt bounded in time and
//! classified by us, then done, retried as a new task after a backoff, or dead-lettered.
//!
//! The handler's result never reaches apalis as an error: the task is acknowledged
//! done once its successor (a retry) or its dead letter is durable. That keeps the two
//! backends' differing retry behaviour in apalis 1.0 (hard-coded attempts on Redis, a
//! `RetryAfterError` that leaves SQLite tasks locked) out of the picture, and gives one
//! retry budget: ours.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_core::backend::ext::poll_strategy::Strategy;
use apalis_core::backend::ext::BackendExt;
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use tokio_util::sync::CancellationToken;

use super::dead_letters::DeadLetter;
use super::job::{now_ms, Envelope, Handler, Job, JobError};
use super::{Queue, QueueError, Storage, JOBS_TOTAL, JOB_SECONDS, WORKER_RESTARTS};

/// Runs one attempt of a job and settles it.
struct Runner<J: Job> {
    queue: Queue,
    handler: Arc<dyn Handler<J>>,
}

impl<J: Job> Runner<J> {
    /// Boxed with a `'static` error type spelled out: apalis's worker must be `Send`,
    /// which the compiler cannot prove through `?` conversions into a boxed error.
    fn run(
        self: Arc<Self>,
        envelope: Envelope<J>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxDynError>> + Send>> {
        Box::pin(async move {
            self.settle(envelope)
                .await
                .map_err(|e| -> BoxDynError { Box::new(e) })
        })
    }

    /// Runs the handler once, as a task of its own: a panic in it ends this attempt
    /// as a retryable failure (logged with its message and counted), and an attempt
    /// past `attempt_timeout` is cut off; either way the job is settled as usual.
    async fn attempt(&self, envelope: &Envelope<J>) -> Result<(), JobError> {
        let timeout = self.queue.inner.settings.attempt_timeout;
        let handler = self.handler.clone();
        let (job, attempt) = (envelope.job.clone(), envelope.attempt);
        let mut task = tokio::spawn(async move { handler.handle(&job, attempt).await });
        match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(joined)) => {
                let message = crate::tasks::panic_message(joined);
                crate::tasks::count_panic("job");
                tracing::error!(job = %envelope.id, queue = J::KIND.queue(), panic = %message, "a job attempt panicked");
                Err(JobError::retry(format!("the attempt panicked: {message}")))
            }
            Err(_) => {
                task.abort();
                Err(JobError::retry(format!(
                    "the attempt took longer than queue.attempt_timeout ({})",
                    humantime::format_duration(timeout)
                )))
            }
        }
    }

    async fn settle(&self, envelope: Envelope<J>) -> Result<(), QueueError> {
        let kind = J::KIND.queue();
        let settings = &self.queue.inner.settings;
        // A task is never taken before its second (backends count whole seconds), but
        // a Retry-After is honoured to the millisecond.
        let early = envelope.ready_ms - now_ms();
        if early > 0 {
            tokio::time::sleep(Duration::from_millis(early as u64)).await;
        }
        let started = Instant::now();
        let result = self.attempt(&envelope).await;
        metrics::histogram!(JOB_SECONDS, "queue" => kind).record(started.elapsed().as_secs_f64());
        self.queue.inner.progress.finished(J::KIND);
        let outcome = match result {
            Ok(()) => {
                tracing::debug!(job = %envelope.id, queue = kind, attempt = envelope.attempt, "job done");
                "done"
            }
            Err(JobError::Defer { until_ms }) => {
                tracing::debug!(job = %envelope.id, queue = kind, until_ms, "job put off to its turn");
                let next = Envelope {
                    ready_ms: super::turn_start(until_ms),
                    ..envelope
                };
                self.queue.push_envelope(J::KIND, &next).await?;
                "deferred"
            }
            Err(JobError::Retry { reason, after })
                if !settings.backoff.exhausted(envelope.attempt) =>
            {
                let delay = settings.backoff.delay(envelope.attempt, after);
                tracing::warn!(
                    job = %envelope.id, queue = kind, attempt = envelope.attempt,
                    retry_in = %humantime::format_duration(delay), error = %reason,
                    "job failed; it will be retried"
                );
                let next = Envelope {
                    attempt: envelope.attempt + 1,
                    ready_ms: now_ms()
                        .saturating_add(delay.as_millis().min(i64::MAX as u128) as i64),
                    last_error: Some(reason),
                    ..envelope
                };
                self.queue.push_envelope(J::KIND, &next).await?;
                "retried"
            }
            Err(error) => {
                let permanent = matches!(error, JobError::Permanent(_));
                tracing::error!(
                    job = %envelope.id, queue = kind, attempt = envelope.attempt, error = %error,
                    "job failed for good ({}); it is in the dead letters",
                    if permanent { "a permanent error" } else { "no attempts left" }
                );
                let letter = DeadLetter {
                    id: envelope.id.clone(),
                    kind: J::KIND,
                    attempts: envelope.attempt,
                    last_error: error.to_string(),
                    enqueued_ms: envelope.enqueued_ms,
                    dead_ms: now_ms(),
                    job: serde_json::to_value(&envelope.job).map_err(|e| {
                        QueueError::Backend(format!("the job does not serialize: {e}"))
                    })?,
                };
                self.queue.inner.dead.record(&letter).await?;
                "dead_lettered"
            }
        };
        metrics::counter!(JOBS_TOTAL, "queue" => kind, "outcome" => outcome).increment(1);
        Ok(())
    }
}

/// A worker name unique to this process, so a restarted or second replica never
/// shares one (shared names block orphan recovery on Redis).
fn worker_name(queue: &str) -> String {
    format!("{queue}@{}", process_name())
}

/// A name for this process, unique among replicas and restarts: host, pid and a
/// random nonce. Worker names and leases use it.
pub fn process_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let nonce: u32 = rand::random();
    format!("{host}-{}-{nonce:08x}", std::process::id())
}

impl Queue {
    /// Works on `J` jobs with `handler` until `shutdown`, then lets the attempts in
    /// flight finish for up to `grace`; what is still running after that is taken
    /// again later (by this process after a restart, or by another replica). A worker
    /// ended by a backend error (Redis gone) or a panic is started again after a
    /// pause that grows to [`MAX_RESTART_PAUSE`], so it is back within seconds of the
    /// backend's return.
    pub async fn work<J: Job>(
        &self,
        handler: Arc<dyn Handler<J>>,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        let runner = Arc::new(Runner {
            queue: self.clone(),
            handler,
        });
        let listener = self.listen_for_replicas(J::KIND, shutdown.clone());
        self.run_workers(runner, shutdown, grace).await;
        if let Some(listener) = listener {
            let _ = listener.await;
        }
    }

    /// On Redis, hears other replicas' pushes to `kind`'s queue until `shutdown`.
    fn listen_for_replicas(
        &self,
        kind: super::JobKind,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let Storage::Redis(redis) = &self.inner.storage else {
            return None;
        };
        Some(tokio::spawn(super::wake::listen(
            redis.client().clone(),
            redis.queue_name(kind),
            kind,
            self.inner.wakeups.clone(),
            shutdown,
        )))
    }

    /// The apalis worker for `J`, started again after it stops on an error.
    async fn run_workers<J: Job>(
        &self,
        runner: Arc<Runner<J>>,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        let mut pause = Duration::from_millis(250);
        while !shutdown.is_cancelled() {
            // On the process's own runtime, like every connection the worker uses: a
            // reconnect it starts must outlive the worker, never die with it.
            let queue = self.clone();
            let stop = shutdown.clone();
            let mut run = tokio::spawn(queue.run_worker(runner.clone(), stop));
            let deadline = {
                let shutdown = shutdown.clone();
                async move {
                    shutdown.cancelled().await;
                    tokio::time::sleep(grace).await;
                }
            };
            let started = Instant::now();
            tokio::select! {
                result = &mut run => {
                    let error = match result {
                        Ok(Ok(())) => continue,
                        Ok(Err(error)) => error.to_string(),
                        Err(joined) => {
                            let message = crate::tasks::panic_message(joined);
                            crate::tasks::count_panic("queue_worker");
                            format!("the worker panicked: {message}")
                        }
                    };
                    metrics::counter!(WORKER_RESTARTS, "queue" => J::KIND.queue()).increment(1);
                    if started.elapsed() > Duration::from_secs(60) {
                        pause = Duration::from_millis(250);
                    }
                    tracing::error!(
                        queue = J::KIND.queue(), %error,
                        restart_in = %humantime::format_duration(pause),
                        "a queue worker stopped; it will be started again"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    // A fetch that failed on a burst of due jobs must not fail again.
                    if let Err(error) = self.promote_due().await {
                        tracing::debug!(%error, "cannot move due jobs to their queue");
                    }
                    pause = (pause * 2).min(MAX_RESTART_PAUSE);
                }
                _ = deadline => {
                    run.abort();
                    tracing::warn!(
                        queue = J::KIND.queue(),
                        "jobs still running after the shutdown grace period; they will be taken again"
                    );
                    return;
                }
            }
        }
    }

    /// When the worker fetches: on a push or when a job pushed for later comes due
    /// (see `wake.rs`), and every `poll_interval` as the safety net.
    fn strategy<J: Job>(&self) -> Strategy {
        Strategy::new()
            .stream(self.inner.wakeups.stream(J::KIND))
            .interval(self.inner.settings.poll_interval)
    }

    /// One apalis worker for `J`'s queue, as a boxed `Send` future. apalis 1.0's
    /// worker is `Send`, but the compiler cannot prove it through an `async fn`
    /// around it (higher-ranked lifetimes inside apalis); coercing the worker's own
    /// future to a boxed `dyn Future + Send` where it is made lets it run on the
    /// process's runtime like everything else.
    fn run_worker<J: Job>(
        &self,
        runner: Arc<Runner<J>>,
        shutdown: CancellationToken,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), WorkerError>> + Send>> {
        let settings = &self.inner.settings;
        let concurrency = settings.concurrency(J::KIND) as usize;
        let name = worker_name(J::KIND.queue());
        let stop = async move {
            shutdown.cancelled().await;
            Ok::<(), WorkerError>(())
        };
        let handle = move |envelope: Envelope<J>| runner.clone().run(envelope);
        match &self.inner.storage {
            Storage::Sqlite(sqlite) => {
                let storage = SqliteStorage::<Envelope<J>>::new(sqlite.pool())
                    .with_config(sqlite.config(J::KIND, settings.heartbeat))
                    .poll_with_strategy(self.strategy::<J>());
                let worker = WorkerBuilder::new(name)
                    .backend(storage)
                    .concurrency(concurrency)
                    .build(handle);
                Box::pin(worker.run_until(stop))
            }
            Storage::Redis(redis) => {
                let storage = RedisStorage::<Envelope<J>>::new(redis.connection())
                    .with_config(redis.config(J::KIND, settings.heartbeat))
                    .poll_with_strategy(self.strategy::<J>());
                let worker = WorkerBuilder::new(name)
                    .backend(storage)
                    .concurrency(concurrency)
                    .build(handle);
                Box::pin(worker.run_until(stop))
            }
        }
    }
}

/// The longest pause before a stopped worker is started again: short, so a worker
/// is back within seconds of its backend's return, however long the outage was.
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(4);
