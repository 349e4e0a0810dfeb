//! An emulator of Microsoft Dataverse (Dynamics 365) for the bridge's CRM side,
//! written from the project's Dataverse reference (facts from Microsoft's docs),
//! sharing no types with `crm/`.
//!
//! One listener serves the Entra token endpoint (`POST /{tenant}/oauth2/v2.0/token`),
//! the Web API under `/api/data/v9.2/` (opportunities, tasks, annotations: create,
//! create-only upsert, update, delete, read, list with `$select`, `$filter`, `$top`,
//! paging, and change tracking with delta links that expire), service-protection 429s,
//! webhooks to registered service endpoints (RemoteExecutionContext), and `/_sim/`
//! control. See docs/simulators.md.

mod control;
mod error;
pub mod seed;
mod tables;
mod token;
mod webapi;
mod webhooks;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::sim::clock::Clock;
use crate::sim::faults::{FaultState, Faults};
use crate::sim::server::{self, Server};
pub use seed::{Seed, SeedApplication, SeedError};
use tables::Table;
pub use webhooks::ServiceEndpoint;

/// Settings of an emulator run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Lifetime of access tokens (Entra: about an hour).
    pub token_lifetime: Duration,
    /// Requests per application per five minutes before 429 (Dataverse: 6,000).
    pub requests_per_window: usize,
    /// How long a delta token stays valid (Dataverse default: 7 days).
    pub change_tracking_retention: Duration,
    /// Rows per page when the client does not ask (Dataverse: 5,000).
    pub max_page_size: usize,
    /// How long a webhook receiver has to answer (Dataverse: 60 s).
    pub webhook_timeout: Duration,
    /// The organisation URL clients use; by default `http://` and the bound address.
    pub public_url: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::from_secs(3599),
            requests_per_window: 6000,
            change_tracking_retention: Duration::from_secs(7 * 24 * 3600),
            max_page_size: 5000,
            webhook_timeout: Duration::from_secs(60),
            public_url: None,
        }
    }
}

/// Everything the emulator holds.
pub struct World {
    apps: Vec<SeedApplication>,
    tokens: HashMap<String, (String, i64)>,
    tables: BTreeMap<&'static str, Table>,
    version: u64,
    endpoints: Vec<ServiceEndpoint>,
    deliveries: Vec<Value>,
    requests: HashMap<String, VecDeque<i64>>,
    throttled: HashMap<String, u32>,
    delta_floor_ms: i64,
}

/// What every handler shares.
pub struct Shared {
    world: Mutex<World>,
    faults: Mutex<FaultState>,
    clock: Clock,
    options: SimOptions,
    base_url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

/// The emulator could not start or was asked something impossible.
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
    /// The HTTP client for webhooks could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    /// A control operation was refused.
    #[error("{0}")]
    Control(String),
}

/// A running Dataverse emulator and the handle tests steer it with.
pub struct DataverseSim {
    shared: Arc<Shared>,
    server: Server,
}

impl DataverseSim {
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
        let mut world = World {
            apps: seed.applications.clone(),
            tokens: HashMap::new(),
            tables: tables::SCHEMAS
                .iter()
                .map(|s| (s.set, Table::default()))
                .collect(),
            version: 1000,
            endpoints: Vec::new(),
            deliveries: Vec::new(),
            requests: HashMap::new(),
            throttled: HashMap::new(),
            delta_floor_ms: 0,
        };
        for opportunity in &seed.opportunities {
            webapi::insert(
                &mut world,
                "opportunities",
                None,
                opportunity.clone(),
                clock.now_ms(),
            );
        }
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            faults: Mutex::new(FaultState::default()),
            clock,
            options,
            base_url: bound.base_url.clone(),
            http: server::client().map_err(SimError::Client)?,
            shutdown: CancellationToken::new(),
        });
        let server = Server::spawn(
            bound,
            router(shared.clone()),
            shared.shutdown.clone(),
            "Dataverse",
        );
        Ok(Self { shared, server })
    }

    /// The organisation URL (e.g. `http://127.0.0.1:41234`); the Web API is under
    /// `/api/data/v9.2/` and the token scope is this URL plus `/.default`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The token endpoint of an Entra tenant.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.shared.base_url)
    }

    /// Moves the emulator's clock forward.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Puts `faults` in force (errors, latency and hangs on Web API calls).
    pub fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        faults.check().map_err(SimError::Control)?;
        *self.shared.faults.lock().unwrap() = FaultState::new(faults);
        Ok(())
    }

    /// Registers a webhook (a service endpoint with a step); returns its id.
    pub fn register_webhook(&self, endpoint: ServiceEndpoint) -> Result<String, SimError> {
        webhooks::register(&self.shared, endpoint).map_err(SimError::Control)
    }

    /// Makes every delta token handed out so far expired.
    pub fn expire_delta_tokens(&self) {
        self.shared.world.lock().unwrap().delta_floor_ms = self.shared.clock.now_ms() + 1;
    }

    /// Everything the emulator holds (the body of `GET /_sim/state`).
    pub fn state(&self) -> Value {
        control::snapshot(&self.shared)
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        self.server.stop().await;
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run_until(self, shutdown: CancellationToken) {
        shutdown.cancelled().await;
        self.stop().await;
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/api/data/v9.2/{segment}", any(webapi::handle))
        .route_layer(from_fn_with_state(shared.clone(), inject_faults));
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token::token))
        .merge(api)
        .route("/_sim/clock/advance", post(control::advance_clock))
        .route(
            "/_sim/faults",
            get(control::get_faults).post(control::set_faults),
        )
        .route(
            "/_sim/webhooks",
            get(control::list_webhooks).post(control::register_webhook),
        )
        .route("/_sim/delta/expire", post(control::expire_delta))
        .route("/_sim/state", get(control::state))
        .with_state(shared)
}

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
    }
    if fault.lost {
        let _ = next.run(request).await;
        return error::DvError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "0x80040216",
            "An unexpected error occurred (fault injected by the emulator).",
        )
        .into_response();
    }
    if let Some(status) = fault.error.or(fault
        .hang
        .then_some(axum::http::StatusCode::SERVICE_UNAVAILABLE))
    {
        return error::DvError::new(
            status,
            "0x80040216",
            "An unexpected error occurred (fault injected by the emulator).",
        )
        .into_response();
    }
    next.run(request).await
}
