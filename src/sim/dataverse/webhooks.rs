//! Webhooks: service endpoints registered with a step (entity and message) and an
//! authentication kind, called with a RemoteExecutionContext after each matching
//! write. As documented, only a 502, 503 or 504 answer gets one more attempt;
//! payloads over 256 KB lose their contexts and images and carry
//! `x-ms-dynamics-msg-size-exceeded`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::tables::Schema;
use super::Shared;

/// Largest payload sent whole.
const SIZE_LIMIT: usize = 256 * 1024;

/// How a service endpoint authenticates the calls it receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "auth")]
pub enum EndpointAuth {
    /// `?code={key}`.
    WebhookKey {
        /// The key.
        key: String,
    },
    /// Request headers.
    HttpHeader {
        /// Header names and values.
        headers: BTreeMap<String, String>,
    },
    /// Query-string parameters.
    HttpQueryString {
        /// Parameter names and values.
        query: BTreeMap<String, String>,
    },
}

/// A webhook registration: `{"url", "entity", "message", "auth": ..., ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    /// Assigned on registration.
    #[serde(default)]
    pub id: String,
    /// Where to POST.
    pub url: String,
    /// Logical name of the table, e.g. `opportunity`.
    pub entity: String,
    /// `Create`, `Update` or `Delete`.
    pub message: String,
    /// Authentication.
    #[serde(flatten)]
    pub auth: EndpointAuth,
    /// Always send the size-exceeded variant (to test receivers).
    #[serde(default)]
    pub size_exceeded: bool,
}

/// Checks and stores a registration; returns its id.
pub fn register(shared: &Shared, mut endpoint: ServiceEndpoint) -> Result<String, String> {
    url::Url::parse(&endpoint.url).map_err(|e| format!("url: {e}"))?;
    if !super::tables::SCHEMAS
        .iter()
        .any(|s| s.logical == endpoint.entity)
    {
        return Err(format!(
            "entity: {:?} is not opportunity, task or annotation",
            endpoint.entity
        ));
    }
    if !matches!(endpoint.message.as_str(), "Create" | "Update" | "Delete") {
        return Err(format!(
            "message: {:?} is not Create, Update or Delete",
            endpoint.message
        ));
    }
    endpoint.id = uuid::Uuid::new_v4().to_string();
    let id = endpoint.id.clone();
    shared.world.lock().unwrap().endpoints.push(endpoint);
    Ok(id)
}

fn typed(column: &str, value: &Value) -> Value {
    match (column, value) {
        ("estimatedvalue", Value::Number(n)) => {
            json!({ "__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": n })
        }
        ("statecode" | "statuscode" | "prioritycode", Value::Number(n)) => {
            json!({ "__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": n })
        }
        (_, Value::String(s)) if column.ends_with("on") && s.len() >= 19 => {
            let ms = parse_iso(s).unwrap_or(0);
            json!(format!("/Date({ms})/"))
        }
        _ => value.clone(),
    }
}

fn parse_iso(text: &str) -> Option<i64> {
    crate::sim::clock::parse_rfc3339(text)
}

fn context(
    shared: &Shared,
    schema: &Schema,
    message: &str,
    id: &str,
    columns: &Map<String, Value>,
    endpoint: &ServiceEndpoint,
) -> Value {
    let user = "75c2dd85-e89e-e711-8122-000d3aa2331c";
    let target = if message == "Delete" {
        json!({ "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts", "Id": id, "KeyAttributes": [],
                "LogicalName": schema.logical, "Name": null, "RowVersion": null })
    } else {
        let attributes: Vec<Value> = columns
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": typed(k, v) }))
            .collect();
        let version = columns.get("versionnumber").map(|v| v.to_string());
        json!({ "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts", "Attributes": attributes,
                "EntityState": null, "FormattedValues": [], "Id": id, "KeyAttributes": [], "LogicalName": schema.logical,
                "RelatedEntities": [], "RowVersion": version })
    };
    let output = if message == "Create" {
        json!([{ "key": "id", "value": id }])
    } else {
        json!([])
    };
    let now = shared.clock.now_ms();
    json!({
        "BusinessUnitId": "e2b9dd85-e89e-e711-8122-000d3aa2331c",
        "CorrelationId": uuid::Uuid::new_v4().to_string(),
        "Depth": 1,
        "InitiatingUserAgent": "",
        "InitiatingUserAzureActiveDirectoryObjectId": "00000000-0000-0000-0000-000000000000",
        "InitiatingUserId": user,
        "InputParameters": [{ "key": "Target", "value": target }],
        "IsExecutingOffline": false, "IsInTransaction": false, "IsOfflinePlayback": false, "IsolationMode": 1,
        "MessageName": message, "Mode": 1,
        "OperationCreatedOn": format!("/Date({now}+0000)/"),
        "OperationId": uuid::Uuid::new_v4().to_string(),
        "OrganizationId": "4ef5b371-e89e-e711-8122-000d3aa2331c",
        "OrganizationName": "emulated",
        "OutputParameters": output,
        "OwningExtension": { "Id": endpoint.id, "KeyAttributes": [], "LogicalName": "sdkmessageprocessingstep",
                             "Name": format!("{message} of {}", schema.logical), "RowVersion": null },
        "ParentContext": null,
        "PostEntityImages": [], "PreEntityImages": [],
        "PrimaryEntityId": id, "PrimaryEntityName": schema.logical,
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "SecondaryEntityName": "none", "SharedVariables": [], "Stage": 40,
        "UserAzureActiveDirectoryObjectId": "00000000-0000-0000-0000-000000000000",
        "UserId": user,
    })
}

/// Calls every endpoint registered for this write, in the background.
pub fn fire(
    shared: &Arc<Shared>,
    schema: &'static Schema,
    message: &str,
    id: &str,
    columns: &Map<String, Value>,
) {
    let endpoints: Vec<ServiceEndpoint> = shared
        .world
        .lock()
        .unwrap()
        .endpoints
        .iter()
        .filter(|e| e.entity == schema.logical && e.message == message)
        .cloned()
        .collect();
    for endpoint in endpoints {
        let mut body = context(shared, schema, message, id, columns, &endpoint);
        let mut exceeded = endpoint.size_exceeded;
        if serde_json::to_vec(&body).map_or(0, |b| b.len()) > SIZE_LIMIT {
            exceeded = true;
        }
        if exceeded {
            for key in [
                "ParentContext",
                "InputParameters",
                "PreEntityImages",
                "PostEntityImages",
            ] {
                body.as_object_mut().expect("an object").remove(key);
            }
        }
        let shared = shared.clone();
        let message = message.to_string();
        tokio::spawn(async move {
            deliver(&shared, &endpoint, &message, schema.logical, body, exceeded).await
        });
    }
}

async fn deliver(
    shared: &Shared,
    endpoint: &ServiceEndpoint,
    message: &str,
    entity: &str,
    body: Value,
    exceeded: bool,
) {
    let mut url = url::Url::parse(&endpoint.url).expect("checked on registration");
    let mut headers = reqwest::header::HeaderMap::new();
    match &endpoint.auth {
        EndpointAuth::WebhookKey { key } => {
            url.query_pairs_mut().append_pair("code", key);
        }
        EndpointAuth::HttpQueryString { query } => {
            url.query_pairs_mut().extend_pairs(query);
        }
        EndpointAuth::HttpHeader { headers: extra } => {
            for (name, value) in extra {
                if let (Ok(name), Ok(value)) = (
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                    value.parse(),
                ) {
                    headers.insert(name, value);
                }
            }
        }
    }
    let host = url::Url::parse(&shared.base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    for attempt in 1..=2 {
        let mut request = shared
            .http
            .post(url.clone())
            .timeout(shared.options.webhook_timeout)
            .headers(headers.clone())
            .header("x-ms-dynamics-organization", &host)
            .header("x-ms-dynamics-entity-name", entity)
            .header("x-ms-dynamics-request-name", message)
            .header(
                "x-ms-correlation-request-id",
                uuid::Uuid::new_v4().to_string(),
            )
            .header("x-request-id", uuid::Uuid::new_v4().to_string())
            .json(&body);
        if exceeded {
            request = request.header("x-ms-dynamics-msg-size-exceeded", "true");
        }
        let (status, error) = match request.send().await {
            Ok(response) => (Some(response.status().as_u16()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        shared.world.lock().unwrap().deliveries.push(json!({
            "endpoint": endpoint.id, "message": message, "entity": entity,
            "primaryEntityId": body["PrimaryEntityId"], "attempt": attempt, "status": status, "error": error,
            "outcome": if ok { "delivered" } else { "failed" },
        }));
        // Only 502, 503 and 504 get one more attempt.
        if ok || !matches!(status, Some(502..=504)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_become_net_json_dates() {
        assert_eq!(parse_iso("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso("2017-09-26T00:04:07Z"), Some(1_506_384_247_000));
    }
}
