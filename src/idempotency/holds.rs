//! Holds on idempotency keys: while one attempt posts a key's action, no other attempt
//! (a duplicate job, a retry, another replica) posts it. A hold is taken only around
//! the POST, after the rate-gate permit, and names its holder (`process#attempt`), so
//! a hold whose holder is gone is recognised at once and taken over:
//! - the holder is this process and the attempt is no longer running (it timed out,
//!   panicked, or was cut off);
//! - the holder is another process and the store is this process's own (SQLite: no
//!   other process shares it, so that one is dead), or it no longer announces itself
//!   alive ([`crate::store::Presence`], within ten seconds of its death).
//!
//! The hold's ttl (`kaizala.request_timeout` plus a margin) is only the last resort.
//!
//! On a store of this process's own (SQLite) the holds live in memory: every other
//! process's hold there is a dead one anyway, so writing them would only cost two
//! fsyncs per survey on the send path.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{namespaces, Presence, Store, StoreError};

/// How often an attempt looks again at a key another live attempt holds.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Where the holds are written: the shared store, or this process's memory when the
/// store is its own.
#[derive(Clone)]
enum Book {
    Shared(Arc<dyn Store>),
    Local(Arc<Mutex<HashMap<String, String>>>),
}

impl Book {
    fn for_store(store: Arc<dyn Store>) -> Self {
        if store.is_shared() {
            Self::Shared(store)
        } else {
            Self::Local(Arc::default())
        }
    }

    fn local(
        map: &Mutex<HashMap<String, String>>,
    ) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who holds `key`.
    async fn holder(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self {
            Self::Shared(store) => store.get(namespaces::POSTING, key).await,
            Self::Local(map) => Ok(Self::local(map).get(key).cloned()),
        }
    }

    /// Takes `key` for `holder` unless it is held; whether it was taken.
    async fn take(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Self::Shared(store) => {
                store
                    .put_if_absent(namespaces::POSTING, key, holder, Some(ttl))
                    .await
            }
            Self::Local(map) => {
                let mut map = Self::local(map);
                if map.contains_key(key) {
                    return Ok(false);
                }
                map.insert(key.to_string(), holder.to_string());
                Ok(true)
            }
        }
    }

    /// Lets go of `key` if `holder` still holds it.
    async fn release(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        match self {
            Self::Shared(store) => store
                .delete_if(namespaces::POSTING, key, holder)
                .await
                .map(drop),
            Self::Local(map) => {
                let mut map = Self::local(map);
                if map.get(key).is_some_and(|h| h == holder) {
                    map.remove(key);
                }
                Ok(())
            }
        }
    }
}

/// The holds of this process.
#[derive(Clone)]
pub struct Holds {
    book: Book,
    process: String,
    ttl: Duration,
    running: Arc<Mutex<HashSet<String>>>,
}

/// A key held by one running attempt; let go with [`Held::release`], or when
/// dropped (an attempt cut off or panicking), in the background.
pub struct Held {
    book: Book,
    running: Arc<Mutex<HashSet<String>>>,
    key: String,
    holder: String,
    released: bool,
}

impl Holds {
    /// Holds kept in `store` for at most `ttl` each, by `process` (its name in
    /// [`Presence`]).
    pub fn new(store: Arc<dyn Store>, process: String, ttl: Duration) -> Self {
        Self {
            book: Book::for_store(store),
            process,
            ttl,
            running: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Waits until no live attempt holds `key` (taking a dead holder's hold away), for
    /// at most the hold's ttl, by which a live holder's POST has surely ended; false
    /// when one still holds it then.
    pub async fn wait_free(&self, key: &str) -> Result<bool, StoreError> {
        let (since, patience) = (tokio::time::Instant::now(), self.ttl);
        loop {
            match self.book.holder(key).await? {
                None => return Ok(true),
                Some(holder) if self.is_gone(&holder).await? => {
                    tracing::info!(%key, %holder, "the attempt holding the key is gone; taking its hold away");
                    self.book.release(key, &holder).await?;
                    return Ok(true);
                }
                Some(_) if since.elapsed() >= patience => return Ok(false),
                Some(_) => tokio::time::sleep(LOOK_EVERY).await,
            }
        }
    }

    /// Takes `key` for a new attempt of this process, atomically; `None` when another
    /// attempt took it first.
    pub async fn try_take(&self, key: &str) -> Result<Option<Held>, StoreError> {
        let attempt = uuid::Uuid::new_v4().simple().to_string();
        let holder = format!("{}#{attempt}", self.process);
        self.lock_running().insert(holder.clone());
        let taken = self.book.take(key, &holder, self.ttl).await;
        let held = Held {
            book: self.book.clone(),
            running: self.running.clone(),
            key: key.to_string(),
            holder,
            released: false,
        };
        match taken {
            Ok(true) => Ok(Some(held)),
            Ok(false) => {
                held.forget();
                Ok(None)
            }
            Err(error) => {
                held.forget();
                Err(error)
            }
        }
    }

    /// Whether the attempt `holder` names has ended or its process died.
    async fn is_gone(&self, holder: &str) -> Result<bool, StoreError> {
        let Some((process, _)) = holder.rsplit_once('#') else {
            // Not a holder this code writes (an older version's): its ttl decides.
            return Ok(false);
        };
        if process == self.process {
            return Ok(!self.lock_running().contains(holder));
        }
        match &self.book {
            // Only this process writes its memory: a hold named for another
            // process cannot be there, and would be a dead one.
            Book::Local(_) => Ok(true),
            Book::Shared(store) => Ok(!Presence::new(store.as_ref()).is_alive(process).await?),
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Held {
    /// Lets go of the key now.
    pub async fn release(mut self) {
        self.end();
        if let Err(error) = self.book.release(&self.key, &self.holder).await {
            tracing::warn!(key = %self.key, %error, "cannot release a hold; it is recognised as over");
        }
    }

    /// Ends a hold that was never taken (no store write needed).
    fn forget(mut self) {
        self.end();
    }

    /// The attempt is no longer running: for this process the hold is over.
    fn end(&mut self) {
        self.released = true;
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.holder);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // An attempt cut off mid-POST (timeout, panic): the hold is over at once for
        // this process (no longer running), and removed from the store for others.
        self.end();
        let (book, key, holder) = (self.book.clone(), self.key.clone(), self.holder.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = book.release(&key, &holder).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    async fn holds(dir: &tempfile::TempDir, process: &str) -> Holds {
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("s.sqlite"))
                .await
                .unwrap(),
        );
        Holds::new(store, process.into(), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn a_hold_dropped_mid_attempt_is_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let holds = holds(&dir, "p1").await;
        let held = holds.try_take("k").await.unwrap().expect("free");
        assert!(holds.try_take("k").await.unwrap().is_none(), "held");
        // An attempt cut off or panicking drops its hold without releasing it.
        let cut = tokio::spawn(async move {
            let _held = held;
            panic!("the attempt panics while holding the key");
        });
        assert!(cut.await.unwrap_err().is_panic());
        let started = tokio::time::Instant::now();
        assert!(holds.wait_free("k").await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(1), "not waited out");
        assert!(holds.try_take("k").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn on_a_store_of_its_own_another_process_hold_is_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let killed = holds(&dir, "killed").await;
        let held = killed.try_take("k").await.unwrap().expect("free");
        // SIGKILL: nothing runs, nothing is released.
        std::mem::forget(held);
        let restarted = holds(&dir, "restarted").await;
        let started = tokio::time::Instant::now();
        assert!(restarted.wait_free("k").await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(1), "not waited out");
        assert!(restarted.try_take("k").await.unwrap().is_some());
    }
}
