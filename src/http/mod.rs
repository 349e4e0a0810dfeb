//! The HTTP surface: the public routes (health and webhooks, which Kaizala and the
//! CRM must reach) and the operator's routes (`/metrics`, `/admin/...`), on one
//! listener or, with `server.admin_listen`, on two.
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
pub mod serve;

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

/// The routes of `kaizala-bridge run` on one listener, every middleware applied.
pub fn router(state: AppState, server: &ServerConfig) -> Router {
    middleware::apply(
        public_routes().merge(admin_routes()).with_state(state),
        server,
    )
}

/// The public listener's routes and the admin listener's, each with every middleware
/// applied, for `server.admin_listen`: the public port then answers 404 to
/// `/metrics` and `/admin/...` as to any path it does not serve.
pub fn split_routers(state: AppState, server: &ServerConfig) -> (Router, Router) {
    let public = middleware::apply(public_routes().with_state(state.clone()), server);
    let admin = middleware::apply(admin_routes().with_state(state), server);
    (public, admin)
}

/// What Kaizala, the CRM and the orchestrator's probes reach.
fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/webhooks/kaizala/{tenant}",
            get(kaizala_webhook::validate).post(kaizala_webhook::receive),
        )
        .route(
            "/webhooks/dataverse/{crm}",
            post(dataverse_webhook::receive),
        )
}

/// What operators and their scrapers reach.
fn admin_routes() -> Router<AppState> {
    // Job bodies and dead letters name records: no cache along the way keeps them.
    let no_store = tower_http::set_header::SetResponseHeaderLayer::overriding(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Router::new()
        .route("/metrics", get(metrics::render))
        .route("/admin/jobs", get(admin::jobs))
        .route(
            "/admin/dead-letters",
            get(admin::dead_letters).merge(delete(admin::purge)),
        )
        .route("/admin/dead-letters/replay", post(admin::replay_all))
        .route("/admin/dead-letters/{id}/replay", post(admin::replay))
        .route_layer(no_store)
}
