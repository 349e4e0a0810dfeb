//! `demo`: the whole loop against the built-in emulators; it needs no configuration.

use std::process::ExitCode;

use super::until_signal;
use crate::cli::{EXIT_OK, EXIT_RUNTIME};

/// `demo`: the whole loop against the built-in emulators; it needs no configuration.
pub fn execute(keep_running: bool) -> ExitCode {
    let options = crate::demo::DemoOptions { keep_running };
    let ran = until_signal("warn", |stop| async move {
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
