//! Checks that need more than the types: required keys, value ranges, ids that must be
//! unique, rules that must name things that exist, files that must be there; and the
//! resolution of every secret. Each problem is recorded with its key path.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use url::Url;

use super::problems::Problems;
use super::schema::*;
use super::secret::Secret;

/// What validation reads besides the configuration itself.
pub struct Context<'a> {
    /// The directory of the configuration file; relative file paths start there.
    pub base_dir: &'a Path,
    /// The environment that `env:` secrets are read from.
    pub env: &'a HashMap<String, String>,
}

/// Validates `config` in place: secrets are resolved and rule action paths made
/// relative to the working directory.
pub fn validate(config: &mut Config, cx: &Context, problems: &mut Problems) {
    server(&mut config.server, cx, problems);
    log(&config.log, problems);
    queue(&mut config.queue, cx, problems);
    outlasts_a_hold(config, problems);
    if config.kaizala.correlation_retention <= config.kaizala.response_poll_grace {
        problems.push(
            "kaizala.correlation_retention",
            "must be longer than kaizala.response_poll_grace (and than any survey's due date plus it)",
        );
    }
    for (key, value) in [
        ("kaizala.request_timeout", config.kaizala.request_timeout),
        ("kaizala.dedup_ttl", config.kaizala.dedup_ttl),
        (
            "kaizala.webhook_sync_interval",
            config.kaizala.webhook_sync_interval,
        ),
        ("kaizala.quota_period", config.kaizala.quota_period),
        (
            "kaizala.response_poll_interval",
            config.kaizala.response_poll_interval,
        ),
    ] {
        if value.is_zero() {
            problems.push(key, "must be longer than 0s");
        }
    }
    unique(
        "tenants",
        Some("id"),
        config.tenants.iter().map(|t| t.id.as_str()),
        problems,
    );
    for (i, tenant) in config.tenants.iter_mut().enumerate() {
        self::tenant(&format!("tenants[{i}]"), tenant, cx, problems);
    }
    unique(
        "crm",
        Some("id"),
        config.crm.iter().map(|c| c.id.as_str()),
        problems,
    );
    for (i, crm) in config.crm.iter_mut().enumerate() {
        self::crm(&format!("crm[{i}]"), crm, cx, problems);
    }
    unique(
        "rules",
        Some("id"),
        config.rules.iter().map(|r| r.id.as_str()),
        problems,
    );
    let (tenants, crm) = (&config.tenants, &config.crm);
    for (i, rule) in config.rules.iter_mut().enumerate() {
        self::rule(&format!("rules[{i}]"), rule, tenants, crm, cx, problems);
    }
}

fn server(server: &mut ServerConfig, cx: &Context, problems: &mut Problems) {
    if let Some(url) = &server.public_url {
        http_url("server.public_url", url, problems);
    }
    if let Some(token) = &mut server.admin_token {
        secret("server.admin_token", token, cx, problems);
    }
    if server.body_limit_bytes == 0 {
        problems.push("server.body_limit_bytes", "must be greater than 0");
    }
    if server.request_timeout.is_zero() {
        problems.push("server.request_timeout", "must be longer than 0s");
    }
    for (path, value) in [
        ("server.header_read_timeout", server.header_read_timeout),
        ("server.idle_timeout", server.idle_timeout),
    ] {
        if value.is_zero() {
            problems.push(path, "must be longer than 0s");
        }
    }
    if server.max_connections == 0 {
        problems.push("server.max_connections", "must be greater than 0");
    }
    if !(8192..=1 << 20).contains(&server.max_header_bytes) {
        problems.push(
            "server.max_header_bytes",
            "must be between 8192 and 1048576 (16384 suits webhooks)",
        );
    }
    if server
        .admin_listen
        .is_some_and(|admin| admin == server.listen && admin.port() != 0)
    {
        problems.push(
            "server.admin_listen",
            "must differ from server.listen (leave it out to serve both on one port)",
        );
    }
}

fn log(log: &LogConfig, problems: &mut Problems) {
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.level) {
        problems.push("log.level", format!("invalid filter {:?}: {e}", log.level));
    }
}

fn queue(queue: &mut QueueConfig, cx: &Context, problems: &mut Problems) {
    if queue.sqlite_path.as_os_str().is_empty() {
        problems.push("queue.sqlite_path", "missing");
    }
    if let Some(url) = &mut queue.redis_url {
        if secret("queue.redis_url", url, cx, problems) {
            redis_url("queue.redis_url", url, problems);
        }
    } else if queue.backend == QueueBackend::Redis {
        problems.push(
            "queue.redis_url",
            "missing (required when queue.backend = \"redis\")",
        );
    }
    at_least_one("queue.concurrency", queue.concurrency, problems);
    for (key, value) in [
        (
            "queue.send_action_concurrency",
            queue.send_action_concurrency,
        ),
        (
            "queue.record_response_concurrency",
            queue.record_response_concurrency,
        ),
    ] {
        if let Some(value) = value {
            at_least_one(key, value, problems);
        }
    }
    for (key, value) in [
        ("queue.attempt_timeout", queue.attempt_timeout),
        ("queue.poll_interval", queue.poll_interval),
        ("queue.heartbeat", queue.heartbeat),
        ("queue.vacuum_interval", queue.vacuum_interval),
        ("queue.stall_after", queue.stall_after),
    ] {
        if value.is_zero() {
            problems.push(key, "must be longer than 0s");
        }
    }
    if !queue.heartbeat.is_zero() && queue.heartbeat < Duration::from_secs(1) {
        problems.push(
            "queue.heartbeat",
            "must be at least 1s (the backends count it in whole seconds)",
        );
    }
    at_least_one("queue.max_attempts", queue.max_attempts, problems);
    if queue.backoff_initial.is_zero() {
        problems.push("queue.backoff_initial", "must be longer than 0s");
    }
    if queue.backoff_max < queue.backoff_initial {
        problems.push(
            "queue.backoff_max",
            "must not be shorter than queue.backoff_initial",
        );
    }
}

/// An attempt that finds another's POST of the same key under way waits for its hold
/// ([`KaizalaConfig::hold_ttl`]) and must then still have time for its own request:
/// otherwise every such attempt times out, and the job ends in the dead letters
/// however many attempts it has.
fn outlasts_a_hold(config: &Config, problems: &mut Problems) {
    let request = config.kaizala.request_timeout;
    let needed = config.kaizala.hold_ttl() + request;
    if !request.is_zero() && config.queue.attempt_timeout <= needed {
        problems.push(
            "queue.attempt_timeout",
            format!(
                "must be longer than twice kaizala.request_timeout plus 5s ({}): an attempt may wait out another's post, then post itself",
                humantime::format_duration(needed)
            ),
        );
    }
}

/// Kaizala's documented quotas (API.md: "100 calls per min per connector, 300 calls
/// per min per tenant"): the most a configuration may claim against Kaizala itself.
const KAIZALA_CONNECTOR_LIMIT: u32 = 100;
const KAIZALA_TENANT_LIMIT: u32 = 300;

/// Whether `api_root` is Kaizala's own service (`*.kaiza.la`), whose quotas are
/// documented; an emulator or a proxy elsewhere may allow more.
fn is_kaizala(api_root: &Url) -> bool {
    api_root
        .host_str()
        .is_some_and(|host| host == "kaiza.la" || host.ends_with(".kaiza.la"))
}

fn tenant(path: &str, tenant: &mut TenantConfig, cx: &Context, problems: &mut Problems) {
    id(&format!("{path}.id"), &tenant.id, problems);
    at_least_one(
        &format!("{path}.rate_limit_per_minute"),
        tenant.rate_limit_per_minute,
        problems,
    );
    let on_kaizala = tenant.connectors.iter().any(|c| is_kaizala(&c.api_root));
    if on_kaizala && tenant.rate_limit_per_minute > KAIZALA_TENANT_LIMIT {
        problems.push(
            format!("{path}.rate_limit_per_minute"),
            format!("Kaizala allows at most {KAIZALA_TENANT_LIMIT} calls a minute per tenant, across its connectors; more would be answered 429"),
        );
    }
    if let Some(token) = &mut tenant.callback_token {
        secret(&format!("{path}.callback_token"), token, cx, problems);
    }
    if tenant.connectors.is_empty() {
        problems.push(
            format!("{path}.connectors"),
            "at least one connector is required",
        );
    }
    let ids = tenant.connectors.iter().map(|c| c.id.as_str());
    unique(&format!("{path}.connectors"), Some("id"), ids, problems);
    for (i, connector) in tenant.connectors.iter_mut().enumerate() {
        let path = format!("{path}.connectors[{i}]");
        id(&format!("{path}.id"), &connector.id, problems);
        required(
            &format!("{path}.application_id"),
            &connector.application_id,
            problems,
        );
        let application_secret = &mut connector.application_secret;
        required_secret(
            &format!("{path}.application_secret"),
            application_secret,
            cx,
            problems,
        );
        let refresh_token = &mut connector.refresh_token;
        required_secret(
            &format!("{path}.refresh_token"),
            refresh_token,
            cx,
            problems,
        );
        http_url(&format!("{path}.api_root"), &connector.api_root, problems);
        let rate = connector.rate_limit_per_minute;
        at_least_one(&format!("{path}.rate_limit_per_minute"), rate, problems);
        if is_kaizala(&connector.api_root) && rate > KAIZALA_CONNECTOR_LIMIT {
            problems.push(
                format!("{path}.rate_limit_per_minute"),
                format!("Kaizala allows at most {KAIZALA_CONNECTOR_LIMIT} calls a minute per connector; more would be answered 429"),
            );
        }
        let groups = connector.groups.iter().map(String::as_str);
        unique(&format!("{path}.groups"), None, groups, problems);
    }
}

fn crm(path: &str, crm: &mut CrmConfig, cx: &Context, problems: &mut Problems) {
    id(&format!("{path}.id"), &crm.id, problems);
    if crm.kind.is_none() {
        problems.push(
            format!("{path}.kind"),
            "missing (the one kind supported is \"dataverse\")",
        );
    }
    match &crm.url {
        Some(url) => http_url(&format!("{path}.url"), url, problems),
        None => problems.push(format!("{path}.url"), "missing"),
    }
    required(&format!("{path}.tenant_id"), &crm.tenant_id, problems);
    required(&format!("{path}.client_id"), &crm.client_id, problems);
    required_secret(
        &format!("{path}.client_secret"),
        &mut crm.client_secret,
        cx,
        problems,
    );
    if crm.entity_sets.is_empty() {
        problems.push(
            format!("{path}.entity_sets"),
            "at least one entity set is required",
        );
    }
    unique(
        &format!("{path}.entity_sets"),
        None,
        crm.entity_sets.iter().map(String::as_str),
        problems,
    );
    if crm.poll_interval.is_zero() {
        problems.push(format!("{path}.poll_interval"), "must be longer than 0s");
    }
    if crm.select.is_empty() {
        problems.push(format!("{path}.select"), "at least one column is required");
    }
    for (i, column) in crm.select.iter().enumerate() {
        if column.is_empty()
            || !column
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            problems.push(
                format!("{path}.select[{i}]"),
                format!("{column:?} is not a column name (letters, digits and '_')"),
            );
        }
    }
    if let Some(url) = &crm.token_url {
        http_url(&format!("{path}.token_url"), url, problems);
    }
    if let Some(key) = &mut crm.webhook_key {
        secret(&format!("{path}.webhook_key"), key, cx, problems);
    }
}

fn rule(
    path: &str,
    rule: &mut RuleConfig,
    tenants: &[TenantConfig],
    crm: &[CrmConfig],
    cx: &Context,
    problems: &mut Problems,
) {
    id(&format!("{path}.id"), &rule.id, problems);
    match &rule.trigger {
        Some(trigger) => self::trigger(&format!("{path}.trigger"), trigger, crm, problems),
        None => problems.push(format!("{path}.trigger"), "missing"),
    }
    match &rule.target {
        Some(target) => self::target(&format!("{path}.target"), target, tenants, problems),
        None => problems.push(format!("{path}.target"), "missing"),
    }
    action(&format!("{path}.action"), rule, cx, problems);
    match &rule.write_back {
        Some(write_back) => {
            required(
                &format!("{path}.write_back.subject"),
                &write_back.subject,
                problems,
            );
            let description = &write_back.description;
            required(
                &format!("{path}.write_back.description"),
                description,
                problems,
            );
        }
        None => problems.push(format!("{path}.write_back"), "missing"),
    }
}

fn trigger(path: &str, trigger: &TriggerConfig, crm: &[CrmConfig], problems: &mut Problems) {
    let crm_path = format!("{path}.crm");
    if required(&crm_path, &trigger.crm, problems) {
        match crm.iter().find(|c| c.id == trigger.crm) {
            None => problems.push(
                crm_path,
                unknown("crm source", &trigger.crm, crm.iter().map(|c| &c.id)),
            ),
            Some(source) => {
                let entity_path = format!("{path}.entity");
                if required(&entity_path, &trigger.entity, problems)
                    && !source.entity_sets.contains(&trigger.entity)
                {
                    let message = format!(
                        "{:?} is not watched by crm source {:?} (its entity_sets: {})",
                        trigger.entity,
                        source.id,
                        source.entity_sets.join(", ")
                    );
                    problems.push(entity_path, message);
                }
            }
        }
    }
    if trigger.on.is_none() {
        problems.push(format!("{path}.on"), "missing (\"created\" or \"updated\")");
    }
    if trigger
        .filter
        .as_deref()
        .is_some_and(|f| f.trim().is_empty())
    {
        problems.push(
            format!("{path}.filter"),
            "is empty (leave it out to match every record)",
        );
    }
}

fn target(path: &str, target: &TargetConfig, tenants: &[TenantConfig], problems: &mut Problems) {
    let tenant_path = format!("{path}.tenant");
    if !required(&tenant_path, &target.tenant, problems) {
        return;
    }
    let Some(tenant) = tenants.iter().find(|t| t.id == target.tenant) else {
        let known = tenants.iter().map(|t| &t.id);
        problems.push(tenant_path, unknown("tenant", &target.tenant, known));
        return;
    };
    let connector_path = format!("{path}.connector");
    if !required(&connector_path, &target.connector, problems) {
        return;
    }
    let Some(connector) = tenant.connectors.iter().find(|c| c.id == target.connector) else {
        let what = format!("connector of tenant {:?}", tenant.id);
        let known = tenant.connectors.iter().map(|c| &c.id);
        problems.push(connector_path, unknown(&what, &target.connector, known));
        return;
    };
    let granted = |at: String, group: &str, problems: &mut Problems| {
        if !connector.groups.iter().any(|g| g == group) {
            let message = format!(
                "group {group:?} is not granted to connector {:?} (its groups: {})",
                connector.id,
                if connector.groups.is_empty() {
                    "none".to_string()
                } else {
                    connector.groups.join(", ")
                }
            );
            problems.push(at, message);
        }
    };
    match (&target.group_by, target.group.trim().is_empty()) {
        (None, true) => problems.push(
            format!("{path}.group"),
            "missing (a group id, or group_by with groups to look it up per record)",
        ),
        (None, false) => {
            granted(format!("{path}.group"), &target.group, problems);
            if !target.groups.is_empty() || target.fallback_group.is_some() {
                problems.push(
                    format!("{path}.groups"),
                    "groups and fallback_group are used only with group_by",
                );
            }
        }
        (Some(_), false) => problems.push(
            format!("{path}.group"),
            "give either group (one group for every record) or group_by with groups, not both",
        ),
        (Some(by), true) => {
            required(&format!("{path}.group_by"), by, problems);
            if target.groups.is_empty() {
                problems.push(
                    format!("{path}.groups"),
                    "missing (attribute value = group id, for group_by)",
                );
            }
            for (value, group) in &target.groups {
                granted(format!("{path}.groups.{value}"), group, problems);
            }
            if let Some(fallback) = &target.fallback_group {
                granted(format!("{path}.fallback_group"), fallback, problems);
            }
        }
    }
}

/// The action template must exist and be TOML; its meaning is checked by the rules.
fn action(path: &str, rule: &mut RuleConfig, cx: &Context, problems: &mut Problems) {
    if rule.action.as_os_str().is_empty() {
        problems.push(path, "missing (the path of an action template file)");
        return;
    }
    let file = cx.base_dir.join(&rule.action);
    match std::fs::read_to_string(&file) {
        Err(e) => problems.push(path, format!("cannot read {}: {e}", file.display())),
        Ok(text) => {
            if let Err(e) = text.parse::<toml::Table>() {
                let message = super::load::toml_syntax_error(&e, &text);
                problems.push(path, format!("{}: {message}", file.display()));
            }
            rule.action = file;
        }
    }
}

/// Records `missing` when `value` is empty; returns whether it is present.
fn required(path: &str, value: &str, problems: &mut Problems) -> bool {
    if value.trim().is_empty() {
        problems.push(path, "missing");
        return false;
    }
    true
}

/// The longest id of a tenant, connector, CRM source or rule.
pub const MAX_ID: usize = 64;

/// Whether `value` has an id's shape: 1 to [`MAX_ID`] ASCII letters, digits, `-`, `_`
/// and `.`. The webhook receivers check their path segments with it, so a segment of
/// any other shape names nothing configured and is refused before any work.
pub fn is_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_ID && value.bytes().all(is_id_byte)
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.".contains(&b)
}

/// An id that appears in URLs and metric labels: letters, digits, `-`, `_`, `.`.
fn id(path: &str, value: &str, problems: &mut Problems) {
    if !required(path, value, problems) || is_id(value) {
        return;
    }
    if value.bytes().all(is_id_byte) {
        problems.push(path, format!("longer than {MAX_ID} characters"));
    } else {
        let message = format!("{value:?} may hold only letters, digits, '-', '_' and '.'");
        problems.push(path, message);
    }
}

/// Reports repeated values of a list: items' ids (`key` = `Some("id")`, reported at
/// `list[i].id`, so other problems inside the item are still reported) or the plain
/// items of a list of names (`key` = `None`).
fn unique<'a>(
    path: &str,
    key: Option<&str>,
    values: impl Iterator<Item = &'a str>,
    problems: &mut Problems,
) {
    let mut seen = HashSet::new();
    for (i, value) in values.enumerate() {
        if !value.is_empty() && !seen.insert(value) {
            let at = match key {
                Some(key) => format!("{path}[{i}].{key}"),
                None => format!("{path}[{i}]"),
            };
            problems.push(at, format!("duplicate {value:?}"));
        }
    }
}

fn at_least_one(path: &str, value: u32, problems: &mut Problems) {
    if value == 0 {
        problems.push(path, "must be at least 1");
    }
}

fn http_url(path: &str, url: &Url, problems: &mut Problems) {
    if !matches!(url.scheme(), "http" | "https") {
        problems.push(
            path,
            format!("must be an http or https URL, not {:?}", url.scheme()),
        );
    }
}

/// Redis URL schemes the redis crate accepts. The URL itself is never printed: it may
/// hold a password.
fn redis_url(path: &str, url: &Secret, problems: &mut Problems) {
    match Url::parse(url.expose()) {
        Ok(url) if matches!(url.scheme(), "redis" | "rediss" | "redis+unix" | "unix") => {}
        Ok(url) => problems.push(
            path,
            format!(
                "scheme {:?} is not a Redis URL (redis://, rediss:// or unix://)",
                url.scheme()
            ),
        ),
        Err(e) => problems.push(path, format!("not a valid URL ({e})")),
    }
}

/// Resolves a secret that must be given.
fn required_secret(path: &str, value: &mut Secret, cx: &Context, problems: &mut Problems) {
    if value.is_empty() {
        problems.push(path, "missing");
    } else {
        secret(path, value, cx, problems);
    }
}

/// Resolves an `env:` or `file:` secret; returns whether it has a usable value.
fn secret(path: &str, value: &mut Secret, cx: &Context, problems: &mut Problems) -> bool {
    match value.resolve(cx.env, cx.base_dir) {
        Ok(()) if value.is_empty() => {
            problems.push(path, "is empty");
            false
        }
        Ok(()) => true,
        Err(error) => {
            problems.push(path, error.to_string());
            false
        }
    }
}

fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a String>) -> String {
    let known: Vec<&str> = known
        .map(String::as_str)
        .filter(|k| !k.is_empty())
        .collect();
    if known.is_empty() {
        format!("unknown {what} {name:?} (none is configured)")
    } else {
        format!("unknown {what} {name:?} (known: {})", known.join(", "))
    }
}
