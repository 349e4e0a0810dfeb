//! What ships in `deploy/` is checked, not just written: the systemd unit verifies and
//! the daemon speaks sd_notify under its environment; every Kubernetes manifest
//! validates against the Kubernetes schemas and its configuration passes check-config;
//! the alert rules pass promtool; every metric is documented and the dashboard's are
//! real. The tools come from ./scripts/test.sh (systemd, prometheus, kubernetes-validate).

use std::collections::{BTreeSet, HashMap};
use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kaizala-bridge");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(program: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); ./scripts/test.sh installs it"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn unit() -> String {
    std::fs::read_to_string(root().join("deploy/systemd/kaizala-bridge.service")).unwrap()
}

#[test]
fn the_systemd_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let file = dir.path().join("kaizala-bridge.service");
    std::fs::write(&file, unit().replace("/usr/local/bin/kaizala-bridge", BIN)).unwrap();
    let output = tool(
        "systemd-analyze",
        &["verify", file.to_str().unwrap()],
        dir.path(),
    );
    assert!(output.status.success(), "{}", text(&output));
    let complaints: Vec<String> = text(&output)
        .lines()
        .filter(|l| l.contains("kaizala-bridge.service"))
        .map(str::to_string)
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=",
        "LoadCredential=",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit().contains(needed), "the unit lacks {needed:?}");
    }
}

/// Reads datagrams until `want` arrives; returns everything read.
fn read_until(
    socket: &UnixDatagram,
    want: impl Fn(&[String]) -> bool,
    limit: Duration,
) -> Vec<String> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !want(&seen) {
        assert!(
            started.elapsed() < limit,
            "not within {limit:?}; seen {seen:?}"
        );
        match socket.recv(&mut buffer) {
            Ok(n) => seen.extend(
                String::from_utf8_lossy(&buffer[..n])
                    .lines()
                    .map(str::to_string),
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("the notify socket failed: {e}"),
        }
    }
    seen
}

#[test]
fn under_the_units_environment_the_daemon_notifies_ready_and_feeds_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\n",
    )
    .unwrap();
    // The unit's own Environment= lines, with its paths moved into the test's directory.
    let mut env: HashMap<String, String> = unit()
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(env.contains_key("KAIZALA_BRIDGE_CONFIG"), "{env:?}");
    env.insert("KAIZALA_BRIDGE_CONFIG".into(), config.display().to_string());
    env.insert(
        "KAIZALA_BRIDGE__QUEUE__SQLITE_PATH".into(),
        dir.path().join("state/queue.sqlite").display().to_string(),
    );
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = Command::new(BIN)
        .arg("run")
        .env_clear()
        .envs(&env)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = read_until(
        &socket,
        |s| s.iter().any(|l| l == "READY=1"),
        Duration::from_secs(30),
    );
    let pings = |s: &[String]| s.iter().filter(|l| *l == "WATCHDOG=1").count();
    let seen = [
        seen,
        read_until(&socket, |s| pings(s) >= 3, Duration::from_secs(5)),
    ]
    .concat();
    assert!(pings(&seen) >= 3, "{seen:?}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    read_until(
        &socket,
        |s| s.iter().any(|l| l == "STOPPING=1"),
        Duration::from_secs(5),
    );
    let exit = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(exit.success(), "{exit}: {stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with('{'),
        "the unit asks for JSON logs: {first}"
    );
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_kubernetes_manifest_validates_against_the_schemas() {
    let files = manifests();
    assert!(files.len() >= 7, "{files:?}");
    let mut args = vec![
        "-m".to_string(),
        "kubernetes_validate".to_string(),
        "--strict".to_string(),
        "--quiet".to_string(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = tool("python3", &args, &root());
    assert!(output.status.success(), "{}", text(&output));
    let kinds: BTreeSet<String> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter_map(|l| l.strip_prefix("kind: ").map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Secret",
        "Namespace",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    let deployment =
        std::fs::read_to_string(root().join("deploy/kubernetes/deployment.yaml")).unwrap();
    for needed in [
        "replicas: 2",
        "path: /healthz",
        "path: /readyz",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "terminationGracePeriodSeconds: 45",
        "limits:",
        "requests:",
    ] {
        assert!(
            deployment.contains(needed),
            "the Deployment lacks {needed:?}"
        );
    }
    // The operator's routes are on a port of their own, open to monitoring only.
    let config = std::fs::read_to_string(root().join("deploy/kubernetes/config.toml")).unwrap();
    assert!(config.contains("admin_listen = \"0.0.0.0:9090\""));
    assert!(
        deployment.contains("containerPort: 9090")
            && deployment.contains("prometheus.io/port: \"9090\"")
    );
    let policy =
        std::fs::read_to_string(root().join("deploy/kubernetes/networkpolicy.yaml")).unwrap();
    // Rules are the list items at four spaces' indent.
    let mut rules: Vec<String> = Vec::new();
    for line in policy.lines() {
        match rules.last_mut() {
            Some(rule) if !line.starts_with("    - ") => rule.push_str(line),
            _ => rules.push(line.to_string()),
        }
    }
    let admin_rule = rules
        .iter()
        .find(|rule| rule.contains("port: 9090"))
        .expect("the NetworkPolicy has a rule for the admin port");
    assert!(
        admin_rule.contains("kubernetes.io/metadata.name: monitoring"),
        "the admin port is open to the monitoring namespace only: {admin_rule}"
    );
    // The kustomization renders (when kubectl is there to render it) into manifests
    // that validate too, the ConfigMap with the configuration among them.
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok()
    {
        let rendered = tool("kubectl", &["kustomize", "deploy/kubernetes"], &root());
        assert!(rendered.status.success(), "{}", text(&rendered));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rendered.yaml");
        std::fs::write(&file, &rendered.stdout).unwrap();
        let output = tool(
            "python3",
            &[
                "-m",
                "kubernetes_validate",
                "--strict",
                "--quiet",
                file.to_str().unwrap(),
            ],
            &root(),
        );
        assert!(output.status.success(), "{}", text(&output));
        assert!(String::from_utf8_lossy(&rendered.stdout).contains("kind: ConfigMap"));
    }
}

#[test]
fn the_kubernetes_configuration_passes_check_config() {
    let secrets = [
        "REDIS_URL",
        "KZ_CALLBACK_TOKEN",
        "KZ_APP_SECRET",
        "KZ_REFRESH_TOKEN",
        "D365_CLIENT_SECRET",
        "D365_WEBHOOK_KEY",
        "ADMIN_TOKEN",
    ];
    let template =
        std::fs::read_to_string(root().join("deploy/kubernetes/secret.example.yaml")).unwrap();
    for name in secrets {
        assert!(
            template.contains(&format!("{name}:")),
            "the Secret template lacks {name}"
        );
    }
    let mut command = Command::new(BIN);
    command
        .args(["check-config", "--config", "deploy/kubernetes/config.toml"])
        .current_dir(root())
        .env_clear();
    for name in secrets {
        let value = if name == "REDIS_URL" {
            "redis://127.0.0.1:6379"
        } else {
            "x"
        };
        command.env(name, value);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn the_alert_rules_pass_promtool() {
    let output = tool(
        "promtool",
        &["check", "rules", "deploy/prometheus/alerts.yml"],
        &root(),
    );
    assert!(output.status.success(), "{}", text(&output));
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    for metric in [
        "jobs_total{outcome=\"dead_lettered\"}",
        "kaizala_throttled_total",
        "queue_jobs",
        "webhook_subscriptions_total{outcome=\"reenabled\"}",
        "token_refresh_failures_total",
        "crm_poll_lag_seconds",
        "kaizala_bridge_ready",
    ] {
        assert!(rules.contains(metric), "no alert reads {metric}");
    }
}

/// Every `kaizala_bridge_*` name in the code.
fn metrics_in_code() -> BTreeSet<String> {
    fn walk(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // The emulators are another world with no metrics of ours.
                if !path.ends_with("sim") {
                    walk(&path, names);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split('"').skip(1).step_by(2) {
                    if piece.starts_with("kaizala_bridge_")
                        && piece.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    {
                        names.insert(piece.to_string());
                    }
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    walk(&root().join("src"), &mut names);
    names
}

#[test]
fn every_metric_is_named_by_the_rules_and_documented() {
    let names = metrics_in_code();
    assert!(names.len() >= 30, "{names:?}");
    let doc = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    for name in &names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/metrics.md does not list {name}"
        );
        let unit_ok = !name.contains("_duration") || name.ends_with("_seconds");
        assert!(unit_ok, "{name}: a duration says its unit");
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/kaizala-bridge.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for variable in ["datasource", "job", "instance"] {
        assert!(
            variables.contains(&variable),
            "no ${variable} in {variables:?}"
        );
    }
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            // Every series the panel reads is narrowed to the chosen job and instance.
            let series = expr.matches("kaizala_bridge_").count();
            let scoped = expr
                .matches("{job=~\"$job\",instance=~\"$instance\"")
                .count();
            assert_eq!(
                series, scoped,
                "a series not scoped to $job/$instance: {expr}"
            );
            let used: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .filter(|w| w.starts_with("kaizala_bridge_"))
                .collect();
            assert!(!used.is_empty(), "{expr}");
            for metric in used {
                let base = metric.trim_end_matches("_bucket");
                assert!(
                    names.contains(base),
                    "the dashboard reads {metric}, which the code does not define"
                );
            }
        }
    }
}

#[test]
fn the_optional_servicemonitor_scrapes_the_admin_port_the_pods_expose() {
    let dir = root().join("deploy/kubernetes");
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let component = read("servicemonitor/kustomization.yaml");
    assert!(component.contains("kind: Component"), "{component}");
    for resource in ["metrics-service.yaml", "servicemonitor.yaml"] {
        assert!(component.contains(resource), "{component}");
    }
    let monitor = read("servicemonitor/servicemonitor.yaml");
    assert!(
        monitor.contains("kind: ServiceMonitor") && monitor.contains("- port: admin"),
        "{monitor}"
    );
    assert!(monitor.contains("path: /metrics"), "{monitor}");
    let service = read("servicemonitor/metrics-service.yaml");
    assert!(
        service.contains("name: admin") && service.contains("targetPort: admin"),
        "{service}"
    );
    assert!(
        service.contains("app.kubernetes.io/component: metrics"),
        "the monitor selects it by this label"
    );
    let deployment = read("deployment.yaml");
    assert!(
        deployment.contains("- name: admin") && deployment.contains("containerPort: 9090"),
        "{deployment}"
    );
    assert!(
        read("kustomization.yaml").contains("#   - servicemonitor"),
        "named where it is switched on"
    );
}
