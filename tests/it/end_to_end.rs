//! The whole loop, per backend, against both emulators with faults on: duplicate and
//! reordered Kaizala webhooks, 5xx from Kaizala and from Dataverse, and a bridge
//! restart in the middle. Asserts what a business user would check: one survey per
//! qualifying opportunity, in the right group, with its fields filled in; none for
//! the others; one task per answer, on the right opportunity, with the answers in it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kaizala_bridge::app::Application;
use kaizala_bridge::config::Config;
use kaizala_bridge::sim::dataverse::{DataverseSim, ServiceEndpoint};
use kaizala_bridge::sim::faults::Faults;
use kaizala_bridge::sim::kaizala::KaizalaSim;
use kaizala_bridge::sim::people::{Cast, People};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::config::ConfigDir;
use crate::support::redis::{free_port, RedisServer};

const KAIZALA_SEED: &str = r#"
[[tenants]]
id = "contoso"
[[tenants.connectors]]
application_id = "e2e-bot"
application_secret = "e2e-bot-secret"
refresh_token = "e2e-bot-rt"
groups = ["g-west", "g-east", "g-general"]
phone = "+15550100"
[[groups]]
id = "g-west"
name = "Sales West"
members = [{ phone = "+15550100", name = "Bot", role = "Admin" }, { phone = "+15550101", name = "Asha" }, { phone = "+15550102", name = "Ben" }]
[[groups]]
id = "g-east"
name = "Sales East"
members = [{ phone = "+15550100", name = "Bot", role = "Admin" }, { phone = "+15550201", name = "Chen" }, { phone = "+15550202", name = "Dana" }]
[[groups]]
id = "g-general"
name = "Sales"
members = [{ phone = "+15550100", name = "Bot", role = "Admin" }, { phone = "+15550301", name = "Eve" }, { phone = "+15550302", name = "Femi" }]
"#;

const DATAVERSE_SEED: &str = r#"
[[applications]]
tenant_id = "dir"
client_id = "bridge"
client_secret = "bridge-secret"
[[applications]]
tenant_id = "dir"
client_id = "rep"
client_secret = "rep-secret"
"#;

const SURVEY: &str = r#"
action_type = "Survey"
title = "Qualify {{ name }} ({{ estimatedvalue }})"
[[questions]]
title = "Budget for {{ name }} confirmed?"
type = "SingleOption"
options = ["Yes", "No"]
[[questions]]
title = "Who decides?"
type = "Text"
"#;

fn members(group: &str) -> [&'static str; 2] {
    match group {
        "g-west" => ["+15550101", "+15550102"],
        "g-east" => ["+15550201", "+15550202"],
        _ => ["+15550301", "+15550302"],
    }
}

fn config_text(backend: &str, kaizala: &str, dataverse: &str, port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
shutdown_grace = "3s"
[log]
level = "warn"
[queue]
{backend}
backoff_initial = "100ms"
backoff_max = "1s"
max_attempts = 20
attempt_timeout = "12s"
[kaizala]
webhook_sync_interval = "1s"
request_timeout = "3s"
# Kaizala's webhooks are registered a moment after the bridge starts (the quotas pace
# the calls); the sweep records answers given before ours existed.
response_sweep_interval = "2s"
[[tenants]]
id = "contoso"
callback_token = "e2e-callback-token"
[[tenants.connectors]]
id = "bot"
application_id = "e2e-bot"
application_secret = "e2e-bot-secret"
refresh_token = "e2e-bot-rt"
api_root = "{kaizala}"
groups = ["g-west", "g-east", "g-general"]
[[crm]]
id = "d365"
kind = "dataverse"
url = "{dataverse}"
token_url = "{dataverse}/dir/oauth2/v2.0/token"
tenant_id = "dir"
client_id = "bridge"
client_secret = "bridge-secret"
poll_interval = "1s"
baseline = "existing_as_new"
webhook_key = "e2e-webhook-key"
[[rules]]
id = "qualify"
action = "survey.toml"
[rules.trigger]
crm = "d365"
entity = "opportunities"
on = "created"
filter = "estimatedvalue >= 10000 and statecode == 0"
[rules.target]
tenant = "contoso"
connector = "bot"
group_by = "_owningbusinessunit_value"
groups = {{ "bu-west" = "g-west", "bu-east" = "g-east" }}
fallback_group = "g-general"
[rules.write_back]
subject = "{{{{ responder.name }}}} on {{{{ action.title }}}}"
description = "{{% for a in answers %}}{{{{ a.question }}}} = {{{{ a.answer }}}}\n{{% endfor %}}"
sent_subject = "Survey sent: {{{{ action.title }}}}"
sent_description = "In {{{{ action.group }}}}"
"#
    )
}

/// Every survey in the emulator: (group, action id, title, invisible key, questions).
fn surveys(kaizala: &KaizalaSim) -> Vec<(String, String, String, String, Vec<String>)> {
    let state = kaizala.state();
    let mut found = Vec::new();
    for (group, body) in state["groups"].as_object().unwrap() {
        for action in body["actions"].as_array().unwrap() {
            let questions = action["questions"].as_array().cloned().unwrap_or_default();
            let key = questions
                .iter()
                .find(|q| q["isInvisible"] == true)
                .and_then(|q| q["title"].as_str())
                .unwrap_or_default()
                .to_string();
            let visible = questions
                .iter()
                .filter(|q| q["isInvisible"] != true)
                .map(|q| q["title"].as_str().unwrap_or_default().to_string())
                .collect();
            found.push((
                group.clone(),
                action["actionId"].as_str().unwrap().to_string(),
                action["title"].as_str().unwrap_or_default().to_string(),
                key,
                visible,
            ));
        }
    }
    found
}

/// The tasks answers became (the "survey sent" ones apart).
fn tasks(dataverse: &DataverseSim) -> Vec<Value> {
    all_tasks(dataverse)
        .into_iter()
        .filter(|t| {
            !t["subject"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Survey sent: ")
        })
        .collect()
}

fn all_tasks(dataverse: &DataverseSim) -> Vec<Value> {
    dataverse.state()["tables"]["tasks"]["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits for `done`; the limits are generous because a loaded CI machine runs this
/// beside other tests: what is asserted is the outcome, never the speed.
async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create(people: &People, name: &str, value: i64, unit: &str) -> String {
    let columns =
        json!({ "name": name, "estimatedvalue": value, "_owningbusinessunit_value": unit });
    people.create_opportunity(&columns).await.unwrap()
}

async fn start_bridge(config: &Config) -> (CancellationToken, JoinHandle<()>) {
    let app = Application::build(config).await.expect("the bridge starts");
    let stop = CancellationToken::new();
    let token = stop.clone();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(token).await.expect("the bridge runs");
    });
    (stop, handle)
}

async fn whole_loop(redis: Option<&RedisServer>, poll_answers: bool) {
    let any = "127.0.0.1:0".parse().unwrap();
    let kz_seed = kaizala_bridge::sim::kaizala::Seed::parse(KAIZALA_SEED).unwrap();
    let kaizala = KaizalaSim::start(
        &kz_seed,
        kaizala_bridge::sim::kaizala::SimOptions::fast(),
        any,
    )
    .await
    .unwrap();
    let dv_seed = kaizala_bridge::sim::dataverse::Seed::parse(DATAVERSE_SEED).unwrap();
    let dataverse = DataverseSim::start(&dv_seed, Default::default(), any)
        .await
        .unwrap();
    let port = free_port();
    let backend = match redis {
        Some(redis) => format!("backend = \"redis\"\nredis_url = \"{}\"", redis.url()),
        None => "backend = \"sqlite\"\nsqlite_path = \"{data}/bridge.sqlite\"".to_string(),
    };
    let mut text = config_text(&backend, kaizala.base_url(), dataverse.base_url(), port);
    if poll_answers {
        // A tenant Kaizala cannot call back: answers are read by polling the actions.
        text = text
            .replace(
                "callback_token = \"e2e-callback-token\"",
                "callback_token = \"e2e-callback-token\"\nresponses = \"poll\"",
            )
            .replace(
                "webhook_sync_interval = \"1s\"",
                "webhook_sync_interval = \"1s\"\nresponse_poll_interval = \"300ms\"",
            );
    }
    let dir = ConfigDir::new(&text);
    std::fs::write(dir.path().join("survey.toml"), SURVEY).unwrap();
    let config = dir.load();
    let endpoint: ServiceEndpoint = serde_json::from_value(json!({
        "url": format!("http://127.0.0.1:{port}/webhooks/dataverse/d365"),
        "entity": "opportunity", "message": "Create", "auth": "WebhookKey", "key": "e2e-webhook-key",
    }))
    .unwrap();
    dataverse.register_webhook(endpoint).unwrap();
    let people = People::connect(&Cast {
        kaizala: kaizala.base_url().into(),
        connector: (
            "e2e-bot".into(),
            "e2e-bot-secret".into(),
            "e2e-bot-rt".into(),
        ),
        dataverse: dataverse.base_url().into(),
        rep: ("dir".into(), "rep".into(), "rep-secret".into()),
    })
    .await
    .unwrap();

    // Faults from the start: 5xx from both sides, duplicate and reordered webhooks.
    kaizala
        .set_faults(Faults {
            error_rate: 0.15,
            error_statuses: vec![500, 503],
            duplicate_rate: 0.4,
            reorder_rate: 0.3,
            seed: 11,
            ..Faults::default()
        })
        .unwrap();
    dataverse
        .set_faults(Faults {
            error_rate: 0.15,
            error_statuses: vec![500, 503],
            seed: 12,
            ..Faults::default()
        })
        .unwrap();

    let (stop, bridge) = start_bridge(&config).await;
    // (name, value, unit, group it must land in, or none)
    let deals: Vec<(String, i64, &str, Option<&str>)> = vec![
        ("Northwind".into(), 48_000, "bu-west", Some("g-west")),
        ("Fabrikam".into(), 2_500, "bu-west", None),
        ("Tailspin".into(), 125_000, "bu-east", Some("g-east")),
        ("Litware".into(), 15_000, "bu-south", Some("g-general")),
        ("Adventure Works".into(), 9_999, "bu-east", None),
        ("Contoso Pharma".into(), 70_000, "bu-east", Some("g-east")),
        ("Wingtip".into(), 33_000, "bu-west", Some("g-west")),
    ];
    let mut ids = Vec::new();
    for (i, (name, value, unit, _)) in deals.iter().enumerate() {
        if i == 3 {
            // A restart in the middle: the bridge stops (SIGTERM's path) and starts
            // again on the same queue and state.
            stop.cancel();
            bridge.await.unwrap();
            let restarted = start_bridge(&config).await;
            ids.push(create(&people, name, *value, unit).await);
            let (stop, bridge) = restarted;
            for (name, value, unit, _) in &deals[i + 1..] {
                ids.push(create(&people, name, *value, unit).await);
            }
            finish(&kaizala, &dataverse, &people, &deals, &ids).await;
            let count = || kaizala.state()["webhooks"].as_array().unwrap().len();
            if poll_answers {
                assert_eq!(count(), 0, "answers came by polling alone");
            } else {
                // The sweep may record every answer before reconciliation (paced by
                // the quotas and the faults, one replica's pass at a time under its
                // lease) has registered the last group's webhook: give it time.
                let started = std::time::Instant::now();
                while count() < 3 && started.elapsed() < Duration::from_secs(30) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                assert!(count() >= 3, "one webhook per group");
            }
            stop.cancel();
            bridge.await.unwrap();
            return;
        }
        ids.push(create(&people, name, *value, unit).await);
    }
    unreachable!("the restart happens in the loop");
}

async fn finish(
    kaizala: &KaizalaSim,
    dataverse: &DataverseSim,
    people: &People,
    deals: &[(String, i64, &str, Option<&str>)],
    ids: &[String],
) {
    let expected = deals.iter().filter(|d| d.3.is_some()).count();
    until("every survey posted", Duration::from_secs(120), || {
        surveys(kaizala).len() >= expected
    })
    .await;
    // Later polls and retries must add nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let posted = surveys(kaizala);
    assert_eq!(
        posted.len(),
        expected,
        "exactly one survey per qualifying deal: {posted:#?}"
    );
    for ((name, value, _, group), id) in deals.iter().zip(ids) {
        let mine: Vec<_> = posted
            .iter()
            .filter(|s| s.3.contains(id.as_str()))
            .collect();
        match group {
            None => assert!(mine.is_empty(), "{name} does not qualify: {mine:?}"),
            Some(group) => {
                assert_eq!(mine.len(), 1, "{name}: {mine:?}");
                let (in_group, _, title, _, questions) = mine[0];
                assert_eq!(in_group, group, "{name} went to the wrong group");
                assert_eq!(title, &format!("Qualify {name} ({value})"));
                assert_eq!(
                    questions,
                    &vec![
                        format!("Budget for {name} confirmed?"),
                        "Who decides?".to_string()
                    ]
                );
            }
        }
    }

    // Each survey sent is on its opportunity's timeline once, naming its group.
    until(
        "every survey-sent task written",
        Duration::from_secs(120),
        || all_tasks(dataverse).len() >= expected,
    )
    .await;
    let sent: Vec<Value> = all_tasks(dataverse)
        .into_iter()
        .filter(|t| {
            t["subject"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Survey sent: ")
        })
        .collect();
    assert_eq!(
        sent.len(),
        expected,
        "one survey-sent task per survey: {sent:#?}"
    );
    for ((name, value, _, group), id) in deals.iter().zip(ids) {
        let Some(group) = group else { continue };
        let mine: Vec<&Value> = sent
            .iter()
            .filter(|t| t["_regardingobjectid_value"] == id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{name}: {mine:#?}");
        assert_eq!(
            mine[0]["subject"],
            format!("Survey sent: Qualify {name} ({value})")
        );
        assert_eq!(mine[0]["description"], format!("In {group}"));
    }

    // Two people answer each survey.
    let mut answers: HashMap<String, Vec<String>> = HashMap::new();
    for (group, action, _, key, _) in &posted {
        let id = ids.iter().find(|id| key.contains(id.as_str())).unwrap();
        for (n, phone) in members(group).iter().enumerate() {
            let who = format!("person {n} of {group}");
            people
                .answer(
                    group,
                    action,
                    phone,
                    &json!([if n == 0 { "Yes" } else { "No" }, who]),
                )
                .await
                .unwrap();
            answers.entry(id.clone()).or_default().push(who);
        }
    }
    let total: usize = answers.values().map(Vec::len).sum();
    let started = Instant::now();
    while tasks(dataverse).len() < total {
        if started.elapsed() > Duration::from_secs(120) {
            // What Kaizala did with the answers' events, to tell a loss from slowness.
            let state = kaizala.state();
            let mut outcomes: HashMap<String, usize> = HashMap::new();
            for d in state["deliveries"].as_array().unwrap() {
                let key = format!(
                    "{} {} {}",
                    d["event_type"].as_str().unwrap_or_default(),
                    d["outcome"].as_str().unwrap_or_default(),
                    d["status"]
                );
                *outcomes.entry(key).or_default() += 1;
            }
            let subjects: Vec<String> = all_tasks(dataverse)
                .iter()
                .map(|t| t["subject"].as_str().unwrap_or_default().to_string())
                .collect();
            let responses: Vec<String> = state["groups"]
                .as_object()
                .unwrap()
                .iter()
                .flat_map(|(g, body)| {
                    body["actions"].as_array().unwrap().iter().map(move |a| {
                        format!(
                            "{g} {} {} responses",
                            a["title"],
                            a["responses"].as_array().map_or(0, Vec::len)
                        )
                    })
                })
                .collect();
            panic!(
                "{} of {total} answers recorded within 120 s; now {}; {} deliveries: {outcomes:#?}; webhooks: {}; tasks: {subjects:#?}; actions: {responses:#?}",
                tasks(dataverse).len(),
                state["now"],
                state["deliveries"].as_array().unwrap().len(),
                state["webhooks"]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let written = tasks(dataverse);
    assert_eq!(
        written.len(),
        total,
        "exactly one task per answer: {written:#?}"
    );
    for (id, whos) in &answers {
        let on_it: Vec<&Value> = written
            .iter()
            .filter(|t| t["_regardingobjectid_value"] == id.as_str())
            .collect();
        assert_eq!(on_it.len(), whos.len(), "tasks on {id}: {on_it:#?}");
        for who in whos {
            assert!(
                on_it.iter().any(|t| t["description"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("Who decides? = {who}")))),
                "no task on {id} carries {who}'s answer: {on_it:#?}"
            );
        }
        assert!(on_it
            .iter()
            .all(|t| t["subject"].as_str().unwrap().contains(" on Qualify ")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_loop_on_sqlite_through_faults_and_a_restart() {
    whole_loop(None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_loop_on_redis_through_faults_and_a_restart() {
    let redis = RedisServer::start();
    whole_loop(Some(&redis), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_loop_with_answers_found_by_polling_and_no_webhook() {
    whole_loop(None, true).await;
}
