//! Authentication as documented: `POST /v1/generatePin`,
//! `POST /v1/loginWithPinAndApplicationId` and `GET /v1/accessToken` on the API root;
//! and the check every resource call passes (access token, endpoint, quotas).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use rand::Rng;
use serde_json::{json, Value};

use super::body::{self, Fields};
use super::error::{ApiError, ApiResult};
use super::state::{AccessToken, RefreshToken, MINUTE_MS};
use super::Shared;

/// How long a PIN from generatePin stays valid.
const PIN_LIFETIME_MS: i64 = 10 * MINUTE_MS;

/// The scopes a refresh token from loginWithPinAndApplicationId carries.
const GRANTED_SCOPE: &str = "groupinfo.read,groupinfo.write,groupinfo.remove,groupinfo.update,\
groupmember.read,groupmember.write,groupmember.remove,textmessage.read,textmessage.write,\
action.read,action.write,action.update,profile.write,media.read,webhook.read,webhook.write,\
webhook.remove,webhook.update";

/// The connector a resource call was made as.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Index of the connector.
    pub connector: usize,
    /// Its application id.
    pub application_id: String,
    /// The user it acts as.
    pub phone: String,
}

/// `POST /v1/generatePin`: sends (records) a 4-digit PIN for a phone.
pub async fn generate_pin(
    State(shared): State<Arc<Shared>>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let map = body::object(&bytes)?;
    let fields = Fields::new(&map, "");
    let phone = fields.string("mobileNumber")?;
    let app = fields.string("applicationId")?;
    if !body::is_phone(phone) {
        return Err(ApiError::bad_request(format!(
            "mobileNumber: {phone:?} is not a phone number with country code"
        )));
    }
    let now = shared.clock.now_ms();
    let mut world = shared.world.lock().unwrap();
    let c = world
        .connector_by_app(app)
        .ok_or_else(|| ApiError::not_found(format!("applicationId: no connector {app:?}")))?;
    let pin = world.rng.random_range(1000..10000);
    world.connectors[c]
        .pins
        .insert(phone.to_string(), (pin, now + PIN_LIFETIME_MS));
    Ok(Json(json!({})))
}

/// `POST /v1/loginWithPinAndApplicationId`: trades a PIN for a new refresh token.
pub async fn login_with_pin(
    State(shared): State<Arc<Shared>>,
    bytes: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let map = body::object(&bytes)?;
    let fields = Fields::new(&map, "");
    let phone = fields.string("mobileNumber")?;
    let app = fields.string("applicationId")?;
    let pin: u32 = match fields.get("pin") {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request("pin: missing or not a number"))?;
    let now = shared.clock.now_ms();
    let lifetime = shared.options.refresh_token_lifetime.as_millis() as i64;
    let mut world = shared.world.lock().unwrap();
    let c = world
        .connector_by_app(app)
        .ok_or_else(|| ApiError::not_found(format!("applicationId: no connector {app:?}")))?;
    match world.connectors[c].pins.get(phone) {
        Some(&(expected, expires)) if expected == pin && expires > now => {}
        Some(&(_, expires)) if expires <= now => {
            return Err(ApiError::unauthorized(
                "pin: expired; ask for a new one with generatePin",
            ))
        }
        _ => {
            return Err(ApiError::unauthorized(
                "pin: wrong PIN for this mobileNumber",
            ))
        }
    }
    world.connectors[c].pins.remove(phone);
    let token = world.token("rt");
    let expires_ms = now + lifetime;
    let record = RefreshToken {
        issued_ms: now,
        expires_ms,
        successor: None,
    };
    // "Refresh tokens can be invalidated ... by generating new Refresh Tokens for the
    // same Kaizala Connector" (Tokens.md): a new login replaces every earlier one.
    let connector = &mut world.connectors[c];
    connector.refresh_tokens.clear();
    connector.refresh_tokens.insert(token.clone(), record);
    Ok(Json(json!({
        "refreshToken": token,
        "grantedScope": GRANTED_SCOPE,
        "refreshTokenExpiry": expires_ms,
    })))
}

/// `GET /v1/accessToken`: an access token, the connector's endpoint and, after 90%
/// of the refresh token's validity, its successor.
pub async fn access_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::unauthorized(format!("{name}: missing header")))
    };
    let (app, secret, refresh) = (
        header("applicationId")?,
        header("applicationSecret")?,
        header("refreshToken")?,
    );
    let now = shared.clock.now_ms();
    let access_lifetime = shared.options.access_token_lifetime.as_millis() as i64;
    let refresh_lifetime = shared.options.refresh_token_lifetime.as_millis() as i64;
    let mut world = shared.world.lock().unwrap();
    let c = world
        .connector_by_app(app)
        .ok_or_else(|| ApiError::unauthorized(format!("applicationId: no connector {app:?}")))?;
    if world.connectors[c].secret != secret {
        return Err(ApiError::unauthorized(
            "applicationSecret: wrong secret for this applicationId",
        ));
    }
    let record = world.connectors[c]
        .refresh_tokens
        .get(refresh)
        .cloned()
        .ok_or_else(|| ApiError::unauthorized("refreshToken: unknown for this applicationId"))?;
    if record.expires_ms <= now {
        return Err(ApiError::unauthorized(
            "refreshToken: expired; onboard the connector again",
        ));
    }
    let rotate_at = record.issued_ms + (record.expires_ms - record.issued_ms) * 9 / 10;
    let successor = if now >= rotate_at {
        successor_of(&mut world, c, refresh, now, refresh_lifetime)
    } else {
        String::new()
    };
    let token = world.token("at");
    world.connectors[c].tokens_issued += 1;
    let expires_ms = now + access_lifetime;
    world.access_tokens.insert(
        token.clone(),
        AccessToken {
            connector: c,
            expires_ms,
        },
    );
    let endpoint = shared.endpoint_url(&world.connectors[c].endpoint);
    Ok(Json(json!({
        "accessToken": token,
        "endpointUrl": endpoint,
        "accessTokenExpiry": expires_ms,
        "refreshToken": successor,
        "scope": "token.write",
    })))
}

/// The refresh token that follows `refresh` of connector `c` (made at `now` on first
/// asking, living `lifetime` ms, the same one on every later asking): the rotation
/// Kaizala hands out in the last tenth of a refresh token's life.
fn successor_of(
    world: &mut super::state::World,
    c: usize,
    refresh: &str,
    now: i64,
    lifetime: i64,
) -> String {
    let known = world.connectors[c].refresh_tokens[refresh]
        .successor
        .clone();
    if let Some(successor) = known {
        return successor;
    }
    let successor = world.token("rt");
    let fresh = RefreshToken {
        issued_ms: now,
        expires_ms: now + lifetime,
        successor: None,
    };
    let connector = &mut world.connectors[c];
    connector.refresh_tokens.insert(successor.clone(), fresh);
    connector
        .refresh_tokens
        .get_mut(refresh)
        .expect("looked up above")
        .successor = Some(successor.clone());
    successor
}

impl Shared {
    /// The check every resource call passes, in order: a known, unexpired access
    /// token (401); the connector's current endpoint (308 to the new one); the
    /// connector's and then the tenant's quota (429 with Retry-After). A call that
    /// passes is counted against both quotas.
    pub fn authorize(&self, headers: &HeaderMap, endpoint: &str) -> ApiResult<Caller> {
        let token = headers
            .get("accessToken")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::unauthorized("accessToken: missing header"))?;
        let now = self.clock.now_ms();
        let mut world = self.world.lock().unwrap();
        let access = world
            .access_tokens
            .get(token)
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("accessToken: unknown token"))?;
        if access.expires_ms <= now {
            return Err(ApiError::unauthorized(
                "accessToken: expired; get a new one from /v1/accessToken",
            ));
        }
        let c = access.connector;
        if world.connectors[c].endpoint != endpoint {
            return Err(ApiError::moved(
                self.endpoint_url(&world.connectors[c].endpoint),
            ));
        }
        let minute = now / MINUTE_MS;
        let tenant = world.connectors[c].tenant;
        let connector_limit = world.connectors[c].rate_limit;
        let tenant_limit = world.tenants[tenant].rate_limit;
        let wait = world.connectors[c]
            .window
            .wait(now, connector_limit)
            .map(|s| (s, "connector"))
            .or_else(|| {
                world.tenants[tenant]
                    .window
                    .wait(now, tenant_limit)
                    .map(|s| (s, "tenant"))
            });
        let connector = &mut world.connectors[c];
        let stats = connector.minutes.entry(minute).or_default();
        if let Some((seconds, which)) = wait {
            stats.throttled += 1;
            let limit = if which == "connector" {
                connector_limit
            } else {
                tenant_limit
            };
            return Err(ApiError::throttled(
                format!("the {which} quota of {limit} calls per minute is used up; retry in {seconds} s"),
                seconds,
            ));
        }
        stats.calls += 1;
        connector.window.record(now);
        let caller = Caller {
            connector: c,
            application_id: connector.application_id.clone(),
            phone: connector.phone.clone(),
        };
        world.tenants[tenant].window.record(now);
        Ok(caller)
    }
}
