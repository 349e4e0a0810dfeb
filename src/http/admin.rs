//! `/admin/...`: the queue and its dead letters over HTTP, for operators and their
//! tools, behind the bearer token `server.admin_token` (compared in constant time).
//! The same operations as `kaizala-bridge dlq`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::queue::{now_ms, JobKind, Queue, QueueError};

/// What the admin routes work on.
pub struct Admin {
    /// The bearer token they require.
    pub token: SecretString,
    /// The queue.
    pub queue: Queue,
}

/// Why a request is refused, if it is: 404 when the routes are off, 401 without
/// the right bearer token.
fn authorize<'a>(state: &'a AppState, headers: &HeaderMap) -> Result<&'a Admin, Box<Response>> {
    let Some(admin) = state.admin.as_deref() else {
        return Err(Box::new(
            (
                StatusCode::NOT_FOUND,
                "the admin routes are off (no server.admin_token)\n",
            )
                .into_response(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(
        given
            .as_bytes()
            .ct_eq(admin.token.expose_secret().as_bytes()),
    ) {
        Ok(admin)
    } else {
        Err(Box::new(
            (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "Authorization: a bearer token (server.admin_token) is required" })),
        )
            .into_response(),
        ))
    }
}

fn failed(error: QueueError) -> Response {
    tracing::warn!(%error, "an admin request failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": error.to_string() })),
    )
        .into_response()
}

/// `GET /admin/jobs`: jobs waiting per queue and the dead-letter count.
pub async fn jobs(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let admin = match authorize(&state, &headers) {
        Ok(admin) => admin,
        Err(refused) => return *refused,
    };
    let now = now_ms();
    let mut queues = serde_json::Map::new();
    for kind in JobKind::ALL {
        match admin.queue.depth(kind).await {
            Ok(depth) => {
                let age = depth.oldest_ready_age_seconds(now);
                queues.insert(
                    kind.queue().into(),
                    json!({ "ready": depth.ready, "scheduled": depth.scheduled, "oldest_ready_age_seconds": age }),
                );
            }
            Err(error) => return failed(error),
        }
    }
    match admin.queue.dead_letters().list().await {
        Ok(letters) => {
            Json(json!({ "queues": queues, "dead_letters": letters.len() })).into_response()
        }
        Err(error) => failed(error.into()),
    }
}

/// `GET /admin/dead-letters`: every dead letter with its job and last error.
pub async fn dead_letters(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let admin = match authorize(&state, &headers) {
        Ok(admin) => admin,
        Err(refused) => return *refused,
    };
    match admin.queue.dead_letters().list().await {
        Ok(letters) => Json(json!({ "dead_letters": letters })).into_response(),
        Err(error) => failed(error.into()),
    }
}

/// `POST /admin/dead-letters/{id}/replay`: puts one back as a fresh job.
pub async fn replay(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let admin = match authorize(&state, &headers) {
        Ok(admin) => admin,
        Err(refused) => return *refused,
    };
    match admin.queue.replay(&id).await {
        Ok(true) => Json(json!({ "replayed": [id] })).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no dead letter {id:?}") })),
        )
            .into_response(),
        Err(error) => failed(error),
    }
}

/// `POST /admin/dead-letters/replay`: puts every dead letter back.
pub async fn replay_all(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let admin = match authorize(&state, &headers) {
        Ok(admin) => admin,
        Err(refused) => return *refused,
    };
    match admin.queue.replay_all().await {
        Ok(count) => Json(json!({ "replayed": count })).into_response(),
        Err(error) => failed(error),
    }
}

/// `DELETE /admin/dead-letters`: forgets every dead letter.
pub async fn purge(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let admin = match authorize(&state, &headers) {
        Ok(admin) => admin,
        Err(refused) => return *refused,
    };
    match admin.queue.purge().await {
        Ok(count) => Json(json!({ "purged": count })).into_response(),
        Err(error) => failed(error),
    }
}
