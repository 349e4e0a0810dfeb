//! Jobs that failed for good, kept with their attempts and last error until an
//! operator replays or purges them. They live in the state store (namespace
//! `dead-letter`), beside the backend, so neither backend's own notion of a dead task
//! (which differs between them in apalis 1.0) matters.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::job::JobKind;
use crate::store::{namespaces, Store, StoreError};

/// A job that failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The job's id (its envelope id).
    pub id: String,
    /// Its kind.
    pub kind: JobKind,
    /// Attempts made.
    pub attempts: u32,
    /// What went wrong the last time.
    pub last_error: String,
    /// When it was first queued (epoch ms).
    pub enqueued_ms: i64,
    /// When it was given up (epoch ms).
    pub dead_ms: i64,
    /// The job, as queued.
    pub job: serde_json::Value,
}

/// The dead-letter list.
#[derive(Clone)]
pub struct DeadLetters {
    store: Arc<dyn Store>,
}

impl DeadLetters {
    /// Dead letters kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Records `letter`, durably.
    pub async fn record(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let text = serde_json::to_string(letter).expect("plain data serializes");
        self.store
            .put(namespaces::DEAD_LETTERS, &letter.id, &text, None)
            .await
    }

    /// Every dead letter, oldest first.
    pub async fn list(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut letters = Vec::new();
        for (key, text) in self.store.list(namespaces::DEAD_LETTERS).await? {
            let letter = serde_json::from_str(&text)
                .map_err(|e| StoreError(format!("dead letter {key} is not readable: {e}")))?;
            letters.push(letter);
        }
        letters.sort_by_key(|l: &DeadLetter| (l.dead_ms, l.id.clone()));
        Ok(letters)
    }

    /// The dead letter `id`, if there is one.
    pub async fn get(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        match self.store.get(namespaces::DEAD_LETTERS, id).await? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| StoreError(format!("dead letter {id} is not readable: {e}"))),
        }
    }

    /// Forgets the dead letter `id`.
    pub async fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete(namespaces::DEAD_LETTERS, id).await
    }
}
