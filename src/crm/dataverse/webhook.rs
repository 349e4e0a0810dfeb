//! Receiving Dataverse webhooks: a service endpoint POSTs a RemoteExecutionContext
//! after each registered Create, Update or Delete. The key is checked in constant
//! time (`?code=` for WebhookKey, or a configured header for HttpHeader), the context
//! becomes the same [`CrmEvent`] polling gives, and the answer is 2xx only once the
//! sink has it. Dataverse retries a failed call only once, so this is the fast path;
//! change tracking remains the guarantee.

use std::collections::HashMap;
use std::sync::Arc;

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::poller::primary_key;
use crate::config::secret_matches;
use crate::crm::CrmEventSink;
use crate::model::{ChangeKind, CrmEvent, CrmRecordRef};

/// `kaizala_bridge_dataverse_webhook_calls_total{crm,outcome}`.
pub const CALLS_TOTAL: &str = "kaizala_bridge_dataverse_webhook_calls_total";

/// How one CRM source's webhook authenticates, and what it watches.
pub struct Source {
    /// The key.
    pub key: SecretString,
    /// The header carrying it (HttpHeader), or `None` for `?code=` (WebhookKey).
    pub header: Option<String>,
    /// Watched entity sets.
    pub entity_sets: Vec<String>,
}

/// Why a call was not taken; each maps to a status.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// No source of this name with a webhook key, or a missing or wrong key (401
    /// either way, logged apart, so a scanner learns no source names).
    #[error("missing or wrong webhook key")]
    Unauthorized,
    /// Not a RemoteExecutionContext (400); names the field.
    #[error("{0}")]
    Malformed(String),
    /// The sink could not take it (503).
    #[error("the event could not be taken: {0}")]
    Unavailable(String),
}

/// What became of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Handed on.
    Accepted,
    /// About a table or message the source does not watch; acknowledged, not handed on.
    Ignored,
}

/// The receiver of every Dataverse source.
pub struct DataverseReceiver {
    sources: HashMap<String, Source>,
    sink: Arc<dyn CrmEventSink>,
}

impl DataverseReceiver {
    /// A receiver for these sources.
    pub fn new(sources: HashMap<String, Source>, sink: Arc<dyn CrmEventSink>) -> Self {
        Self { sources, sink }
    }

    /// Checks, parses and hands on one call. `code` is the `code` query parameter;
    /// `header` looks a request header up by name.
    pub async fn receive(
        &self,
        crm: &str,
        code: Option<&str>,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<Received, ReceiveError> {
        let Some(source) = self.sources.get(crm) else {
            tracing::warn!(crm = %crm.escape_debug(), "a Dataverse call for a CRM source that receives no webhooks here; answered 401");
            return Err(ReceiveError::Unauthorized);
        };
        let given = match &source.header {
            Some(name) => header(name),
            None => code.map(str::to_string),
        };
        if !secret_matches(given.unwrap_or_default().as_bytes(), &source.key) {
            tracing::warn!(
                crm,
                "a Dataverse call with a missing or wrong webhook key; answered 401"
            );
            self.count(crm, "unauthorized");
            return Err(ReceiveError::Unauthorized);
        }
        let event = match parse(crm, body) {
            Ok(Some(event)) => event,
            Ok(None) => {
                self.count(crm, "ignored");
                return Ok(Received::Ignored);
            }
            Err(e) => {
                self.count(crm, "malformed");
                return Err(ReceiveError::Malformed(e));
            }
        };
        if !source.entity_sets.contains(&event.record.entity_set) {
            self.count(crm, "ignored");
            return Ok(Received::Ignored);
        }
        self.sink.accept(event).await.map_err(|e| {
            self.count(crm, "unavailable");
            ReceiveError::Unavailable(e)
        })?;
        self.count(crm, "accepted");
        Ok(Received::Accepted)
    }

    fn count(&self, crm: &str, outcome: &str) {
        metrics::counter!(CALLS_TOTAL, "crm" => crm.to_string(), "outcome" => outcome.to_string())
            .increment(1);
    }
}

/// The entity set of a logical name (`opportunity` → `opportunities`).
pub fn entity_set_of(logical: &str) -> String {
    match logical.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{stem}ies"),
        _ => format!("{logical}s"),
    }
}

/// A RemoteExecutionContext body as an event for source `crm`; `None` for a message
/// other than Create, Update, Delete. The error names the field; the record id is
/// always a GUID in an event it returns.
pub fn parse(crm: &str, body: &[u8]) -> Result<Option<CrmEvent>, String> {
    let context: Value =
        serde_json::from_slice(body).map_err(|e| format!("body: not valid JSON ({e})"))?;
    let text = |key: &str| {
        context
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{key}: missing"))
    };
    let kind = match text("MessageName")? {
        "Create" => ChangeKind::Created,
        "Update" => ChangeKind::Updated,
        "Delete" => ChangeKind::Deleted,
        _ => return Ok(None),
    };
    let logical = text("PrimaryEntityName")?;
    let id = text("PrimaryEntityId")?.to_string();
    crate::model::ids::guid("PrimaryEntityId", &id)?;
    let entity_set = entity_set_of(logical);
    let mut attributes = Map::new();
    // When the payload was too large, Dataverse drops InputParameters: the attributes
    // stay empty and whoever needs them reads the record by id.
    let target = context
        .get("InputParameters")
        .and_then(Value::as_array)
        .and_then(|params| {
            params
                .iter()
                .find(|p| p.get("key").and_then(Value::as_str) == Some("Target"))
                .and_then(|p| p.get("value"))
        });
    // A Create's Target holds every column set (an absent one is empty); an Update's
    // holds the changed ones only, and a payload without its Target holds none.
    let partial = kind == ChangeKind::Updated || (kind == ChangeKind::Created && target.is_none());
    if kind != ChangeKind::Deleted {
        if let Some(pairs) = target
            .and_then(|t| t.get("Attributes"))
            .and_then(Value::as_array)
        {
            for (i, pair) in pairs.iter().enumerate() {
                let key = pair.get("key").and_then(Value::as_str).ok_or_else(|| {
                    format!("InputParameters.Target.Attributes[{i}].key: missing")
                })?;
                let value = pair.get("value").cloned().unwrap_or(Value::Null);
                let (key, value) = plain(key, value);
                attributes.insert(key, value);
            }
        }
    }
    attributes.insert(primary_key(&entity_set), Value::String(id.clone()));
    Ok(Some(CrmEvent {
        record: CrmRecordRef {
            crm: crm.to_string(),
            entity_set,
            id,
        },
        partial,
        kind,
        attributes,
    }))
}

/// A typed attribute value as the Web API would show it: Money and OptionSetValue as
/// their number, an EntityReference as `_{column}_value` with its id, `/Date(ms)/` as
/// an ISO date-time.
fn plain(key: &str, value: Value) -> (String, Value) {
    let kind = value
        .get("__type")
        .and_then(Value::as_str)
        .map(|t| t.split(':').next().unwrap_or_default().to_string());
    match kind.as_deref() {
        Some("Money" | "OptionSetValue") => (
            key.to_string(),
            value.get("Value").cloned().unwrap_or(Value::Null),
        ),
        Some("EntityReference") => (
            format!("_{key}_value"),
            value.get("Id").cloned().unwrap_or(Value::Null),
        ),
        _ => match value.as_str().and_then(net_date) {
            Some(iso) => (key.to_string(), Value::String(iso)),
            None => (key.to_string(), value),
        },
    }
}

/// `/Date(1506384247000)/` or `/Date(1506409448000-0700)/` as `2017-09-26T00:04:07Z`.
fn net_date(text: &str) -> Option<String> {
    let inner = text.strip_prefix("/Date(")?.strip_suffix(")/")?;
    let digits: String = inner
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    let ms: i64 = digits.trim_end_matches('-').parse().ok()?;
    crate::model::time::rfc3339_from_ms(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_names_map_to_entity_sets() {
        assert_eq!(entity_set_of("opportunity"), "opportunities");
        assert_eq!(entity_set_of("task"), "tasks");
        assert_eq!(entity_set_of("annotation"), "annotations");
        assert_eq!(entity_set_of("survey"), "surveys");
    }

    #[test]
    fn the_documented_update_sample_parses() {
        let sample = br#"{"MessageName":"Update","PrimaryEntityName":"contact","PrimaryEntityId":"6d81597f-0f9f-e711-8122-000d3aa2331c",
          "InputParameters":[{"key":"Target","value":{"__type":"Entity:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts",
            "Attributes":[{"key":"firstname","value":"James"},{"key":"modifiedon","value":"\/Date(1506384247000)\/"},
              {"key":"modifiedby","value":{"__type":"EntityReference:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Id":"75c2dd85-e89e-e711-8122-000d3aa2331c","LogicalName":"systemuser"}},
              {"key":"statecode","value":{"__type":"OptionSetValue:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Value":0}}]}}]}"#;
        let event = parse("d365", sample).unwrap().unwrap();
        assert_eq!(
            (event.kind, event.record.entity_set.as_str()),
            (ChangeKind::Updated, "contacts")
        );
        assert_eq!(event.attributes["firstname"], "James");
        assert_eq!(event.attributes["modifiedon"], "2017-09-26T00:04:07Z");
        assert_eq!(
            event.attributes["_modifiedby_value"],
            "75c2dd85-e89e-e711-8122-000d3aa2331c"
        );
        assert_eq!(event.attributes["statecode"], 0);
        assert_eq!(
            event.attributes["contactid"],
            "6d81597f-0f9f-e711-8122-000d3aa2331c"
        );
        assert_eq!(
            parse(
                "d365",
                br#"{"MessageName":"Create","PrimaryEntityName":"opportunity"}"#
            )
            .unwrap_err(),
            "PrimaryEntityId: missing"
        );
    }
}
