//! `run`: the daemon, until SIGTERM or SIGINT.

use std::process::ExitCode;

use super::runtime;
use crate::app;
use crate::cli::{EXIT_OK, EXIT_RUNTIME};

/// Runs the bridge for the loaded configuration until a signal, then stops within
/// the grace period.
pub fn execute(loaded: app::Loaded) -> ExitCode {
    let runtime = match runtime(&loaded.config.log) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(app::run(loaded));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            tracing::error!(%error, "stopped on an error");
            eprintln!("kaizala-bridge: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
