//! Wiring: build what `kaizala-bridge run` needs from a [`Config`], serve until told
//! to stop, then drain.
//!
//! [`Application::build`] binds the listener before anything runs, so a caller (a test
//! with `listen = "127.0.0.1:0"`) learns the address at once, and a port already in use
//! is reported before any work starts.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, QueueBackend};
use crate::crm::dataverse::webhook::{DataverseReceiver, Source as WebhookSource};
use crate::crm::CrmEventSink;
use crate::http::{self, AppState};
use crate::kaizala::subscriptions::Managed;
use crate::kaizala::{EventSink, Receiver};
use crate::readiness::{Readiness, ReadinessError};
use crate::{shutdown, telemetry};
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
    /// The directory of the SQLite queue could not be created.
    #[error("queue.sqlite_path: cannot create directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why it could not be created.
        source: io::Error,
    },
    /// Readiness probes could not be set up.
    #[error(transparent)]
    Readiness(#[from] ReadinessError),
    /// The SIGTERM/SIGINT handlers could not be installed.
    #[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
    Signals(io::Error),
    /// Webhook subscriptions cannot be managed with this configuration.
    #[error(transparent)]
    Subscriptions(crate::kaizala::subscriptions::SyncSetupError),
    /// The durable store could not be opened.
    #[error(transparent)]
    Store(crate::store::StoreError),
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

/// A bound, ready-to-run bridge.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
    readiness: Arc<Readiness>,
    shutdown_grace: Duration,
    reconciler: Option<(Vec<Managed>, Duration)>,
}

impl Application {
    /// Builds everything `config` asks for and binds the listener.
    pub async fn build(config: &Config) -> Result<Self, AppError> {
        Self::build_with(config, Components::default()).await
    }

    /// Like [`Application::build`], with parts supplied by the caller.
    pub async fn build_with(config: &Config, components: Components) -> Result<Self, AppError> {
        tracing::debug!(?config, "configuration loaded");
        if config.queue.backend == QueueBackend::Sqlite {
            if let Some(dir) = config
                .queue
                .sqlite_path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|source| AppError::DataDir {
                        path: dir.to_path_buf(),
                        source,
                    })?;
            }
        }
        let readiness = Arc::new(Readiness::for_config(config)?);
        telemetry::metrics();
        // The durable store is opened when something needs it: the Kaizala receiver's
        // event ids and the connectors' learned credentials.
        let store = match components.kaizala_sink {
            Some(_) => Some(crate::store::open(config).await.map_err(AppError::Store)?),
            None => None,
        };
        let kaizala = components
            .kaizala_sink
            .zip(store.clone())
            .map(|(sink, store)| {
                let tokens = config
                    .tenants
                    .iter()
                    .filter_map(|t| {
                        let token = t.callback_token.as_ref()?.expose().to_string();
                        Some((t.id.clone(), SecretString::from(token)))
                    })
                    .collect();
                Arc::new(Receiver::new(tokens, store, config.kaizala.dedup_ttl, sink))
            });
        // Registering webhooks only makes sense while something receives their events.
        let reconciler = match (&store, &config.server.public_url) {
            (Some(store), Some(_)) => {
                let managed = crate::kaizala::subscriptions::managed(config, store.clone())
                    .map_err(AppError::Subscriptions)?;
                Some((managed, config.kaizala.webhook_sync_interval))
            }
            _ => None,
        };
        let dataverse = components.crm_sink.map(|sink| {
            let sources = config
                .crm
                .iter()
                .filter_map(|c| {
                    let key = SecretString::from(c.webhook_key.as_ref()?.expose().to_string());
                    let source = WebhookSource {
                        key,
                        header: c.webhook_header.clone(),
                        entity_sets: c.entity_sets.clone(),
                    };
                    Some((c.id.clone(), source))
                })
                .collect();
            Arc::new(DataverseReceiver::new(sources, sink))
        });
        let state = AppState {
            readiness: readiness.clone(),
            kaizala,
            dataverse,
        };
        let router = http::router(state, &config.server);
        let address = config.server.listen;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AppError::Bind { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| AppError::Bind { address, source })?;
        Ok(Self {
            listener,
            address,
            router,
            readiness,
            shutdown_grace: config.server.shutdown_grace,
            reconciler,
        })
    }

    /// The address actually bound (the real port when the configuration said 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, reports not ready,
    /// and lets in-flight requests finish within the grace period.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AppError> {
        tracing::info!(address = %self.address, "listening on http://{}", self.address);
        if let Some((managed, interval)) = self.reconciler {
            tokio::spawn(crate::kaizala::subscriptions::keep_reconciled(
                managed,
                interval,
                shutdown.clone(),
            ));
        }
        let readiness = self.readiness.clone();
        let stop = shutdown.clone();
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            stop.cancelled().await;
            readiness.start_draining();
            tracing::info!("no longer accepting connections; draining in-flight requests");
        });
        let grace = self.shutdown_grace;
        let grace_elapsed = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result.map_err(AppError::Serve)?,
            () = grace_elapsed => {
                tracing::warn!(?grace, "in-flight requests outlived the shutdown grace period; stopping anyway");
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// `kaizala-bridge run`: build, serve, and stop cleanly on SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), AppError> {
    let shutdown = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown.clone()).map_err(AppError::Signals)?;
    let app = Application::build(&config).await?;
    app.run_until_stopped(shutdown).await
}
