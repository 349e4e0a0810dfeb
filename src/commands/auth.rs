//! `auth pin` and `auth login`: onboarding a connector by PIN.

use std::process::ExitCode;

use super::runtime;
use crate::cli::{AuthAction, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE};
use crate::config::Config;
use crate::model::ConnectorRef;

/// `auth pin|login`: onboarding a connector by PIN.
pub fn execute(config: &Config, action: &AuthAction) -> ExitCode {
    use crate::kaizala::{onboarding, Credentials};
    let (AuthAction::Pin { connector, phone }
    | AuthAction::Login {
        connector, phone, ..
    }) = action;
    let found: Vec<_> = config
        .tenants
        .iter()
        .flat_map(|t| t.connectors.iter().map(move |c| (t, c)))
        .filter(|(t, c)| {
            connector == &ConnectorRef::new(&t.id, &c.id).to_string() || connector == &c.id
        })
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
    let key = ConnectorRef::new(&tenant.id, &chosen.id).to_string();
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
                let (_, store) = super::open_store(config).await.map_err(crate::kaizala::KaizalaError::Credentials)?;
                let credentials = Credentials::new(store);
                let login = onboarding::login(&chosen.api_root, &chosen.application_id, phone, *pin, &credentials, &key).await?;
                let place = match config.queue.backend {
                    crate::config::QueueBackend::Sqlite => config.queue.sqlite_path.display().to_string(),
                    crate::config::QueueBackend::Redis => "the Redis of queue.redis_url".to_string(),
                };
                println!(
                    "stored the refresh token of {key} in {place} (it is used instead of the configured one; it expires at epoch ms {})",
                    login.refresh_token_expiry
                );
            }
        }
        Ok::<(), crate::kaizala::KaizalaError>(())
    });
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
