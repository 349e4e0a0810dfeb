//! Test control under `/_sim/`: advance the clock, move a connector to a new
//! endpoint, set faults, and read the whole state. Not part of Kaizala's API.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::Shared;
use crate::sim::faults::Faults;

/// The largest single step of the clock, so that epoch milliseconds cannot overflow.
const MAX_ADVANCE_SECS: u64 = 100 * 365 * 24 * 3600;

/// `POST /_sim/clock/advance` with `{"seconds": N}`.
pub async fn advance_clock(
    State(shared): State<Arc<Shared>>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    let seconds = value
        .get("seconds")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            ApiError::bad_request("seconds: missing or not a whole number of seconds")
        })?;
    if seconds > MAX_ADVANCE_SECS {
        return Err(ApiError::bad_request(
            "seconds: more than 100 years at once",
        ));
    }
    shared.clock.advance(Duration::from_secs(seconds));
    Ok(Json(json!({ "now": shared.clock.now_ms() })))
}

/// `POST /_sim/connectors/{application_id}/move`: the connector gets a new endpoint;
/// calls to the old one are answered 308.
pub async fn move_connector(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
) -> ApiResult<Json<Value>> {
    let url = shared.move_connector(&app)?;
    Ok(Json(json!({ "endpointUrl": url })))
}

/// `POST /_sim/connectors/{app}/groups/{group}`: grants a connector an existing
/// group, as a tenant administrator would in the Kaizala management portal.
pub async fn grant_group(
    State(shared): State<Arc<Shared>>,
    Path((app, group)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let mut world = shared.world.lock().unwrap();
    if !world.groups.contains_key(&group) {
        return Err(ApiError::not_found(format!(
            "group {group:?} does not exist"
        )));
    }
    let connector = world
        .connectors
        .iter_mut()
        .find(|c| c.application_id == app)
        .ok_or_else(|| ApiError::not_found(format!("connector {app:?} does not exist")))?;
    if !connector.groups.contains(&group) {
        connector.groups.push(group.clone());
    }
    Ok(Json(
        json!({ "applicationId": app, "groups": connector.groups }),
    ))
}

/// `GET /_sim/faults`.
pub async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.faults.lock().unwrap().faults().clone())
}

/// `POST /_sim/faults`: replaces the faults in force (missing fields are off).
pub async fn set_faults(
    State(shared): State<Arc<Shared>>,
    bytes: Bytes,
) -> ApiResult<Json<Faults>> {
    let faults: Faults = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("faults: {e}")))?;
    shared
        .set_faults(faults.clone())
        .map_err(ApiError::bad_request)?;
    Ok(Json(faults))
}

/// `GET /_sim/state`.
pub async fn state(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(shared.snapshot())
}

impl Shared {
    /// Everything the emulator holds, as JSON: groups with members, actions and
    /// responses; connectors with endpoint, PINs and calls and 429s per minute;
    /// webhooks; delivery attempts.
    pub fn snapshot(&self) -> Value {
        let world = self.world.lock().unwrap();
        let groups: Map<String, Value> = world
            .groups
            .values()
            .map(|g| {
                let actions: Vec<Value> = g
                    .actions
                    .iter()
                    .map(|a| {
                        let responses: Vec<Value> = a
                            .responses
                            .iter()
                            .map(|r| json!({ "responseId": r.id, "responder": r.responder, "responderName": r.responder_name,
                                             "time": r.time_ms, "isUpdateResponse": r.is_update, "answers": r.answers }))
                            .collect();
                        json!({ "actionId": a.id, "referenceId": a.reference_id, "actionType": a.action_type,
                                "packageId": a.package_id, "title": a.title, "sender": a.sender, "sentAt": a.sent_ms,
                                "body": a.body, "questions": a.questions, "responses": responses })
                    })
                    .collect();
                let value = json!({ "name": g.name, "groupType": g.group_type, "members": g.members,
                                    "subGroups": g.sub_groups, "subscribers": g.subscribers, "actions": actions });
                (g.id.clone(), value)
            })
            .collect();
        let connectors: Map<String, Value> = world
            .connectors
            .iter()
            .map(|c| {
                let minutes: Map<String, Value> = c.minutes.iter().map(|(m, s)| (m.to_string(), json!(s))).collect();
                let pins: Map<String, Value> = c.pins.iter().map(|(p, (pin, _))| (p.clone(), json!(pin))).collect();
                let value = json!({ "tenant": world.tenants[c.tenant].id, "endpointUrl": self.endpoint_url(&c.endpoint),
                                    "phone": c.phone, "groups": c.groups, "pins": pins, "minutes": minutes,
                                    "tokensIssued": c.tokens_issued });
                (c.application_id.clone(), value)
            })
            .collect();
        let webhooks: Vec<Value> = world
            .webhooks
            .iter()
            .map(|w| {
                let mut value = json!(w);
                value["owner"] = json!(w.owner);
                value
            })
            .collect();
        json!({
            "now": self.clock.now_ms(),
            "groups": groups,
            "connectors": connectors,
            "webhooks": webhooks,
            "deliveries": world.deliveries,
        })
    }
}
