//! The Microsoft Entra token endpoint, client-credentials grant only:
//! `POST /{tenant}/oauth2/v2.0/token`, with Entra's error shapes and codes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;

use super::Shared;

fn entra_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: now", uuid::Uuid::new_v4(), uuid::Uuid::new_v4()),
        "error_codes": [code],
        "timestamp": "now",
        "trace_id": uuid::Uuid::new_v4().to_string(),
        "correlation_id": uuid::Uuid::new_v4().to_string(),
    });
    (status, Json(body)).into_response()
}

/// The client-credentials grant.
pub async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    // The secret may come as HTTP Basic auth instead of in the form (RFC 6749 2.3.1).
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let client_id = form
        .get("client_id")
        .cloned()
        .or(basic.as_ref().map(|b| b.0.clone()));
    let secret = form.get("client_secret").cloned().or(basic.map(|b| b.1));
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type; only client_credentials is offered here.",
        );
    }
    let Some(client_id) = client_id else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let scope = form.get("scope").cloned().unwrap_or_default();
    let base = shared.base_url.trim_end_matches('/');
    if scope != format!("{base}/.default") && scope != format!("{base}//.default") {
        return entra_error(StatusCode::BAD_REQUEST, "invalid_scope", 70011, &format!("The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."));
    }
    let now = shared.clock.now_ms();
    let lifetime = shared.options.token_lifetime.as_secs();
    let mut world = shared.world.lock().unwrap();
    let Some(app) = world
        .apps
        .iter()
        .find(|a| a.client_id == client_id && a.tenant_id == tenant)
        .cloned()
    else {
        return entra_error(StatusCode::BAD_REQUEST, "unauthorized_client", 700016, &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."));
    };
    match secret {
        None => return entra_error(StatusCode::UNAUTHORIZED, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."),
        Some(secret) if secret != app.client_secret => {
            return entra_error(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."))
        }
        Some(_) => {}
    }
    let token = format!(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.{}",
        uuid::Uuid::new_v4().simple()
    );
    world
        .tokens
        .insert(token.clone(), (client_id, now + lifetime as i64 * 1000));
    Json(json!({ "token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token })).into_response()
}
