//! The command line: `kaizala-bridge [--config FILE] <command>`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit code of a run that went well.
pub const EXIT_OK: u8 = 0;
/// Exit code of a failure while running (a port in use, a dependency gone).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of a bad configuration or a bad command line (clap uses it too).
pub const EXIT_USAGE: u8 = 2;

/// Connects a CRM (Dynamics 365 / Dataverse) with Microsoft Kaizala: new CRM records
/// become Kaizala surveys, and every answer comes back as a CRM activity.
#[derive(Debug, Parser)]
#[command(name = "kaizala-bridge", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML), layered over the built-in defaults; environment
    /// variables KAIZALA_BRIDGE__SECTION__KEY override both.
    #[arg(
        long,
        short,
        global = true,
        env = "KAIZALA_BRIDGE_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: serve health, metrics and webhooks until SIGTERM or SIGINT.
    Run,
    /// The whole loop on this machine: both emulators and the bridge in-process, on
    /// the embedded SQLite queue, with sample opportunities and people answering.
    #[cfg(feature = "sim")]
    Demo {
        /// Leave everything running after the summary and print the URLs.
        #[arg(long)]
        keep_running: bool,
    },
    /// Validate the configuration and print every problem with its key path.
    CheckConfig,
    /// Onboard a connector: send a PIN to a phone, then log in with it.
    Auth {
        /// What to do.
        #[command(subcommand)]
        action: AuthAction,
    },
    /// Reconcile or show Kaizala webhook subscriptions.
    Webhooks {
        /// What to do.
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// List, replay or purge jobs that failed for good (dead letters).
    Dlq {
        /// What to do.
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Print a completion script for `shell` to stdout, e.g.
    /// `kaizala-bridge completions bash > /etc/bash_completion.d/kaizala-bridge`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout, e.g.
    /// `kaizala-bridge man > /usr/local/share/man/man1/kaizala-bridge.1`.
    Man,
    /// Run an emulator of an external service standalone, to try the bridge by hand.
    #[cfg(feature = "sim")]
    Sim {
        /// Which service.
        #[command(subcommand)]
        service: SimService,
    },
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Print every dead letter as a table: id, queue, attempts, when it died, the
    /// rule, record and group of its job, and the last error.
    List {
        /// Every dead letter as JSON (an array, the job included), for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in their queue as fresh jobs.
    Replay {
        /// The dead letter's id (from `dlq list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Forget every dead letter, for good: asks first, unless `--yes`.
    Purge {
        /// Do not ask (for scripts); without it and without a terminal, nothing is
        /// purged.
        #[arg(long)]
        yes: bool,
    },
}

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthAction {
    /// Ask Kaizala to send a PIN to the phone (generatePin).
    Pin {
        /// The connector: `tenant/connector`, or its id when that is unique.
        #[arg(long)]
        connector: String,
        /// Phone number with country code, e.g. +15550001.
        #[arg(long)]
        phone: String,
    },
    /// Log in with the PIN (loginWithPinAndApplicationId) and store the refresh token.
    Login {
        /// The connector: `tenant/connector`, or its id when that is unique.
        #[arg(long)]
        connector: String,
        /// Phone number with country code, e.g. +15550001.
        #[arg(long)]
        phone: String,
        /// The PIN Kaizala sent.
        #[arg(long)]
        pin: u32,
    },
}

/// `webhooks` subcommands.
#[derive(Debug, Subcommand)]
pub enum WebhooksAction {
    /// Make each configured group have exactly one active webhook of ours; remove ours
    /// from groups no longer configured; never touch others' webhooks.
    Sync,
    /// Print the webhooks on every group the connectors can see, ours marked.
    List,
}

/// The emulated services.
#[derive(Debug, Subcommand)]
pub enum SimService {
    /// The Microsoft Kaizala connector API, seeded with tenants, connectors and groups.
    Kaizala(KaizalaSimArgs),
    /// Microsoft Dataverse (Dynamics 365): Entra tokens, the Web API, change tracking
    /// and webhooks, seeded with applications and opportunities.
    Dataverse(DataverseSimArgs),
}

/// Options of `sim dataverse`.
#[derive(Debug, clap::Args)]
pub struct DataverseSimArgs {
    /// Address to listen on; port 0 picks a free one (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8091")]
    pub listen: SocketAddr,
    /// Seed file (TOML) with applications and opportunities; see docs/simulators.md.
    #[arg(long, value_name = "FILE")]
    pub seed: PathBuf,
    /// Organisation URL clients use, when not the listen address.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Requests per application per five minutes before 429.
    #[arg(long, value_name = "N", default_value_t = 6000)]
    pub requests_per_window: usize,
    /// How long a delta token stays valid.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub change_tracking_retention: std::time::Duration,
}

/// Options of `sim kaizala`.
#[derive(Debug, clap::Args)]
pub struct KaizalaSimArgs {
    /// Address to listen on; port 0 picks a free one (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Seed file (TOML) with tenants, connectors and groups; see docs/simulators.md.
    #[arg(long, value_name = "FILE")]
    pub seed: PathBuf,
    /// URL clients reach it at, when not the listen address (behind a proxy).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Lifetime of access tokens.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub access_token_lifetime: std::time::Duration,
    /// Wait before the first retry of a failed webhook delivery; it doubles each time.
    #[arg(long, value_name = "DURATION", default_value = "45m", value_parser = humantime::parse_duration)]
    pub delivery_retry_initial: std::time::Duration,
    /// Retries of a failed delivery before the webhook is disabled.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub delivery_retries: u32,
}
#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_may_come_before_or_after_the_command() {
        let before = Cli::try_parse_from(["kaizala-bridge", "--config", "a.toml", "run"]).unwrap();
        let after =
            Cli::try_parse_from(["kaizala-bridge", "check-config", "-c", "b.toml"]).unwrap();
        assert_eq!(before.config.unwrap(), PathBuf::from("a.toml"));
        assert!(matches!(before.command, Command::Run));
        assert_eq!(after.config.unwrap(), PathBuf::from("b.toml"));
        assert!(matches!(after.command, Command::CheckConfig));
    }
}
