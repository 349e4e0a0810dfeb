//! `run`: the daemon, until SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;

use super::runtime;
use crate::app;
use crate::cli::{EXIT_OK, EXIT_RUNTIME};

/// Runs the bridge for the loaded configuration (from `file`, or the built-in
/// defaults alone) until a signal, then stops within the grace period.
pub fn execute(loaded: app::Loaded, file: Option<&Path>) -> ExitCode {
    let runtime = match runtime(&loaded.config.log) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    announce(&loaded, file);
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

/// Says in the log what this process runs with: its version, where the jobs and state
/// are, and the tenants, CRM sources and rules it serves. Started without a
/// configuration file, it says so (a warning: with the defaults alone it serves no
/// tenant and no rule).
fn announce(loaded: &app::Loaded, file: Option<&Path>) {
    let config = &loaded.config;
    let backend = match config.queue.backend {
        crate::config::QueueBackend::Sqlite => {
            format!("sqlite {}", config.queue.sqlite_path.display())
        }
        crate::config::QueueBackend::Redis => {
            format!("redis {}", redis_host(config.queue.redis_url()))
        }
    };
    let tenants: Vec<String> = (config.tenants.iter())
        .map(|t| format!("{} ({} connector(s))", t.id, t.connectors.len()))
        .collect();
    let crm: Vec<&str> = config.crm.iter().map(|c| c.id.as_str()).collect();
    let rules: Vec<&str> = config.rules.iter().map(|r| r.id.as_str()).collect();
    match file {
        Some(file) => tracing::info!(config = %file.display(), "configuration file"),
        None => tracing::warn!(
            "no configuration file (--config or KAIZALA_BRIDGE_CONFIG): running with the built-in defaults and the environment"
        ),
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"), %backend,
        tenants = %list(&tenants), crm = %list(&crm), rules = %list(&rules),
        listen = %config.server.listen,
        "kaizala-bridge {} starting", env!("CARGO_PKG_VERSION")
    );
}

/// `a, b, c`, or `none`.
fn list(items: &[impl AsRef<str>]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The host (and port) of a Redis URL, without its password.
fn redis_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or("?"),
                u.port().unwrap_or(6379)
            )
        })
        .unwrap_or_else(|| "(an unreadable URL)".into())
}
