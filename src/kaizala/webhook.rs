//! Receiving Kaizala's webhook events: the validation handshake, the callback token
//! (compared as digests in constant time), parsing, dropping repeated deliveries, and
//! handing each event to a sink. An event is acknowledged only once the sink has it.
//!
//! In that order, and each tenant on its own: an unknown tenant and a wrong token get
//! the same 401 (only the log says which, so a scanner learns no tenant names), and a
//! delivery's event id is remembered under its tenant, so one tenant's ids can never
//! suppress another's events.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use secrecy::SecretString;

use super::events::{EventData, KaizalaEvent};
use crate::config::secret_matches;
use crate::store::{DedupKeys, Store};

/// `kaizala_bridge_kaizala_webhook_events_total{tenant,type,outcome}`.
pub const EVENTS_TOTAL: &str = "kaizala_bridge_kaizala_webhook_events_total";

/// Where received events go (the job queue; a channel in tests).
pub trait EventSink: Send + Sync {
    /// Takes `event` durably, or fails so Kaizala delivers it again.
    fn accept(
        &self,
        tenant: &str,
        event: KaizalaEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>>;
}

/// The sink could not take an event now.
#[derive(Debug, thiserror::Error)]
#[error("the event could not be taken: {0}")]
pub struct SinkError(pub String);

/// Why an event was not taken; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// No tenant of this name with a callback token, or a missing or wrong
    /// `kz-callback-token` (401 either way, logged apart).
    #[error("missing or wrong kz-callback-token")]
    Unauthorized,
    /// The body is not a valid event (400); the message names the field.
    #[error("{0}")]
    Malformed(String),
    /// The sink could not take it (503): Kaizala will deliver it again.
    #[error(transparent)]
    Unavailable(#[from] SinkError),
}

/// What became of an accepted delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Handed to the sink.
    Accepted,
    /// Seen before; dropped.
    Duplicate,
}

/// The webhook receiver of every tenant. Event ids are claimed in the durable store,
/// so replicas share them and a restart does not forget them.
pub struct Receiver {
    tokens: HashMap<String, SecretString>,
    store: Arc<dyn Store>,
    dedup_ttl: std::time::Duration,
    sink: Arc<dyn EventSink>,
}

impl Receiver {
    /// A receiver for tenants with these callback tokens, remembering event ids for
    /// `dedup_ttl`.
    pub fn new(
        tokens: HashMap<String, SecretString>,
        store: Arc<dyn Store>,
        dedup_ttl: std::time::Duration,
        sink: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            tokens,
            store,
            dedup_ttl,
            sink,
        }
    }

    /// Checks, parses, deduplicates and hands on one delivery.
    pub async fn receive(
        &self,
        tenant: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<Received, ReceiveError> {
        let Some(expected) = self.tokens.get(tenant) else {
            // Not counted by tenant: the label would be whatever a scanner sent.
            tracing::warn!(tenant = %tenant.escape_debug(), "a Kaizala delivery for a tenant that receives no webhooks here; answered 401");
            return Err(ReceiveError::Unauthorized);
        };
        if !secret_matches(token.unwrap_or_default().as_bytes(), expected) {
            tracing::warn!(
                tenant,
                "a Kaizala delivery with a missing or wrong kz-callback-token; answered 401"
            );
            self.count(tenant, "unknown", "unauthorized");
            return Err(ReceiveError::Unauthorized);
        }
        let event = KaizalaEvent::parse(body).map_err(|e| {
            self.count(tenant, "unknown", "malformed");
            ReceiveError::Malformed(e)
        })?;
        self.hand_on(tenant, event).await
    }

    /// Deduplicates and hands on an event that is already trusted (a webhook delivery
    /// whose token passed, or a response found by polling).
    pub async fn hand_on(
        &self,
        tenant: &str,
        event: KaizalaEvent,
    ) -> Result<Received, ReceiveError> {
        let kind = super::events::type_label(&event.event_type);
        let dedup = DedupKeys::new(self.store.as_ref(), self.dedup_ttl);
        // Under the tenant: the same id from another tenant is another event.
        let dedup_id = format!("{tenant}/{}", event.event_id);
        let first = dedup.claim(&dedup_id).await.map_err(|e| {
            self.count(tenant, kind, "unavailable");
            ReceiveError::Unavailable(SinkError(e.to_string()))
        })?;
        if !first {
            self.count(tenant, kind, "duplicate");
            return Ok(Received::Duplicate);
        }
        if matches!(event.data, EventData::Unknown { .. }) {
            // Acknowledged so Kaizala does not retry it, but nothing acts on it.
            self.count(tenant, kind, "unknown_type");
            return Ok(Received::Accepted);
        }
        match self.sink.accept(tenant, event).await {
            Ok(()) => {
                self.count(tenant, kind, "accepted");
                Ok(Received::Accepted)
            }
            Err(error) => {
                // Released so Kaizala's retry is handed on; if even that fails, the
                // claim expires with the ttl.
                let _ = dedup.release(&dedup_id).await;
                self.count(tenant, kind, "unavailable");
                Err(error.into())
            }
        }
    }

    fn count(&self, tenant: &str, kind: &str, outcome: &str) {
        let labels = [
            ("tenant", tenant.to_string()),
            ("type", kind.to_string()),
            ("outcome", outcome.to_string()),
        ];
        metrics::counter!(EVENTS_TOTAL, &labels).increment(1);
    }
}
