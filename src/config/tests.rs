//! Loading and validation, end to end through [`Config::load`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const TEMPLATE: &str = "action_type = \"Survey\"\ntitle = \"Qualify {{ name }}\"\n[[questions]]\ntitle = \"Budget?\"\ntype = \"Text\"\n";

/// A minimal valid configuration with one of everything.
const VALID: &str = r#"
[[tenants]]
id = "contoso"
callback_token = "kz-callback-secret"
[[tenants.connectors]]
id = "bot"
application_id = "app-1"
application_secret = "env:APP_SECRET"
refresh_token = "rt-1"
groups = ["g-1", "g-2"]

[[crm]]
id = "d365"
kind = "dataverse"
url = "https://contoso.crm.dynamics.com"
tenant_id = "t"
client_id = "c"
client_secret = "crm-client-secret"

[[rules]]
id = "r1"
action = "survey.toml"
[rules.trigger]
crm = "d365"
entity = "opportunities"
on = "created"
[rules.target]
tenant = "contoso"
connector = "bot"
group = "g-1"
[rules.write_back]
subject = "s"
description = "d"
"#;

struct Loaded {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    result: Result<Config, ConfigError>,
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes `toml` (and a valid action template beside it) and loads it.
fn load_with(toml: &str, env: &HashMap<String, String>) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("survey.toml"), TEMPLATE).unwrap();
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, toml).unwrap();
    let result = Config::load(Some(&file), env);
    Loaded {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        result,
    }
}

fn load(toml: &str) -> Loaded {
    load_with(toml, &env(&[("APP_SECRET", "app-secret")]))
}

/// The problems of a load that must fail, as `path: message` lines.
fn problems(toml: &str) -> Vec<String> {
    problems_with(toml, &env(&[("APP_SECRET", "app-secret")]))
}

fn problems_with(toml: &str, env: &HashMap<String, String>) -> Vec<String> {
    match load_with(toml, env).result {
        Ok(_) => panic!("expected problems, the configuration loaded"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn has(problems: &[String], expected: &str) -> bool {
    problems.iter().any(|p| p.starts_with(expected))
}

#[track_caller]
fn assert_has(problems: &[String], expected: &str) {
    assert!(
        has(problems, expected),
        "no problem starting {expected:?} in {problems:#?}"
    );
}

#[test]
fn defaults_alone_give_a_working_configuration() {
    let config = Config::load(None, &HashMap::new()).unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.server.body_limit_bytes, 1024 * 1024);
    assert_eq!(config.server.request_timeout, Duration::from_secs(30));
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(25));
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Pretty);
    assert_eq!(config.queue.backend, QueueBackend::Sqlite);
    assert_eq!(config.queue.max_attempts, 8);
    assert!(config.tenants.is_empty() && config.crm.is_empty() && config.rules.is_empty());
}

#[test]
fn array_items_get_their_defaults_and_secrets_are_resolved() {
    let loaded = load(VALID);
    let config = loaded.result.unwrap();
    let tenant = &config.tenants[0];
    assert_eq!(tenant.rate_limit_per_minute, 300);
    let connector = &tenant.connectors[0];
    assert_eq!(connector.rate_limit_per_minute, 100);
    assert_eq!(connector.api_root.as_str(), "https://api.kaiza.la/");
    assert_eq!(connector.application_secret.expose(), "app-secret");
    assert_eq!(connector.refresh_token.expose(), "rt-1");
    let crm = &config.crm[0];
    assert_eq!(crm.entity_sets, ["opportunities"]);
    assert_eq!(crm.poll_interval, Duration::from_secs(30));
    let rule = &config.rules[0];
    assert_eq!(
        rule.action,
        loaded.dir.join("survey.toml"),
        "action resolved against the file"
    );
    assert_eq!(
        rule.write_back.as_ref().unwrap().activity,
        ActivityKind::Task
    );
    assert_eq!(
        rule.trigger.as_ref().unwrap().on,
        Some(TriggerEvent::Created)
    );
}

#[test]
fn the_shipped_example_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let config = Config::load(Some(&example), &HashMap::new()).unwrap();
    assert_eq!(
        config.tenants[0].connectors[0].groups,
        ["g-sales-west", "g-sales-east"]
    );
    assert!(config.rules[0].action.is_file());
}

#[test]
fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
    let toml = format!("[server]\nlisten = \"127.0.0.1:9000\"\nshutdown_grace = \"3s\"\n{VALID}");
    let vars = env(&[
        ("APP_SECRET", "x"),
        ("KAIZALA_BRIDGE__SERVER__LISTEN", "127.0.0.1:9100"),
        ("KAIZALA_BRIDGE__LOG__FORMAT", "json"),
        ("KAIZALA_BRIDGE__QUEUE__CONCURRENCY", "3"),
        ("KAIZALA_BRIDGE_CONFIG", "/not/a/key"),
    ]);
    let config = load_with(&toml, &vars).result.unwrap();
    assert_eq!(
        config.server.listen.to_string(),
        "127.0.0.1:9100",
        "env wins over the file"
    );
    assert_eq!(
        config.server.shutdown_grace,
        Duration::from_secs(3),
        "file wins over defaults"
    );
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(
        config.queue.concurrency, 3,
        "env text is coerced to a number"
    );
}

#[test]
fn three_different_mistakes_are_all_reported_with_their_paths() {
    let toml = VALID
        .replace("[[crm]]", "[[crm]]\ncolour = \"blue\"")
        .replace(
            "refresh_token = \"rt-1\"",
            "refresh_token = \"env:UNSET_REFRESH_TOKEN\"",
        )
        .replace("connector = \"bot\"", "connector = \"robot\"");
    let found = problems(&toml);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0] == "crm[0].colour: unknown key", "{found:#?}");
    assert_has(
        &found,
        "tenants[0].connectors[0].refresh_token: environment variable UNSET_REFRESH_TOKEN is not set",
    );
    assert_has(
        &found,
        "rules[0].target.connector: unknown connector of tenant \"contoso\" \"robot\" (known: bot)",
    );
}

#[test]
fn unknown_keys_are_reported_wherever_they_are() {
    let toml = format!("[server]\nlisen = \"x\"\n[log]\nlevl = \"debug\"\n{VALID}")
        .replace("[rules.target]", "[rules.target]\ngruop = \"g-1\"");
    let vars = env(&[
        ("APP_SECRET", "x"),
        ("KAIZALA_BRIDGE__QUEUE__BACKEND_KIND", "redis"),
    ]);
    let found = problems_with(&toml, &vars);
    assert_has(&found, "server.lisen: unknown key");
    assert_has(&found, "log.levl: unknown key");
    assert_has(&found, "rules[0].target.gruop: unknown key");
    assert_has(
        &found,
        "queue.backend_kind: unknown key (in the environment)",
    );
    assert_eq!(found.len(), 4, "{found:#?}");
}

#[test]
fn values_of_the_wrong_shape_are_named_once_each() {
    let toml = format!(
        "[server]\nlisten = \"port eighty\"\nrequest_timeout = \"soon\"\npublic_url = \"not a url\"\n\
         [queue]\nbackend = \"postgres\"\nconcurrency = \"many\"\n{VALID}"
    )
    .replace("groups = [\"g-1\", \"g-2\"]", "groups = [\"g-1\", { id = 2 }]");
    let found = problems(&toml);
    assert_has(
        &found,
        "server.listen: must be an IP address and a port, e.g. 127.0.0.1:8080",
    );
    assert_has(&found, "server.request_timeout: invalid duration \"soon\"");
    assert_has(&found, "server.public_url: ");
    assert_has(
        &found,
        "queue.backend: unknown value \"postgres\", expected one of: sqlite, redis",
    );
    assert_has(&found, "queue.concurrency: ");
    assert_has(&found, "tenants[0].connectors[0].groups[1]: invalid type");
    assert_eq!(
        found.len(),
        6,
        "each reported once, none also as missing: {found:#?}"
    );
}

#[test]
fn an_item_that_should_be_a_table_is_reported_once() {
    let found = problems("tenants = [\"contoso\"]\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_has(&found, "tenants[0]: invalid type");
}

#[test]
fn missing_required_keys_are_each_named() {
    let toml = r#"
[[tenants]]
[[tenants.connectors]]
[[crm]]
[[rules]]
"#;
    let found = problems(toml);
    for expected in [
        "tenants[0].id: missing",
        "tenants[0].connectors[0].id: missing",
        "tenants[0].connectors[0].application_id: missing",
        "tenants[0].connectors[0].application_secret: missing",
        "tenants[0].connectors[0].refresh_token: missing",
        "crm[0].id: missing",
        "crm[0].kind: missing",
        "crm[0].url: missing",
        "crm[0].tenant_id: missing",
        "crm[0].client_id: missing",
        "crm[0].client_secret: missing",
        "rules[0].id: missing",
        "rules[0].trigger: missing",
        "rules[0].target: missing",
        "rules[0].action: missing",
        "rules[0].write_back: missing",
    ] {
        assert_has(&found, expected);
    }
}

#[test]
fn cross_references_must_name_things_that_exist() {
    let toml = VALID
        .replace("crm = \"d365\"", "crm = \"salesforce\"")
        .replace("tenant = \"contoso\"", "tenant = \"fabrikam\"");
    let found = problems(&toml);
    assert_has(
        &found,
        "rules[0].trigger.crm: unknown crm source \"salesforce\" (known: d365)",
    );
    assert_has(
        &found,
        "rules[0].target.tenant: unknown tenant \"fabrikam\" (known: contoso)",
    );

    let toml = VALID
        .replace("entity = \"opportunities\"", "entity = \"leads\"")
        .replace("group = \"g-1\"", "group = \"g-9\"");
    let found = problems(&toml);
    assert_has(
        &found,
        "rules[0].trigger.entity: \"leads\" is not watched by crm source \"d365\"",
    );
    assert_has(
        &found,
        "rules[0].target.group: group \"g-9\" is not granted to connector \"bot\"",
    );
}

#[test]
fn ids_must_be_unique_and_url_safe() {
    let tenant = VALID
        .split("[[crm]]")
        .next()
        .unwrap()
        .replace("[[tenants]]", "");
    let toml = format!("{VALID}\n[[tenants]]\nrate_limit_per_minute = 0{tenant}")
        .replace("id = \"r1\"", "id = \"r 1\"");
    let toml = toml.replace(
        "[[tenants]]\nid = \"contoso\"\ncallback_token",
        "[[tenants]]\nid = \"contoso\"\nrate_limit_per_minute = 0\ncallback_token",
    );
    let found = problems(&toml);
    assert_has(
        &found,
        "tenants[1].rate_limit_per_minute: must be at least 1",
    );
    assert_has(&found, "tenants[1].id: duplicate \"contoso\"");
    assert_has(&found, "rules[0].id: \"r 1\" may hold only letters, digits");
}

#[test]
fn ranges_and_dependent_keys_are_checked() {
    let toml = format!(
        "[queue]\nbackend = \"redis\"\nconcurrency = 0\nbackoff_initial = \"1m\"\nbackoff_max = \"1s\"\n\
         [log]\nlevel = \"loud=[\"\n{VALID}"
    );
    let found = problems(&toml);
    assert_has(
        &found,
        "queue.redis_url: missing (required when queue.backend = \"redis\")",
    );
    assert_has(&found, "queue.concurrency: must be at least 1");
    assert_has(
        &found,
        "queue.backoff_max: must not be shorter than queue.backoff_initial",
    );
    assert_has(&found, "log.level: invalid filter");
}

#[test]
fn an_attempt_timeout_that_cannot_outlast_a_hold_is_refused() {
    // Kaizala's default request timeout is 60 s: a hold lasts 65 s, and an attempt
    // that waited it out needs another 60 s for its own request.
    let toml = format!("[queue]\nattempt_timeout = \"125s\"\n{VALID}");
    assert_has(
        &problems(&toml),
        "queue.attempt_timeout: must be longer than twice kaizala.request_timeout plus 5s (2m 5s)",
    );
    let shorter =
        format!("[queue]\nattempt_timeout = \"20s\"\n[kaizala]\nrequest_timeout = \"7s\"\n{VALID}");
    assert!(
        load(&shorter).result.is_ok(),
        "20s outlasts a 12s hold and a 7s request"
    );
}

#[test]
fn a_redis_url_problem_never_shows_the_url() {
    let toml =
        format!("[queue]\nbackend = \"redis\"\nredis_url = \"http://:pw-123@cache\"\n{VALID}");
    let found = problems(&toml);
    assert_has(
        &found,
        "queue.redis_url: scheme \"http\" is not a Redis URL",
    );
    assert!(found.iter().all(|p| !p.contains("pw-123")), "{found:#?}");
}

#[test]
fn the_action_template_must_exist_and_be_toml() {
    let found = problems(&VALID.replace("survey.toml", "absent.toml"));
    assert_has(&found, "rules[0].action: cannot read ");

    let loaded = load(VALID);
    std::fs::write(
        loaded.dir.join("survey.toml"),
        "title = \"ok\"\nquestions = [\n",
    )
    .unwrap();
    let result = Config::load(
        Some(&loaded.dir.join("bridge.toml")),
        &env(&[("APP_SECRET", "x")]),
    );
    let found: Vec<String> = result
        .unwrap_err()
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_has(&found, "rules[0].action: ");
    assert!(
        found[0].contains("survey.toml: not valid TOML at line 2: unclosed array"),
        "{found:#?}"
    );
}

#[test]
fn file_secrets_are_read_relative_to_the_config_file() {
    let loaded = load(VALID);
    std::fs::write(loaded.dir.join("rt"), "rt-from-file\n").unwrap();
    std::fs::write(
        loaded.dir.join("bridge.toml"),
        VALID.replace("refresh_token = \"rt-1\"", "refresh_token = \"file:rt\""),
    )
    .unwrap();
    let config = Config::load(
        Some(&loaded.dir.join("bridge.toml")),
        &env(&[("APP_SECRET", "x")]),
    )
    .unwrap();
    assert_eq!(
        config.tenants[0].connectors[0].refresh_token.expose(),
        "rt-from-file"
    );
}

#[test]
fn a_missing_file_or_bad_toml_is_one_clear_problem() {
    let err =
        Config::load(Some(Path::new("/nonexistent/bridge.toml")), &HashMap::new()).unwrap_err();
    assert_eq!(
        err.problems.iter().next().unwrap().message,
        "configuration file /nonexistent/bridge.toml does not exist or is not a file"
    );
    let found = problems("[server\nlisten = 1");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].contains("bridge.toml: not valid TOML at line 1"),
        "{found:#?}"
    );
}

#[test]
fn a_syntax_error_never_quotes_the_line_it_is_on() {
    let found = problems("[[tenants]]\nid = \"c\"\ncallback_token = \"hunter2-unterminated\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("not valid TOML at line 3"), "{found:#?}");
    assert!(
        !found[0].contains("hunter2"),
        "the secret is not echoed: {found:#?}"
    );
}

#[test]
fn debug_of_a_loaded_config_shows_no_secret() {
    let config = load(VALID).result.unwrap();
    let printed = format!("{config:?}");
    for secret in [
        "app-secret",
        "rt-1",
        "crm-client-secret",
        "kz-callback-secret",
    ] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(printed.contains("app-1"), "non-secret values are shown");
}

#[test]
fn server_limits_and_the_correlation_retention_are_checked() {
    let toml = format!(
        "[server]\nmax_header_bytes = 100\nmax_connections = 0\nheader_read_timeout = \"0s\"\n\
         [kaizala]\ncorrelation_retention = \"12h\"\n{VALID}"
    );
    let found = problems(&toml);
    assert_has(
        &found,
        "server.max_header_bytes: must be between 8192 and 1048576 (16384 suits webhooks)",
    );
    assert_has(&found, "server.max_connections: must be greater than 0");
    assert_has(&found, "server.header_read_timeout: must be longer than 0s");
    assert_has(
        &found,
        "kaizala.correlation_retention: must be longer than kaizala.response_poll_grace (and than any survey's due date plus it)",
    );
}

#[test]
fn ids_have_the_configured_shape() {
    assert!(crate::config::is_id("contoso-1.eu_west"));
    assert!(!crate::config::is_id("../x"));
    assert!(!crate::config::is_id(""));
    assert!(!crate::config::is_id(
        &"a".repeat(crate::config::MAX_ID + 1)
    ));
}

#[test]
fn a_host_name_in_listen_is_named_as_such() {
    let found = problems(&format!("[server]\nlisten = \"localhost:18080\"\n{VALID}"));
    assert_has(&found, "server.listen: must be an IP address and a port");
    assert!(
        found[0].contains("a host name such as localhost is not looked up"),
        "{found:?}"
    );
}

#[test]
fn a_misspelt_key_is_given_the_key_it_was_likely_meant_to_be() {
    let found = problems(&format!("[server]\nlistne = \"127.0.0.1:1\"\n{VALID}"));
    assert_has(&found, "server.listne: unknown key");
    assert!(found[0].ends_with("did you mean `listen`?"), "{found:?}");
    let far = problems(&format!("[server]\nzzzz = 1\n{VALID}"));
    assert!(
        !far[0].contains("did you mean"),
        "no guess for nothing alike: {far:?}"
    );
}

#[test]
fn quotas_above_kaizala_s_documented_limits_are_refused_against_kaizala_only() {
    let toml = VALID.replacen(
        "id = \"bot\"",
        "id = \"bot\"\nrate_limit_per_minute = 600",
        1,
    );
    assert!(toml != VALID, "the fixture has the connector");
    let found = problems(&toml);
    assert_has(
        &found,
        "tenants[0].connectors[0].rate_limit_per_minute: Kaizala allows at most 100 calls a minute per connector",
    );
    let tenant = VALID.replacen(
        "id = \"contoso\"",
        "id = \"contoso\"\nrate_limit_per_minute = 301",
        1,
    );
    assert_has(
        &problems(&tenant),
        "tenants[0].rate_limit_per_minute: Kaizala allows at most 300 calls a minute per tenant",
    );
    // An emulator (or a proxy) elsewhere may allow what it likes.
    let emulated = toml.replacen(
        "[[tenants.connectors]]",
        "[[tenants.connectors]]\napi_root = \"http://127.0.0.1:9\"",
        1,
    );
    assert!(
        load(&emulated).result.is_ok(),
        "an emulator's quota is its own"
    );
}
