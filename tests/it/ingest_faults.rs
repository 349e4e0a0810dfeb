//! Dataverse webhooks into a real bridge process while its storage fails: the SQLite
//! file's disk fills up (a small tmpfs; CI runs as root), or Redis is killed. The
//! invariant: every webhook answered 2xx becomes exactly one survey; while the
//! storage cannot take writes the receiver answers 503 and `/readyz` is 503; once it
//! can again the bridge takes webhooks and reports ready without a restart; no
//! panic in the log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kaizala_bridge::sim::kaizala::{KaizalaSim, Seed, SimOptions};
use serde_json::{json, Value};

use crate::support::redis::{free_port, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_kaizala-bridge");
const KEY: &str = "ingest-webhook-key";

const SEED: &str = r#"
[[tenants]]
id = "contoso"
[[tenants.connectors]]
application_id = "app-1"
application_secret = "secret-1"
refresh_token = "rt-1"
groups = ["g-1"]
[[groups]]
id = "g-1"
name = "One"
"#;

const SURVEY: &str = r#"
action_type = "Survey"
title = "Qualify {{ name }}"
due_in_hours = 48
[[questions]]
title = "Budget?"
type = "Text"
"#;

fn config_text(kaizala: &str, queue: &str, port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
shutdown_grace = "2s"
[log]
level = "warn"
[queue]
{queue}
backoff_initial = "100ms"
backoff_max = "1s"
max_attempts = 30
attempt_timeout = "12s"
heartbeat = "1s"
[kaizala]
request_timeout = "3s"
response_sweep_interval = "0s"
[[tenants]]
id = "contoso"
responses = "poll"
[[tenants.connectors]]
id = "app-1"
application_id = "app-1"
application_secret = "secret-1"
refresh_token = "rt-1"
api_root = "{kaizala}"
groups = ["g-1"]
[[crm]]
id = "d365"
kind = "dataverse"
url = "http://127.0.0.1:1"
tenant_id = "dir"
client_id = "bridge"
client_secret = "bridge-secret"
poll = false
webhook_key = "{KEY}"
[[rules]]
id = "qualify"
action = "survey.toml"
[rules.trigger]
crm = "d365"
entity = "opportunities"
on = "created"
[rules.target]
tenant = "contoso"
connector = "app-1"
group = "g-1"
[rules.write_back]
subject = "s"
description = "d"
"#
    )
}

/// A bridge process, its emulator and where its files live; killed on drop.
struct Bed {
    sim: KaizalaSim,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Bed {
    async fn start(queue: impl Fn(&Path) -> String) -> Self {
        Self::start_with(queue, &[]).await
    }

    /// Like [`Bed::start`], with `env` set for the bridge process.
    async fn start_with(queue: impl Fn(&Path) -> String, env: &[(&str, &Path)]) -> Self {
        let seed = Seed::parse(SEED).unwrap();
        let sim = KaizalaSim::start(&seed, SimOptions::fast(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("survey.toml"), SURVEY).unwrap();
        std::fs::write(
            dir.path().join("bridge.toml"),
            config_text(sim.base_url(), &queue(dir.path()), port),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("bridge.log")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(dir.path().join("bridge.toml"))
            .env_clear()
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let bed = Self {
            sim,
            dir,
            port,
            child: Some(child),
            http,
        };
        bed.until_ready(200, Duration::from_secs(20)).await;
        bed
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bridge.log")).unwrap_or_default()
    }

    async fn readyz(&self) -> u16 {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        match self.http.get(url).send().await {
            Ok(answer) => answer.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Waits up to `limit` for `/readyz` to answer `status`; how long it took.
    async fn until_ready(&self, status: u16, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.readyz().await != status {
            assert!(
                started.elapsed() < limit,
                "/readyz did not answer {status} within {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }

    /// POSTs a Create of opportunity `id` as Dataverse would; the status (0 when
    /// nothing answered).
    async fn webhook(&self, id: &str) -> u16 {
        let body = json!({
            "MessageName": "Create", "PrimaryEntityName": "opportunity", "PrimaryEntityId": id,
            "InputParameters": [{ "key": "Target", "value": { "Attributes": [
                { "key": "name", "value": format!("Deal {id}") } ] } }]
        });
        let url = format!(
            "http://127.0.0.1:{}/webhooks/dataverse/d365?code={KEY}",
            self.port
        );
        match self.http.post(url).json(&body).send().await {
            Ok(answer) => answer.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Surveys posted per record id (from the invisible key question).
    fn surveys(&self) -> HashMap<String, usize> {
        let state: Value = self.sim.state();
        let mut seen = HashMap::new();
        for group in state["groups"].as_object().unwrap().values() {
            for action in group["actions"].as_array().unwrap() {
                for q in action["questions"].as_array().into_iter().flatten() {
                    let title = q["title"].as_str().unwrap_or_default();
                    if let Some(rest) =
                        title.strip_prefix("kaizala-bridge:qualify/d365/opportunities/")
                    {
                        let id = rest.trim_end_matches("/created").to_string();
                        *seen.entry(id).or_default() += 1;
                    }
                }
            }
        }
        seen
    }

    /// Waits until every id of `acked` has its survey, then asserts each has exactly
    /// one, nothing else was posted, and the log holds no panic.
    async fn assert_each_acked_once(&self, acked: &[String]) {
        let started = Instant::now();
        loop {
            let surveys = self.surveys();
            if acked.iter().all(|id| surveys.contains_key(id)) {
                break;
            }
            let missing = acked.iter().filter(|id| !surveys.contains_key(*id)).count();
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{missing} acknowledged webhook(s) never became a survey; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Retries of cut attempts settle; nothing may be posted after this.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let surveys = self.surveys();
        for id in acked {
            assert_eq!(surveys.get(id), Some(&1), "opportunity {id}: one survey");
        }
        assert_eq!(
            surveys.len(),
            acked.len(),
            "nothing unacknowledged was posted twice or invented"
        );
        assert!(!self.log().contains("panicked"), "a panic:\n{}", self.log());
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Sends `count` new webhooks; the ids answered 200, and those refused with 503
/// (which Dataverse, told 503, would send again).
async fn send_new(bed: &Bed, count: usize) -> (Vec<String>, Vec<String>) {
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let id = new_id();
        match bed.webhook(&id).await {
            200..=299 => acked.push(id),
            503 => refused.push(id),
            other => panic!("a webhook was answered {other}; log:\n{}", bed.log()),
        }
    }
    (acked, refused)
}

/// Sends each of `ids` again until it is taken (as Dataverse's retry would); every
/// one must be taken within `limit`.
async fn resend(bed: &Bed, ids: &[String], limit: Duration) {
    let started = Instant::now();
    for id in ids {
        while !(200..300).contains(&bed.webhook(id).await) {
            assert!(
                started.elapsed() < limit,
                "a refused webhook is still refused after recovery; log:\n{}",
                bed.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Sends webhooks in fives while the storage fails, for up to 20 s or until five
/// were refused and `/readyz` said 503: adds those taken to `acked`; returns those
/// refused and whether `/readyz` said 503.
async fn send_while_failing(bed: &Bed, acked: &mut Vec<String>) -> (Vec<String>, bool) {
    let mut refused = Vec::new();
    let mut not_ready = false;
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(20) && (refused.len() < 5 || !not_ready) {
        let (taken, turned_away) = send_new(bed, 5).await;
        acked.extend(taken);
        refused.extend(turned_away);
        not_ready |= bed.readyz().await == 503;
    }
    (refused, not_ready)
}

/// Once the storage is back (`what` says how): ready within `limit`, the refused
/// webhooks taken on their retry, twenty new ones all taken, and every acknowledged
/// one exactly one survey.
async fn heals(
    bed: &Bed,
    mut acked: Vec<String>,
    refused: Vec<String>,
    limit: Duration,
    what: &str,
) {
    let healed = bed.until_ready(200, limit).await;
    println!("{what}: ready again in {healed:?}");
    resend(bed, &refused, limit).await;
    acked.extend(refused);
    let (after, turned_away) = send_new(bed, 20).await;
    assert!(
        turned_away.is_empty(),
        "{} refused after {what}; log:\n{}",
        turned_away.len(),
        bed.log()
    );
    acked.extend(after);
    bed.assert_each_acked_once(&acked).await;
}

/// A tmpfs of `size` at `at`, unmounted on drop. Large enough for SQLite's WAL to
/// grow to its checkpoint (about 4 MiB) on its own: the test fills the rest.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (the disk-full test needs root, as CI has)",
            at.display()
        );
        Self(at.to_path_buf())
    }

    /// Fills what is left with a file; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sqlite_disk_refuses_webhooks_with_503_and_heals_without_a_restart() {
    let _serial = SERIAL.lock().await;
    let data = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(&data.path().join("data"), "64m");
    let sqlite = tmpfs.0.join("bridge.sqlite");
    let bed = Bed::start(|_| {
        format!(
            "backend = \"sqlite\"\nsqlite_path = \"{}\"",
            sqlite.display()
        )
    })
    .await;
    let (mut acked, refused) = send_new(&bed, 20).await;
    assert!(refused.is_empty(), "refused before the disk filled");

    let filler = tmpfs.fill();
    // Webhooks keep arriving while the disk is full: each is taken durably or refused.
    let (refused, not_ready) = send_while_failing(&bed, &mut acked).await;
    assert!(
        !refused.is_empty(),
        "no webhook was refused while the disk was full"
    );
    assert!(not_ready, "/readyz never said 503 while the disk was full");

    std::fs::remove_file(filler).unwrap();
    heals(
        &bed,
        acked,
        refused,
        Duration::from_secs(15),
        "the disk freed",
    )
    .await;
}

/// Builds the I/O fault shim (`support/eio_shim.c`) into `dir`; its path.
fn build_eio_shim(dir: &Path) -> PathBuf {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/eio_shim.c");
    let shim = dir.join("eio_shim.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&shim)
        .arg(source)
        .arg("-ldl")
        .status()
        .expect("a C compiler (cc) runs");
    assert!(status.success(), "the I/O fault shim does not build");
    shim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_io_errors_refuse_webhooks_with_503_and_heal_without_a_restart() {
    let _serial = SERIAL.lock().await;
    let faults = tempfile::tempdir().unwrap();
    let shim = build_eio_shim(faults.path());
    let flag = faults.path().join("failing");
    let bed = Bed::start_with(
        |dir| {
            format!(
                "backend = \"sqlite\"\nsqlite_path = \"{}\"",
                dir.join("bridge.sqlite").display()
            )
        },
        &[
            ("LD_PRELOAD", shim.as_path()),
            ("EIO_SHIM_FLAG", flag.as_path()),
            ("EIO_SHIM_MATCH", Path::new("bridge.sqlite")),
        ],
    )
    .await;
    let (mut acked, refused) = send_new(&bed, 20).await;
    assert!(refused.is_empty(), "refused before the disk failed");

    // From now on every write and fsync of the database, its WAL and journal fails
    // with EIO, while the webhooks keep arriving.
    std::fs::write(&flag, b"").unwrap();
    let (refused, not_ready) = send_while_failing(&bed, &mut acked).await;
    assert!(
        refused.len() >= 5,
        "webhooks were still taken while every write failed; log:\n{}",
        bed.log()
    );
    assert!(not_ready, "/readyz never said 503 while every write failed");
    assert!(
        bed.log().contains("I/O"),
        "the log does not name the I/O error:\n{}",
        bed.log()
    );

    std::fs::remove_file(&flag).unwrap();
    heals(
        &bed,
        acked,
        refused,
        Duration::from_secs(15),
        "the disk healed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_during_a_redis_outage_are_refused_with_503_and_none_acknowledged_is_lost() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start_persistent();
    let url = redis.url();
    let bed = Bed::start(|_| format!("backend = \"redis\"\nredis_url = \"{url}\"")).await;
    let (acked, refused) = send_new(&bed, 20).await;
    assert!(refused.is_empty(), "refused before the outage");

    redis.kill();
    bed.until_ready(503, Duration::from_secs(5)).await;
    let (taken, refused) = send_new(&bed, 10).await;
    assert!(
        taken.is_empty(),
        "a webhook was acknowledged with Redis away"
    );
    assert_eq!(refused.len(), 10);
    assert_eq!(bed.readyz().await, 503, "ready with Redis away");

    redis.start_again();
    heals(&bed, acked, refused, Duration::from_secs(10), "Redis back").await;
}

/// One test of this file at a time: each runs a bridge process on two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
