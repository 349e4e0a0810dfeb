//! The `kaizala-bridge` binary: parse the command line, load the configuration,
//! dispatch. Everything else lives in the library.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use kaizala_bridge::cli::{Cli, Command, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE};
use kaizala_bridge::config::Config;
use kaizala_bridge::{app, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Variables that are not valid Unicode cannot name configuration keys or secrets.
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let config = match Config::load(cli.config.as_deref(), &env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.command {
        Command::CheckConfig => check_config(&cli, &config),
        Command::Run => run(config),
    }
}

fn check_config(cli: &Cli, config: &Config) -> ExitCode {
    let source = match &cli.config {
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

fn run(config: Config) -> ExitCode {
    if let Err(error) = telemetry::init_logging(&config.log) {
        eprintln!("kaizala-bridge: {error}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kaizala-bridge: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(app::run(config));
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
