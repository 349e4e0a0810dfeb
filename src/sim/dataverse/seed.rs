//! The seed file: client applications allowed to get tokens, and opportunities that
//! already exist.
//!
//! ```toml
//! [[applications]]
//! tenant_id = "contoso"          # token endpoint: POST /contoso/oauth2/v2.0/token
//! client_id = "bridge"
//! client_secret = "bridge-secret"
//! [[opportunities]]
//! name = "Existing deal"
//! estimatedvalue = 5000
//! ```

use std::path::Path;

use serde::Deserialize;

/// Everything the emulator starts with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// App registrations that may get tokens.
    #[serde(default)]
    pub applications: Vec<SeedApplication>,
    /// Opportunities that exist from the start (their columns, as in the Web API).
    #[serde(default)]
    pub opportunities: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// An app registration with a client secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedApplication {
    /// The Entra tenant (in the token URL).
    pub tenant_id: String,
    /// The client (application) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
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
    /// The file is not a valid seed.
    #[error("invalid seed: {0}")]
    Invalid(String),
}

impl Seed {
    /// Reads a seed file.
    pub fn load(path: &Path) -> Result<Self, SeedError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses seed TOML.
    pub fn parse(text: &str) -> Result<Self, SeedError> {
        let seed: Seed =
            toml::from_str(text).map_err(|e| SeedError::Invalid(e.message().to_string()))?;
        for (i, opportunity) in seed.opportunities.iter().enumerate() {
            if !opportunity.get("name").is_some_and(|n| n.is_string()) {
                return Err(SeedError::Invalid(format!(
                    "opportunities[{i}].name: missing"
                )));
            }
        }
        Ok(seed)
    }
}
