//! `GET|POST /webhooks/kaizala/{tenant}`: thin handlers over [`Receiver`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;
use crate::kaizala::{ReceiveError, Received};

/// The validation handshake: the token back, as text/plain, at once.
pub async fn validate(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !state.kaizala.as_ref().is_some_and(|r| r.knows(&tenant)) {
        let message = format!("no tenant {tenant:?} receives Kaizala webhooks here\n");
        return (StatusCode::NOT_FOUND, message).into_response();
    }
    match query.get("validationToken") {
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
        Ok(Received::Accepted) => Json(serde_json::json!({ "status": "accepted" })).into_response(),
        Ok(Received::Duplicate) => {
            Json(serde_json::json!({ "status": "duplicate" })).into_response()
        }
        Err(error) => {
            let status = match &error {
                ReceiveError::UnknownTenant(_) => StatusCode::NOT_FOUND,
                ReceiveError::Unauthorized => StatusCode::UNAUTHORIZED,
                ReceiveError::Malformed(_) => StatusCode::BAD_REQUEST,
                ReceiveError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            if status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(%error, tenant, "a Kaizala event could not be taken; Kaizala will deliver it again");
            }
            (
                status,
                Json(serde_json::json!({ "error": error.to_string() })),
            )
                .into_response()
        }
    }
}
