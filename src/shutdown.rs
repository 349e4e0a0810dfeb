//! Turning SIGTERM and SIGINT into a [`CancellationToken`] every task can await.
//!
//! One token per process: the HTTP server, and later the workers and pollers, hold a
//! clone and stop taking new work when it is cancelled.

use tokio_util::sync::CancellationToken;

/// Cancels `token` when the process receives SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutdown requested");
        token.cancel();
    });
}

/// Waits for SIGTERM or SIGINT and says which came.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed");
    let mut int = signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
