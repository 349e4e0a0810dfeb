//! Wiring: build what `kaizala-bridge run` needs from a [`Config`], serve until told
//! to stop, then drain.
//!
//! [`Application::build`] binds the listener before anything runs, so a caller (a test
//! with `listen = "127.0.0.1:0"`) learns the address at once, and a port already in use
//! is reported before any work starts.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;

use crate::backend::Backend;
use crate::config::{BaselineMode, Config, CrmConfig, ResponseMode};
use crate::crm::dataverse::poller::{Baseline, Watch};
use crate::crm::dataverse::source::DataverseSource;
use crate::crm::dataverse::webhook::{DataverseReceiver, Source as WebhookSource};
use crate::crm::dataverse::{DataverseSink, EntraCredentials, WebApi};
use crate::crm::CrmEventSink;
use crate::crm::CrmSink;
use crate::http::admin::Admin;
use crate::http::{self, AppState};
use crate::jobs::{
    Correlations, Holds, Intake, RecordResponse, RecordResponseHandler, SendAction,
    SendActionHandler, Turns,
};
use crate::kaizala::subscriptions::Reconciling;
use crate::kaizala::{Clients, EventSink, Receiver};
use crate::queue::{Handler, Queue};
use crate::readiness::Readiness;
use crate::rules::Rules;
use crate::store::{Presence, Store};
use crate::tasks::Tasks;
use crate::{shutdown, telemetry};

mod load;
pub mod loops;

pub use load::{load_config, Loaded};
use secrecy::SecretString;

/// The service could not start or failed while running.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The listener could not be bound.
    #[error("server.listen: cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// Why the bind failed (address in use, permission denied...).
        source: io::Error,
    },
    /// The queue's backend (the SQLite file, or Redis) could not be opened.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// The SIGTERM/SIGINT handlers could not be installed.
    #[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
    Signals(io::Error),
    /// Webhook subscriptions cannot be managed with this configuration.
    #[error(transparent)]
    Subscriptions(crate::kaizala::subscriptions::SyncSetupError),
    /// The durable store could not be opened.
    #[error(transparent)]
    Store(crate::store::StoreError),
    /// The rules do not compile (check-config reports the same).
    #[error("the rules are not valid:\n{0}")]
    Rules(crate::config::Problems),
    /// The job queue could not be opened.
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// The rate gate could not be set up.
    #[error(transparent)]
    Gate(#[from] crate::ratelimit::GateError),
    /// A Kaizala client could not be built.
    #[error(transparent)]
    Kaizala(#[from] crate::kaizala::KaizalaError),
    /// A Dataverse client could not be built.
    #[error(transparent)]
    Dataverse(#[from] crate::crm::dataverse::DataverseError),
    /// The job queue stalled and the process stopped itself to be restarted.
    #[error("stopped: {0}")]
    Stalled(String),
    /// The HTTP server stopped with an error.
    #[error("the HTTP server failed: {0}")]
    Serve(io::Error),
}

/// Parts of the service supplied from outside rather than built from the
/// configuration.
#[derive(Default)]
pub struct Components {
    /// Takes the events of the Kaizala webhook receiver. Without one the receiver is
    /// off (its routes answer 404), so no event is ever acknowledged and then lost:
    /// the durable job queue supplies it once it lands.
    pub kaizala_sink: Option<Arc<dyn EventSink>>,
    /// Takes the events of the Dataverse webhook receiver; without one it is off.
    pub crm_sink: Option<Arc<dyn CrmEventSink>>,
}

/// What `run` does besides serving HTTP: the queue's workers and maintenance, and
/// the polling loops.
struct Daemon {
    /// The store and this process's name in it, announced alive while it runs (on a
    /// shared store), so its holds are known to be over once it is gone.
    presence: (Arc<dyn Store>, String),
    queue: Queue,
    send: Arc<SendActionHandler>,
    record: Arc<RecordResponseHandler>,
    crm_polls: Vec<loops::CrmPolling>,
    response_polls: Vec<loops::ResponsePolling>,
}

impl Daemon {
    /// Starts the queue's workers, its maintenance, the polling loops and the store's
    /// upkeep (presence on a shared store, purging expired entries on one's own) as
    /// tasks of `tasks`; the workers let attempts in flight finish for `grace`.
    fn start(self, tasks: &Tasks, grace: Duration) {
        let (store, process) = self.presence;
        if store.is_shared() {
            tasks.supervise("presence", move |stop| {
                let (store, process) = (store.clone(), process.clone());
                async move {
                    Presence::new(store.as_ref())
                        .keep_announcing(&process, stop)
                        .await
                }
            });
        } else {
            tasks.supervise("store_purge", move |stop| {
                let store = store.clone();
                async move { crate::store::purge_expired(store.as_ref(), stop).await }
            });
        }
        let (queue, stop) = (self.queue.clone(), tasks.shutdown().clone());
        let send: Arc<dyn Handler<SendAction>> = self.send;
        tasks.spawn(async move { queue.work(send, stop, grace).await });
        let (queue, stop) = (self.queue.clone(), tasks.shutdown().clone());
        let record: Arc<dyn Handler<RecordResponse>> = self.record;
        tasks.spawn(async move { queue.work(record, stop, grace).await });
        let queue = self.queue;
        tasks.supervise("queue_maintenance", move |stop| {
            let queue = queue.clone();
            async move { queue.maintain(stop).await }
        });
        for polling in self.crm_polls {
            let polling = Arc::new(polling);
            tasks.supervise("crm_poll", move |stop| {
                loops::poll_crm(polling.clone(), stop)
            });
        }
        for polling in self.response_polls {
            let polling = Arc::new(polling);
            tasks.supervise("response_poll", move |stop| {
                loops::poll_responses_loop(polling.clone(), stop)
            });
        }
    }
}

/// On shutdown: not ready at once, still accepting for the drain delay (whoever
/// routes requests here learns to stop before connections are refused), then
/// `closing` tells the listeners to stop accepting.
async fn drain(
    shutdown: CancellationToken,
    closing: CancellationToken,
    readiness: Arc<Readiness>,
    drain_delay: Duration,
) {
    shutdown.cancelled().await;
    readiness.start_draining();
    crate::systemd::stopping();
    if !drain_delay.is_zero() {
        tracing::info!(
            ?drain_delay,
            "shutting down: /readyz says draining; still accepting for the drain delay"
        );
        tokio::time::sleep(drain_delay).await;
    }
    tracing::info!("no longer accepting connections; draining in-flight requests");
    closing.cancel();
}

/// Where each CRM source's activities are written, by source id.
type CrmSinks = HashMap<String, Arc<dyn CrmSink>>;

/// Each CRM source's sink (activities) and, where it polls, its change-tracking loop;
/// one Web API client (one token cache) per source serves both.
fn crm_sources(
    config: &Config,
    rules: &Rules,
    store: &Arc<dyn Store>,
    intake: &Arc<Intake>,
    holder: &str,
) -> Result<(CrmSinks, Vec<loops::CrmPolling>), AppError> {
    let mut sinks = CrmSinks::new();
    let mut crm_polls = Vec::new();
    for crm in &config.crm {
        // One client (one token cache) for the source's writes and its polls.
        let api = Arc::new(web_api(crm, config.kaizala.request_timeout)?);
        sinks.insert(
            crm.id.clone(),
            Arc::new(DataverseSink::new(&crm.id, api.clone())),
        );
        let watches: Vec<Watch> = crm
            .entity_sets
            .iter()
            .filter(|set| rules.watches(&crm.id, set))
            .map(|set| Watch {
                crm: crm.id.clone(),
                entity_set: set.clone(),
                select: crm.select.clone(),
                baseline: match crm.baseline {
                    BaselineMode::ChangesOnly => Baseline::ChangesOnly,
                    BaselineMode::ExistingAsNew => Baseline::ExistingAsNew,
                },
            })
            .collect();
        if crm.poll && !watches.is_empty() {
            let source = DataverseSource::new(api, watches, store.clone());
            crm_polls.push(loops::CrmPolling {
                crm: crm.id.clone(),
                source: Arc::new(source),
                interval: crm.poll_interval,
                sink: intake.clone(),
                store: store.clone(),
                holder: holder.to_string(),
            });
        }
    }
    Ok((sinks, crm_polls))
}

/// The answer sweep of each tenant: polling on tenants without webhooks, and a rare
/// sweep on tenants with them.
fn response_polls(
    config: &Config,
    clients: &Clients,
    receiver: &Arc<Receiver>,
    correlations: &Correlations,
    store: &Arc<dyn Store>,
    holder: &str,
) -> Vec<loops::ResponsePolling> {
    config
        .tenants
        .iter()
        // Tenants on webhooks are swept too, rarely: an answer given before our
        // webhook existed, or while Kaizala had it disabled, is never delivered.
        .filter(|t| {
            t.responses == ResponseMode::Poll || !config.kaizala.response_sweep_interval.is_zero()
        })
        .map(|t| loops::ResponsePolling {
            tenant: t.id.clone(),
            clients: clients
                .iter()
                .filter(|(k, _)| k.tenant == t.id)
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect(),
            receiver: receiver.clone(),
            correlations: correlations.clone(),
            interval: match t.responses {
                ResponseMode::Poll => config.kaizala.response_poll_interval,
                ResponseMode::Webhook => config.kaizala.response_sweep_interval,
            },
            grace: config.kaizala.response_poll_grace,
            store: store.clone(),
            holder: holder.to_string(),
        })
        .collect()
}

/// Webhook reconciliation, when the bridge has a public URL and a tenant on webhooks.
fn reconciler(
    config: &Config,
    clients: &Clients,
    store: &Arc<dyn Store>,
    holder: &str,
) -> Result<Option<Reconciling>, AppError> {
    let wants_webhooks = config
        .tenants
        .iter()
        .any(|t| t.responses == ResponseMode::Webhook);
    let reconciler = match (&config.server.public_url, wants_webhooks) {
        (Some(_), true) => Some(Reconciling {
            managed: crate::kaizala::subscriptions::managed_with(config, clients)
                .map_err(AppError::Subscriptions)?,
            interval: config.kaizala.webhook_sync_interval,
            store: store.clone(),
            holder: holder.to_string(),
        }),
        _ => None,
    };
    Ok(reconciler)
}

/// What every build does first: readiness probes built for `backend`, the metrics
/// recorder installed.
fn prepare(config: &Config, backend: &Backend) -> Arc<Readiness> {
    tracing::debug!(?config, "configuration loaded");
    let readiness = Arc::new(Readiness::for_backend(backend));
    telemetry::metrics();
    readiness
}

/// A bound listener and what it serves.
struct Listener {
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
}

/// Binds `address`, returning the address actually bound (the real port for 0).
async fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), AppError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| AppError::Bind { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| AppError::Bind { address, source })?;
    Ok((listener, bound))
}

/// A bound, ready-to-run bridge.
pub struct Application {
    public: Listener,
    /// `server.admin_listen`'s listener, when the admin routes have a port of their own.
    admin: Option<Listener>,
    limits: http::serve::Limits,
    readiness: Arc<Readiness>,
    shutdown_grace: Duration,
    drain_delay: Duration,
    reconciler: Option<Reconciling>,
    daemon: Option<Daemon>,
}

/// The callback tokens of the tenants that have one.
fn callback_tokens(config: &Config) -> HashMap<String, SecretString> {
    config
        .tenants
        .iter()
        .filter_map(|t| Some((t.id.clone(), t.callback_token.as_ref()?.to_secret_string())))
        .collect()
}

/// The webhook sources of the CRMs that have a webhook key.
fn webhook_sources(config: &Config) -> HashMap<String, WebhookSource> {
    config
        .crm
        .iter()
        .filter_map(|c| {
            let key = c.webhook_key.as_ref()?.to_secret_string();
            let source = WebhookSource {
                key,
                header: c.webhook_header.clone(),
                entity_sets: c.entity_sets.clone(),
            };
            Some((c.id.clone(), source))
        })
        .collect()
}

/// A Web API client of one `[[crm]]` source.
fn web_api(crm: &CrmConfig, timeout: Duration) -> Result<WebApi, AppError> {
    let url = crm
        .url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_string());
    let url = url.unwrap_or_default();
    let token_url = match &crm.token_url {
        Some(token_url) => token_url.to_string(),
        None => format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            crm.tenant_id
        ),
    };
    let credentials = EntraCredentials {
        token_url,
        client_id: crm.client_id.clone(),
        client_secret: crm.client_secret.clone(),
        scope: format!("{url}/.default"),
    };
    Ok(WebApi::new(&crm.id, &url, credentials, timeout)?.with_max_retry_after(crm.max_retry_after))
}

impl Application {
    /// Builds everything `config` asks for (store, queue, gate, clients, receivers,
    /// workers, pollers) and binds the listeners.
    pub async fn build(config: &Config) -> Result<Self, AppError> {
        let rules = Rules::compile(config).map_err(AppError::Rules)?;
        Self::build_loaded(config, rules).await
    }

    /// Like [`Application::build`], for a configuration whose rules
    /// [`load_config`] already compiled (so start-up compiles them once).
    pub async fn build_loaded(config: &Config, rules: Rules) -> Result<Self, AppError> {
        let backend = Backend::open(&config.queue).await?;
        let readiness = prepare(config, &backend);
        let store = crate::store::open(&backend)
            .await
            .map_err(AppError::Store)?;
        let rules = Arc::new(rules);
        let (state, reconciler, daemon) =
            Self::bridge(config, rules, &backend, store, &readiness).await?;
        Self::assemble(config, state, readiness, reconciler, daemon).await
    }

    /// The HTTP service with only the receivers `components` supplies sinks for, and
    /// no queue, worker or poller: for tests of a receiver (or of the service) alone.
    /// Production wiring never passes through here.
    pub async fn with_receivers(config: &Config, components: Components) -> Result<Self, AppError> {
        // Connected on first use, and the store only where something needs it: a
        // service test may point at a Redis that never answers.
        let backend = Backend::unconnected(&config.queue)?;
        let readiness = prepare(config, &backend);
        let store = match &components.kaizala_sink {
            Some(_) => Some(
                crate::store::open(&backend)
                    .await
                    .map_err(AppError::Store)?,
            ),
            None => None,
        };
        let kaizala = components
            .kaizala_sink
            .zip(store.clone())
            .map(|(sink, store)| {
                let tokens = callback_tokens(config);
                Arc::new(Receiver::new(tokens, store, config.kaizala.dedup_ttl, sink))
            });
        let reconciler = match (&store, &config.server.public_url) {
            (Some(store), Some(_)) => Some(Reconciling {
                managed: crate::kaizala::subscriptions::managed(config, store.clone())
                    .map_err(AppError::Subscriptions)?,
                interval: config.kaizala.webhook_sync_interval,
                store: store.clone(),
                holder: crate::queue::process_name(),
            }),
            _ => None,
        };
        let dataverse = components
            .crm_sink
            .map(|sink| Arc::new(DataverseReceiver::new(webhook_sources(config), sink)));
        let state = AppState {
            readiness: readiness.clone(),
            kaizala,
            dataverse,
            admin: None,
        };
        Self::assemble(config, state, readiness, reconciler, None).await
    }

    /// Binds the listeners (one, or two with `server.admin_listen`) for `state`.
    async fn assemble(
        config: &Config,
        state: AppState,
        readiness: Arc<Readiness>,
        reconciler: Option<Reconciling>,
        daemon: Option<Daemon>,
    ) -> Result<Self, AppError> {
        let (router, admin) = match config.server.admin_listen {
            None => (http::router(state, &config.server), None),
            Some(admin_address) => {
                let (public, admin) = http::split_routers(state, &config.server);
                let (listener, address) = bind(admin_address).await?;
                (
                    public,
                    Some(Listener {
                        listener,
                        address,
                        router: admin,
                    }),
                )
            }
        };
        let (listener, address) = bind(config.server.listen).await?;
        Ok(Self {
            public: Listener {
                listener,
                address,
                router,
            },
            admin,
            limits: http::serve::Limits::of(&config.server),
            readiness,
            shutdown_grace: config.server.shutdown_grace,
            drain_delay: config.server.drain_delay,
            reconciler,
            daemon,
        })
    }

    /// The whole bridge: rules, queue, rate gate, clients, receivers feeding the
    /// queue, handlers and pollers.
    async fn bridge(
        config: &Config,
        rules: Arc<Rules>,
        backend: &Backend,
        store: Arc<dyn Store>,
        readiness: &Arc<Readiness>,
    ) -> Result<(AppState, Option<Reconciling>, Option<Daemon>), AppError> {
        let queue = Queue::open(backend, &config.queue, store.clone()).await?;
        let gate = crate::ratelimit::for_backend(backend, store.clone()).await?;
        let clients = crate::kaizala::client::clients(config, store.clone(), Some(gate))?;
        let correlations = Correlations::new(store.clone())
            .with_open_for(config.kaizala.response_poll_grace)
            .with_retention(config.kaizala.correlation_retention);
        let turns = Arc::new(Turns::default());
        let intake = Arc::new(
            Intake::new(queue.clone(), rules.clone())
                .with_correlations(correlations.clone())
                .with_turns(turns.clone(), clients.clone()),
        );
        let receiver = Arc::new(Receiver::new(
            callback_tokens(config),
            store.clone(),
            config.kaizala.dedup_ttl,
            intake.clone(),
        ));
        let dataverse = Arc::new(DataverseReceiver::new(
            webhook_sources(config),
            intake.clone(),
        ));
        let holder = crate::queue::process_name();
        let (sinks, crm_polls) = crm_sources(config, &rules, &store, &intake, &holder)?;
        let response_polls =
            response_polls(config, &clients, &receiver, &correlations, &store, &holder);
        let reconciler = reconciler(config, &clients, &store, &holder)?;
        readiness.watch_workers(queue.clone());
        let admin = config.server.admin_token.as_ref().map(|token| {
            Arc::new(Admin {
                token: token.to_secret_string(),
                queue: queue.clone(),
            })
        });
        let record_clients = clients.clone();
        let daemon = Daemon {
            presence: (store.clone(), holder.clone()),
            send: Arc::new(
                SendActionHandler::new(clients, correlations.clone())
                    .with_turns(turns)
                    .with_holds(Holds::new(
                        store.clone(),
                        holder.clone(),
                        config.kaizala.hold_ttl(),
                    ))
                    .with_sent_activities(sinks.clone(), rules.clone()),
            ),
            record: Arc::new(
                RecordResponseHandler::new(sinks, correlations)
                    .with_rules(rules)
                    .with_kaizala(record_clients),
            ),
            queue,
            crm_polls,
            response_polls,
        };
        let state = AppState {
            readiness: readiness.clone(),
            kaizala: Some(receiver),
            dataverse: Some(dataverse),
            admin,
        };
        Ok((state, reconciler, Some(daemon)))
    }

    /// The address actually bound (the real port when the configuration said 0).
    pub fn address(&self) -> SocketAddr {
        self.public.address
    }

    /// The admin listener's address (`server.admin_listen`), when it has one.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|admin| admin.address)
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, reports not ready,
    /// and lets in-flight requests finish within the grace period.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let tasks = Tasks::new(shutdown.clone());
        self.run_with(shutdown, tasks).await
    }

    /// Like [`Application::run_until_stopped`], its tasks started in `tasks` beside
    /// those already there, which stop with them: one set owns every task of the
    /// process, and one grace period bounds them all.
    pub async fn run_with(self, shutdown: CancellationToken, tasks: Tasks) -> Result<(), AppError> {
        tracing::info!(address = %self.public.address, "listening on http://{}", self.public.address);
        if let Some(reconciling) = self.reconciler {
            let reconciling = Arc::new(reconciling);
            tasks.supervise("webhook_sync", move |stop| {
                crate::kaizala::subscriptions::keep_reconciled(reconciling.clone(), stop)
            });
        }
        if let Some(daemon) = self.daemon {
            daemon.start(&tasks, self.shutdown_grace);
        }
        let closing = CancellationToken::new();
        tasks.spawn(drain(
            shutdown.clone(),
            closing.clone(),
            self.readiness.clone(),
            self.drain_delay,
        ));
        let serve = |listener: Listener| {
            let closing = closing.clone();
            http::serve::serve(
                listener.listener,
                listener.router,
                self.limits,
                async move { closing.cancelled().await },
            )
        };
        if let Some(admin) = self.admin {
            tracing::info!(address = %admin.address, "admin routes on http://{}", admin.address);
            let admin = serve(admin);
            tasks.spawn(async move {
                if let Err(error) = admin.await {
                    tracing::error!(%error, "the admin listener failed");
                }
            });
        }
        let server = serve(self.public);
        let grace = self.shutdown_grace;
        let grace_elapsed = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.drain_delay + grace).await;
        };
        tokio::select! {
            result = server => result.map_err(AppError::Serve)?,
            () = grace_elapsed => {
                tracing::warn!(?grace, "in-flight requests outlived the shutdown grace period; stopping anyway");
            }
        }
        // The workers finish the jobs in flight within the grace period (each gives
        // up after it); whatever is unfinished is taken again after a restart. The
        // loops end at once (they release their leases on the way out).
        if !tasks.stop(grace + Duration::from_secs(1)).await {
            tracing::warn!(
                running = tasks.len(),
                "background tasks outlived the shutdown grace period; stopping anyway"
            );
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// `kaizala-bridge run`: build, serve, and stop cleanly on SIGTERM or SIGINT.
pub async fn run(loaded: Loaded) -> Result<(), AppError> {
    let shutdown = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown.clone()).map_err(AppError::Signals)?;
    let config = loaded.config;
    let app = Application::build_loaded(&config, loaded.rules).await?;
    crate::systemd::ready();
    let tasks = Tasks::new(shutdown.clone());
    let readiness = app.readiness.clone();
    tasks.supervise("readiness_publish", move |stop| {
        readiness.clone().publish(Duration::from_secs(15), stop)
    });
    let readiness = app.readiness.clone();
    tasks.supervise("watchdog", move |stop| {
        crate::systemd::feed_watchdog(readiness.clone(), stop)
    });
    let stalled = Arc::new(std::sync::Mutex::new(None));
    let (readiness, why) = (app.readiness.clone(), stalled.clone());
    tasks.supervise("stall_check", move |stop| {
        stop_when_stalled(readiness.clone(), stop, why.clone())
    });
    app.run_with(shutdown, tasks).await?;
    let why = stalled.lock().unwrap().take();
    match why {
        Some(why) => Err(AppError::Stalled(why)),
        None => Ok(()),
    }
}

/// How long the queue may stay stalled before the process stops itself.
const STALLED_FOR: Duration = Duration::from_secs(60);

/// Stops the process (exit 1, so systemd's `Restart=on-failure` or Kubernetes
/// restarts it) once the queue has been stalled for [`STALLED_FOR`] on end: readiness
/// already says so, but an orchestrator only takes a not-ready replica out of its
/// Service, it does not restart it.
async fn stop_when_stalled(
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
    stalled: Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut since: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        match readiness.stalled() {
            None => since = None,
            Some(why) => {
                let started = *since.get_or_insert_with(std::time::Instant::now);
                if started.elapsed() >= STALLED_FOR {
                    tracing::error!(%why, "the job queue is stalled; stopping so the supervisor restarts the bridge");
                    *stalled.lock().unwrap() = Some(why);
                    shutdown.cancel();
                    return;
                }
            }
        }
    }
}
