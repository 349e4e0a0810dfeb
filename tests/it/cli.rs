//! The binary as an operator uses it: commands, output and exit codes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaizala_bridge::kaizala::Clock;

use crate::support::config::{ConfigDir, BASE};

const BIN: &str = env!("CARGO_BIN_EXE_kaizala-bridge");

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/example.toml")
        .display()
        .to_string()
}

/// The binary with a clean environment, so nothing from the test's leaks in.
fn bridge(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env_clear();
    command
}

fn output(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("the binary runs");
    let code = status.code().expect("exited, not killed");
    (
        code,
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[test]
fn version_and_help_exit_0() {
    let (code, stdout, _) = output(&mut bridge(&["--version"]));
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("kaizala-bridge {}", env!("CARGO_PKG_VERSION"))
    );

    let (code, stdout, _) = output(&mut bridge(&["--help"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("  run           Run the daemon"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  check-config  Validate the configuration"),
        "{stdout}"
    );
    assert!(stdout.contains("--config <FILE>"), "{stdout}");
}

#[test]
fn a_bad_command_line_exits_2() {
    let (code, _, stderr) = output(&mut bridge(&["frobnicate"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unrecognized subcommand 'frobnicate'"),
        "{stderr}"
    );
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let (code, stdout, stderr) = output(&mut bridge(&["check-config", "--config", &example()]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("configuration OK ("), "{stdout}");
    assert!(
        stdout.contains("1 tenant(s), 1 connector(s), 1 CRM source(s), 1 rule(s)"),
        "{stdout}"
    );
}

#[test]
fn check_config_takes_the_file_from_the_environment_too() {
    let (code, stdout, _) =
        output(bridge(&["check-config"]).env("KAIZALA_BRIDGE_CONFIG", example()));
    assert_eq!(code, 0);
    assert!(stdout.contains("example.toml"), "{stdout}");
}

#[test]
fn check_config_names_all_three_mistakes_and_exits_2() {
    let toml = BASE
        .replace("[log]", "[log]\ncolour = \"always\"")
        .replace("\"test-app-secret-c3\"", "\"env:BRIDGE_TEST_UNSET_SECRET\"")
        .replace("connector = \"bot\"", "connector = \"no-such-bot\"");
    let dir = ConfigDir::new(&toml);
    let file = dir.file().display().to_string();
    let (code, stdout, stderr) = output(&mut bridge(&["check-config", "--config", &file]));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("the configuration has 3 problem(s):"),
        "{stderr}"
    );
    assert!(stderr.contains("\nlog.colour: unknown key"), "{stderr}");
    assert!(
        stderr.contains(
            "\ntenants[0].connectors[0].application_secret: environment variable BRIDGE_TEST_UNSET_SECRET is not set"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("\nrules[0].target.connector: unknown connector"),
        "{stderr}"
    );
}

#[test]
fn check_config_lists_the_configuration_s_and_the_rules_problems_together() {
    // The configuration's own checks and the compiled rules report in one list; a
    // rule whose shape is wrong is not compiled on top (its problems would repeat).
    let toml = format!(
        "{}\n[[rules]]\nid = \"r2\"\naction = \"survey.toml\"\n[rules.trigger]\ncrm = \"d365\"\n\
         entity = \"opportunities\"\non = \"created\"\nfilter = \"estimatedvalue >\"\n[rules.target]\n\
         tenant = \"contoso\"\nconnector = \"bot\"\ngroup = \"g-1\"\n[rules.write_back]\nsubject = \"s\"\n\
         description = \"{{{{ responder.nmae }}\"\n",
        BASE.replace("[log]", "[log]\ncolour = \"always\"")
    );
    let dir = ConfigDir::new(&toml);
    let file = dir.file().display().to_string();
    let (code, stdout, stderr) = output(&mut bridge(&["check-config", "--config", &file]));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("\nlog.colour: unknown key"), "{stderr}");
    assert!(
        stderr.contains("\nrules[1].trigger.filter: at column"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\nrules[1].write_back.description"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_exits_2_for_every_command() {
    for command in ["check-config", "run"] {
        let (code, _, stderr) = output(&mut bridge(&[
            command,
            "--config",
            "/nonexistent/bridge.toml",
        ]));
        assert_eq!(code, 2, "{command}");
        assert!(
            stderr.contains("/nonexistent/bridge.toml does not exist"),
            "{stderr}"
        );
    }
}

/// Starts `run` with the shipped example, on a free port and a temporary data
/// directory, and returns the child with the address it reported.
fn start_example(data: &Path, listen: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = bridge(&["run", "--config", &example()])
        .env("KAIZALA_BRIDGE__SERVER__LISTEN", listen)
        .env("KAIZALA_BRIDGE__SERVER__SHUTDOWN_GRACE", "5s")
        .env(
            "KAIZALA_BRIDGE__QUEUE__SQLITE_PATH",
            data.join("queue.sqlite"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().unwrap();
    let (lines, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, receiver)
}

/// Waits for a log line containing `needle` and returns it.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
    panic!(
        "no line with {needle:?}; the process said:\n{}",
        seen.join("\n")
    );
}

fn wait_for_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("exited, not killed by a signal");
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_the_example_and_exits_0_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_example(data.path(), "127.0.0.1:0");
    let mut seen = Vec::new();
    let line = wait_for_line(&lines, "listening on http://", &mut seen);
    let address = line
        .split("listening on http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();

    let get = |path: &str| reqwest::get(format!("http://{address}{path}"));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kaizala_bridge_build_info"), "{metrics}");

    assert_stops_cleanly_on(&mut child, "TERM", &lines, &mut seen);
}

#[test]
fn run_exits_0_on_sigint_too() {
    let data = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_example(data.path(), "127.0.0.1:0");
    let mut seen = Vec::new();
    // Start-up says what it runs with before anything else.
    let starting = format!("kaizala-bridge {} starting", env!("CARGO_PKG_VERSION"));
    wait_for_line(&lines, &starting, &mut seen);
    let line = seen.last().unwrap();
    for field in ["backend=sqlite ", "tenants=", "crm=", "rules=", "listen="] {
        assert!(line.contains(field), "{field} in {line}");
    }
    wait_for_line(&lines, "listening on http://", &mut seen);
    assert_stops_cleanly_on(&mut child, "INT", &lines, &mut seen);
}

/// Sends the signal and checks the process drained and exited 0 on its own, not
/// cut off at the end of the grace period.
fn assert_stops_cleanly_on(
    child: &mut Child,
    signal: &str,
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert_eq!(wait_for_exit(child), 0);
    wait_for_line(
        lines,
        &format!("shutdown requested signal=\"SIG{signal}\""),
        seen,
    );
    wait_for_line(lines, "stopped", seen);
    let forced = seen
        .iter()
        .any(|l| l.contains("outlived the shutdown grace period"));
    assert!(
        !forced,
        "drained within the grace period:\n{}",
        seen.join("\n")
    );
}

#[test]
fn run_exits_1_when_its_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_example(data.path(), &taken.local_addr().unwrap().to_string());
    assert_eq!(wait_for_exit(&mut child), 1);
    let mut seen = Vec::new();
    wait_for_line(&lines, "server.listen: cannot listen on", &mut seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_kaizala_runs_standalone_and_prints_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.toml");
    std::fs::write(&seed, crate::support::kaizala::SEED).unwrap();
    let args = [
        "sim",
        "kaizala",
        "--listen",
        "0.0.0.0:0",
        "--seed",
        seed.to_str().unwrap(),
        "--access-token-lifetime",
        "1h",
    ];
    let mut child = bridge(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the emulator prints its address");
    let base = line
        .trim()
        .strip_prefix("kaizala emulator listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "0.0.0.0 is announced as a reachable address: {base}"
    );

    let token = reqwest::Client::new()
        .get(format!("{base}/v1/accessToken"))
        .header("applicationId", "app-1")
        .header("applicationSecret", "secret-1")
        .header("refreshToken", "rt-1")
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let token: serde_json::Value = token.json().await.unwrap();
    let lifetime = token["accessTokenExpiry"].as_i64().unwrap()
        - kaizala_bridge::kaizala::SystemClock.now_ms();
    assert!(
        (3_500_000..=3_600_000).contains(&lifetime),
        "--access-token-lifetime 1h: {lifetime} ms"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(wait_for_exit(&mut child), 0);
}

#[test]
fn sim_kaizala_names_a_bad_seed_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.toml");
    std::fs::write(&seed, "[[tenants]]\nid = \"t\"\n[[tenants.connectors]]\napplication_id = \"a\"\napplication_secret = \"s\"\nrefresh_token = \"r\"\ngroups = [\"nope\"]\n").unwrap();
    let (code, _, stderr) = output(&mut bridge(&[
        "sim",
        "kaizala",
        "--seed",
        seed.to_str().unwrap(),
    ]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("tenants[0].connectors[0].groups: unknown group \"nope\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_pin_and_login_onboard_a_connector_and_say_where_the_token_went() {
    let sim = crate::support::kaizala::Sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    let state = dir.path().join("state/bridge.sqlite");
    std::fs::write(
        &config,
        format!(
            "[queue]\nsqlite_path = \"{}\"\n[[tenants]]\nid = \"contoso\"\n[[tenants.connectors]]\nid = \"one\"\n\
             application_id = \"app-1\"\napplication_secret = \"secret-1\"\nrefresh_token = \"rt-1\"\napi_root = \"{}\"\n",
            state.display(),
            sim.sim.base_url()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    let run = |args: Vec<String>| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let mut all = vec!["--config".to_string(), config];
            all.extend(args);
            output(
                bridge(&all.iter().map(String::as_str).collect::<Vec<_>>())
                    .env("PATH", std::env::var("PATH").unwrap()),
            )
        })
    };
    let (code, stdout, stderr) = run(vec![
        "auth".into(),
        "pin".into(),
        "--connector".into(),
        "one".into(),
        "--phone".into(),
        "+15550001".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Kaizala sent a PIN to +15550001"),
        "{stdout}"
    );
    let pin = sim.sim.state()["connectors"]["app-1"]["pins"]["+15550001"]
        .as_u64()
        .unwrap()
        .to_string();

    let login = |pin: String| {
        run(vec![
            "auth".into(),
            "login".into(),
            "--connector".into(),
            "contoso/one".into(),
            "--phone".into(),
            "+15550001".into(),
            "--pin".into(),
            pin,
        ])
    };
    let (code, stdout, stderr) = login(pin).await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "stored the refresh token of contoso/one in {}",
            state.display()
        )),
        "{stdout}"
    );
    let store = kaizala_bridge::store::SqliteStore::open(&state)
        .await
        .unwrap();
    let saved = kaizala_bridge::kaizala::Credentials::new(std::sync::Arc::new(store))
        .load("contoso/one")
        .await
        .unwrap();
    let token = saved.refresh_token.as_ref().unwrap().expose();
    assert_eq!(
        sim.access_token_raw("app-1", "secret-1", token)
            .await
            .status(),
        200
    );
    assert_eq!(
        sim.access_token_raw("app-1", "secret-1", "rt-1")
            .await
            .status(),
        401,
        "the login replaced the configured token"
    );

    let (code, _, stderr) = login("1".into()).await.unwrap();
    assert_eq!(code, 1);
    assert!(stderr.contains("pin: wrong PIN"), "{stderr}");
    let (code, _, stderr) = run(vec![
        "auth".into(),
        "pin".into(),
        "--connector".into(),
        "nobody".into(),
        "--phone".into(),
        "+15550001".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--connector: no connector \"nobody\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_dataverse_runs_standalone_and_prints_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.toml");
    std::fs::write(&seed, crate::support::dataverse::SEED).unwrap();
    let args = [
        "sim",
        "dataverse",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        seed.to_str().unwrap(),
    ];
    let mut child = bridge(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the emulator prints its address");
    let base = line
        .trim()
        .strip_prefix("dataverse emulator listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let scope = format!("{base}/.default");
    let form = [
        ("client_id", "bridge"),
        ("client_secret", "bridge-secret"),
        ("grant_type", "client_credentials"),
        ("scope", scope.as_str()),
    ];
    let token = reqwest::Client::new()
        .post(format!("{base}/contoso/oauth2/v2.0/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(wait_for_exit(&mut child), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_lists_replays_and_purges_dead_letters() {
    use kaizala_bridge::queue::{DeadLetter, JobKind};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("bridge.sqlite");
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!("[queue]\nsqlite_path = \"{}\"\n", state.display()),
    )
    .unwrap();
    let store = std::sync::Arc::new(
        kaizala_bridge::store::SqliteStore::open(&state)
            .await
            .unwrap(),
    );
    let letters = kaizala_bridge::queue::DeadLetters::new(store);
    for id in ["job-a", "job-b"] {
        letters
            .record(&DeadLetter {
                id: id.into(),
                kind: JobKind::SendAction,
                attempts: 3,
                last_error: "Kaizala forbids it: group not granted".into(),
                enqueued_ms: 1,
                dead_ms: 2,
                job: serde_json::json!({ "rule": "r", "group": "g-sales",
                    "record": { "crm": "d365", "entity_set": "opportunities", "id": "o-1" } }),
            })
            .await
            .unwrap();
    }
    let config = config.to_str().unwrap().to_string();
    let run = |args: &'static [&'static str]| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let mut all = vec!["--config", config.as_str()];
            all.extend_from_slice(args);
            output(&mut bridge(&all))
        })
    };
    let (code, stdout, stderr) = run(&["dlq", "list"]).await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].ends_with("LAST ERROR"),
        "a header: {stdout}"
    );
    let row: Vec<&str> = lines[1]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        (row[0], row[1], row[2].trim()),
        ("job-a", "send-action", "3"),
        "{stdout}"
    );
    assert!(row[3].starts_with("1970-01-01T00:00:00Z ("), "{stdout}");
    for cell in [
        "r",
        "d365/opportunities/o-1",
        "g-sales",
        "Kaizala forbids it: group not granted",
    ] {
        assert!(row.iter().any(|c| c.trim() == cell), "{cell:?} in {row:?}");
    }
    let (code, stdout, _) = run(&["dlq", "list", "--json"]).await.unwrap();
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{stdout}");
    assert_eq!(listed[0]["job"]["group"], "g-sales");

    let (code, stdout, stderr) = run(&["dlq", "replay", "job-a"]).await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "replayed job-a");
    let (code, _, stderr) = run(&["dlq", "replay", "job-zz"]).await.unwrap();
    assert_eq!(code, 1);
    assert!(stderr.contains("no dead letter \"job-zz\""), "{stderr}");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", state.display()))
        .await
        .unwrap();
    let (queued,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM Jobs WHERE job_type = 'send-action' AND status = 'Pending'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(queued, 1, "the replayed job is queued again");

    let (code, stdout, _) = run(&["dlq", "list"]).await.unwrap();
    assert_eq!(code, 0);
    assert!(
        !stdout.contains("job-a") && stdout.contains("job-b"),
        "{stdout}"
    );
    // Without a terminal to ask on, a purge needs --yes and forgets nothing.
    let (code, _, stderr) = run(&["dlq", "purge"]).await.unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("confirm with --yes"), "{stderr}");
    let (_, stdout, _) = run(&["dlq", "list"]).await.unwrap();
    assert!(stdout.contains("job-b"), "nothing was purged: {stdout}");
    let (code, stdout, _) = run(&["dlq", "purge", "--yes"]).await.unwrap();
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), "purged 1 dead letter(s)");
    let (_, stdout, _) = run(&["dlq", "list"]).await.unwrap();
    assert_eq!(stdout.trim(), "no dead letters");
}

#[test]
fn demo_runs_the_whole_loop_and_ends_with_its_summary() {
    let (code, stdout, stderr) = output(&mut bridge(&["demo"]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for expected in [
        "[1/4] the bridge subscribed to answers",
        "[3/4] surveys appeared in Kaizala:",
        "[4/4] each answer landed as a task on its opportunity:",
        "opportunity",
        "every qualifying opportunity got one survey in its group, and every answer became one task on it",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("Northwind fleet renewal") && l.contains("g-sales-west")
        })
        .collect();
    assert_eq!(rows.len(), 1, "{stdout}");
    assert!(
        rows[0]
            .split_whitespace()
            .rev()
            .take(3)
            .all(|n| n == "1" || n == "2"),
        "{}",
        rows[0]
    );
}

#[test]
fn completions_and_the_manual_page_describe_every_command() {
    let (code, script, stderr) = output(&mut bridge(&["completions", "bash"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        script.contains("complete -F _kaizala__bridge"),
        "a bash completion function: {script}"
    );
    for command in ["run", "check-config", "dlq", "webhooks", "completions"] {
        assert!(script.contains(command), "{command} completes");
    }
    let (code, page, stderr) = output(&mut bridge(&["man"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        page.starts_with(".ie") || page.contains(".TH kaizala-bridge"),
        "roff: {page}"
    );
    assert!(
        page.contains("check\\-config") || page.contains("check-config"),
        "{page}"
    );
    let (code, _, stderr) = output(&mut bridge(&["completions", "tcsh"]));
    assert_eq!(code, 2, "an unknown shell is a usage error: {stderr}");
}
