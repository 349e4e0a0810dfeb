//! Loading what `run`, `check-config` and `demo` need, with every problem in one
//! list: the configuration's own checks (shape, ranges, references, secrets) first,
//! then the rules' templates and filters compiled, for every rule whose shape passed.
//! The configuration imports nothing of the crate; this is where the two meet.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::rules::Rules;

/// A configuration that passed every check, with its rules compiled.
pub struct Loaded {
    /// The configuration, secrets resolved.
    pub config: Config,
    /// Its rules, templates and filters compiled.
    pub rules: Rules,
}

/// Loads `file` (or the defaults) over the environment `env` and compiles its rules;
/// the error lists the problems of both.
pub fn load_config(
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<Loaded, ConfigError> {
    let (config, mut problems) = Config::load_with_problems(file, env);
    let Some(config) = config else {
        return Err(ConfigError { problems });
    };
    let compiled = Rules::compile_where(&config, |path| !problems.covers_any(path));
    match compiled {
        Ok(rules) if problems.is_empty() => Ok(Loaded { config, rules }),
        Ok(_) => Err(ConfigError { problems }),
        Err(found) => {
            for problem in found.iter() {
                problems.push(problem.path.clone(), problem.message.clone());
            }
            Err(ConfigError { problems })
        }
    }
}
