//! `kaizala-bridge demo`: the whole loop on this machine. Both emulators and the
//! bridge start in-process on free ports, on the embedded SQLite queue in a temporary
//! directory; a few opportunities are created (some qualifying, some not), each
//! survey is watched for in its group, several people answer, and each answer is
//! watched for as a task on its opportunity. A summary table ends it; the exit code
//! says whether every expectation held.
//!
//! The demo drives the emulators over HTTP, as a person with a phone and a sales rep
//! with Dynamics would, and never reaches into the bridge.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::app::Application;
use crate::sim::dataverse::{DataverseSim, ServiceEndpoint};
use crate::sim::kaizala::KaizalaSim;
use crate::sim::people::{Cast, People};

/// How long the demo waits for surveys and answers before it gives up.
const PATIENCE: Duration = Duration::from_secs(90);

const KAIZALA_SEED: &str = r#"
[[tenants]]
id = "contoso"
[[tenants.connectors]]
application_id = "demo-sales-bot"
application_secret = "demo-bot-secret"
refresh_token = "demo-bot-refresh-token"
groups = ["g-sales-west", "g-sales-east"]
phone = "+15550100"

[[groups]]
id = "g-sales-west"
name = "Sales West"
members = [
  { phone = "+15550100", name = "Bridge Bot", role = "Admin" },
  { phone = "+15550101", name = "Asha Rao" },
  { phone = "+15550102", name = "Ben Okafor" },
]
[[groups]]
id = "g-sales-east"
name = "Sales East"
members = [
  { phone = "+15550100", name = "Bridge Bot", role = "Admin" },
  { phone = "+15550201", name = "Chen Wei" },
  { phone = "+15550202", name = "Dana Kowalski" },
]
"#;

const DATAVERSE_SEED: &str = r#"
[[applications]]
tenant_id = "contoso-directory"
client_id = "kaizala-bridge"
client_secret = "demo-bridge-secret"
[[applications]]
tenant_id = "contoso-directory"
client_id = "sales-app"
client_secret = "demo-sales-secret"
"#;

const SURVEY: &str = r#"# The survey each qualifying opportunity gets.
action_type = "Survey"
title = "Qualify {{ name }} ({{ estimatedvalue }})"
due_in_hours = 48

[[questions]]
title = "Is the budget for {{ name }} confirmed?"
type = "SingleOption"
options = ["Yes", "No", "Not yet known"]

[[questions]]
title = "Who decides on the customer's side?"
type = "Text"

[[questions]]
title = "Expected close in how many weeks?"
type = "Numeric"
"#;

const WEBHOOK_KEY: &str = "demo-dataverse-webhook-key";

/// An opportunity the demo creates, and what should become of it.
struct Deal {
    name: &'static str,
    value: i64,
    unit: &'static str,
    group: Option<&'static str>,
}

const DEALS: &[Deal] = &[
    Deal {
        name: "Northwind fleet renewal",
        value: 48_000,
        unit: "bu-west",
        group: Some("g-sales-west"),
    },
    Deal {
        name: "Fabrikam pilot",
        value: 2_500,
        unit: "bu-west",
        group: None,
    },
    Deal {
        name: "Tailspin data centre",
        value: 125_000,
        unit: "bu-east",
        group: Some("g-sales-east"),
    },
    Deal {
        name: "Litware licences",
        value: 15_000,
        unit: "bu-east",
        group: Some("g-sales-east"),
    },
    Deal {
        name: "Adventure Works trial",
        value: 900,
        unit: "bu-east",
        group: None,
    },
];

/// Who answers which survey, and what they say.
fn answers_for(group: &str) -> Vec<(&'static str, &'static str, Value)> {
    match group {
        "g-sales-west" => vec![
            (
                "+15550101",
                "Asha Rao",
                json!(["Yes", "Maria Garcia, CFO", 6]),
            ),
            (
                "+15550102",
                "Ben Okafor",
                json!(["Not yet known", "The board", 10]),
            ),
        ],
        _ => vec![
            ("+15550201", "Chen Wei", json!(["No", "Procurement", 12])),
            (
                "+15550202",
                "Dana Kowalski",
                json!(["Yes", "Sam Lee, CTO", 4]),
            ),
        ],
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

fn fail(context: &str) -> impl Fn(&dyn std::fmt::Display) -> DemoError + '_ {
    move |e| DemoError(format!("{context}: {e}"))
}

/// Options of the demo.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Leave everything running after the summary, until Ctrl-C.
    pub keep_running: bool,
}

/// One row of the summary.
struct Row {
    name: String,
    value: i64,
    expected_group: Option<String>,
    surveys: Vec<(String, String)>,
    answers: usize,
    tasks: usize,
}

/// A free port on loopback, for the bridge's public URL (Kaizala calls it back).
fn free_port() -> Result<u16, DemoError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| fail("no free port")(&e))?;
    Ok(listener
        .local_addr()
        .map_err(|e| fail("no free port")(&e))?
        .port())
}

fn write_config(
    dir: &Path,
    kaizala: &str,
    dataverse: &str,
    port: u16,
) -> Result<PathBuf, DemoError> {
    let data = dir.join("data");
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
shutdown_grace = "5s"

[log]
level = "warn"

[queue]
backend = "sqlite"
sqlite_path = "{data}/bridge.sqlite"
backoff_initial = "200ms"
backoff_max = "2s"

[kaizala]
webhook_sync_interval = "1h"

[[tenants]]
id = "contoso"
callback_token = "demo-callback-token"
[[tenants.connectors]]
id = "sales-bot"
application_id = "demo-sales-bot"
application_secret = "demo-bot-secret"
refresh_token = "demo-bot-refresh-token"
api_root = "{kaizala}"
groups = ["g-sales-west", "g-sales-east"]

[[crm]]
id = "d365"
kind = "dataverse"
url = "{dataverse}"
token_url = "{dataverse}/contoso-directory/oauth2/v2.0/token"
tenant_id = "contoso-directory"
client_id = "kaizala-bridge"
client_secret = "demo-bridge-secret"
poll_interval = "2s"
baseline = "existing_as_new"
webhook_key = "{WEBHOOK_KEY}"

[[rules]]
id = "qualify"
action = "qualify.toml"
[rules.trigger]
crm = "d365"
entity = "opportunities"
on = "created"
filter = "estimatedvalue >= 10000 and statecode == 0"
[rules.target]
tenant = "contoso"
connector = "sales-bot"
group_by = "_owningbusinessunit_value"
groups = {{ "bu-west" = "g-sales-west", "bu-east" = "g-sales-east" }}
fallback_group = "g-sales-west"
[rules.write_back]
activity = "task"
subject = "Kaizala: {{{{ responder.name }}}} answered {{{{ action.title }}}}"
description = "{{% for a in answers %}}{{{{ a.question }}}}: {{{{ a.answer }}}}\n{{% endfor %}}Answered {{{{ time }}}} by {{{{ responder.name }}}} ({{{{ responder.phone }}}})"
"#,
        data = data.display(),
    );
    std::fs::write(dir.join("qualify.toml"), SURVEY)
        .map_err(|e| fail("cannot write the demo files")(&e))?;
    let file = dir.join("bridge.toml");
    std::fs::write(&file, config).map_err(|e| fail("cannot write the demo files")(&e))?;
    Ok(file)
}

/// Reads an emulator's `/_sim/state`.
async fn state(http: &reqwest::Client, base: &str) -> Result<Value, DemoError> {
    http.get(format!("{base}/_sim/state"))
        .send()
        .await
        .map_err(|e| fail("reading an emulator's state")(&e))?
        .json()
        .await
        .map_err(|e| fail("reading an emulator's state")(&e))
}

/// Surveys in the Kaizala emulator: idempotency-key marker → (group, action id, title).
fn surveys(state: &Value) -> Vec<Survey> {
    let mut found = Vec::new();
    for (group, body) in state["groups"].as_object().into_iter().flatten() {
        for action in body["actions"].as_array().into_iter().flatten() {
            let marker = action["questions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|q| q["isInvisible"] == true)
                .and_then(|q| q["title"].as_str())
                .unwrap_or_default()
                .to_string();
            let id = action["actionId"].as_str().unwrap_or_default();
            let title = action["title"].as_str().unwrap_or_default();
            found.push((marker, group.clone(), id.to_string(), title.to_string()));
        }
    }
    found
}

/// Tasks in the Dataverse emulator by the opportunity they regard.
fn tasks_by_opportunity(state: &Value) -> HashMap<String, Vec<Value>> {
    let mut tasks: HashMap<String, Vec<Value>> = HashMap::new();
    for row in state["tables"]["tasks"]["rows"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(regarding) = row["_regardingobjectid_value"].as_str() {
            tasks
                .entry(regarding.to_string())
                .or_default()
                .push(row.clone());
        }
    }
    tasks
}

async fn wait_for<T>(
    what: &str,
    mut check: impl AsyncFnMut() -> Result<Option<T>, DemoError>,
) -> Result<T, DemoError> {
    let started = Instant::now();
    loop {
        if let Some(done) = check().await? {
            return Ok(done);
        }
        if started.elapsed() > PATIENCE {
            return Err(DemoError(format!(
                "gave up waiting for {what} after {PATIENCE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the demo; returns whether every expectation held.
pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> Result<bool, DemoError> {
    let dir = std::env::temp_dir().join(format!("kaizala-bridge-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| fail("cannot make a temporary directory")(&e))?;
    let outcome = run_in(&dir, options, shutdown).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn run_in(
    dir: &Path,
    options: DemoOptions,
    shutdown: CancellationToken,
) -> Result<bool, DemoError> {
    println!(
        "kaizala-bridge demo: the whole loop on this machine, against the built-in emulators\n"
    );
    let stage = Stage::start(dir, &shutdown).await?;
    let people = stage.people().await?;
    stage.subscribed().await?;
    let ids = create_deals(&people).await?;
    let found = stage.surveys().await?;
    let answered = answer_surveys(&people, &found).await?;
    let tasks = stage.tasks(answered).await?;
    let (table, ok) = summary(&rows(&ids, &found, &tasks));
    println!("\n{table}");
    if ok {
        println!("every qualifying opportunity got one survey in its group, and every answer became one task on it");
    } else {
        println!("SOMETHING IS WRONG: see the rows marked with !");
    }
    if options.keep_running {
        println!("\nstill running (Ctrl-C stops it):");
        println!("  bridge     {0}/metrics  {0}/readyz", stage.bridge_url);
        println!("  Kaizala    {}/_sim/state", stage.kaizala_url);
        println!("  Dataverse  {}/_sim/state", stage.dataverse_url);
        shutdown.cancelled().await;
    }
    stage.stop().await;
    Ok(ok)
}

/// A survey found in the Kaizala emulator: its key marker, group, action id, title.
type Survey = (String, String, String, String);

/// The two emulators and the bridge between them, running.
struct Stage {
    kaizala: KaizalaSim,
    dataverse: DataverseSim,
    kaizala_url: String,
    dataverse_url: String,
    bridge_url: String,
    stop_bridge: CancellationToken,
    bridge: tokio::task::JoinHandle<Result<(), crate::app::AppError>>,
    http: reqwest::Client,
}

impl Stage {
    /// Starts the emulators, then the bridge on a configuration written into `dir`.
    async fn start(dir: &Path, shutdown: &CancellationToken) -> Result<Self, DemoError> {
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("constant address");
        let kaizala_seed = crate::sim::kaizala::Seed::parse(KAIZALA_SEED)
            .map_err(|e| fail("the Kaizala seed")(&e))?;
        let kaizala = KaizalaSim::start(&kaizala_seed, Default::default(), any)
            .await
            .map_err(|e| fail("cannot start the Kaizala emulator")(&e))?;
        let dataverse_seed = crate::sim::dataverse::Seed::parse(DATAVERSE_SEED)
            .map_err(|e| fail("the Dataverse seed")(&e))?;
        let dataverse = DataverseSim::start(&dataverse_seed, Default::default(), any)
            .await
            .map_err(|e| fail("cannot start the Dataverse emulator")(&e))?;
        let kaizala_url = kaizala.base_url().to_string();
        let dataverse_url = dataverse.base_url().to_string();
        println!("  Kaizala emulator    {kaizala_url}");
        println!("  Dataverse emulator  {dataverse_url}");

        let file = write_config(dir, &kaizala_url, &dataverse_url, free_port()?)?;
        let loaded = crate::app::load_config(Some(&file), &HashMap::new())
            .map_err(|e| fail("the demo configuration")(&e))?;
        let app = Application::build_loaded(&loaded.config, loaded.rules)
            .await
            .map_err(|e| fail("cannot start the bridge")(&e))?;
        let bridge_url = format!("http://{}", app.address());
        let stop_bridge = shutdown.child_token();
        let bridge = tokio::spawn(app.run_until_stopped(stop_bridge.clone()));
        println!(
            "  the bridge          {bridge_url}  (queue: SQLite in {})\n",
            dir.join("data").display()
        );
        Ok(Self {
            kaizala,
            dataverse,
            kaizala_url,
            dataverse_url,
            bridge_url,
            stop_bridge,
            bridge,
            http: reqwest::Client::new(),
        })
    }

    /// Points Dataverse's webhook at the bridge, and signs in the people of the demo.
    async fn people(&self) -> Result<People, DemoError> {
        let endpoint: ServiceEndpoint = serde_json::from_value(json!({
            "url": format!("{}/webhooks/dataverse/d365", self.bridge_url),
            "entity": "opportunity",
            "message": "Create",
            "auth": "WebhookKey",
            "key": WEBHOOK_KEY,
        }))
        .map_err(|e| fail("the Dataverse service endpoint")(&e))?;
        self.dataverse
            .register_webhook(endpoint)
            .map_err(|e| fail("cannot register the Dataverse webhook")(&e))?;
        let cast = Cast {
            kaizala: self.kaizala_url.clone(),
            connector: (
                "demo-sales-bot".into(),
                "demo-bot-secret".into(),
                "demo-bot-refresh-token".into(),
            ),
            dataverse: self.dataverse_url.clone(),
            rep: (
                "contoso-directory".into(),
                "sales-app".into(),
                "demo-sales-secret".into(),
            ),
        };
        People::connect(&cast).await.map_err(DemoError)
    }

    /// Waits for the Kaizala webhooks the bridge registers on start, one per group.
    async fn subscribed(&self) -> Result<(), DemoError> {
        wait_for("the bridge's Kaizala webhooks", async || {
            let state = state(&self.http, &self.kaizala_url).await?;
            let active = state["webhooks"]
                .as_array()
                .map_or(0, |w| w.iter().filter(|h| h["active"] == true).count());
            Ok((active >= 2).then_some(()))
        })
        .await?;
        println!("[1/4] the bridge subscribed to answers in Sales West and Sales East");
        Ok(())
    }

    /// The surveys, once every qualifying deal has one (and a moment more, so a late
    /// unexpected one shows in the table).
    async fn surveys(&self) -> Result<Vec<Survey>, DemoError> {
        let expected = DEALS.iter().filter(|d| d.group.is_some()).count();
        let found = wait_for("the surveys", async || {
            let all = surveys(&state(&self.http, &self.kaizala_url).await?);
            Ok((all.len() >= expected).then_some(all))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = surveys(&state(&self.http, &self.kaizala_url).await?);
        let found = if again.len() > found.len() {
            again
        } else {
            found
        };
        println!("[3/4] surveys appeared in Kaizala:");
        for (_, group, _, title) in &found {
            println!("        {group:<14} \"{title}\"");
        }
        Ok(found)
    }

    /// The tasks in Dynamics 365 by opportunity, once `answered` have landed.
    async fn tasks(&self, answered: usize) -> Result<HashMap<String, Vec<Value>>, DemoError> {
        let tasks = wait_for("the answers to land in Dynamics 365", async || {
            let tasks = tasks_by_opportunity(&state(&self.http, &self.dataverse_url).await?);
            let landed: usize = tasks.values().map(Vec::len).sum();
            Ok((landed >= answered).then_some(tasks))
        })
        .await?;
        println!("[4/4] each answer landed as a task on its opportunity:");
        for task in tasks.values().flatten() {
            println!("        {}", task["subject"].as_str().unwrap_or_default());
        }
        Ok(tasks)
    }

    async fn stop(self) {
        self.stop_bridge.cancel();
        let _ = self.bridge.await;
        self.kaizala.stop().await;
        self.dataverse.stop().await;
    }
}

/// The sales rep creates every deal; their record ids, in order.
async fn create_deals(people: &People) -> Result<Vec<String>, DemoError> {
    println!(
        "[2/4] a sales rep creates {} opportunities in Dynamics 365:",
        DEALS.len()
    );
    let mut ids = Vec::new();
    for deal in DEALS {
        let columns = json!({
            "name": deal.name,
            "estimatedvalue": deal.value,
            "_owningbusinessunit_value": deal.unit,
        });
        ids.push(
            people
                .create_opportunity(&columns)
                .await
                .map_err(DemoError)?,
        );
        let verdict = if deal.group.is_some() {
            "qualifies (>= 10000)"
        } else {
            "too small: no survey"
        };
        println!("        {:<26} {:>9}  {verdict}", deal.name, deal.value);
    }
    Ok(ids)
}

/// The group members answer every survey; how many answers they gave.
async fn answer_surveys(people: &People, found: &[Survey]) -> Result<usize, DemoError> {
    let mut answered = 0;
    for (_, group, action, title) in found {
        for (phone, name, answers) in answers_for(group) {
            people
                .answer(group, action, phone, &answers)
                .await
                .map_err(DemoError)?;
            answered += 1;
            println!("        {name} answered \"{title}\"");
        }
    }
    Ok(answered)
}

/// A row of the summary per deal: what was expected, what was found.
fn rows(ids: &[String], found: &[Survey], tasks: &HashMap<String, Vec<Value>>) -> Vec<Row> {
    DEALS
        .iter()
        .zip(ids)
        .map(|(deal, id)| {
            let surveys: Vec<(String, String)> = found
                .iter()
                .filter(|(marker, ..)| marker.contains(id.as_str()))
                .map(|(_, group, action, _)| (group.clone(), action.clone()))
                .collect();
            let answers = surveys.iter().map(|(g, _)| answers_for(g).len()).sum();
            Row {
                name: deal.name.to_string(),
                value: deal.value,
                expected_group: deal.group.map(str::to_string),
                surveys,
                answers,
                tasks: tasks.get(id).map_or(0, Vec::len),
            }
        })
        .collect()
}

/// The summary table, and whether every row is as expected.
fn summary(rows: &[Row]) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let _ = writeln!(
        out,
        "  {:<26} {:>9}  {:<14} {:>7}  {:>7}  {:>5}",
        "opportunity", "value", "group", "surveys", "answers", "tasks"
    );
    let _ = writeln!(out, "  {}", "-".repeat(78));
    for row in rows {
        let groups: BTreeMap<&str, usize> =
            row.surveys.iter().fold(BTreeMap::new(), |mut m, (g, _)| {
                *m.entry(g.as_str()).or_default() += 1;
                m
            });
        let group = groups.keys().cloned().collect::<Vec<_>>().join(",");
        let right = match &row.expected_group {
            Some(expected) => {
                row.surveys.len() == 1 && group == *expected && row.tasks == row.answers
            }
            None => row.surveys.is_empty() && row.tasks == 0,
        };
        ok &= right;
        let _ = writeln!(
            out,
            "{} {:<26} {:>9}  {:<14} {:>7}  {:>7}  {:>5}",
            if right { " " } else { "!" },
            row.name,
            row.value,
            if group.is_empty() { "-" } else { &group },
            row.surveys.len(),
            row.answers,
            row.tasks
        );
    }
    (out, ok)
}
