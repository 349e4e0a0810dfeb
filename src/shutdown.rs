//! Turning SIGTERM and SIGINT into a [`CancellationToken`] every task can await.
//!
//! One token per process: the HTTP listeners, the queue workers and every background
//! loop (through `tasks::Tasks`) hold a clone and stop taking new work when it is
//! cancelled.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Cancels `token` when the process receives SIGTERM or SIGINT.
///
/// The handlers are installed before this returns, so a signal that arrives while
/// the service is still starting is not lost (or fatal, as the default action is).
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = first_of(&mut term, &mut int).await;
        tracing::info!(signal = name, "shutdown requested");
        token.cancel();
    });
    Ok(())
}

async fn first_of(term: &mut Signal, int: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
