//! The commands of the `kaizala-bridge` binary, one file each (as mini-redis does
//! with `cmd/`): each takes what it was given on the command line and returns the
//! process's exit code. `main.rs` only parses and dispatches. What they share is
//! here: starting logging and the runtime, and running until a signal.

pub mod auth;
pub mod check_config;
#[cfg(feature = "sim")]
pub mod demo;
pub mod dlq;
pub mod manual;
pub mod run;
#[cfg(feature = "sim")]
pub mod sim;
pub mod webhooks;

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::cli::EXIT_RUNTIME;
use crate::config::{LogConfig, LogFormat};
use crate::{shutdown, telemetry};

/// The configured backend and the store on it, for a command that reads or writes
/// the bridge's state; the error is the line to print.
pub async fn open_store(
    config: &crate::config::Config,
) -> Result<
    (
        crate::backend::Backend,
        std::sync::Arc<dyn crate::store::Store>,
    ),
    String,
> {
    let backend = crate::backend::Backend::open(&config.queue)
        .await
        .map_err(|e| e.to_string())?;
    let store = crate::store::open(&backend)
        .await
        .map_err(|e| e.to_string())?;
    Ok((backend, store))
}

/// Installs logging for `log` and builds the multi-threaded runtime; a failure is
/// printed and is exit code 1.
pub fn runtime(log: &LogConfig) -> Result<tokio::runtime::Runtime, ExitCode> {
    if let Err(error) = telemetry::init_logging(log) {
        eprintln!("kaizala-bridge: {error}");
        return Err(ExitCode::from(EXIT_RUNTIME));
    }
    tokio::runtime::Runtime::new().map_err(|error| {
        eprintln!("kaizala-bridge: cannot start the async runtime: {error}");
        ExitCode::from(EXIT_RUNTIME)
    })
}

/// Runs `work` with pretty logs at `level` until it ends; `work` gets a token that
/// SIGTERM or SIGINT cancels. A failure is printed as `kaizala-bridge: ...` and is
/// exit code 1.
pub fn until_signal<T, F>(
    level: &str,
    work: impl FnOnce(CancellationToken) -> F,
) -> Result<T, ExitCode>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let log = LogConfig {
        level: level.into(),
        format: LogFormat::Pretty,
    };
    let runtime = runtime(&log)?;
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        shutdown::cancel_on_signal(stop.clone()).map_err(|e| e.to_string())?;
        work(stop).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result.map_err(|error| {
        eprintln!("kaizala-bridge: {error}");
        ExitCode::from(EXIT_RUNTIME)
    })
}
