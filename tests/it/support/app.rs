//! The bridge in-process, on a free port, stopped when the test says so or on drop.

use std::net::SocketAddr;

use kaizala_bridge::app::{AppError, Application, Components};
use kaizala_bridge::config::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running bridge.
pub struct TestApp {
    /// The address it listens on.
    pub address: SocketAddr,
    /// An HTTP client for it.
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), AppError>>>,
}

impl TestApp {
    /// Builds the bridge for `config` (which should listen on port 0) and runs it.
    pub async fn spawn(config: &Config) -> Self {
        let app = Application::build(config)
            .await
            .expect("the application builds");
        Self::run(app)
    }

    /// The HTTP service with only the receivers `components` supplies sinks for (no
    /// queue, worker or poller), running.
    pub async fn spawn_with(config: &Config, components: Components) -> Self {
        let app = Application::with_receivers(config, components)
            .await
            .expect("the application builds");
        Self::run(app)
    }

    fn run(app: Application) -> Self {
        let address = app.address();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            address,
            client: reqwest::Client::new(),
            shutdown,
            task: Some(task),
        }
    }

    /// `http://address/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("the request is answered")
    }

    /// Asks the bridge to stop, as SIGTERM does.
    pub fn request_stop(&self) {
        self.shutdown.cancel();
    }

    /// Whether the serving task has ended.
    pub fn has_stopped(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Asks the bridge to stop and waits for it.
    pub async fn stop(mut self) -> Result<(), AppError> {
        self.shutdown.cancel();
        self.task
            .take()
            .expect("not yet stopped")
            .await
            .expect("the serving task did not panic")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
