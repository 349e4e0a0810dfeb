//! Group commit of SQLite pushes: pushes that arrive while a commit is under way
//! (webhooks arriving together) are written together in the next transaction, so
//! they share one fsync instead of queueing for one each. Every caller is answered
//! only after the commit that holds its job, with that commit's outcome.
//!
//! There is no committer task: the first caller to find no commit running becomes
//! the committer for everything waiting; the others wait for its answer or for
//! their turn. The commit itself runs as a task of its own, so a caller that goes
//! away (its HTTP client hung up) never cuts a transaction that holds other callers'
//! jobs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis_sqlite::{SqlitePool, SqliteTask};
use tokio::sync::oneshot;

/// The most jobs one transaction takes; the rest go in the next.
const MOST_PER_COMMIT: usize = 512;

/// One push waiting for its commit.
struct Waiting {
    queue: &'static str,
    task: SqliteTask,
    answer: oneshot::Sender<Result<(), String>>,
}

/// The pushes of one pool, committed in groups; cheap to clone.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    pool: SqlitePool,
    waiting: Arc<Mutex<Vec<Waiting>>>,
    committing: Arc<tokio::sync::Mutex<()>>,
    /// Transactions committed (or tried), for the tests' and the curious' sake.
    commits: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Group commits on `pool`.
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            waiting: Arc::default(),
            committing: Arc::default(),
            commits: Arc::default(),
        }
    }

    /// Writes `task` into `queue`; returns once a commit holding it is durable (or
    /// with the error that rolled it back).
    pub(crate) async fn push(&self, queue: &'static str, task: SqliteTask) -> Result<(), String> {
        let (answer, mut answered) = oneshot::channel();
        self.waiting.lock().unwrap().push(Waiting {
            queue,
            task,
            answer,
        });
        tokio::select! {
            biased;
            result = &mut answered => return result.unwrap_or_else(|_| Err(GONE.into())),
            turn = self.committing.clone().lock_owned() => {
                // Ours is still waiting (commit it and whatever came with it), or a
                // commit that ended before we got our turn answered it already.
                let this = self.clone();
                let commit = tokio::spawn(async move {
                    this.commit_waiting().await;
                    drop(turn);
                });
                let _ = commit.await;
            }
        }
        answered.await.unwrap_or_else(|_| Err(GONE.into()))
    }

    /// Commits what is waiting, in groups of at most [`MOST_PER_COMMIT`], answering
    /// each caller.
    async fn commit_waiting(&self) {
        loop {
            let group: Vec<Waiting> = {
                let mut waiting = self.waiting.lock().unwrap();
                let take = waiting.len().min(MOST_PER_COMMIT);
                waiting.drain(..take).collect()
            };
            if group.is_empty() {
                return;
            }
            self.commits.fetch_add(1, Ordering::Relaxed);
            let result = self.commit(&group).await;
            for waiting in group {
                let _ = waiting.answer.send(result.clone());
            }
        }
    }

    /// One transaction for `group`. SQLite answers "database is locked" at once when
    /// a write meets another connection's at the wrong moment (workers acknowledging,
    /// the state store): a short wait and another try is all it needs.
    async fn commit(&self, group: &[Waiting]) -> Result<(), String> {
        let mut tries = 0;
        loop {
            match self.try_commit(group).await {
                Err(e) if tries < 20 && e.contains("database is locked") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(10 * tries)).await;
                }
                result => return result,
            }
        }
    }

    async fn try_commit(&self, group: &[Waiting]) -> Result<(), String> {
        let failed = |e: &dyn std::fmt::Display| e.to_string();
        // IMMEDIATE takes the write lock at the start, waiting (busy_timeout) for it,
        // rather than failing at the first write when another writer got in between.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| failed(&e))?;
        for waiting in group {
            apalis_sqlite::queries::push_tasks(
                &mut *tx,
                waiting.queue,
                std::slice::from_ref(&waiting.task),
            )
            .await
            .map_err(|e| failed(&e))?;
        }
        tx.commit().await.map_err(|e| failed(&e))
    }
}

/// What a caller hears when the commit that held its job could not report.
const GONE: &str = "the commit holding this job ended without an answer";

#[cfg(test)]
mod tests {
    use apalis::prelude::TaskBuilder;

    use super::*;

    async fn pool(dir: &tempfile::TempDir) -> SqlitePool {
        let pool = crate::backend::durable_pool(&dir.path().join("q.sqlite"), 4)
            .await
            .unwrap();
        apalis_sqlite::SqliteStorage::<()>::migrations()
            .run(&pool)
            .await
            .unwrap();
        pool
    }

    fn task(n: u32) -> SqliteTask {
        TaskBuilder::new(n.to_string().into_bytes()).build()
    }

    async fn rows(pool: &SqlitePool) -> i64 {
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM Jobs")
            .fetch_one(pool)
            .await
            .unwrap();
        rows
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_pushes_share_commits_and_each_is_durable_when_answered() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let commits = GroupCommit::new(pool.clone());
        let pushes: Vec<_> = (0..200)
            .map(|n| {
                let commits = commits.clone();
                let pool = pool.clone();
                tokio::spawn(async move {
                    commits.push("q", task(n)).await.unwrap();
                    // Answered means committed: a reader on another connection sees it.
                    let id = n.to_string().into_bytes();
                    let (found,): (i64,) =
                        sqlx::query_as("SELECT COUNT(*) FROM Jobs WHERE job = ?")
                            .bind(id)
                            .fetch_one(&pool)
                            .await
                            .unwrap();
                    assert_eq!(found, 1, "job {n} is in the table when its push returns");
                })
            })
            .collect();
        for push in pushes {
            push.await.unwrap();
        }
        assert_eq!(rows(&pool).await, 200);
        let used = commits.commits.load(Ordering::Relaxed);
        assert!(used < 200, "200 concurrent pushes took {used} commits");
    }

    #[tokio::test]
    async fn a_failed_commit_answers_every_push_in_it_and_the_next_one_works() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let commits = GroupCommit::new(pool.clone());
        commits.push("q", task(0)).await.unwrap();
        let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
            .fetch_one(&pool)
            .await
            .unwrap();
        // Every pooled connection gets the cap: the commit may use any of them.
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut connection = pool.acquire().await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA max_page_count = {pages}"
            )))
            .execute(&mut *connection)
            .await
            .unwrap();
            held.push(connection);
        }
        drop(held);
        let big = |n: u32| TaskBuilder::new(vec![n as u8; 64 * 1024]).build();
        let failed: Vec<_> = (1..=5)
            .map(|n| {
                let commits = commits.clone();
                tokio::spawn(async move { commits.push("q", big(n)).await })
            })
            .collect();
        for push in failed {
            let error = push.await.unwrap().unwrap_err();
            assert!(error.contains("full"), "{error}");
        }
        assert_eq!(rows(&pool).await, 1, "nothing of a failed commit stays");
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut connection = pool.acquire().await.unwrap();
            sqlx::query("PRAGMA max_page_count = 1073741823")
                .execute(&mut *connection)
                .await
                .unwrap();
            held.push(connection);
        }
        drop(held);
        commits.push("q", task(9)).await.unwrap();
        assert_eq!(rows(&pool).await, 2);
    }
}
