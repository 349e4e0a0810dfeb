//! `GET|POST /webhooks/kaizala/{tenant}`: thin handlers over [`Receiver`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::kaizala::{ReceiveError, Received};

/// The longest `validationToken` echoed (Kaizala's are GUIDs).
const MAX_VALIDATION_TOKEN: usize = 256;

/// The validation handshake: the token back, as text/plain (never sniffed as
/// anything else), at once. Kaizala sends no callback token with it, so it is
/// answered alike for every tenant of a valid shape: a scanner learns no tenant
/// names from it.
pub async fn validate(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if state.kaizala.is_none() {
        let message = "Kaizala webhooks are not received here\n";
        return (StatusCode::NOT_FOUND, message).into_response();
    }
    if !crate::config::is_id(&tenant) {
        return (StatusCode::BAD_REQUEST, "tenant: not a tenant id\n").into_response();
    }
    match query.get("validationToken") {
        Some(token)
            if token.len() > MAX_VALIDATION_TOKEN || token.chars().any(char::is_control) =>
        {
            (
                StatusCode::BAD_REQUEST,
                "validationToken: longer than 256 characters or holds control characters\n",
            )
                .into_response()
        }
        Some(token) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            token.clone(),
        )
            .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            "validationToken: missing query parameter\n",
        )
            .into_response(),
    }
}

/// An event delivery: 200 once the event is taken (or was seen before).
pub async fn receive(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !crate::config::is_id(&tenant) {
        let error = json!({ "error": "tenant: not a tenant id (letters, digits, '-', '_', '.')" });
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    let Some(receiver) = state.kaizala.as_ref() else {
        return (
            StatusCode::NOT_FOUND,
            "Kaizala webhooks are not received here\n",
        )
            .into_response();
    };
    let token = headers
        .get("kz-callback-token")
        .and_then(|v| v.to_str().ok());
    match receiver.receive(&tenant, token, &body).await {
        Ok(Received::Accepted) => Json(json!({ "status": "accepted" })).into_response(),
        Ok(Received::Duplicate) => Json(json!({ "status": "duplicate" })).into_response(),
        Err(error) => {
            if matches!(error, ReceiveError::Unavailable(_)) {
                tracing::warn!(%error, tenant, "a Kaizala event could not be taken; Kaizala will deliver it again");
            }
            error.into_response()
        }
    }
}

/// Each refusal's status, with the error (which names the field) as the body.
impl IntoResponse for ReceiveError {
    fn into_response(self) -> Response {
        let status = match &self {
            ReceiveError::Unauthorized => StatusCode::UNAUTHORIZED,
            ReceiveError::Malformed(_) => StatusCode::BAD_REQUEST,
            ReceiveError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}
