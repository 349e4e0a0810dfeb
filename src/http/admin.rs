//! `/admin/...`: the queue and its dead letters over HTTP, for operators and their
//! tools, behind the bearer token `server.admin_token` (checked once, by the
//! [`Authorized`] extractor every handler takes).
//! The same operations as `kaizala-bridge dlq`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::SecretString;
use serde_json::json;

use super::AppState;
use crate::config::secret_matches;
use crate::queue::{now_ms, JobKind, Queue, QueueError};

/// What the admin routes work on.
pub struct Admin {
    /// The bearer token they require.
    pub token: SecretString,
    /// The queue.
    pub queue: Queue,
}

/// The admin routes' state, for a request that carried the right bearer token:
/// taking it as a handler's argument is the authorisation. Refused with 404 when the
/// routes are off, 401 without the right token (compared as digests, in constant
/// time).
pub struct Authorized(Arc<Admin>);

impl FromRequestParts<AppState> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(admin) = state.admin.clone() else {
            let off = "the admin routes are off (no server.admin_token)\n";
            return Err((StatusCode::NOT_FOUND, off).into_response());
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if secret_matches(given.as_bytes(), &admin.token) {
            return Ok(Self(admin));
        }
        let error =
            json!({ "error": "Authorization: a bearer token (server.admin_token) is required" });
        Err((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(error),
        )
            .into_response())
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
pub async fn jobs(Authorized(admin): Authorized) -> Response {
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
pub async fn dead_letters(Authorized(admin): Authorized) -> Response {
    match admin.queue.dead_letters().list().await {
        Ok(letters) => Json(json!({ "dead_letters": letters })).into_response(),
        Err(error) => failed(error.into()),
    }
}

/// `POST /admin/dead-letters/{id}/replay`: puts one back as a fresh job.
pub async fn replay(Authorized(admin): Authorized, Path(id): Path<String>) -> Response {
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
pub async fn replay_all(Authorized(admin): Authorized) -> Response {
    match admin.queue.replay_all().await {
        Ok(count) => Json(json!({ "replayed": count })).into_response(),
        Err(error) => failed(error),
    }
}

/// `DELETE /admin/dead-letters`: forgets every dead letter.
pub async fn purge(Authorized(admin): Authorized) -> Response {
    match admin.queue.purge().await {
        Ok(count) => Json(json!({ "purged": count })).into_response(),
        Err(error) => failed(error),
    }
}
