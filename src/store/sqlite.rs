//! The store in a SQLite file: one table of (namespace, key, value, expiry). WAL with
//! `synchronous = FULL`, so a committed write (a correlation recorded before a survey
//! is posted) survives a power cut, not only a process crash.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Store, StoreError, StoreFuture};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn expiry(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|ttl| now_ms().saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64))
}

fn failed(error: sqlx::Error) -> StoreError {
    StoreError(error.to_string())
}

/// A [`Store`] in a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// A pool on the SQLite file at `path` (created with its directory if needed) whose
/// every connection runs WAL with `synchronous = FULL`: what the store and the job
/// queue both need, since a write they confirm must survive a power cut.
pub async fn durable_pool(path: &Path, max_connections: u32) -> Result<SqlitePool, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
    }
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(failed)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .after_release(|connection, _| Box::pin(in_step(connection)))
        .before_acquire(|connection, _| Box::pin(in_step(connection)))
        .connect_with(options)
        .await
        .map_err(failed)
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

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = durable_pool(path, 4).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bridge_state (
                namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_at INTEGER,
                PRIMARY KEY (namespace, key))",
        )
        .execute(&pool)
        .await
        .map_err(failed)?;
        Ok(Self { pool })
    }
}

impl Store for SqliteStore {
    fn purge_expired(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let done = sqlx::query(
                "DELETE FROM bridge_state WHERE expires_at IS NOT NULL AND expires_at <= ?",
            )
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(failed)?;
            Ok(done.rows_affected())
        })
    }

    fn is_shared(&self) -> bool {
        // One process owns the file: no other replica competes for singular work.
        false
    }

    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let row: Option<(String,)> = sqlx::query_as(
                "SELECT value FROM bridge_state WHERE namespace = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
            )
            .bind(namespace)
            .bind(key)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed)?;
            Ok(row.map(|(value,)| value))
        })
    }

    fn put<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO bridge_state (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            )
            .bind(namespace)
            .bind(key)
            .bind(value)
            .bind(expiry(ttl))
            .execute(&self.pool)
            .await
            .map_err(failed)?;
            Ok(())
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            // One statement: insert, or take over a row that has expired; the UPDATE's
            // WHERE makes a live row win, and rows_affected says who won.
            let done = sqlx::query(
                "INSERT INTO bridge_state (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
                 WHERE bridge_state.expires_at IS NOT NULL AND bridge_state.expires_at <= ?",
            )
            .bind(namespace)
            .bind(key)
            .bind(value)
            .bind(expiry(ttl))
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(failed)?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query("DELETE FROM bridge_state WHERE namespace = ? AND key = ?")
                .bind(namespace)
                .bind(key)
                .execute(&self.pool)
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn delete_if<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let done = sqlx::query(
                "DELETE FROM bridge_state WHERE namespace = ? AND key = ? AND value = ?",
            )
            .bind(namespace)
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(failed)?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn list<'a>(&'a self, namespace: &'a str) -> StoreFuture<'a, Vec<(String, String)>> {
        Box::pin(async move {
            sqlx::query_as(
                "SELECT key, value FROM bridge_state WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY key",
            )
            .bind(namespace)
            .bind(now_ms())
            .fetch_all(&self.pool)
            .await
            .map_err(failed)
        })
    }
}
