//! The HTTP surface: one axum router on one listener.
//!
//! Handlers here are thin: they authenticate, parse and hand over to the module that
//! owns the work. What every request gets (an id, a span, a timeout, a body limit,
//! metrics) is added once, in [`middleware`].

pub mod admin;
mod dataverse_webhook;
mod health;
mod kaizala_webhook;
mod metrics;
pub mod middleware;

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::config::ServerConfig;
use crate::crm::dataverse::webhook::DataverseReceiver;
use crate::kaizala::Receiver;
use crate::readiness::Readiness;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Dependency probes for `/readyz`.
    pub readiness: Arc<Readiness>,
    /// The Kaizala webhook receiver, when something takes its events.
    pub kaizala: Option<Arc<Receiver>>,
    /// The Dataverse webhook receiver, when something takes its events.
    pub dataverse: Option<Arc<DataverseReceiver>>,
    /// The admin routes, when `server.admin_token` is set and a queue runs.
    pub admin: Option<Arc<admin::Admin>>,
}

/// The routes of `kaizala-bridge run`, with every middleware applied.
pub fn router(state: AppState, server: &ServerConfig) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .route(
            "/webhooks/kaizala/{tenant}",
            get(kaizala_webhook::validate).post(kaizala_webhook::receive),
        )
        .route(
            "/webhooks/dataverse/{crm}",
            post(dataverse_webhook::receive),
        )
        .route("/admin/jobs", get(admin::jobs))
        .route(
            "/admin/dead-letters",
            get(admin::dead_letters).merge(delete(admin::purge)),
        )
        .route("/admin/dead-letters/replay", post(admin::replay_all))
        .route("/admin/dead-letters/{id}/replay", post(admin::replay))
        .with_state(state);
    middleware::apply(routes, server)
}
