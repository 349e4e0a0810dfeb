//! The typed shape of the configuration, one struct per section.
//!
//! Every struct denies unknown keys, so a misspelt key is an error rather than a
//! silently ignored setting. Section defaults live in `config/default.toml`; defaults
//! of items in arrays (a tenant's quota, a connector's API root) live here, because a
//! TOML file cannot give defaults to array items. Keys that are required but have no
//! sensible default deserialize to an empty value and are reported as `missing` by
//! validation, so that one run reports every missing key at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::duration;
use super::secret::Secret;

/// Declares an enum written in the configuration as one of a few lowercase keywords.
///
/// Deserializing through `TryFrom<String>` gives an error that lists the accepted
/// keywords, where serde's derive through the config crate would only say that the
/// enum "does not have variant constructor" so-and-so.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        #[serde(try_from = "String")]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// The keyword, as written in the configuration.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> Result<Self, String> {
                match text.as_str() {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(format!(
                        "unknown value {text:?}, expected one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

/// The whole configuration of one bridge process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener and process-wide service settings.
    pub server: ServerConfig,
    /// What is logged and in which format.
    pub log: LogConfig,
    /// The job queue.
    pub queue: QueueConfig,
    /// How the bridge talks to Kaizala, whatever the tenant.
    pub kaizala: KaizalaConfig,
    /// Kaizala tenants and the connectors the bridge uses in each.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// CRM sources and sinks.
    #[serde(default)]
    pub crm: Vec<CrmConfig>,
    /// What the bridge does when a CRM record changes, and how answers are written back.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// `[server]`: the one HTTP listener and the process around it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server binds (health and webhooks; metrics and admin too unless
    /// `admin_listen` is set).
    pub listen: SocketAddr,
    /// A second listener for `/metrics` and `/admin/...` only, so the public port
    /// serves nothing but the webhooks and health.
    pub admin_listen: Option<SocketAddr>,
    /// The address at which Kaizala and the CRM reach this bridge; webhook callback
    /// URLs are built from it.
    pub public_url: Option<Url>,
    /// Bearer token for `/admin/...`; without it the admin routes are disabled.
    pub admin_token: Option<Secret>,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Time a request may take before it is answered 408.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// After SIGTERM, how long in-flight work may take before the process exits anyway.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long the listener stays open while `/readyz` already says
    /// `draining`, so a load balancer stops sending before connections are refused
    /// (Kubernetes removes a pod from its Service a moment after it is told to stop).
    #[serde(with = "duration")]
    pub drain_delay: Duration,
    /// From a request's first byte (or a connection's opening) to its whole head; a
    /// slower client is disconnected.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Connections open at once per listener; more are answered 503 and closed.
    pub max_connections: usize,
    /// The largest request head (request line and headers); a larger one gets 431.
    pub max_header_bytes: usize,
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: a level (`info`) or directives (`info,kaizala_bridge=debug`).
    pub level: String,
    /// Human-readable lines or one JSON object per line.
    pub format: LogFormat,
}

keyword_enum! {
    /// The output format of log lines.
    pub enum LogFormat {
        /// Coloured, multi-field lines for a terminal.
        Pretty = "pretty",
        /// One JSON object per line, for a log collector.
        Json = "json",
    }
}

/// `[queue]`: where jobs wait and how they are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Which storage holds the jobs.
    pub backend: QueueBackend,
    /// SQLite database file (backend `sqlite`); relative paths start at the working directory.
    pub sqlite_path: PathBuf,
    /// Redis URL (backend `redis`); a secret because it may carry a password.
    pub redis_url: Option<Secret>,
    /// Jobs of each type one process works on at the same time.
    pub concurrency: u32,
    /// `SendAction` jobs at the same time, instead of `concurrency`.
    pub send_action_concurrency: Option<u32>,
    /// `RecordResponse` jobs at the same time, instead of `concurrency`.
    pub record_response_concurrency: Option<u32>,
    /// Attempts before a job goes to the dead letters.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles with each attempt, with jitter.
    #[serde(with = "duration")]
    pub backoff_initial: Duration,
    /// Longest delay between two attempts.
    #[serde(with = "duration")]
    pub backoff_max: Duration,
    /// Longest time one attempt may take; a longer one is cut off and retried.
    #[serde(with = "duration")]
    pub attempt_timeout: Duration,
    /// How often an idle worker looks for ready jobs.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// How often a worker tells the backend it is alive; the jobs of a worker silent
    /// for two of these are taken again by another.
    #[serde(with = "duration")]
    pub heartbeat: Duration,
    /// How often finished jobs are removed from the backend.
    #[serde(with = "duration")]
    pub vacuum_interval: Duration,
    /// How long finished jobs stay before they are removed.
    #[serde(with = "duration")]
    pub keep_finished: Duration,
    /// `/readyz` fails when ready jobs wait this long while no job finishes.
    #[serde(with = "duration")]
    pub stall_after: Duration,
}

impl QueueConfig {
    /// The Redis URL as text; empty when none is set (validation requires one on the
    /// `redis` backend).
    pub fn redis_url(&self) -> &str {
        self.redis_url
            .as_ref()
            .map(|u| u.expose())
            .unwrap_or_default()
    }
}

keyword_enum! {
    /// Job queue storage.
    pub enum QueueBackend {
        /// An embedded SQLite file: one process, no other service needed.
        Sqlite = "sqlite",
        /// A Redis server shared by every replica.
        Redis = "redis",
    }
}

/// `[kaizala]`: settings of the Kaizala side shared by every tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KaizalaConfig {
    /// Longest wait for an answer from Kaizala (it suggests one minute).
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// An access token is refreshed this long before it expires.
    #[serde(with = "duration")]
    pub token_refresh_margin: Duration,
    /// How long an event id is remembered to drop Kaizala's repeated deliveries.
    #[serde(with = "duration")]
    pub dedup_ttl: Duration,
    /// How often `run` reconciles webhook subscriptions (while it receives webhooks).
    #[serde(with = "duration")]
    pub webhook_sync_interval: Duration,
    /// The period Kaizala's quotas count over: one minute. Only tests and benchmarks,
    /// against the emulator with the same setting, shorten it.
    #[serde(with = "duration")]
    pub quota_period: Duration,
    /// How often outstanding actions are read, in tenants with `responses = "poll"`.
    #[serde(with = "duration")]
    pub response_poll_interval: Duration,
    /// In tenants on webhooks, how often outstanding actions are still read, to catch
    /// answers no webhook delivered (given before it was registered, or while Kaizala
    /// had it disabled); `0s` turns the sweep off.
    #[serde(with = "duration")]
    pub response_sweep_interval: Duration,
    /// How long after its due date an action is still read for late answers.
    #[serde(with = "duration")]
    pub response_poll_grace: Duration,
    /// How long what the bridge knows of a post (its key's state, what its action
    /// was sent for) is kept after it was last written. Past it an answer to the
    /// action is ignored as not ours and the same record event would be sent again,
    /// so it must outlast every survey's due date plus the grace; it is what keeps
    /// the state store from growing without end.
    #[serde(with = "duration")]
    pub correlation_retention: Duration,
    /// The longest `Retry-After` believed from Kaizala; a longer one (or a hostile
    /// one) is cut to this.
    #[serde(with = "duration")]
    pub max_retry_after: Duration,
}

impl KaizalaConfig {
    /// How long an attempt holds an idempotency key around its POST: one request
    /// (`request_timeout`, which cuts it off) plus a margin for the store writes
    /// around it. Validation and the send handler both read it here.
    pub fn hold_ttl(&self) -> Duration {
        self.request_timeout + Duration::from_secs(5)
    }
}

/// `[[tenants]]`: one Kaizala tenant (organisation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Our name for the tenant; rules and webhook URLs refer to it.
    #[serde(default)]
    pub id: String,
    /// Kaizala calls per minute across all of this tenant's connectors.
    #[serde(default = "default_tenant_rate")]
    pub rate_limit_per_minute: u32,
    /// The `kz-callback-token` Kaizala sends with every webhook event.
    pub callback_token: Option<Secret>,
    /// How answers are learned of: Kaizala's webhook, or polling the actions.
    #[serde(default = "default_responses")]
    pub responses: ResponseMode,
    /// The connectors (Kaizala applications) the bridge uses in this tenant.
    #[serde(default)]
    pub connectors: Vec<ConnectorConfig>,
}

/// `[[tenants.connectors]]`: one Kaizala connector and its credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Our name for the connector; rules refer to it.
    #[serde(default)]
    pub id: String,
    /// The connector's application id from the Kaizala management portal.
    #[serde(default)]
    pub application_id: String,
    /// The connector's application secret.
    #[serde(default)]
    pub application_secret: Secret,
    /// The refresh token obtained when the connector was onboarded.
    #[serde(default)]
    pub refresh_token: Secret,
    /// Where access tokens are fetched from.
    #[serde(default = "default_api_root")]
    pub api_root: Url,
    /// Kaizala calls per minute through this connector.
    #[serde(default = "default_connector_rate")]
    pub rate_limit_per_minute: u32,
    /// Ids of the Kaizala groups this connector may post to.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[[crm]]`: one CRM organisation the bridge reads records from and writes answers to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmConfig {
    /// Our name for the source; rules refer to it.
    #[serde(default)]
    pub id: String,
    /// Which CRM this is.
    pub kind: Option<CrmKind>,
    /// The organisation URL, e.g. `https://contoso.crm.dynamics.com`.
    pub url: Option<Url>,
    /// The Microsoft Entra tenant (directory) id the app registration lives in.
    #[serde(default)]
    pub tenant_id: String,
    /// The app registration's client id.
    #[serde(default)]
    pub client_id: String,
    /// The app registration's client secret.
    #[serde(default)]
    pub client_secret: Secret,
    /// Entity sets watched for new and changed records, e.g. `opportunities`.
    #[serde(default = "default_entity_sets")]
    pub entity_sets: Vec<String>,
    /// Columns read from each watched entity set (`$select`); filters and action
    /// templates may use only these.
    #[serde(default = "default_select")]
    pub select: Vec<String>,
    /// Whether change tracking is polled; the webhook alone may miss a change (Dataverse
    /// retries a failed call only once), so turn it off only for tests.
    #[serde(default = "default_true")]
    pub poll: bool,
    /// How often change tracking is polled.
    #[serde(default = "default_poll_interval", with = "duration")]
    pub poll_interval: Duration,
    /// The longest `Retry-After` believed from Dataverse; a longer one is cut to this.
    #[serde(default = "default_max_retry_after", with = "duration")]
    pub max_retry_after: Duration,
    /// What the first poll does with records that already exist.
    #[serde(default = "default_baseline")]
    pub baseline: BaselineMode,
    /// The OAuth token endpoint; default
    /// `https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token`.
    pub token_url: Option<Url>,
    /// The key the CRM's webhook must present; without it the webhook route is off.
    pub webhook_key: Option<Secret>,
    /// For `HttpHeader` authentication: the header that carries `webhook_key`. Without
    /// it the key is expected as the `code` query parameter (`WebhookKey`).
    pub webhook_header: Option<String>,
}

keyword_enum! {
    /// What the first poll of a CRM source does with the records already there.
    pub enum BaselineMode {
        /// Only changes from now on fire rules.
        ChangesOnly = "changes_only",
        /// Every existing record fires its rules once, as if it were new.
        ExistingAsNew = "existing_as_new",
    }
}

keyword_enum! {
    /// How the bridge learns of answers in a tenant.
    pub enum ResponseMode {
        /// Kaizala calls the bridge's webhook (`server.public_url` must reach it).
        Webhook = "webhook",
        /// The bridge reads each outstanding action's responses on an interval.
        Poll = "poll",
    }
}

keyword_enum! {
    /// The kinds of CRM the bridge speaks to.
    pub enum CrmKind {
        /// Dynamics 365 Customer Engagement / Microsoft Dataverse (Web API v9.2).
        Dataverse = "dataverse",
    }
}

/// `[[rules]]`: when a CRM record changes, which Kaizala action to send where, and how
/// each answer goes back to the CRM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Our name for the rule; part of every idempotency key it makes.
    #[serde(default)]
    pub id: String,
    /// Which CRM change fires the rule.
    pub trigger: Option<TriggerConfig>,
    /// Where the action goes.
    pub target: Option<TargetConfig>,
    /// The action template file (TOML), relative to the configuration file.
    #[serde(default)]
    pub action: PathBuf,
    /// How answers are written back to the CRM.
    pub write_back: Option<WriteBackConfig>,
}

/// `[rules.trigger]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Id of the `[[crm]]` source whose records fire the rule.
    #[serde(default)]
    pub crm: String,
    /// The entity set the record belongs to; one of that source's `entity_sets`.
    #[serde(default)]
    pub entity: String,
    /// Whether a new record or a change to an existing one fires the rule.
    pub on: Option<TriggerEvent>,
    /// An expression over the record's attributes that must hold, e.g.
    /// `estimatedvalue >= 10000 and statecode == 0`.
    pub filter: Option<String>,
}

keyword_enum! {
    /// The CRM changes a rule can react to.
    pub enum TriggerEvent {
        /// A record was created.
        Created = "created",
        /// A record was updated.
        Updated = "updated",
    }
}

/// `[rules.target]`: the Kaizala group an action is posted to, and through which connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Id of a `[[tenants]]` entry.
    #[serde(default)]
    pub tenant: String,
    /// Id of one of that tenant's connectors.
    #[serde(default)]
    pub connector: String,
    /// Id of a Kaizala group granted to that connector, when every record goes to
    /// the same group; otherwise `group_by` and `groups` choose it.
    #[serde(default)]
    pub group: String,
    /// An attribute of the record whose value picks the group from `groups`, e.g.
    /// `_owningbusinessunit_value`.
    pub group_by: Option<String>,
    /// Attribute value → Kaizala group id, for `group_by`.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, String>,
    /// The group of a record whose `group_by` value is not in `groups`; without it
    /// such a record gets no action (counted and logged).
    pub fallback_group: Option<String>,
}

/// `[rules.write_back]`: the CRM activity made from each answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBackConfig {
    /// The activity kind created regarding the record.
    #[serde(default = "default_activity")]
    pub activity: ActivityKind,
    /// Template of the activity's subject.
    #[serde(default)]
    pub subject: String,
    /// Template of the activity's description (a note's text).
    #[serde(default)]
    pub description: String,
    /// Template of the subject of a "survey sent" activity written regarding the
    /// record when the action goes out; without it none is written.
    pub sent_subject: Option<String>,
    /// Template of that activity's description.
    #[serde(default)]
    pub sent_description: String,
}

keyword_enum! {
    /// The CRM activity types an answer can become.
    pub enum ActivityKind {
        /// A task regarding the record.
        Task = "task",
        /// A note (annotation) on the record.
        Note = "note",
    }
}

fn default_tenant_rate() -> u32 {
    300
}

fn default_connector_rate() -> u32 {
    100
}

fn default_api_root() -> Url {
    Url::parse("https://api.kaiza.la").expect("constant URL parses")
}

fn default_entity_sets() -> Vec<String> {
    vec!["opportunities".to_string()]
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_max_retry_after() -> Duration {
    Duration::from_secs(3600)
}

fn default_select() -> Vec<String> {
    [
        "name",
        "estimatedvalue",
        "estimatedclosedate",
        "statecode",
        "_ownerid_value",
        "_owningbusinessunit_value",
    ]
    .map(String::from)
    .to_vec()
}

fn default_true() -> bool {
    true
}

fn default_baseline() -> BaselineMode {
    BaselineMode::ChangesOnly
}

fn default_responses() -> ResponseMode {
    ResponseMode::Webhook
}

fn default_activity() -> ActivityKind {
    ActivityKind::Task
}
