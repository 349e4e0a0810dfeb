//! The store in a SQLite file: one table of (namespace, key, value, expiry). WAL with
//! `synchronous = FULL`, so a committed write (a correlation recorded before a survey
//! is posted) survives a power cut, not only a process crash.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::SqlitePool;

use super::{Entry, Store, StoreError, StoreFuture};

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
    /// Where writes (and, unless told otherwise, reads) go.
    pool: SqlitePool,
    /// Where lookups go.
    reads: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, on a pool of its own: for
    /// tools and tests; the bridge shares the backend's pool ([`SqliteStore::on`]).
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = crate::backend::durable_pool(path, 4)
            .await
            .map_err(|e| StoreError(e.0))?;
        Self::on(pool).await
    }

    /// The store in the file `pool` is on (its table created if needed).
    pub async fn on(pool: SqlitePool) -> Result<Self, StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bridge_state (
                namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_at INTEGER,
                PRIMARY KEY (namespace, key))",
        )
        .execute(&pool)
        .await
        .map_err(failed)?;
        Ok(Self {
            reads: pool.clone(),
            pool,
        })
    }

    /// Reads from `reads` (a pool on the same file), so that a lookup never queues
    /// behind the writes on the store's own pool.
    pub fn reading_from(mut self, reads: SqlitePool) -> Self {
        self.reads = reads;
        self
    }
}

/// Sets a key, replacing its value and expiry.
const UPSERT: &str = "INSERT INTO bridge_state (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at";

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
            .fetch_optional(&self.reads)
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
            sqlx::query(UPSERT)
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

    fn put_all<'a>(&'a self, entries: &'a [Entry<'a>]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut transaction = self.pool.begin().await.map_err(failed)?;
            for entry in entries {
                sqlx::query(UPSERT)
                    .bind(entry.namespace)
                    .bind(entry.key)
                    .bind(entry.value)
                    .bind(expiry(entry.ttl))
                    .execute(&mut *transaction)
                    .await
                    .map_err(failed)?;
            }
            transaction.commit().await.map_err(failed)
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
            .fetch_all(&self.reads)
            .await
            .map_err(failed)
        })
    }
}
