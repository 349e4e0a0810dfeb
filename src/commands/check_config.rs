//! `check-config`: the configuration loaded and checked (the loading prints every
//! problem); here, what it holds.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::EXIT_OK;
use crate::config::Config;

/// Prints that `config` (loaded from `file`, or the defaults) is valid, and what it holds.
pub fn execute(file: Option<&Path>, config: &Config) -> ExitCode {
    let source = match file {
        Some(path) => path.display().to_string(),
        None => "built-in defaults".to_string(),
    };
    let connectors: usize = config.tenants.iter().map(|t| t.connectors.len()).sum();
    println!(
        "configuration OK ({source}): {} tenant(s), {connectors} connector(s), {} CRM source(s), {} rule(s)",
        config.tenants.len(),
        config.crm.len(),
        config.rules.len()
    );
    ExitCode::from(EXIT_OK)
}
