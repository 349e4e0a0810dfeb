//! The `kaizala-bridge` binary: parse the command line, load the configuration,
//! dispatch. Everything else lives in the library.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use kaizala_bridge::cli::{
    AuthAction, Cli, Command, DataverseSimArgs, DlqAction, KaizalaSimArgs, SimService,
    WebhooksAction, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE,
};
use kaizala_bridge::config::{Config, LogConfig, LogFormat};
use kaizala_bridge::sim::kaizala::{KaizalaSim, Seed, SimOptions};
use kaizala_bridge::{app, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let code = dispatch();
    // The log thread writes what is still buffered before the process ends.
    telemetry::flush_logs();
    code
}

fn dispatch() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Sim {
            service: SimService::Kaizala(args),
        } => return sim_kaizala(args),
        Command::Sim {
            service: SimService::Dataverse(args),
        } => return sim_dataverse(args),
        Command::Demo { keep_running } => return demo(*keep_running),
        _ => {}
    }
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
        Command::Webhooks { action } => webhooks(&config, &action),
        Command::Auth { action } => auth(&config, &action),
        Command::Dlq { action } => dlq(&config, &action),
        Command::Sim { .. } | Command::Demo { .. } => {
            unreachable!("dispatched before the configuration is loaded")
        }
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

fn runtime(log: &LogConfig) -> Result<tokio::runtime::Runtime, ExitCode> {
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
fn until_signal<T, F>(level: &str, work: impl FnOnce(CancellationToken) -> F) -> Result<T, ExitCode>
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

/// `sim dataverse`: the Dataverse emulator alone, until SIGTERM or SIGINT.
fn sim_dataverse(args: &DataverseSimArgs) -> ExitCode {
    use kaizala_bridge::sim::dataverse::{
        DataverseSim, Seed as DataverseSeed, SimOptions as DataverseOptions,
    };
    let seed = match DataverseSeed::load(&args.seed) {
        Ok(seed) => seed,
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let options = DataverseOptions {
        public_url: args.public_url.clone(),
        requests_per_window: args.requests_per_window,
        change_tracking_retention: args.change_tracking_retention,
        ..DataverseOptions::default()
    };
    let served = until_signal("info", |stop| async move {
        let sim = DataverseSim::start(&seed, options, args.listen)
            .await
            .map_err(|e| e.to_string())?;
        println!("dataverse emulator listening on {}", sim.base_url());
        sim.run_until(stop).await;
        Ok(())
    });
    served.map_or_else(|code| code, |()| ExitCode::from(EXIT_OK))
}

/// `sim kaizala`: the emulator alone, until SIGTERM or SIGINT. It needs no bridge
/// configuration, so a broken one does not stop it.
fn sim_kaizala(args: &KaizalaSimArgs) -> ExitCode {
    let (listen, seed) = (args.listen, &args.seed);
    let options = SimOptions {
        public_url: args.public_url.clone(),
        access_token_lifetime: args.access_token_lifetime,
        delivery_retry_initial: args.delivery_retry_initial,
        delivery_retries: args.delivery_retries,
        ..SimOptions::default()
    };
    let seed = match Seed::load(seed) {
        Ok(seed) => seed,
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let served = until_signal("info", |stop| async move {
        let sim = KaizalaSim::start(&seed, options, listen)
            .await
            .map_err(|e| e.to_string())?;
        println!("kaizala emulator listening on {}", sim.base_url());
        sim.run_until(stop).await;
        Ok(())
    });
    served.map_or_else(|code| code, |()| ExitCode::from(EXIT_OK))
}

/// `auth pin|login`: onboarding a connector by PIN.
fn auth(config: &Config, action: &AuthAction) -> ExitCode {
    use kaizala_bridge::kaizala::{onboarding, Credentials};
    let (AuthAction::Pin { connector, phone }
    | AuthAction::Login {
        connector, phone, ..
    }) = action;
    let found: Vec<_> = config
        .tenants
        .iter()
        .flat_map(|t| t.connectors.iter().map(move |c| (t, c)))
        .filter(|(t, c)| connector == &format!("{}/{}", t.id, c.id) || connector == &c.id)
        .collect();
    let (tenant, chosen) = match found.as_slice() {
        [one] => *one,
        [] => {
            eprintln!(
                "kaizala-bridge: --connector: no connector {connector:?} in the configuration"
            );
            return ExitCode::from(EXIT_USAGE);
        }
        _ => {
            eprintln!("kaizala-bridge: --connector: {connector:?} is in several tenants; write tenant/connector");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let key = format!("{}/{}", tenant.id, chosen.id);
    let runtime = match runtime(&config.log) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        match action {
            AuthAction::Pin { .. } => {
                onboarding::generate_pin(&chosen.api_root, &chosen.application_id, phone).await?;
                println!("Kaizala sent a PIN to {phone}; now run: kaizala-bridge auth login --connector {key} --phone {phone} --pin PIN");
            }
            AuthAction::Login { pin, .. } => {
                let store = kaizala_bridge::store::open(config).await.map_err(|e| kaizala_bridge::kaizala::KaizalaError::Credentials(e.to_string()))?;
                let credentials = Credentials::new(store);
                let login = onboarding::login(&chosen.api_root, &chosen.application_id, phone, *pin, &credentials, &key).await?;
                let place = match config.queue.backend {
                    kaizala_bridge::config::QueueBackend::Sqlite => config.queue.sqlite_path.display().to_string(),
                    kaizala_bridge::config::QueueBackend::Redis => "the Redis of queue.redis_url".to_string(),
                };
                println!(
                    "stored the refresh token of {key} in {place} (it is used instead of the configured one; it expires at epoch ms {})",
                    login.refresh_token_expiry
                );
            }
        }
        Ok::<(), kaizala_bridge::kaizala::KaizalaError>(())
    });
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// `webhooks sync|list`: one pass over every connector of the configuration.
/// `dlq list|replay|purge`: the dead letters of the configured queue.
fn dlq(config: &Config, action: &DlqAction) -> ExitCode {
    use kaizala_bridge::queue::Queue;
    let runtime = match runtime(&config.log) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let store = kaizala_bridge::store::open(config).await?;
        let queue = Queue::open(config, store).await?;
        match action {
            DlqAction::List => {
                let letters = queue.dead_letters().list().await?;
                if letters.is_empty() {
                    println!("no dead letters");
                }
                for letter in letters {
                    println!(
                        "{}  {}  attempts {}  dead at epoch ms {}  {}",
                        letter.id,
                        letter.kind.queue(),
                        letter.attempts,
                        letter.dead_ms,
                        letter.last_error
                    );
                }
            }
            DlqAction::Replay { id: Some(id), .. } => {
                if !queue.replay(id).await? {
                    return Ok(Some(format!(
                        "dlq replay: no dead letter {id:?} (see `dlq list`)"
                    )));
                }
                println!("replayed {id}");
            }
            DlqAction::Replay { id: None, .. } => {
                println!("replayed {} dead letter(s)", queue.replay_all().await?);
            }
            DlqAction::Purge => println!("purged {} dead letter(s)", queue.purge().await?),
        }
        Ok::<Option<String>, kaizala_bridge::queue::QueueError>(None)
    });
    match result {
        Ok(None) => ExitCode::from(EXIT_OK),
        Ok(Some(message)) => {
            eprintln!("kaizala-bridge: {message}");
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn webhooks(config: &Config, action: &WebhooksAction) -> ExitCode {
    use kaizala_bridge::kaizala::subscriptions::{self, SyncSetupError};
    let runtime = match runtime(&config.log) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let store = match kaizala_bridge::store::open(config).await {
            Ok(store) => store,
            Err(error) => {
                eprintln!("kaizala-bridge: {error}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let managed = match subscriptions::managed(config, store) {
            Ok(managed) => managed,
            Err(error @ SyncSetupError::Client(_)) => {
                eprintln!("kaizala-bridge: {error}");
                return ExitCode::from(EXIT_RUNTIME);
            }
            Err(error) => {
                eprintln!("kaizala-bridge: {error}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let mut failed = false;
        for m in &managed {
            let who = format!("{}/{}", m.tenant, m.connector);
            match action {
                WebhooksAction::Sync => match subscriptions::reconcile(&m.client, &m.desired).await
                {
                    Ok(report) => {
                        for (what, groups) in [
                            ("created", &report.created),
                            ("updated", &report.updated),
                            ("re-enabled", &report.reenabled),
                            ("deleted", &report.deleted),
                            ("unchanged", &report.unchanged),
                        ] {
                            for group in groups {
                                println!("{who} {group}: {what}");
                            }
                        }
                    }
                    Err(error) => {
                        eprintln!("kaizala-bridge: {who}: {error}");
                        failed = true;
                    }
                },
                WebhooksAction::List => {
                    if let Err(error) = list_webhooks(&who, m).await {
                        eprintln!("kaizala-bridge: {who}: {error}");
                        failed = true;
                    }
                }
            }
        }
        ExitCode::from(if failed { EXIT_RUNTIME } else { EXIT_OK })
    })
}

async fn list_webhooks(
    who: &str,
    m: &kaizala_bridge::kaizala::subscriptions::Managed,
) -> Result<(), kaizala_bridge::kaizala::KaizalaError> {
    let ours = kaizala_bridge::kaizala::subscriptions::context_of(&m.tenant);
    for group in m.client.groups().await? {
        for w in m.client.list_webhooks(&group.group_id, "Group").await? {
            let owner = if w.callback_context == ours {
                "ours"
            } else {
                "other"
            };
            let state = if w.active { "active" } else { "DISABLED" };
            let events = w.events.join(",");
            println!(
                "{who} {} {} {owner} {state} {} [{events}]",
                group.group_id, w.id, w.callback_url
            );
        }
    }
    Ok(())
}

/// `demo`: the whole loop against the built-in emulators; it needs no configuration.
fn demo(keep_running: bool) -> ExitCode {
    let options = kaizala_bridge::sim::demo::DemoOptions { keep_running };
    let ran = until_signal("warn", |stop| async move {
        kaizala_bridge::sim::demo::run(options, stop)
            .await
            .map_err(|e| format!("demo: {e}"))
    });
    match ran {
        Ok(true) => ExitCode::from(EXIT_OK),
        Ok(false) => ExitCode::from(EXIT_RUNTIME),
        Err(code) => code,
    }
}

fn run(config: Config) -> ExitCode {
    let runtime = match runtime(&config.log) {
        Ok(runtime) => runtime,
        Err(code) => return code,
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
