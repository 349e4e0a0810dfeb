//! The bridge's durable state: correlations (idempotency key ↔ Kaizala action), event
//! ids seen, delta links, learned credentials. One small contract, namespaced keys
//! with optional expiry, on two backends: SQLite (one process, a file in the data
//! directory) and Redis (shared by replicas).

mod redis_store;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use redis_store::RedisStore;
pub use sqlite::{durable_pool, SqliteStore};

/// The store could not be read or written; the operation can be retried.
#[derive(Debug, thiserror::Error)]
#[error("the state store failed: {0}")]
pub struct StoreError(pub String);

/// Boxed future of a store operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Namespaced keys with values and an optional expiry. Every write is durable
/// (committed, or acknowledged by Redis) before its future completes.
pub trait Store: Send + Sync {
    /// The value of `key` in `namespace`, unless absent or expired.
    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> StoreFuture<'a, Option<String>>;
    /// Sets `key`, replacing any value; `ttl` makes it expire.
    fn put<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()>;
    /// Sets `key` only if it is absent (or expired); true when it was set. Atomic, so
    /// two callers (or replicas) cannot both succeed.
    fn put_if_absent<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool>;
    /// Removes `key`.
    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> StoreFuture<'a, ()>;
    /// Every live key of `namespace` with its value, ordered by key. For small
    /// namespaces an operator lists (dead letters), not for the large ones.
    fn list<'a>(&'a self, namespace: &'a str) -> StoreFuture<'a, Vec<(String, String)>>;
}

/// The prefix of every key the bridge keeps in Redis (state, rate gate, queues).
pub const REDIS_PREFIX: &str = "kaizala-bridge";

/// The store the configuration asks for: it follows the queue backend, in the same
/// SQLite file (one file to back up) or the same Redis.
pub async fn open(config: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    use crate::config::QueueBackend;
    Ok(match config.queue.backend {
        QueueBackend::Sqlite => {
            std::sync::Arc::new(SqliteStore::open(&config.queue.sqlite_path).await?)
        }
        QueueBackend::Redis => {
            std::sync::Arc::new(RedisStore::connect(config.queue.redis_url(), REDIS_PREFIX).await?)
        }
    })
}

/// Namespaces the bridge uses.
pub mod namespaces {
    /// Idempotency key → Kaizala action id (and state) of a sent action.
    pub const CORRELATIONS: &str = "correlation";
    /// Event ids (Kaizala `eventId`, polled response keys) already handed on.
    pub const DEDUP: &str = "dedup";
    /// Dataverse delta links per (source, entity set).
    pub const DELTA_LINKS: &str = "delta";
    /// Refresh tokens and endpoints Kaizala handed out per connector.
    pub const CREDENTIALS: &str = "credentials";
    /// Jobs that failed for good, by job id.
    pub const DEAD_LETTERS: &str = "dead-letter";
    /// Kaizala action id → what the action was sent for.
    pub const ACTIONS: &str = "action";
    /// Idempotency keys an attempt is posting right now (held with a ttl).
    pub const POSTING: &str = "posting";
    /// Leases: which replica does a singular job (polls a CRM source) for now.
    pub const LEASES: &str = "lease";
}

/// Remembers event ids for a while so a repeat is handed on once, shared by every
/// replica on Redis; a claim is released when handing on failed.
pub struct DedupKeys<'a> {
    store: &'a dyn Store,
    ttl: Duration,
}

impl<'a> DedupKeys<'a> {
    /// Ids remembered for `ttl`.
    pub fn new(store: &'a dyn Store, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    /// True when `id` was not seen within the ttl; it is then claimed.
    pub async fn claim(&self, id: &str) -> Result<bool, StoreError> {
        self.store
            .put_if_absent(namespaces::DEDUP, id, "1", Some(self.ttl))
            .await
    }

    /// Gives a claim up so the next delivery is handed on.
    pub async fn release(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete(namespaces::DEDUP, id).await
    }
}

/// Keys held by one holder for a while (who polls a CRM source, which attempt posts an
/// action), shared by every replica on Redis; a holder that dies lets go when the ttl
/// runs out.
pub struct Leases<'a> {
    store: &'a dyn Store,
    namespace: &'a str,
}

impl<'a> Leases<'a> {
    /// Leases kept in `namespace` of `store`.
    pub fn new(store: &'a dyn Store, namespace: &'a str) -> Self {
        Self { store, namespace }
    }

    /// Takes `key` for `holder` when it is free (or expired), or renews it when
    /// `holder` has it; true while `holder` holds it. Renewal reads then writes, so in
    /// a narrow race two holders may both believe they hold it once: callers whose
    /// work is idempotent downstream only.
    pub async fn hold(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self.store.get(self.namespace, key).await? {
            Some(current) if current == holder => {
                self.store
                    .put(self.namespace, key, holder, Some(ttl))
                    .await?;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => {
                self.store
                    .put_if_absent(self.namespace, key, holder, Some(ttl))
                    .await
            }
        }
    }

    /// Lets go of `key` if `holder` still holds it.
    pub async fn release(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        if self.store.get(self.namespace, key).await?.as_deref() == Some(holder) {
            self.store.delete(self.namespace, key).await?;
        }
        Ok(())
    }
}
