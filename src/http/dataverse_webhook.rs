//! `POST /webhooks/dataverse/{crm}`: a thin handler over [`DataverseReceiver`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;
use crate::crm::dataverse::webhook::{ReceiveError, Received};

/// A Dataverse service-endpoint call: 2xx once the event is taken (or not watched).
pub async fn receive(
    State(state): State<AppState>,
    Path(crm): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !crate::config::is_id(&crm) {
        let error = serde_json::json!({ "error": "crm: not a CRM source id (letters, digits, '-', '_', '.')" });
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    let Some(receiver) = state.dataverse.as_ref() else {
        return (
            StatusCode::NOT_FOUND,
            "Dataverse webhooks are not received here\n",
        )
            .into_response();
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match receiver
        .receive(&crm, query.get("code").map(String::as_str), header, &body)
        .await
    {
        Ok(Received::Accepted) => Json(serde_json::json!({ "status": "accepted" })).into_response(),
        Ok(Received::Ignored) => Json(serde_json::json!({ "status": "ignored" })).into_response(),
        Err(error) => {
            if matches!(error, ReceiveError::Unavailable(_)) {
                tracing::warn!(%error, crm = %crm.escape_debug(), "a Dataverse change could not be taken; answered 503 for Dataverse to send it again");
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
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        (status, body).into_response()
    }
}
