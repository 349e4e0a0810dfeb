//! `webhooks sync` and `webhooks list`: one pass over every connector of the configuration.

use std::process::ExitCode;

use super::runtime;
use crate::cli::{WebhooksAction, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE};
use crate::config::Config;

/// Reconciles or lists the webhooks of every connector.
pub fn execute(config: &Config, action: &WebhooksAction) -> ExitCode {
    use crate::kaizala::subscriptions::{self, SyncSetupError};
    let runtime = match runtime(&config.log) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let store = match super::open_store(config).await {
            Ok((_, store)) => store,
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
            let who = m.connector.to_string();
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
    m: &crate::kaizala::subscriptions::Managed,
) -> Result<(), crate::kaizala::KaizalaError> {
    let ours = crate::kaizala::subscriptions::context_of(&m.connector.tenant);
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
