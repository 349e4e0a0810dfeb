//! Webhook subscriptions reconciled against the emulator, with the bridge's own
//! receiver answering the handshake.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kaizala_bridge::app::Components;
use kaizala_bridge::kaizala::subscriptions::{self, SyncReport};
use kaizala_bridge::kaizala::{EventSink, KaizalaEvent, SinkError};
use serde_json::{json, Value};

use crate::support::app::TestApp;
use crate::support::config::ConfigDir;
use crate::support::kaizala::{Callback, Mode, Sim};

struct Accept;

impl EventSink for Accept {
    fn accept(
        &self,
        _: &str,
        _: KaizalaEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        Box::pin(async { Ok(()) })
    }
}

fn config_toml(api_root: &str, groups: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
[queue]
sqlite_path = "{{data}}/queue.sqlite"
[[tenants]]
id = "contoso"
callback_token = "cb-contoso"
[[tenants.connectors]]
id = "one"
application_id = "app-1"
application_secret = "secret-1"
refresh_token = "rt-1"
api_root = "{api_root}"
groups = {groups}
"#
    )
}

fn ours(sim: &Sim, group: &str) -> Vec<Value> {
    sim.sim.state()["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["objectId"] == group && w["callbackContext"] == "kaizala-bridge:contoso")
        .cloned()
        .collect()
}

#[tokio::test]
async fn sync_creates_repairs_reenables_and_deletes_only_our_webhooks() {
    let sim = Sim::start().await;
    let dir = ConfigDir::new(&config_toml(sim.sim.base_url(), r#"["g-sales"]"#));
    let mut config = dir.load();
    let app = TestApp::spawn_with(
        &config,
        Components {
            kaizala_sink: Some(Arc::new(Accept)),
            ..Default::default()
        },
    )
    .await;
    config.server.public_url = Some(app.url("/").parse().unwrap());
    let sync = |config: kaizala_bridge::config::Config| async move {
        let backend = kaizala_bridge::backend::Backend::open(&config.queue)
            .await
            .unwrap();
        let store = kaizala_bridge::store::open(&backend).await.unwrap();
        let managed = subscriptions::managed(&config, store).unwrap();
        assert_eq!(managed.len(), 1);
        subscriptions::reconcile(&managed[0].client, &managed[0].desired)
            .await
            .unwrap()
    };

    let report = sync(config.clone()).await;
    assert_eq!(report.created, ["g-sales"], "{report:?}");
    let created = ours(&sim, "g-sales");
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0]["callbackUrl"],
        app.url("/webhooks/kaizala/contoso").as_str()
    );
    assert_eq!(created[0]["callbackToken"], "cb-contoso");
    assert_eq!(
        created[0]["events"],
        json!(["SurveyResponse", "ActionResponse", "JobResponse"])
    );
    assert_eq!(
        sync(config.clone()).await.unchanged,
        ["g-sales"],
        "a second pass changes nothing"
    );

    let session = sim.session(1).await;
    let foreign = Callback::start(Mode::Good).await;
    let other = json!({ "objectId": "g-sales", "objectType": "Group", "eventTypes": ["TextMessageCreated"],
                        "callBackUrl": foreign.url, "callBackToken": "x", "callBackContext": "someone-else" });
    assert_eq!(session.post("/webhook", &other).await.0, 200);

    let id = created[0]["id"].as_str().unwrap().to_string();
    session
        .put(
            &format!("/webhook/{id}"),
            &json!({ "eventTypes": ["TextMessageCreated"] }),
        )
        .await;
    assert_eq!(sync(config.clone()).await.updated, ["g-sales"]);
    assert_eq!(
        ours(&sim, "g-sales")[0]["events"],
        json!(["SurveyResponse", "ActionResponse", "JobResponse"])
    );

    session
        .put(&format!("/webhook/{id}"), &json!({ "Active": false }))
        .await;
    assert_eq!(sync(config.clone()).await.reenabled, ["g-sales"]);
    assert_eq!(ours(&sim, "g-sales")[0]["active"], true);

    let extra = json!({ "objectId": "g-sales", "objectType": "Group", "eventTypes": ["SurveyResponse"],
                        "callBackUrl": app.url("/webhooks/kaizala/contoso"), "callBackToken": "cb-contoso",
                        "callBackContext": "kaizala-bridge:contoso" });
    assert_eq!(session.post("/webhook", &extra).await.0, 200);
    let report = sync(config.clone()).await;
    assert_eq!(
        (report.deleted.clone(), report.unchanged.clone()),
        (vec!["g-sales".to_string()], vec!["g-sales".to_string()]),
        "{report:?}"
    );
    assert_eq!(ours(&sim, "g-sales").len(), 1);

    let mut unconfigured = config.clone();
    unconfigured.tenants[0].connectors[0].groups.clear();
    let report = sync(unconfigured).await;
    assert_eq!(
        report,
        SyncReport {
            deleted: vec!["g-sales".into()],
            ..SyncReport::default()
        }
    );
    assert!(ours(&sim, "g-sales").is_empty());
    let all = sim.sim.state()["webhooks"].as_array().unwrap().clone();
    assert_eq!(all.len(), 1, "the other webhook is untouched");
    assert_eq!(all[0]["callbackContext"], "someone-else");
}

#[tokio::test]
async fn sync_without_a_public_url_is_a_configuration_error() {
    let sim = Sim::start().await;
    let dir = ConfigDir::new(&config_toml(sim.sim.base_url(), r#"["g-sales"]"#));
    let mut config = dir.load();
    config.server.public_url = None;
    let backend = kaizala_bridge::backend::Backend::open(&config.queue)
        .await
        .unwrap();
    let store = kaizala_bridge::store::open(&backend).await.unwrap();
    let error = subscriptions::managed(&config, store).err().unwrap();
    assert_eq!(
        error.to_string(),
        "server.public_url: required to register webhooks (the address Kaizala calls)"
    );
}

#[tokio::test]
async fn run_keeps_subscriptions_reconciled_while_it_receives_webhooks() {
    let sim = Sim::start().await;
    let port = crate::support::redis::free_port();
    let toml = config_toml(sim.sim.base_url(), r#"["g-sales"]"#)
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "public_url = \"http://127.0.0.1:1\"",
            &format!("public_url = \"http://127.0.0.1:{port}\""),
        );
    let dir = ConfigDir::new(&toml);

    let without_sink = TestApp::spawn(&dir.load()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        ours(&sim, "g-sales").is_empty(),
        "no receiver, no registration"
    );
    without_sink.stop().await.unwrap();

    let app = TestApp::spawn_with(
        &dir.load(),
        Components {
            kaizala_sink: Some(Arc::new(Accept)),
            ..Default::default()
        },
    )
    .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while ours(&sim, "g-sales").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reconciler registered our webhook"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        ours(&sim, "g-sales")[0]["callbackUrl"],
        format!("http://127.0.0.1:{port}/webhooks/kaizala/contoso").as_str()
    );
    app.stop().await.unwrap();
}

/// Two replicas on one Redis start at the same moment, each reconciling the tenant's
/// webhooks as `run` does: the per-tenant lease lets one register each group's
/// webhook and the other then find it, so each group has exactly one of ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_starting_together_leave_one_webhook_per_group() {
    let redis = crate::support::redis::RedisServer::start();
    let sim = Sim::start().await;
    let port = crate::support::redis::free_port();
    let toml = config_toml(sim.sim.base_url(), r#"["g-sales", "g-public"]"#)
        .replace(
            "public_url = \"http://127.0.0.1:1\"",
            &format!("public_url = \"http://127.0.0.1:{port}\""),
        )
        .replace(
            "sqlite_path = \"{data}/queue.sqlite\"",
            &format!("backend = \"redis\"\nredis_url = \"{}\"", redis.url()),
        );
    // The first replica answers the handshake at the public URL; the second listens
    // elsewhere, as behind a load balancer that picked the first.
    let first = ConfigDir::new(&toml.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    ));
    let second = ConfigDir::new(&toml);
    let (first_config, second_config) = (first.load(), second.load());
    let (a, b) = tokio::join!(
        TestApp::spawn(&first_config),
        TestApp::spawn(&second_config)
    );
    let started = std::time::Instant::now();
    while ours(&sim, "g-sales").is_empty() || ours(&sim, "g-public").is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the webhooks were never registered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The second replica's pass ends after the first's: give it time to (wrongly)
    // register another.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for group in ["g-sales", "g-public"] {
        assert_eq!(ours(&sim, group).len(), 1, "{group}: one webhook of ours");
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
