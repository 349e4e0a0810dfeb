//! The `kaizala-bridge` binary: parse the command line, load the configuration,
//! dispatch to the command (`kaizala_bridge::commands`).

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
#[cfg(feature = "sim")]
use kaizala_bridge::cli::SimService;
use kaizala_bridge::cli::{Cli, Command, EXIT_USAGE};
use kaizala_bridge::commands;
use kaizala_bridge::{app, telemetry};

fn main() -> ExitCode {
    let code = dispatch();
    // The log thread writes what is still buffered before the process ends.
    telemetry::flush_logs();
    code
}

fn dispatch() -> ExitCode {
    let cli = Cli::parse();
    // These need no bridge configuration, so a broken one does not stop them.
    match &cli.command {
        Command::Completions { shell } => return commands::manual::completions(*shell),
        Command::Man => return commands::manual::man(),
        _ => {}
    }
    #[cfg(feature = "sim")]
    match &cli.command {
        Command::Sim {
            service: SimService::Kaizala(args),
        } => return commands::sim::kaizala(args),
        Command::Sim {
            service: SimService::Dataverse(args),
        } => return commands::sim::dataverse(args),
        Command::Demo { keep_running } => return commands::demo::execute(*keep_running),
        _ => {}
    }
    // Variables that are not valid Unicode cannot name configuration keys or secrets.
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    // The configuration and its rules, checked together: every problem in one go.
    let loaded = match app::load_config(cli.config.as_deref(), &env) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.command {
        Command::CheckConfig => {
            commands::check_config::execute(cli.config.as_deref(), &loaded.config)
        }
        // The rules compiled while checking are the ones it runs.
        Command::Run => commands::run::execute(loaded, cli.config.as_deref()),
        Command::Webhooks { action } => commands::webhooks::execute(&loaded.config, &action),
        Command::Auth { action } => commands::auth::execute(&loaded.config, &action),
        Command::Dlq { action } => commands::dlq::execute(&loaded.config, &action),
        #[cfg(feature = "sim")]
        Command::Sim { .. } | Command::Demo { .. } => {
            unreachable!("dispatched before the configuration is loaded")
        }
        Command::Completions { .. } | Command::Man => {
            unreachable!("dispatched before the configuration is loaded")
        }
    }
}
