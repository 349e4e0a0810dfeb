//! The embedded backend: apalis-sqlite in the bridge's SQLite file.
//!
//! Durability is ours to set: apalis's `setup` turns `synchronous` OFF, so the pool is
//! the store's durable one (WAL, `synchronous = FULL` on every connection), and only
//! the migrations are run. A job acknowledged to a webhook sender then survives a power
//! cut. Finished rows are deleted by our own statement: apalis's `vacuum_before`
//! compares an integer column with a date string and so ignores its age argument.

use std::path::Path;
use std::time::Duration;

use apalis_sqlite::{SqlitePool, SqliteStorage};

use apalis::prelude::TaskBuilder;

use super::group_commit::GroupCommit;
use super::job::{now_ms, JobKind};
use super::{Depth, QueueError};

fn failed(error: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(error.to_string())
}

/// The SQLite side of the queue.
#[derive(Clone)]
pub struct SqliteBackend {
    pool: SqlitePool,
    commits: GroupCommit,
}

impl SqliteBackend {
    /// Opens (creating if needed) the queue in the database at `path`, on a pool of
    /// its own: for tools and tests; the bridge shares the backend's ([`Self::on`]).
    pub async fn open(path: &Path) -> Result<Self, QueueError> {
        let pool = crate::backend::durable_pool(path, 8)
            .await
            .map_err(failed)?;
        Self::on(pool).await
    }

    /// The queue in the file `pool` is on (apalis's tables migrated if needed).
    pub async fn on(pool: SqlitePool) -> Result<Self, QueueError> {
        SqliteStorage::<()>::migrations()
            .run(&pool)
            .await
            .map_err(failed)?;
        Ok(Self {
            commits: GroupCommit::new(pool.clone()),
            pool,
        })
    }

    /// Writes `job` (an envelope, as JSON) into `kind`'s queue to run at `run_at`
    /// (epoch seconds), in a transaction shared with the pushes arriving beside it;
    /// durable when it returns.
    pub(crate) async fn push(
        &self,
        kind: JobKind,
        job: Vec<u8>,
        run_at: u64,
    ) -> Result<(), QueueError> {
        let task = TaskBuilder::new(job).run_at_timestamp(run_at).build();
        self.commits
            .push(kind.queue(), task)
            .await
            .map_err(QueueError::Backend)
    }

    /// The pool every job write goes through.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// apalis's configuration for `kind`'s queue.
    pub fn config(&self, kind: JobKind, heartbeat: Duration) -> apalis_sqlite::Config {
        // One task per fetch, as on Redis (see `RedisBackend::config`): a worker keeps
        // its heartbeat while every slot is busy.
        apalis_sqlite::Config::default()
            .queue(kind.queue())
            .heartbeat_interval(heartbeat)
            .missed_heartbeats(super::redis::MISSED_HEARTBEATS)
            .batch_size(1)
    }

    /// Ready and scheduled jobs of `kind`, and the oldest ready one's due time.
    pub async fn depth(&self, kind: JobKind) -> Result<Depth, QueueError> {
        let now = now_ms() / 1000;
        let (ready, oldest, scheduled): (i64, Option<i64>, i64) = sqlx::query_as(
            "SELECT
                COALESCE(SUM(CASE WHEN run_at <= ?2 THEN 1 ELSE 0 END), 0),
                MIN(CASE WHEN run_at <= ?2 THEN run_at END),
                COALESCE(SUM(CASE WHEN run_at > ?2 THEN 1 ELSE 0 END), 0)
             FROM Jobs WHERE job_type = ?1 AND status = 'Pending'",
        )
        .bind(kind.queue())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(failed)?;
        Ok(Depth {
            ready: ready as u64,
            scheduled: scheduled as u64,
            oldest_ready_ms: oldest.map(|s| s * 1000),
        })
    }

    /// Deletes `kind`'s jobs that finished more than `keep` ago.
    pub async fn vacuum(&self, kind: JobKind, keep: Duration) -> Result<u64, QueueError> {
        let before = now_ms() / 1000 - keep.as_secs() as i64;
        let done = sqlx::query(
            "DELETE FROM Jobs WHERE job_type = ?
             AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))
             AND done_at IS NOT NULL AND done_at <= ?",
        )
        .bind(kind.queue())
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(failed)?;
        Ok(done.rows_affected())
    }
}
