//! Layering the configuration sources and turning them into a typed [`Config`].
//!
//! Layers, later ones winning key by key: the embedded `config/default.toml`, the file
//! given by `--config`, then environment variables `KAIZALA_BRIDGE__SECTION__KEY`.
//!
//! Serde stops at the first error, but an operator fixing a config wants every problem
//! in one go. So the merged tree is deserialized repeatedly: each structural error (an
//! unknown key, a value of the wrong type, an unknown variant) is recorded with its key
//! path, the offending value is put back to its embedded default or dropped, and the
//! tree is tried again.

use std::collections::HashMap;
use std::path::Path;

use config::{Environment, File, FileFormat, Value, ValueKind};
use serde_path_to_error::Segment;

use super::problems::Problems;
use super::schema::Config;

/// The defaults compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "KAIZALA_BRIDGE";

/// Separator between the prefix, the section and the key in those variables.
const ENV_SEPARATOR: &str = "__";

/// Upper bound on repair passes; each pass removes one offending value, so this only
/// stops a pathological file from looping for long.
const MAX_PASSES: usize = 256;

/// Merges the layers; a file that is missing or not valid TOML is reported as a problem.
pub fn merged_tree(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Value, Problems> {
    let env_source: config::Map<String, String> =
        env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut builder =
        config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(Problems::one(
                "",
                format!(
                    "configuration file {} does not exist or is not a file",
                    path.display()
                ),
            ));
        }
        // Read here rather than by the config crate, which would name the file by a
        // path relative to the working directory in its messages.
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems::one(
                "",
                format!("cannot read configuration file {}: {e}", path.display()),
            )
        })?;
        if let Err(e) = text.parse::<toml::Table>() {
            let message = toml_syntax_error(&e, &text);
            return Err(Problems::one("", format!("{}: {message}", path.display())));
        }
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }
    builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .source(Some(env_source)),
    );
    builder
        .build()
        .map(|c| c.cache)
        .map_err(|e| Problems::one("", e.to_string()))
}

/// Deserializes `tree`, recording every structural problem in `problems`. Returns the
/// configuration that remains once the offending values are repaired, or `None` when a
/// problem cannot be repaired (then validation has nothing to work on).
pub fn deserialize_all(mut tree: Value, problems: &mut Problems) -> Option<Config> {
    let defaults = defaults_tree();
    let mut previous = String::new();
    for _ in 0..MAX_PASSES {
        let error = match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
            Ok(config) => return Some(config),
            Err(error) => error,
        };
        let mut path: Vec<Segment> = error.path().iter().cloned().collect();
        let message = error.into_inner().to_string();
        let message = match unknown_field(&message) {
            Some(key) => {
                let named = matches!(path.last(), Some(Segment::Map { key: last }) if last == key);
                if !named {
                    path.push(Segment::Map {
                        key: key.to_string(),
                    });
                }
                let origin = value_at(&tree, &path)
                    .and_then(Value::origin)
                    .map(str::to_string);
                let guess = did_you_mean(key, &message)
                    .map(|known| format!("; did you mean `{known}`?"))
                    .unwrap_or_default();
                match origin {
                    Some(origin) => format!("unknown key (in {origin}){guess}"),
                    None => format!("unknown key{guess}"),
                }
            }
            None => hinted(&path, without_key_suffix(message)),
        };
        let shown = display_path(&path);
        // The same path failing twice means the repair did not fit (an item that must
        // be a table was replaced by a string): drop it for good, reported once.
        let second_try = shown == previous;
        if !second_try {
            problems.push(shown.clone(), message);
        }
        if !repair(&mut tree, &defaults, &path, second_try) {
            return None;
        }
        previous = shown;
    }
    None
}

/// Describes a TOML syntax error by its message and line. The toml crate's own
/// rendering quotes the offending line, which may hold a secret.
pub fn toml_syntax_error(error: &toml::de::Error, text: &str) -> String {
    match error.span() {
        Some(span) => {
            let line = text[..span.start].lines().count().max(1);
            let line = if text[..span.start].ends_with('\n') {
                line + 1
            } else {
                line
            };
            format!("not valid TOML at line {line}: {}", error.message())
        }
        None => format!("not valid TOML: {}", error.message()),
    }
}

/// The known key of serde's "unknown field `x`, expected one of `a`, `b`" message
/// that `key` is most likely a typo of: at most a third of its letters apart.
fn did_you_mean<'a>(key: &str, message: &'a str) -> Option<&'a str> {
    let (_, expected) = message.split_once("expected ")?;
    let expected = expected.strip_prefix("one of ").unwrap_or(expected);
    let limit = (key.chars().count() / 3).max(1);
    expected
        .split(", ")
        .map(|known| known.trim_matches('`'))
        .map(|known| (strsim::damerau_levenshtein(key, known), known))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// A type error's message, with what to write where serde's own says too little.
fn hinted(path: &[Segment], message: String) -> String {
    let listener = matches!(path.last(), Some(Segment::Map { key }) if key == "listen" || key == "admin_listen");
    if listener && message.contains("invalid socket address") {
        return "must be an IP address and a port, e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::]:8080 (a host name such as localhost is not looked up)".into();
    }
    message
}

/// The key named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Drops the " for key `a.b`" that the config crate appends: the path is shown already.
fn without_key_suffix(message: String) -> String {
    let Some(start) = message.find(" for key `") else {
        return message;
    };
    let rest = &message[start + " for key `".len()..];
    match rest.find('`') {
        Some(end) => format!("{}{}", &message[..start], &rest[end + 1..]),
        None => message,
    }
}

fn defaults_tree() -> Value {
    config::Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .build()
        .expect("the embedded default.toml parses")
        .cache
}

/// Formats a path as `tenants[0].connectors[1].application_id`.
pub fn display_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn value_at<'a>(tree: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter()
        .try_fold(tree, |node, segment| match (segment, &node.kind) {
            (Segment::Map { key }, ValueKind::Table(table)) => table.get(key),
            (Segment::Seq { index }, ValueKind::Array(items)) => items.get(*index),
            _ => None,
        })
}

fn value_at_mut<'a>(tree: &'a mut Value, path: &[Segment]) -> Option<&'a mut Value> {
    path.iter()
        .try_fold(tree, |node, segment| match (segment, &mut node.kind) {
            (Segment::Map { key }, ValueKind::Table(table)) => table.get_mut(key),
            (Segment::Seq { index }, ValueKind::Array(items)) => items.get_mut(*index),
            _ => None,
        })
}

/// Puts the value at `path` back to its embedded default, or removes it (an array item
/// is blanked first, and removed only when `remove_item`). Returns false when there is
/// nothing there to repair.
fn repair(tree: &mut Value, defaults: &Value, path: &[Segment], remove_item: bool) -> bool {
    if let Some(default) = value_at(defaults, path).cloned() {
        if let Some(slot) = value_at_mut(tree, path) {
            *slot = default;
            return true;
        }
    }
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    let Some(parent) = value_at_mut(tree, parent_path) else {
        return false;
    };
    match (last, &mut parent.kind) {
        (Segment::Map { key }, ValueKind::Table(table)) => table.shift_remove(key).is_some(),
        (Segment::Seq { index }, ValueKind::Array(items)) if *index < items.len() => {
            if remove_item {
                items.remove(*index);
                return true;
            }
            // Kept as an empty string rather than removed, so that the indices of the
            // items after it, and the paths reported for them, stay as written.
            items[*index] = Value::new(None, ValueKind::String(String::new()));
            true
        }
        _ => false,
    }
}
