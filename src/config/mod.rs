//! Configuration: the typed [`Config`], loaded in layers and validated as a whole.
//!
//! [`Config::load`] merges the embedded defaults, the configuration file and the
//! environment, then reports every problem it finds at once, each with its key path
//! (`tenants[0].connectors[1].application_id: missing`), so an operator fixes a file in
//! one round. A configuration it returns has every secret resolved and every
//! cross-reference checked.

mod duration;
mod load;
mod problems;
mod schema;
mod secret;
mod validate;

use std::collections::HashMap;
use std::path::Path;

pub use load::{DEFAULT_TOML, ENV_PREFIX};
pub use problems::{Problem, Problems};
pub use schema::*;
pub use secret::{secret_matches, Secret, SecretError};
pub use validate::{is_id, MAX_ID};

/// The configuration could not be used; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("the configuration has {} problem(s):\n{problems}", problems.len())]
pub struct ConfigError {
    /// What is wrong, each with its key path.
    pub problems: Problems,
}

impl Config {
    /// Loads the configuration: embedded defaults, then `file` if given, then the
    /// `KAIZALA_BRIDGE__SECTION__KEY` variables of `env`.
    ///
    /// `env` is the environment to read (pass `std::env::vars().collect()`); taking it
    /// as a map lets tests load configurations without touching the process's.
    ///
    /// This checks shape, ranges, references and secrets. The rules' templates and
    /// filters are compiled apart (`app::load_config` does both and merges the
    /// problems), so the configuration imports nothing of the crate.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        match Self::load_with_problems(file, env) {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(ConfigError { problems }),
        }
    }

    /// Like [`Config::load`], but returns what could be read together with every
    /// problem found, so a caller can check more (the rules' templates) and report
    /// it all in one go. `None` when the file could not be read into the types at all.
    pub fn load_with_problems(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> (Option<Config>, Problems) {
        let tree = match load::merged_tree(file, env) {
            Ok(tree) => tree,
            Err(problems) => return (None, problems),
        };
        let mut problems = Problems::default();
        let Some(mut config) = load::deserialize_all(tree, &mut problems) else {
            return (None, problems);
        };
        let base_dir = file.and_then(Path::parent).unwrap_or(Path::new("."));
        let cx = validate::Context { base_dir, env };
        validate::validate(&mut config, &cx, &mut problems);
        (Some(config), problems)
    }
}

#[cfg(test)]
mod tests;
