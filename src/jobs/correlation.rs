//! The correlation store: what became of each idempotency key (posting, or sent as
//! which action), and for each action of ours what it was sent for. Recorded before
//! and after the POST, so an uncertain outcome can be told apart from a failure.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{ActivityKind, CrmRecordRef};
use crate::store::{namespaces, Store, StoreError};

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
