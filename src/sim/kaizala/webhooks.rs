//! Webhook subscriptions: `POST /v1/webhook` (after the callback passes the
//! validation handshake), `GET /v1/webhook?objectId&objectType`,
//! `PUT /v1/webhook/{id}` (any field, and `Active: true` to re-enable) and
//! `DELETE /v1/webhook/{id}`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::body::{self, Fields};
use super::error::{ApiError, ApiResult};
use super::groups::check_access;
use super::state::{new_id, Webhook, World};
use super::Shared;

/// Events a webhook can subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    "ActionCreated",
    "ActionResponse",
    "SurveyCreated",
    "JobCreated",
    "SurveyResponse",
    "JobResponse",
    "TextMessageCreated",
    "AttachmentCreated",
    "Announcement",
    "MemberAdded",
    "MemberRemoved",
    "GroupAdded",
    "GroupRemoved",
];

/// How long the callback has to echo the validation token.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default validity of a webhook: two years.
const DEFAULT_VALIDITY_MS: i64 = 2 * 365 * 24 * 3_600_000;

/// The callback must be HTTPS, as documented, except on a loopback address, so that
/// tests and the demo can receive events.
fn check_callback(url: &str) -> ApiResult<()> {
    let parsed = url::Url::parse(url)
        .map_err(|e| ApiError::bad_request(format!("callBackUrl: {url:?} is not a URL ({e})")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(ApiError::bad_request(format!(
            "callBackUrl: must be an https URL (plain http only on loopback), not {url:?}"
        ))),
    }
}

/// Sends `GET callback?validationToken=...`; the callback must answer 2xx with the
/// token as its body within five seconds.
async fn handshake(shared: &Shared, callback: &str) -> ApiResult<()> {
    let token = new_id();
    let mut url = url::Url::parse(callback)
        .map_err(|e| ApiError::bad_request(format!("callBackUrl: {e}")))?;
    url.query_pairs_mut().append_pair("validationToken", &token);
    let fail =
        |why: String| ApiError::bad_request(format!("callBackUrl: validation failed: {why}"));
    let response = shared
        .http
        .get(url)
        .timeout(HANDSHAKE_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            fail(if e.is_timeout() {
                "no answer within 5 s".into()
            } else {
                format!("cannot reach it ({e})")
            })
        })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| fail(format!("cannot read its answer ({e})")))?;
    if !status.is_success() {
        return Err(fail(format!("it answered {status}")));
    }
    if text != token {
        return Err(fail(format!(
            "it answered {text:?}, not the validation token"
        )));
    }
    Ok(())
}

/// The object a webhook may watch: a group the connector was granted, an action in
/// such a group, or any action package.
fn check_object(
    world: &World,
    caller: &Caller,
    object_type: &str,
    object_id: &str,
) -> ApiResult<()> {
    match object_type {
        "Group" => check_access(world, caller, object_id)
            .map_err(|e| ApiError::bad_request(format!("objectId: {}", e.message()))),
        "Action" => {
            let granted = &world.connectors[caller.connector].groups;
            let found = world
                .groups
                .values()
                .filter(|g| granted.contains(&g.id))
                .any(|g| g.actions.iter().any(|a| a.id == object_id));
            if found {
                Ok(())
            } else {
                Err(ApiError::bad_request(format!(
                    "objectId: no action {object_id:?} in the connector's groups"
                )))
            }
        }
        "ActionPackage" => Ok(()),
        other => Err(ApiError::bad_request(format!(
            "objectType: {other:?} is not Group, Action or ActionPackage"
        ))),
    }
}

fn event_types(fields: &Fields) -> ApiResult<Option<Vec<String>>> {
    let Some(events) = fields.opt_strings("eventTypes")? else {
        return Ok(None);
    };
    if events.is_empty() {
        return Err(ApiError::bad_request(
            "eventTypes: at least one event type is required",
        ));
    }
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find(|(_, e)| !EVENT_TYPES.contains(&e.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "eventTypes[{i}]: {e:?} is not a supported event"
        )));
    }
    Ok(Some(events))
}

fn validity(fields: &Fields, now: i64) -> ApiResult<Option<i64>> {
    match fields.get("validity") {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("validity: not an epoch time")),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("validity: {s:?} is not an epoch time"))),
        Some(_) => Err(ApiError::bad_request("validity: not an epoch time")),
    }
    .and_then(|v| match v {
        Some(v) if v <= now => Err(ApiError::bad_request("validity: lies in the past")),
        v => Ok(v),
    })
}

/// `POST /v1/webhook`.
pub async fn create(
    State(shared): State<Arc<Shared>>,
    Path(ep): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let map = body::object(&bytes)?;
    let fields = Fields::new(&map, "");
    let object_id = fields.string("objectId")?.to_string();
    let object_type = fields.string("objectType")?.to_string();
    let events =
        event_types(&fields)?.ok_or_else(|| ApiError::bad_request("eventTypes: missing"))?;
    let callback = fields.string("callBackUrl")?.to_string();
    let token = fields
        .opt_string("callBackToken")?
        .unwrap_or_default()
        .to_string();
    let context = fields
        .opt_string("callBackContext")?
        .unwrap_or_default()
        .to_string();
    let now = shared.clock.now_ms();
    let validity = validity(&fields, now)?.unwrap_or(now + DEFAULT_VALIDITY_MS);
    check_callback(&callback)?;
    check_object(
        &shared.world.lock().unwrap(),
        &caller,
        &object_type,
        &object_id,
    )?;
    handshake(&shared, &callback).await?;
    let webhook = Webhook {
        id: new_id(),
        object_id,
        object_type,
        events,
        callback_url: callback,
        callback_token: token,
        callback_context: context,
        ts: now,
        validity,
        active: true,
        owner: caller.application_id,
        generation: 0,
    };
    let id = webhook.id.clone();
    shared.world.lock().unwrap().webhooks.push(webhook);
    Ok(Json(json!({ "webhookId": id })))
}

/// Query of `GET /v1/webhook`.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(rename = "objectId")]
    object_id: Option<String>,
    #[serde(rename = "objectType")]
    object_type: Option<String>,
}

fn webhook_json(w: &Webhook) -> Value {
    json!({
        "id": w.id, "objectId": w.object_id, "objectType": w.object_type, "events": w.events,
        "filters": [], "callbackUrl": w.callback_url, "callbackToken": w.callback_token,
        "callbackContext": w.callback_context, "ts": w.ts, "validity": w.validity, "active": w.active,
    })
}

/// `GET /v1/webhook?objectId=..&objectType=..`: every webhook on the object, whoever
/// registered it.
pub async fn list(
    State(shared): State<Arc<Shared>>,
    Path(ep): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let object_id = query
        .object_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("objectId: missing query parameter"))?;
    let object_type = query
        .object_type
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("objectType: missing query parameter"))?;
    let world = shared.world.lock().unwrap();
    check_object(&world, &caller, &object_type, &object_id)?;
    let webhooks: Vec<Value> = world
        .webhooks
        .iter()
        .filter(|w| w.object_id == object_id && w.object_type == object_type)
        .map(webhook_json)
        .collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

fn find(world: &World, id: &str) -> ApiResult<usize> {
    world
        .webhooks
        .iter()
        .position(|w| w.id == id)
        .ok_or_else(|| ApiError::not_found(format!("webhook {id:?} does not exist")))
}

/// `PUT /v1/webhook/{webhookId}`: changes any field; a new callback URL passes the
/// handshake first; `Active: true` re-enables a disabled webhook.
pub async fn update(
    State(shared): State<Arc<Shared>>,
    Path((ep, id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let map = body::object(&bytes)?;
    let fields = Fields::new(&map, "");
    let events = event_types(&fields)?;
    let callback = fields.opt_string("callBackUrl")?.map(str::to_string);
    let token = fields.opt_string("callBackToken")?.map(str::to_string);
    let context = fields.opt_string("callBackContext")?.map(str::to_string);
    let object_id = fields.opt_string("objectId")?.map(str::to_string);
    let object_type = fields.opt_string("objectType")?.map(str::to_string);
    let active = fields.opt_bool("active")?;
    let now = shared.clock.now_ms();
    let validity = validity(&fields, now)?;
    let current = {
        let world = shared.world.lock().unwrap();
        let current = world.webhooks[find(&world, &id)?].clone();
        let (t, o) = (
            object_type.as_deref().unwrap_or(&current.object_type),
            object_id.as_deref().unwrap_or(&current.object_id),
        );
        check_object(&world, &caller, t, o)?;
        current
    };
    if let Some(callback) = callback.as_deref().filter(|c| *c != current.callback_url) {
        check_callback(callback)?;
        handshake(&shared, callback).await?;
    }
    let mut world = shared.world.lock().unwrap();
    let i = find(&world, &id)?;
    let webhook = &mut world.webhooks[i];
    if let Some(v) = events {
        webhook.events = v;
    }
    if let Some(v) = callback {
        webhook.callback_url = v;
    }
    if let Some(v) = token {
        webhook.callback_token = v;
    }
    if let Some(v) = context {
        webhook.callback_context = v;
    }
    if let Some(v) = object_id {
        webhook.object_id = v;
    }
    if let Some(v) = object_type {
        webhook.object_type = v;
    }
    if let Some(v) = validity {
        webhook.validity = v;
    }
    if let Some(v) = active {
        if v && !webhook.active {
            webhook.generation += 1;
        }
        webhook.active = v;
    }
    Ok(Json(webhook_json(webhook)))
}

/// `DELETE /v1/webhook/{webhookId}`.
pub async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((ep, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let caller = shared.authorize(&headers, &ep)?;
    let mut world = shared.world.lock().unwrap();
    let i = find(&world, &id)?;
    let webhook = &world.webhooks[i];
    check_object(&world, &caller, &webhook.object_type, &webhook.object_id)?;
    world.webhooks.remove(i);
    Ok(Json(json!({ "result": true })))
}
