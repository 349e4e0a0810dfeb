//! The one connection to where the bridge keeps its jobs and its state: a SQLite file
//! (one process) or a Redis (shared by replicas). Opened once at start from
//! `[queue]` and handed to the store, the job queue, the rate gate and readiness, so
//! a process holds one pool on its file, or one Redis client with one multiplexed
//! connection, and only this module decides which backend that is.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use redis::aio::ConnectionManager;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::{QueueBackend, QueueConfig};

/// The prefix of every key the bridge keeps in Redis (state, rate gate, queues).
pub const REDIS_PREFIX: &str = "kaizala-bridge";

/// Connections for reads of the SQLite file (the store's lookups): in WAL mode
/// readers never wait for the writer, so a few serve every receiver at once.
const SQLITE_READERS: u32 = 4;

/// The backend could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// The opened backend; cheap to clone (both kinds hold shared handles).
#[derive(Clone)]
pub enum Backend {
    /// The SQLite file.
    Sqlite(SqliteHandle),
    /// The Redis server.
    Redis(RedisHandle),
}

/// The SQLite file and its two pools: one connection for every write, a few for reads.
///
/// SQLite takes one writer at a time. With writers on several connections, the one
/// that finds the file locked sleeps in SQLite's busy handler, in steps that grow to
/// 100 ms, and a burst of webhooks beside the workers' commits made a tail of
/// hundreds of milliseconds. On one connection the process's writers (the queue's
/// pushes, fetches and acknowledgements, the store's writes) queue for it in turn,
/// each taking it the moment the one before lets go.
#[derive(Clone)]
pub struct SqliteHandle {
    writes: SqlitePool,
    reads: SqlitePool,
    path: PathBuf,
}

/// The Redis client, its one multiplexed connection (reconnecting by itself), and
/// the prefix of every key.
#[derive(Clone)]
pub struct RedisHandle {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
}

impl Backend {
    /// The backend `[queue]` names (`backend`, with `sqlite_path` or `redis_url`),
    /// under the bridge's Redis prefix.
    pub async fn open(queue: &QueueConfig) -> Result<Self, BackendError> {
        match queue.backend {
            QueueBackend::Sqlite => Self::sqlite(&queue.sqlite_path).await,
            QueueBackend::Redis => Self::redis(queue.redis_url(), REDIS_PREFIX).await,
        }
    }

    /// Like [`Backend::open`], connecting on first use instead of now: for a service
    /// that may never touch it (a receiver tested alone, pointed at a Redis that
    /// never answers), whose readiness must still probe it.
    pub fn unconnected(queue: &QueueConfig) -> Result<Self, BackendError> {
        match queue.backend {
            QueueBackend::Sqlite => {
                // The directory now: cheap, and what a lazy pool would not do.
                data_dir(&queue.sqlite_path)?;
                let options = connect_options(&queue.sqlite_path)?;
                Ok(Self::Sqlite(SqliteHandle {
                    writes: pool_options(1).connect_lazy_with(options.clone()),
                    reads: pool_options(SQLITE_READERS).connect_lazy_with(options),
                    path: queue.sqlite_path.clone(),
                }))
            }
            QueueBackend::Redis => {
                let client = client(queue.redis_url())?;
                let connection = client
                    .get_connection_manager_lazy(redis::aio::ConnectionManagerConfig::new())
                    .map_err(|e| BackendError(format!("the Redis client refuses: {e}")))?;
                Ok(Self::Redis(RedisHandle {
                    client,
                    connection,
                    prefix: REDIS_PREFIX.to_string(),
                }))
            }
        }
    }

    /// The SQLite file at `path` (created, with its directory, if needed).
    pub async fn sqlite(path: &Path) -> Result<Self, BackendError> {
        Ok(Self::Sqlite(SqliteHandle {
            writes: durable_pool(path, 1).await?,
            reads: durable_pool(path, SQLITE_READERS).await?,
            path: path.to_path_buf(),
        }))
    }

    /// The Redis at `url`, its keys under `prefix`.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, BackendError> {
        Ok(Self::Redis(RedisHandle::connect(url, prefix).await?))
    }
}

impl SqliteHandle {
    /// The pool every write of the file goes through: one connection (see
    /// [`SqliteHandle`]). The job queue uses it for all its work, which is mostly
    /// writes (fetches lock their jobs).
    pub fn writes(&self) -> &SqlitePool {
        &self.writes
    }

    /// The pool for reads that need no write beside them (the store's lookups).
    pub fn reads(&self) -> &SqlitePool {
        &self.reads
    }

    /// Where the file is (readiness probes its directory and a write to it).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RedisHandle {
    /// Connects to `url`; keys go under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BackendError> {
        let client = client(url)?;
        let connection = client
            .get_connection_manager()
            .await
            .map_err(|e| BackendError(format!("queue.redis_url: cannot connect: {e}")))?;
        Ok(Self {
            client,
            connection,
            prefix: prefix.to_string(),
        })
    }

    /// The client, for connections of their own: a pub/sub subscription, or a probe
    /// that must see a fresh connect rather than the shared connection's state.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The shared connection (a clone: they multiplex one socket).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// A client for `url` (the URL is not repeated in the error: it may hold a password).
fn client(url: &str) -> Result<redis::Client, BackendError> {
    redis::Client::open(url).map_err(|e| BackendError(format!("queue.redis_url is not valid: {e}")))
}

/// A pool on the SQLite file at `path` (created with its directory if needed) whose
/// every connection runs WAL with `synchronous = FULL`: what the store and the job
/// queue both need, since a write they confirm must survive a power cut.
pub async fn durable_pool(path: &Path, max_connections: u32) -> Result<SqlitePool, BackendError> {
    data_dir(path)?;
    pool_options(max_connections)
        .connect_with(connect_options(path)?)
        .await
        .map_err(|e| {
            BackendError(format!(
                "queue.sqlite_path: cannot open {}: {e}",
                path.display()
            ))
        })
}

/// Creates the directory of the database at `path` if it is missing.
fn data_dir(path: &Path) -> Result<(), BackendError> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        BackendError(format!(
            "queue.sqlite_path: cannot create directory {}: {e}",
            dir.display()
        ))
    })
}

/// How each connection to the file at `path` is opened.
fn connect_options(path: &Path) -> Result<SqliteConnectOptions, BackendError> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(|e| BackendError(format!("queue.sqlite_path {}: {e}", path.display())))?;
    Ok(options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10)))
}

/// The pool: a connection out of step (see [`in_step`]) is never handed out again.
fn pool_options(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .after_release(|connection, _| Box::pin(in_step(connection)))
        .before_acquire(|connection, _| Box::pin(in_step(connection)))
}

/// Whether a pooled connection may be used again: neither SQLite nor sqlx believes a
/// transaction is open. After `SQLITE_FULL` or an I/O error SQLite rolls the
/// transaction back itself, the ROLLBACK sqlx then queues fails, and sqlx's count of
/// open transactions stays at one; the next `begin` on that connection would open a
/// savepoint that no commit ever ends, holding the write lock for good ("database is
/// locked" for every other writer until a restart). A connection out of step is
/// closed instead (closing rolls back whatever SQLite still has open).
async fn in_step(connection: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    // Taking the handle waits for the connection's worker to run what was queued
    // before it (the ROLLBACK of a dropped transaction), so both answers are current.
    let autocommit = {
        let mut handle = connection.lock_handle().await?;
        // SAFETY: the handle is locked away from sqlx's worker thread for the call,
        // and sqlite3_get_autocommit only reads the connection's state.
        unsafe { libsqlite3_sys::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) != 0 }
    };
    let sound = autocommit && !connection.is_in_transaction();
    if !sound {
        tracing::warn!("a database connection was left inside a transaction (after a failed write); closing it");
    }
    Ok(sound)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every write goes through one connection, so the process's writers queue for
    /// it in turn instead of sleeping in SQLite's busy handler; reads have their own,
    /// and a write is visible to the next read at once.
    #[tokio::test]
    async fn a_sqlite_file_has_one_writer_connection_and_readers_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let Backend::Sqlite(sqlite) = Backend::sqlite(&dir.path().join("b.sqlite")).await.unwrap()
        else {
            unreachable!()
        };
        assert_eq!(sqlite.writes().options().get_max_connections(), 1);
        assert_eq!(
            sqlite.reads().options().get_max_connections(),
            SQLITE_READERS
        );
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(sqlite.writes())
            .await
            .unwrap();
        let writers: Vec<_> = (0..32)
            .map(|n| {
                let pool = sqlite.writes().clone();
                tokio::spawn(async move {
                    sqlx::query("INSERT INTO t VALUES (?)")
                        .bind(n)
                        .execute(&pool)
                        .await
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
            .fetch_one(sqlite.reads())
            .await
            .unwrap();
        assert_eq!(count, 32);
        for pool in [sqlite.writes(), sqlite.reads()] {
            let (synchronous,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(synchronous, 2, "FULL");
        }
    }
}
