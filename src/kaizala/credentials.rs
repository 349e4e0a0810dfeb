//! What the bridge learned about a connector and must keep: the refresh token Kaizala
//! rotated and the endpoint a 308 moved it to. Both must survive a restart: the
//! rotated token replaces the configured one for good, and the old endpoint may be
//! gone. They live in the durable store (namespace `credentials`), so replicas on
//! Redis share them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::KaizalaError;
use crate::store::{namespaces, Store};

/// What was learned about one connector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    /// A refresh token Kaizala handed out to replace the configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<super::token::Token>,
    /// The endpoint a 308 pointed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

/// Learned credentials of connectors, keyed `tenant/connector`, in the store.
#[derive(Clone)]
pub struct Credentials {
    store: Arc<dyn Store>,
}

impl Credentials {
    /// Credentials kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// What is known about `key`.
    pub async fn load(&self, key: &str) -> Result<Learned, KaizalaError> {
        let text = self
            .store
            .get(namespaces::CREDENTIALS, key)
            .await
            .map_err(|e| KaizalaError::Credentials(e.to_string()))?;
        match text {
            None => Ok(Learned::default()),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                KaizalaError::Credentials(format!("stored credentials of {key} are not valid: {e}"))
            }),
        }
    }

    /// Records `learned` for `key`, durably, before returning.
    pub async fn save(&self, key: &str, learned: &Learned) -> Result<(), KaizalaError> {
        let text = serde_json::to_string(learned).expect("plain data serializes");
        self.store
            .put(namespaces::CREDENTIALS, key, &text, None)
            .await
            .map_err(|e| KaizalaError::Credentials(e.to_string()))
    }
}
