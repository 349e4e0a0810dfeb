//! Every long-running task of the daemon, owned in one place: spawned through
//! [`Tasks`], restarted with backoff when it panics (its message logged, the panic
//! counted), never mistaken for a clean finish, and awaited at shutdown within the
//! grace period instead of being cut off by the runtime's end.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// `kaizala_bridge_task_panics_total{task}`: panics caught in a background task, a
/// queue worker or a job attempt; each was logged and the task restarted.
pub const TASK_PANICS: &str = "kaizala_bridge_task_panics_total";

/// The first pause before a panicked task is started again; it doubles up to
/// [`MAX_RESTART_PAUSE`].
const FIRST_RESTART_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause before a panicked task is started again.
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(30);

/// What a panic said, from the `JoinError` of the task it ended (or why the task
/// ended otherwise).
pub fn panic_message(joined: JoinError) -> String {
    if !joined.is_panic() {
        return joined.to_string();
    }
    let payload = joined.into_panic();
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Counts one caught panic of `task` (a name from a fixed set: the label must not
/// grow).
pub fn count_panic(task: &'static str) {
    metrics::counter!(TASK_PANICS, "task" => task).increment(1);
}

/// The daemon's tasks and the token that tells them to stop.
#[derive(Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Tasks {
    /// Tasks stopped by `shutdown`.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            shutdown,
        }
    }

    /// The token every task watches.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Runs `make()`'s future as task `name` until it returns (or shutdown); when it
    /// panics, logs the message, counts it, and starts a new one after a growing
    /// pause. The future must return once `shutdown` is cancelled.
    pub fn supervise<F, Fut>(&self, name: &'static str, make: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            let mut pause = FIRST_RESTART_PAUSE;
            loop {
                match tokio::spawn(make(shutdown.clone())).await {
                    Ok(()) => return,
                    Err(joined) => {
                        let message = panic_message(joined);
                        count_panic(name);
                        tracing::error!(task = name, panic = %message, restart_in = %humantime::format_duration(pause), "a background task panicked; it will be started again");
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_RESTART_PAUSE);
            }
        });
    }

    /// Runs `future` as a tracked task that is not restarted (one that ends by
    /// itself, like a queue worker loop that supervises itself).
    pub fn spawn<Fut>(&self, future: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(future);
    }

    /// Cancels the shutdown token (if not yet) and waits up to `grace` for every task
    /// to end; false when some were still running when the grace ran out.
    pub async fn stop(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_task_is_restarted_and_a_clean_one_ends() {
        let tasks = Tasks::new(CancellationToken::new());
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        tasks.supervise("test", move |_stop| {
            let counted = counted.clone();
            async move {
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first run fails");
                }
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while runs.load(Ordering::SeqCst) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "not restarted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(tasks.stop(Duration::from_secs(1)).await);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "a clean finish is not restarted"
        );
    }

    #[tokio::test]
    async fn stop_waits_for_tasks_within_the_grace() {
        let tasks = Tasks::new(CancellationToken::new());
        let finished = Arc::new(AtomicU32::new(0));
        let seen = finished.clone();
        tasks.supervise("test", move |stop| {
            let seen = seen.clone();
            async move {
                stop.cancelled().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                seen.fetch_add(1, Ordering::SeqCst);
            }
        });
        assert!(tasks.stop(Duration::from_secs(2)).await);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        let stuck = Tasks::new(CancellationToken::new());
        stuck.spawn(std::future::pending());
        assert!(!stuck.stop(Duration::from_millis(50)).await);
    }
}
