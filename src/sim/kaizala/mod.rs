//! An emulator of the Microsoft Kaizala connector API, written from the official
//! reference (the connector docs and their swagger) since the service is retired.
//!
//! It serves the API root (`/v1/generatePin`, `/v1/loginWithPinAndApplicationId`,
//! `/v1/accessToken`) and, per connector, an endpoint `/ep/{endpoint}` under which
//! the resources live (`/v1/groups...`, `/v1/webhook...`), as `endpointUrl` says.
//! Test control lives under `/_sim/`. Start it with [`KaizalaSim::start`] (port 0 in
//! tests) or `kaizala-bridge sim kaizala --listen ADDR --seed FILE`; see
//! docs/simulators.md.

mod actions;
mod auth;
mod body;
mod control;
mod delivery;
mod error;
mod groups;
pub mod seed;
mod state;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use crate::sim::clock::Clock;
use crate::sim::faults::FaultState;
pub use crate::sim::faults::Faults;
use crate::sim::server::{self, Server};
pub use actions::RESPONDER_HEADER;
use error::ApiError;
pub use seed::{Seed, SeedError};
use state::World;

/// Settings of an emulator run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Lifetime of access tokens (Kaizala: 24 h).
    pub access_token_lifetime: Duration,
    /// Lifetime of refresh tokens (Kaizala: 365 days); a successor is handed out
    /// after 90% of it.
    pub refresh_token_lifetime: Duration,
    /// Time a webhook callback has to answer an event.
    pub delivery_timeout: Duration,
    /// Wait before the first retry of a failed delivery; it doubles each time.
    pub delivery_retry_initial: Duration,
    /// Retries after the first attempt before the webhook is disabled (Kaizala: 6
    /// within two days).
    pub delivery_retries: u32,
    /// Seed of PINs and tokens.
    pub seed: u64,
    /// The URL clients reach the emulator at (the API root, and the start of every
    /// `endpointUrl`); by default `http://` and the bound address, with an
    /// unspecified address (0.0.0.0) replaced by the loopback one.
    pub public_url: Option<String>,
    /// How long a held-back (reordered) event waits for a successor before it goes.
    pub reorder_hold: Duration,
}

impl Default for SimOptions {
    /// Kaizala's documented behaviour: 24 h access tokens, 365-day refresh tokens,
    /// six retries whose doubling delays add up to about two days.
    fn default() -> Self {
        Self {
            access_token_lifetime: Duration::from_secs(24 * 3600),
            refresh_token_lifetime: Duration::from_secs(365 * 24 * 3600),
            delivery_timeout: Duration::from_secs(10),
            delivery_retry_initial: Duration::from_secs(45 * 60),
            delivery_retries: 6,
            seed: 0,
            public_url: None,
            reorder_hold: Duration::from_millis(200),
        }
    }
}

impl SimOptions {
    /// Defaults with a delivery retry schedule compressed for tests: retries after
    /// 20, 40, 80... ms, a one-second callback timeout, and a long hold for reordered
    /// events so that a slow machine still sees the swap.
    pub fn fast() -> Self {
        Self {
            delivery_timeout: Duration::from_secs(1),
            delivery_retry_initial: Duration::from_millis(20),
            reorder_hold: Duration::from_secs(2),
            ..Self::default()
        }
    }
}

/// What every handler shares.
pub struct Shared {
    world: Mutex<World>,
    faults: Mutex<FaultState>,
    clock: Clock,
    options: SimOptions,
    base_url: String,
    http: reqwest::Client,
    deliverer: Notify,
    shutdown: CancellationToken,
}

impl Shared {
    /// The URL of an endpoint (what `endpointUrl` and `Location` carry).
    fn endpoint_url(&self, endpoint: &str) -> String {
        format!("{}/ep/{endpoint}", self.base_url)
    }

    fn move_connector(&self, application_id: &str) -> Result<String, ApiError> {
        let mut world = self.world.lock().unwrap();
        let c = world
            .connector_by_app(application_id)
            .ok_or_else(|| ApiError::not_found(format!("no connector {application_id:?}")))?;
        let endpoint = world.next_endpoint();
        world.connectors[c].endpoint = endpoint.clone();
        Ok(self.endpoint_url(&endpoint))
    }

    fn set_faults(&self, faults: Faults) -> Result<(), String> {
        faults.check()?;
        *self.faults.lock().unwrap() = FaultState::new(faults);
        Ok(())
    }
}

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client for webhook deliveries could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    /// A control operation was refused.
    #[error("{0}")]
    Control(String),
}

/// A running emulator, and the handle tests steer it with.
pub struct KaizalaSim {
    shared: Arc<Shared>,
    address: SocketAddr,
    server: Server,
}

impl KaizalaSim {
    /// Starts the emulator with `seed` on `listen` (port 0 for a free port).
    pub async fn start(
        seed: &Seed,
        options: SimOptions,
        listen: SocketAddr,
    ) -> Result<Self, SimError> {
        let bound = server::bind(listen, options.public_url.as_deref())
            .await
            .map_err(|source| SimError::Bind {
                address: listen,
                source,
            })?;
        let clock = Clock::default();
        let refresh_ms = options.refresh_token_lifetime.as_millis() as i64;
        let world = World::from_seed(seed, clock.now_ms(), refresh_ms, options.seed);
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            faults: Mutex::new(FaultState::default()),
            clock,
            base_url: bound.base_url.clone(),
            http: server::client().map_err(SimError::Client)?,
            deliverer: Notify::new(),
            shutdown: CancellationToken::new(),
            options,
        });
        tokio::spawn(delivery::run(shared.clone()));
        let address = bound.address;
        let server = Server::spawn(
            bound,
            router(shared.clone()),
            shared.shutdown.clone(),
            "Kaizala",
        );
        Ok(Self {
            shared,
            address,
            server,
        })
    }

    /// The API root, e.g. `http://127.0.0.1:41234` (a connector's `api_root`).
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Moves the emulator's clock forward (token expiry, quota windows).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Gives a connector a new endpoint; returns its URL.
    pub fn move_connector(&self, application_id: &str) -> Result<String, SimError> {
        self.shared
            .move_connector(application_id)
            .map_err(|e| SimError::Control(e.message().to_string()))
    }

    /// Puts `faults` in force.
    pub fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        self.shared.set_faults(faults).map_err(SimError::Control)
    }

    /// Everything the emulator holds (the body of `GET /_sim/state`).
    pub fn state(&self) -> Value {
        self.shared.snapshot()
    }

    /// Stops serving and delivering.
    pub async fn stop(mut self) {
        self.server.stop().await;
    }

    /// Waits until the server task ends (on [`KaizalaSim::stop`] from elsewhere, or
    /// when `shutdown` is cancelled).
    pub async fn run_until(self, shutdown: CancellationToken) {
        shutdown.cancelled().await;
        self.stop().await;
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/v1/generatePin", post(auth::generate_pin))
        .route(
            "/v1/loginWithPinAndApplicationId",
            post(auth::login_with_pin),
        )
        .route("/v1/accessToken", get(auth::access_token))
        .route("/ep/{ep}/v1/groups", get(groups::list).post(groups::create))
        .route("/ep/{ep}/v1/groups/{group}", get(groups::details))
        .route(
            "/ep/{ep}/v1/groups/{group}/subgroups",
            post(groups::create_sub_group),
        )
        .route(
            "/ep/{ep}/v1/groups/{group}/subGroups",
            get(groups::sub_groups).put(groups::add_sub_groups),
        )
        .route(
            "/ep/{ep}/v1/groups/{group}/subGroups/{sub}",
            axum::routing::delete(groups::remove_sub_group),
        )
        .route(
            "/ep/{ep}/v1/groups/{group}/members",
            get(groups::members).put(groups::add_members),
        )
        .route(
            "/ep/{ep}/v1/groups/{group}/members/{member}",
            axum::routing::delete(groups::remove_member),
        )
        .route(
            "/ep/{ep}/v1/groups/{group}/subscribers",
            post(groups::subscribers),
        )
        .route(
            "/ep/{ep}/v1/groups/{group}/subscribers/{change}",
            put(groups::change_subscribers),
        )
        .route(
            "/ep/{ep}/v1/groups/{group}/messages",
            post(groups::send_message),
        )
        .route(
            "/ep/{ep}/v1/groups/{group}/actions",
            get(actions::list_actions).post(actions::post_action),
        )
        .route(
            "/ep/{ep}/v1/groups/{group}/actions/{action}",
            get(actions::action_details),
        )
        .route(
            "/ep/{ep}/v1/groups/{group}/actions/{action}/responses",
            post(actions::post_response),
        )
        .route(
            "/ep/{ep}/v1/webhook",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/ep/{ep}/v1/webhook/{id}",
            put(webhooks::update).delete(webhooks::delete),
        )
        .route_layer(from_fn_with_state(shared.clone(), inject_faults));
    let control = Router::new()
        .route("/_sim/clock/advance", post(control::advance_clock))
        .route("/_sim/connectors/{app}/move", post(control::move_connector))
        .route(
            "/_sim/connectors/{app}/groups/{group}",
            post(control::grant_group),
        )
        .route(
            "/_sim/faults",
            get(control::get_faults).post(control::set_faults),
        )
        .route("/_sim/state", get(control::state));
    api.merge(control).with_state(shared)
}

/// Applies the faults in force to an API call: latency, a hang, or an error.
async fn inject_faults(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let fault = shared.faults.lock().unwrap().for_call();
    if !fault.latency.is_zero() {
        tokio::time::sleep(fault.latency).await;
    }
    if fault.hang {
        shared.shutdown.cancelled().await;
        return ApiError::injected(axum::http::StatusCode::SERVICE_UNAVAILABLE).into_response();
    }
    if let Some(status) = fault.error {
        return ApiError::injected(status).into_response();
    }
    if fault.lost {
        let _ = next.run(request).await;
        return ApiError::injected(axum::http::StatusCode::INTERNAL_SERVER_ERROR).into_response();
    }
    next.run(request).await
}
