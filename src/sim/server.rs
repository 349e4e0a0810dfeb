//! What every emulator's HTTP side does the same way: bind (port 0 for a free one),
//! say where clients reach it, serve its router until stopped, and stop when its
//! handle is dropped, so a test that panics leaves no server behind.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A bound listener and the URL clients reach it at.
pub struct Bound {
    listener: TcpListener,
    /// The address actually bound.
    pub address: SocketAddr,
    /// `public_url` when given (behind a proxy), else `http://` and the address
    /// (loopback for an unspecified one).
    pub base_url: String,
}

/// Binds `listen`.
pub async fn bind(listen: SocketAddr, public_url: Option<&str>) -> std::io::Result<Bound> {
    let listener = TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let base_url = match public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let mut reachable = address;
            if reachable.ip().is_unspecified() {
                reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{reachable}")
        }
    };
    Ok(Bound {
        listener,
        address,
        base_url,
    })
}

/// An HTTP client for an emulator's own calls out (webhook deliveries): redirects are
/// the receiver's answer to report, never followed.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// An emulator's server, serving until [`Server::stop`] or `shutdown` is cancelled.
pub struct Server {
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Serves `app` on `bound` until `shutdown` (which the emulator's own tasks may
    /// watch too) is cancelled; `name` says whose error a failure logs.
    pub fn spawn(
        bound: Bound,
        app: Router,
        shutdown: CancellationToken,
        name: &'static str,
    ) -> Self {
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let serve =
                axum::serve(bound.listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(error) = serve.await {
                tracing::error!(%error, "the {name} emulator stopped on an error");
            }
        });
        Self {
            shutdown,
            task: Some(task),
        }
    }

    /// Stops serving (and everything watching the shutdown token), then waits for the
    /// server to end.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
