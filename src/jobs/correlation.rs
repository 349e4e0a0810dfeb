//! The correlation store: what became of each idempotency key (posting, or sent as
//! which action), and for each action of ours what it was sent for. Recorded before
//! and after the POST, so an uncertain outcome can be told apart from a failure.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{ActivityKind, CrmRecordRef};
use crate::store::{namespaces, Leases, Store, StoreError};

/// Where a post stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PostState {
    /// A POST was started (epoch ms) and its outcome is not known: look before posting
    /// again.
    Posting {
        /// When the first POST started.
        started_ms: i64,
    },
    /// Posted as this action.
    Sent {
        /// The Kaizala action id.
        action_id: String,
    },
}

/// What an action of ours was sent for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correlation {
    /// The idempotency key.
    pub key: String,
    /// The rule.
    pub rule: String,
    /// Tenant and connector that sent it.
    pub tenant: String,
    /// Connector.
    pub connector: String,
    /// The group.
    pub group: String,
    /// The action's title, for the activity.
    pub title: String,
    /// The record.
    pub record: CrmRecordRef,
    /// What answers become.
    pub activity: ActivityKind,
    /// When the action stops taking answers (epoch ms), when known: response polling
    /// reads it until then plus a grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<i64>,
    /// Response polling is done with it (past due and grace).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub polled_out: bool,
}

/// Correlations in the state store (shared by replicas on Redis).
#[derive(Clone)]
pub struct Correlations {
    store: Arc<dyn Store>,
}

impl Correlations {
    /// Correlations kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Where the post of `key` stands.
    pub async fn state(&self, key: &str) -> Result<Option<PostState>, StoreError> {
        match self.store.get(namespaces::CORRELATIONS, key).await? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| StoreError(format!("correlation {key} is not readable: {e}"))),
        }
    }

    /// Records where the post of `key` stands, durably.
    pub async fn set_state(&self, key: &str, state: &PostState) -> Result<(), StoreError> {
        let text = serde_json::to_string(state).expect("plain data serializes");
        self.store
            .put(namespaces::CORRELATIONS, key, &text, None)
            .await
    }

    /// Records that `action_id` was sent for `correlation`, then that its key is sent.
    pub async fn sent(&self, action_id: &str, correlation: &Correlation) -> Result<(), StoreError> {
        let text = serde_json::to_string(correlation).expect("plain data serializes");
        self.store
            .put(namespaces::ACTIONS, action_id, &text, None)
            .await?;
        self.set_state(
            &correlation.key,
            &PostState::Sent {
                action_id: action_id.to_string(),
            },
        )
        .await
    }

    /// Holds `key` for `holder` for at most `ttl`; false when another holds it.
    pub async fn hold(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        Leases::new(self.store.as_ref(), namespaces::POSTING)
            .hold(key, holder, ttl)
            .await
    }

    /// Lets go of `key` if `holder` still holds it.
    pub async fn release(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        Leases::new(self.store.as_ref(), namespaces::POSTING)
            .release(key, holder)
            .await
    }

    /// Every action of ours with what it was sent for (response polling).
    pub async fn actions(&self) -> Result<Vec<(String, Correlation)>, StoreError> {
        let listed = self.store.list(namespaces::ACTIONS).await?;
        Ok(listed
            .into_iter()
            .filter_map(|(id, text)| Some((id, serde_json::from_str(&text).ok()?)))
            .collect())
    }

    /// Marks action `action_id` as no longer polled for answers; it stays ours, so a
    /// late answer by webhook is still recorded.
    pub async fn stop_polling(&self, action_id: &str) -> Result<(), StoreError> {
        let Some(mut correlation) = self.action(action_id).await? else {
            return Ok(());
        };
        correlation.polled_out = true;
        let text = serde_json::to_string(&correlation).expect("plain data serializes");
        self.store
            .put(namespaces::ACTIONS, action_id, &text, None)
            .await
    }

    /// What `action_id` was sent for, when it is ours.
    pub async fn action(&self, action_id: &str) -> Result<Option<Correlation>, StoreError> {
        match self.store.get(namespaces::ACTIONS, action_id).await? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| StoreError(format!("action {action_id} is not readable: {e}"))),
        }
    }
}
