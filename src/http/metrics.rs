//! `GET /metrics`: every metric of the process in the Prometheus text format.

use axum::http::header;
use axum::response::IntoResponse;

use crate::telemetry;

/// Renders the process-wide recorder.
pub async fn render() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry::render_metrics(),
    )
}
