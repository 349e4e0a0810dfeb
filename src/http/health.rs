//! `GET /healthz` (the process is alive) and `GET /readyz` (it can take work).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::AppState;
use crate::readiness::Report;

/// Alive: the process answers. Nothing is probed, so a slow dependency never gets
/// a healthy process restarted.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: 200 when every dependency answers, else 503; the body lists each.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Report>) {
    let report = state.readiness.report().await;
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}
