//! Configurations for tests: written to a temporary directory and loaded the way the
//! binary loads them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kaizala_bridge::config::Config;

/// A valid configuration with one of everything; `{data}` is replaced by a data
/// directory. It listens on port 0, so every test gets a free port.
pub const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
admin_token = "test-admin-token-a1"
shutdown_grace = "5s"

[log]
level = "trace"

[queue]
sqlite_path = "{data}/queue.sqlite"

[[tenants]]
id = "contoso"
callback_token = "test-callback-token-b2"
[[tenants.connectors]]
id = "bot"
application_id = "app-1"
application_secret = "test-app-secret-c3"
refresh_token = "test-refresh-token-d4"
groups = ["g-1"]

[[crm]]
id = "d365"
kind = "dataverse"
url = "https://contoso.crm.dynamics.com"
tenant_id = "tenant-1"
client_id = "client-1"
client_secret = "test-client-secret-e5"
webhook_key = "test-webhook-key-f6"

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

/// Every secret value in [`BASE`].
#[allow(dead_code)] // used by tests/logs.rs, which shares this module
pub const BASE_SECRETS: &[&str] = &[
    "test-admin-token-a1",
    "test-callback-token-b2",
    "test-app-secret-c3",
    "test-refresh-token-d4",
    "test-client-secret-e5",
    "test-webhook-key-f6",
];

/// The action template [`BASE`]'s rule names (`survey.toml`).
pub const SURVEY: &str = r#"
action_type = "Survey"
title = "Qualify {{ name }} ({{ estimatedvalue }})"
due_in_hours = 48
[[questions]]
title = "Is the budget confirmed?"
type = "SingleOption"
options = ["Yes", "No"]
[[questions]]
title = "Who decides?"
type = "Text"
"#;

/// A directory holding a configuration file and what it refers to.
pub struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    /// Writes `toml` (with `{data}` replaced) as `bridge.toml`, beside an action template.
    pub fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        let toml = toml.replace("{data}", &data.display().to_string());
        std::fs::write(dir.path().join("bridge.toml"), toml).unwrap();
        std::fs::write(dir.path().join("survey.toml"), SURVEY).unwrap();
        Self { dir }
    }

    /// The configuration file.
    pub fn file(&self) -> PathBuf {
        self.dir.path().join("bridge.toml")
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Loads the file with no environment variables.
    pub fn load(&self) -> Config {
        Config::load(Some(&self.file()), &HashMap::new()).expect("the test configuration is valid")
    }
}
