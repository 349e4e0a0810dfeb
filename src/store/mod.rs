//! The bridge's durable state: correlations (idempotency key ↔ Kaizala action), event
//! ids seen, delta links, learned credentials. One small contract, namespaced keys
//! with optional expiry, on two backends: SQLite (one process, a file in the data
//! directory) and Redis (shared by replicas).

mod redis_store;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use redis_store::RedisStore;
pub use sqlite::SqliteStore;

/// The store could not be read or written; the operation can be retried.
#[derive(Debug, thiserror::Error)]
#[error("the state store failed: {0}")]
pub struct StoreError(pub String);

/// Boxed future of a store operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One write of [`Store::put_all`].
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The namespace (one of [`namespaces`]).
    pub namespace: &'a str,
    /// The key within it.
    pub key: &'a str,
    /// The value it gets.
    pub value: &'a str,
    /// When it expires, if it does.
    pub ttl: Option<Duration>,
}

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
    /// Sets every entry of `entries` (replacing values) in one atomic write: all or
    /// none, one commit (SQLite) or one MULTI/EXEC round trip (Redis). For the writes
    /// that together record one fact (an action sent: its record, its open-answers
    /// index entry, its key's state).
    fn put_all<'a>(&'a self, entries: &'a [Entry<'a>]) -> StoreFuture<'a, ()>;
    /// Removes `key`.
    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> StoreFuture<'a, ()>;
    /// Removes `key` only while its value is `value`; true when it was removed. Atomic,
    /// so a holder letting go (or taking over a dead holder's key) never removes a
    /// value someone else wrote in between.
    fn delete_if<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, bool>;
    /// Every live key of `namespace` with its value, ordered by key. For small
    /// namespaces an operator lists (dead letters), not for the large ones.
    fn list<'a>(&'a self, namespace: &'a str) -> StoreFuture<'a, Vec<(String, String)>>;
    /// Removes entries whose expiry has passed; returns how many. Redis expires keys
    /// itself (0); the SQLite file needs this run now and then (see [`purge_expired`]).
    fn purge_expired(&self) -> StoreFuture<'_, u64>;
    /// Whether other processes share this store (Redis) or it is this process's own
    /// (the SQLite file): singular work needs a lease only in a shared one.
    fn is_shared(&self) -> bool;
}

/// The store on `backend`: in the same SQLite file as the job queue (one file to
/// back up) or the same Redis.
pub async fn open(
    backend: &crate::backend::Backend,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    use crate::backend::Backend;
    Ok(match backend {
        Backend::Sqlite(sqlite) => std::sync::Arc::new(
            SqliteStore::on(sqlite.writes().clone())
                .await?
                .reading_from(sqlite.reads().clone()),
        ),
        Backend::Redis(redis) => std::sync::Arc::new(RedisStore::on(redis)),
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
    /// The actions still taking answers (expiring at their due date plus the grace):
    /// the index the answer sweep reads instead of every action ever sent.
    pub const OPEN_ACTIONS: &str = "open-action";
    /// Idempotency keys an attempt is posting right now (held with a ttl).
    pub const POSTING: &str = "posting";
    /// Leases: which replica does a singular job (polls a CRM source) for now.
    pub const LEASES: &str = "lease";
    /// When each CRM source was last polled successfully (epoch ms), by any replica.
    pub const POLLED: &str = "polled";
    /// Processes alive now (see [`super::Presence`]).
    pub const ALIVE: &str = "alive";
    /// When the process-local rate gate last gave a permit per quota key, so the
    /// next process keeps the spacing.
    pub const GATE: &str = "gate";
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

/// Singular work leased to one replica for a while (who polls a CRM source, who
/// reconciles a tenant's webhooks), shared by every replica on Redis; a holder that
/// dies lets go when the ttl runs out. A store of this process's own (SQLite) has no
/// replica to share with: every lease is this process's, none is written, and so
/// none left by a killed predecessor can make a restart wait.
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
        if !self.store.is_shared() {
            return Ok(true);
        }
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
        if !self.store.is_shared() {
            return Ok(());
        }
        self.store.delete_if(self.namespace, key, holder).await?;
        Ok(())
    }
}

/// Which processes are alive, for a store shared by replicas: each announces itself
/// with a short expiry and renews it, so a hold or lease whose holder is gone (killed,
/// its machine lost) is recognised within [`PRESENCE_TTL`], not after its own ttl.
pub struct Presence<'a> {
    store: &'a dyn Store,
}

/// How long a process counts as alive after its last announcement.
pub const PRESENCE_TTL: Duration = Duration::from_secs(10);
/// How often a live process announces itself.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(3);

impl<'a> Presence<'a> {
    /// Presence kept in `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        Self { store }
    }

    /// Says `process` is alive for [`PRESENCE_TTL`].
    pub async fn announce(&self, process: &str) -> Result<(), StoreError> {
        self.store
            .put(namespaces::ALIVE, process, "1", Some(PRESENCE_TTL))
            .await
    }

    /// Says `process` is gone (it is shutting down).
    pub async fn withdraw(&self, process: &str) -> Result<(), StoreError> {
        self.store.delete(namespaces::ALIVE, process).await
    }

    /// Whether `process` announced itself within [`PRESENCE_TTL`].
    pub async fn is_alive(&self, process: &str) -> Result<bool, StoreError> {
        Ok(self.store.get(namespaces::ALIVE, process).await?.is_some())
    }

    /// Announces `process` every [`PRESENCE_EVERY`] until `shutdown`, then withdraws it.
    pub async fn keep_announcing(&self, process: &str, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.announce(process).await {
                tracing::warn!(%error, "cannot announce this process as alive; trying again");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(PRESENCE_EVERY) => {}
            }
        }
        let _ = self.withdraw(process).await;
    }
}

/// How often expired entries are removed from a store that does not expire its own.
pub const PURGE_EVERY: Duration = Duration::from_secs(300);

/// Removes expired entries (dedup ids, holds, leases, open actions, correlations
/// past `kaizala.correlation_retention`) every [`PURGE_EVERY`] until `shutdown`, so
/// the SQLite file stops growing with them.
pub async fn purge_expired(store: &dyn Store, shutdown: CancellationToken) {
    loop {
        match store.purge_expired().await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "expired state removed"),
            Err(error) => tracing::warn!(%error, "cannot remove expired state; trying again later"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PURGE_EVERY) => {}
        }
    }
}
