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
use apalis_core::backend::ext::BackendExt;
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use tokio_util::sync::CancellationToken;

use super::dead_letters::DeadLetter;
use super::job::{now_ms, Envelope, Handler, Job, JobError};
use super::{Backend, Queue, QueueError, JOBS_TOTAL, JOB_SECONDS, WORKER_RESTARTS};

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
        let result = tokio::time::timeout(
            settings.attempt_timeout,
            self.handler.handle(&envelope.job, envelope.attempt),
        )
        .await
        .unwrap_or_else(|_| {
            Err(JobError::retry(format!(
                "the attempt took longer than queue.attempt_timeout ({})",
                humantime::format_duration(settings.attempt_timeout)
            )))
        });
        metrics::histogram!(JOB_SECONDS, "queue" => kind).record(started.elapsed().as_secs_f64());
        self.queue.inner.progress.finished(J::KIND);
        let outcome = match result {
            Ok(()) => {
                tracing::debug!(job = %envelope.id, queue = kind, attempt = envelope.attempt, "job done");
                "done"
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
                    ready_ms: now_ms() + delay.as_millis() as i64,
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
    /// ended by a backend error (Redis gone) is started again after a growing pause.
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
        let mut pause = Duration::from_millis(500);
        while !shutdown.is_cancelled() {
            let run = self.spawn_worker(runner.clone(), shutdown.clone());
            let deadline = {
                let shutdown = shutdown.clone();
                async move {
                    shutdown.cancelled().await;
                    tokio::time::sleep(grace).await;
                }
            };
            let started = Instant::now();
            tokio::select! {
                result = run => match result {
                    Ok(()) => {}
                    Err(error) => {
                        metrics::counter!(WORKER_RESTARTS, "queue" => J::KIND.queue()).increment(1);
                        if started.elapsed() > Duration::from_secs(60) {
                            pause = Duration::from_millis(500);
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
                        pause = (pause * 2).min(Duration::from_secs(30));
                    }
                },
                _ = deadline => {
                    tracing::warn!(
                        queue = J::KIND.queue(),
                        "jobs still running after the shutdown grace period; they will be taken again"
                    );
                    return;
                }
            }
        }
    }

    /// Runs one apalis worker on a thread of its own with a single-threaded runtime.
    /// apalis 1.0's worker future cannot be shown to be `Send` (its internals hold
    /// references across awaits under higher-ranked lifetimes), so it cannot be
    /// spawned on the shared runtime; a thread per job type costs little.
    async fn spawn_worker<J: Job>(
        &self,
        runner: Arc<Runner<J>>,
        shutdown: CancellationToken,
    ) -> Result<(), WorkerError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let queue = self.clone();
        let thread = std::thread::Builder::new()
            .name(format!("queue-{}", J::KIND.queue()))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = done.send(Err(WorkerError::from(error)));
                        return;
                    }
                };
                let outcome = runtime.block_on(queue.run_worker(runner, shutdown));
                let _ = done.send(outcome);
            });
        if let Err(error) = thread {
            return Err(WorkerError::from(error));
        }
        result.await.unwrap_or(Ok(()))
    }

    async fn run_worker<J: Job>(
        &self,
        runner: Arc<Runner<J>>,
        shutdown: CancellationToken,
    ) -> Result<(), WorkerError> {
        let settings = &self.inner.settings;
        let concurrency = settings.concurrency(J::KIND) as usize;
        let name = worker_name(J::KIND.queue());
        let stop = async move {
            shutdown.cancelled().await;
            Ok::<(), WorkerError>(())
        };
        let handle = move |envelope: Envelope<J>| runner.clone().run(envelope);
        match &self.inner.backend {
            Backend::Sqlite(sqlite) => {
                let storage = SqliteStorage::<Envelope<J>>::new(sqlite.pool())
                    .with_config(sqlite.config(J::KIND, settings.heartbeat))
                    .poll_with_interval(settings.poll_interval);
                WorkerBuilder::new(name)
                    .backend(storage)
                    .concurrency(concurrency)
                    .build(handle)
                    .run_until(stop)
                    .await
            }
            Backend::Redis(redis) => {
                let storage = RedisStorage::<Envelope<J>>::new(redis.connection())
                    .with_config(redis.config(J::KIND, settings.heartbeat))
                    .poll_with_interval(settings.poll_interval);
                WorkerBuilder::new(name)
                    .backend(storage)
                    .concurrency(concurrency)
                    .build(handle)
                    .run_until(stop)
                    .await
            }
        }
    }
}
