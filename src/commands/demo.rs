//! `demo`: the whole loop against the built-in emulators; it needs no configuration.

use std::process::ExitCode;

use super::until_signal;
use crate::cli::{EXIT_OK, EXIT_RUNTIME};

/// `demo`: the whole loop against the built-in emulators; it needs no configuration.
/// Its log shows warnings only, so that the story it prints stays readable, unless
/// `RUST_LOG` asks for more (`RUST_LOG=info`, or a filter such as
/// `kaizala_bridge::jobs=debug`).
pub fn execute(keep_running: bool) -> ExitCode {
    let options = crate::demo::DemoOptions { keep_running };
    let level = std::env::var("RUST_LOG")
        .ok()
        .filter(|level| !level.trim().is_empty())
        .unwrap_or_else(|| "warn".into());
    let ran = until_signal(&level, |stop| async move {
        crate::demo::run(options, stop)
            .await
            .map_err(|e| format!("demo: {e}"))
    });
    match ran {
        Ok(true) => ExitCode::from(EXIT_OK),
        Ok(false) => ExitCode::from(EXIT_RUNTIME),
        Err(code) => code,
    }
}
