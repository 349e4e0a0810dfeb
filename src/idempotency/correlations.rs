//! The correlation store: what became of each idempotency key (posting, or sent as
//! which action), and for each action of ours what it was sent for. Recorded before
//! and after the POST, so an uncertain outcome can be told apart from a failure.
//!
//! Each tenant has its own: actions are kept under `{tenant}/{action id}`, so an
//! event reported for one tenant can only ever find that tenant's actions.
//! Idempotency keys begin with their rule's id, and a rule sends for one CRM source
//! to one tenant, so they are apart by construction. Actions recorded before keys
//! carried the tenant are still read (under their bare id) for as long as they live.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::model::Correlation;
use crate::store::{namespaces, Entry, Store, StoreError};

/// Where a post stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PostState {
    /// A POST was started (epoch ms) and its outcome is not known: look before posting
    /// again.
    Posting {
        /// When the first POST started.
        started_ms: i64,
        /// What the action is sent for: an answer that arrives before the POST's
        /// outcome is recorded finds its record through the survey's key question
        /// and this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correlation: Option<Box<Correlation>>,
    },
    /// Posted as this action.
    Sent {
        /// The Kaizala action id.
        action_id: String,
    },
}

/// Correlations in the state store (shared by replicas on Redis).
#[derive(Clone)]
pub struct Correlations {
    store: Arc<dyn Store>,
    open_for: Duration,
    /// How long each entry lives after its last write; `None`: for good.
    retention: Option<Duration>,
}

/// How long past its due date an action stays in the index of open actions when
/// nothing says otherwise (`kaizala.response_poll_grace`'s default).
const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(24 * 3600);

impl Correlations {
    /// Correlations kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            open_for: DEFAULT_OPEN_FOR,
            retention: None,
        }
    }

    /// Keeps every entry for `retention` after its last write
    /// (`kaizala.correlation_retention`), so the store stays bounded.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Keeps an action in the index of open actions until `grace` past its due date
    /// (`kaizala.response_poll_grace`).
    pub fn with_open_for(mut self, grace: Duration) -> Self {
        self.open_for = grace;
        self
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
            .put(namespaces::CORRELATIONS, key, &text, self.retention)
            .await
    }

    /// Records, in one atomic write, that `action_id` was sent for `correlation` and
    /// that its key is sent: no crash leaves the key "sent" without the action's
    /// record, or the record without the key's state.
    pub async fn sent(&self, action_id: &str, correlation: &Correlation) -> Result<(), StoreError> {
        let state = PostState::Sent {
            action_id: action_id.to_string(),
        };
        let state = serde_json::to_string(&state).expect("plain data serializes");
        let record = ActionRecord::of(self, action_id, correlation);
        let mut entries = record.entries();
        entries.push(Entry {
            namespace: namespaces::CORRELATIONS,
            key: &correlation.key,
            value: &state,
            ttl: self.retention,
        });
        self.store.put_all(&entries).await
    }

    /// Records that `action_id` is ours, sent for `correlation` (and open for answers
    /// until its due date plus the grace), leaving its key's post state as it is.
    pub async fn record_action(
        &self,
        action_id: &str,
        correlation: &Correlation,
    ) -> Result<(), StoreError> {
        let record = ActionRecord::of(self, action_id, correlation);
        self.store.put_all(&record.entries()).await
    }

    /// How long `correlation`'s action stays in the index of open actions, if it has
    /// a due date: until the due date plus the grace, at least a minute, never longer
    /// than the retention (nothing about the action outlives what it was sent for).
    fn open_for(&self, correlation: &Correlation) -> Option<Duration> {
        let due_ms = correlation.due_ms?;
        let open_ms = due_ms
            .saturating_add(self.open_for.as_millis().min(i64::MAX as u128) as i64)
            .saturating_sub(crate::queue::now_ms())
            .max(60_000);
        let open_for = Duration::from_millis(open_ms as u64);
        Some(self.retention.map_or(open_for, |kept| open_for.min(kept)))
    }

    /// The store the correlations are kept in (holds live beside them).
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The actions of ours still taking answers (until their due date plus the
    /// grace), with what each was sent for: what response polling reads. Each
    /// correlation names its tenant.
    pub async fn open_actions(&self) -> Result<Vec<(String, Correlation)>, StoreError> {
        let listed = self.store.list(namespaces::OPEN_ACTIONS).await?;
        Ok(listed
            .into_iter()
            .filter_map(|(key, text)| {
                let action_id = key.split_once('/').map_or(key.as_str(), |(_, id)| id);
                Some((action_id.to_string(), serde_json::from_str(&text).ok()?))
            })
            .collect())
    }

    /// Marks `tenant`'s action `action_id` as no longer polled for answers; it stays
    /// ours, so a late answer by webhook is still recorded.
    pub async fn stop_polling(&self, tenant: &str, action_id: &str) -> Result<(), StoreError> {
        let Some(mut correlation) = self.action(tenant, action_id).await? else {
            return Ok(());
        };
        correlation.polled_out = true;
        let text = serde_json::to_string(&correlation).expect("plain data serializes");
        let key = action_key(tenant, action_id);
        self.store
            .put(namespaces::ACTIONS, &key, &text, self.retention)
            .await?;
        self.store.delete(namespaces::OPEN_ACTIONS, &key).await?;
        self.store.delete(namespaces::OPEN_ACTIONS, action_id).await
    }

    /// What `tenant`'s action `action_id` was sent for, when it is ours. Another
    /// tenant's action of that id is never returned.
    pub async fn action(
        &self,
        tenant: &str,
        action_id: &str,
    ) -> Result<Option<Correlation>, StoreError> {
        let read = |key: String| async move {
            match self.store.get(namespaces::ACTIONS, &key).await? {
                None => Ok(None),
                Some(text) => serde_json::from_str::<Correlation>(&text)
                    .map(Some)
                    .map_err(|e| StoreError(format!("action {key} is not readable: {e}"))),
            }
        };
        if let Some(correlation) = read(action_key(tenant, action_id)).await? {
            return Ok(Some(correlation));
        }
        // Recorded before actions were kept per tenant: the tenant it names decides.
        Ok(read(action_id.to_string())
            .await?
            .filter(|correlation| correlation.tenant == tenant))
    }
}

/// An action's record, written under its tenant: what it was sent for, and (while it
/// takes answers) its entry in the index the answer sweep reads, which expires by
/// itself so a sweep never reads the whole history.
struct ActionRecord {
    key: String,
    text: String,
    retention: Option<Duration>,
    open_for: Option<Duration>,
}

impl ActionRecord {
    fn of(correlations: &Correlations, action_id: &str, correlation: &Correlation) -> Self {
        Self {
            key: action_key(&correlation.tenant, action_id),
            text: serde_json::to_string(correlation).expect("plain data serializes"),
            retention: correlations.retention,
            open_for: correlations.open_for(correlation),
        }
    }

    fn entries(&self) -> Vec<Entry<'_>> {
        let record = Entry {
            namespace: namespaces::ACTIONS,
            key: &self.key,
            value: &self.text,
            ttl: self.retention,
        };
        let open = self.open_for.map(|ttl| Entry {
            namespace: namespaces::OPEN_ACTIONS,
            key: &self.key,
            value: &self.text,
            ttl: Some(ttl),
        });
        std::iter::once(record).chain(open).collect()
    }
}

/// Where `tenant`'s action `action_id` is kept. Tenant ids hold no `/` (the
/// configuration refuses one), so the first `/` ends the tenant.
fn action_key(tenant: &str, action_id: &str) -> String {
    format!("{tenant}/{action_id}")
}
