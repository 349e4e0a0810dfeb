//! Test control under `/_sim/`: the clock, faults, webhook registrations, expiring
//! delta tokens, and the whole state.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::webhooks::{self, ServiceEndpoint};
use super::Shared;
use crate::sim::faults::{FaultState, Faults};

fn refuse(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": { "code": "0x0", "message": message.into() } })),
    )
        .into_response()
}

/// `POST /_sim/clock/advance` with `{"seconds": N}` (at most 100 years).
pub async fn advance_clock(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let seconds = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("seconds").and_then(Value::as_u64));
    match seconds {
        Some(s) if s <= 100 * 365 * 24 * 3600 => {
            shared.clock.advance(Duration::from_secs(s));
            Json(json!({ "now": shared.clock.now_ms() })).into_response()
        }
        _ => refuse("seconds: missing, not a whole number, or more than 100 years"),
    }
}

/// `GET /_sim/faults`.
pub async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.faults.lock().unwrap().faults().clone())
}

/// `POST /_sim/faults`.
pub async fn set_faults(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&bytes) {
        Ok(faults) => faults,
        Err(e) => return refuse(format!("faults: {e}")),
    };
    if let Err(e) = faults.check() {
        return refuse(e);
    }
    *shared.faults.lock().unwrap() = FaultState::new(faults.clone());
    Json(faults).into_response()
}

/// `POST /_sim/webhooks`: registers a service endpoint with its step.
pub async fn register_webhook(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let endpoint: ServiceEndpoint = match serde_json::from_slice(&bytes) {
        Ok(endpoint) => endpoint,
        Err(e) => return refuse(format!("webhook: {e}")),
    };
    match webhooks::register(&shared, endpoint) {
        Ok(id) => Json(json!({ "id": id })).into_response(),
        Err(e) => refuse(e),
    }
}

/// `GET /_sim/webhooks`.
pub async fn list_webhooks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(shared.world.lock().unwrap().endpoints))
}

/// `POST /_sim/delta/expire`: every delta token handed out so far is expired.
pub async fn expire_delta(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.world.lock().unwrap().delta_floor_ms = shared.clock.now_ms() + 1;
    Json(json!({ "expired": true }))
}

/// `GET /_sim/state`.
pub async fn state(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(snapshot(&shared))
}

/// Rows of every table, webhook registrations and deliveries, and requests and 429s
/// per application in the current window.
pub fn snapshot(shared: &Shared) -> Value {
    let world = shared.world.lock().unwrap();
    let tables: serde_json::Map<String, Value> = world
        .tables
        .iter()
        .map(|(set, table)| {
            let rows: Vec<Value> = table
                .rows
                .values()
                .map(|r| Value::Object(r.columns.clone()))
                .collect();
            let deleted: Vec<&String> = table.deleted.iter().map(|(_, id)| id).collect();
            (set.to_string(), json!({ "rows": rows, "deleted": deleted }))
        })
        .collect();
    let applications: serde_json::Map<String, Value> = world
        .apps
        .iter()
        .map(|a| {
            let requests = world.requests.get(&a.client_id).map_or(0, |w| w.len());
            let throttled = world.throttled.get(&a.client_id).copied().unwrap_or(0);
            (a.client_id.clone(), json!({ "tenant": a.tenant_id, "requestsInWindow": requests, "throttled": throttled }))
        })
        .collect();
    json!({
        "now": shared.clock.now_ms(),
        "tables": tables,
        "applications": applications,
        "webhooks": world.endpoints,
        "deliveries": world.deliveries,
    })
}
