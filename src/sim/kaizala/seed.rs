//! The seed file: the tenants, connectors and groups the emulator starts with.
//!
//! ```toml
//! [[tenants]]
//! id = "contoso"
//! rate_limit_per_minute = 300
//! [[tenants.connectors]]
//! application_id = "app-1"
//! application_secret = "secret-1"
//! refresh_token = "rt-1"
//! rate_limit_per_minute = 100
//! groups = ["g-sales"]
//! [[groups]]
//! id = "g-sales"
//! name = "Sales West"
//! members = [{ phone = "+15550001", name = "Asha" }]
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

/// Everything the emulator starts with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Kaizala tenants and their connectors.
    #[serde(default)]
    pub tenants: Vec<SeedTenant>,
    /// Conversation groups.
    #[serde(default)]
    pub groups: Vec<SeedGroup>,
    /// The period the quotas count over (`rate_limit_per_minute` per this), e.g.
    /// `"1s"`; Kaizala's is a minute. Tests and benchmarks shorten it, with the
    /// bridge's `kaizala.quota_period`, to run a quota-bound backlog in seconds.
    #[serde(default)]
    pub quota_period: Option<String>,
}

impl Seed {
    /// The quota period in milliseconds (a minute unless the seed says otherwise).
    pub fn quota_period_ms(&self) -> i64 {
        self.quota_period
            .as_deref()
            .and_then(|p| humantime::parse_duration(p).ok())
            .map_or(60_000, |d| d.as_millis().max(1) as i64)
    }
}

/// A tenant: an organisation whose connectors share one quota.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTenant {
    /// The tenant's name.
    pub id: String,
    /// Calls per minute across the tenant's connectors.
    #[serde(default = "tenant_rate")]
    pub rate_limit_per_minute: u32,
    /// The tenant's connectors.
    #[serde(default)]
    pub connectors: Vec<SeedConnector>,
}

/// A connector (a registered application) with its credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedConnector {
    /// The application id.
    pub application_id: String,
    /// The application secret.
    pub application_secret: String,
    /// A refresh token that is valid from the start.
    pub refresh_token: String,
    /// Calls per minute through this connector.
    #[serde(default = "connector_rate")]
    pub rate_limit_per_minute: u32,
    /// Groups the connector was granted.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The phone number of the user the connector acts as (sender of its actions).
    #[serde(default)]
    pub phone: Option<String>,
}

/// A conversation group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    /// The group id.
    pub id: String,
    /// The group name.
    pub name: String,
    /// `Group` or `ConnectGroup` (a managed public group).
    #[serde(default = "group_type")]
    pub group_type: String,
    /// The members.
    #[serde(default)]
    pub members: Vec<SeedMember>,
}

/// A member of a group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMember {
    /// Phone number with country code.
    pub phone: String,
    /// Display name.
    pub name: String,
    /// `Admin` or `Member`.
    #[serde(default = "member_role")]
    pub role: String,
}

fn tenant_rate() -> u32 {
    300
}
fn connector_rate() -> u32 {
    100
}
fn group_type() -> String {
    "Group".into()
}
fn member_role() -> String {
    "Member".into()
}

/// The seed file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file could not be read.
    #[error("cannot read seed file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid seed; every problem is listed, one per line.
    #[error("invalid seed{}:\n{}", .origin, .problems.join("\n"))]
    Invalid {
        /// " file X" or empty.
        origin: String,
        /// What is wrong, each with its path.
        problems: Vec<String>,
    },
}

impl Seed {
    /// Reads and checks a seed file.
    pub fn load(path: &Path) -> Result<Self, SeedError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            SeedError::Invalid { problems, .. } => SeedError::Invalid {
                origin: format!(" file {}", path.display()),
                problems,
            },
            other => other,
        })
    }

    /// Parses and checks seed TOML.
    pub fn parse(text: &str) -> Result<Self, SeedError> {
        let invalid = |problems| SeedError::Invalid {
            origin: String::new(),
            problems,
        };
        let seed: Seed =
            toml::from_str(text).map_err(|e| invalid(vec![e.message().to_string()]))?;
        let problems = seed.problems();
        if problems.is_empty() {
            Ok(seed)
        } else {
            Err(invalid(problems))
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let groups: HashSet<&str> = self.groups.iter().map(|g| g.id.as_str()).collect();
        if groups.len() != self.groups.len() {
            problems.push("groups: group ids must be unique".to_string());
        }
        if let Some(period) = &self.quota_period {
            match humantime::parse_duration(period) {
                Ok(d) if d.as_millis() >= 1 => {}
                Ok(_) => problems.push("quota_period: must be at least 1ms".to_string()),
                Err(e) => problems.push(format!("quota_period: {e} (e.g. \"1m\" or \"1s\")")),
            }
        }
        let mut apps = HashSet::new();
        for (t, tenant) in self.tenants.iter().enumerate() {
            if tenant.rate_limit_per_minute == 0 {
                problems.push(format!(
                    "tenants[{t}].rate_limit_per_minute: must be at least 1"
                ));
            }
            for (c, connector) in tenant.connectors.iter().enumerate() {
                let path = format!("tenants[{t}].connectors[{c}]");
                if !apps.insert(connector.application_id.as_str()) {
                    problems.push(format!("{path}.application_id: duplicate"));
                }
                if connector.rate_limit_per_minute == 0 {
                    problems.push(format!("{path}.rate_limit_per_minute: must be at least 1"));
                }
                for group in &connector.groups {
                    if !groups.contains(group.as_str()) {
                        problems.push(format!("{path}.groups: unknown group {group:?}"));
                    }
                }
            }
        }
        for (g, group) in self.groups.iter().enumerate() {
            if !matches!(group.group_type.as_str(), "Group" | "ConnectGroup") {
                problems.push(format!(
                    "groups[{g}].group_type: expected Group or ConnectGroup"
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_seed_parses_with_defaults() {
        let seed = Seed::parse(
            r#"
[[tenants]]
id = "contoso"
[[tenants.connectors]]
application_id = "app-1"
application_secret = "secret-1"
refresh_token = "rt-1"
groups = ["g-sales"]
[[groups]]
id = "g-sales"
name = "Sales West"
members = [{ phone = "+15550001", name = "Asha" }]
"#,
        )
        .unwrap();
        assert_eq!(seed.tenants[0].rate_limit_per_minute, 300);
        assert_eq!(seed.tenants[0].connectors[0].rate_limit_per_minute, 100);
        assert_eq!(seed.groups[0].members[0].role, "Member");
    }

    #[test]
    fn unknown_groups_and_duplicate_apps_are_named() {
        let err = Seed::parse(
            r#"
[[tenants]]
id = "t"
[[tenants.connectors]]
application_id = "a"
application_secret = "s"
refresh_token = "r"
groups = ["nope"]
[[tenants.connectors]]
application_id = "a"
application_secret = "s"
refresh_token = "r"
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("tenants[0].connectors[0].groups: unknown group \"nope\""),
            "{err}"
        );
        assert!(
            err.contains("tenants[0].connectors[1].application_id: duplicate"),
            "{err}"
        );
    }
}
