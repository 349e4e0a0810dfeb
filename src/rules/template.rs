//! The minijinja templates of every rule, compiled once at start, each remembering the
//! file and line it was written on so that every problem points there.

use std::collections::{BTreeSet, HashMap};

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// A compiled template's name in [`Templates`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateId(String);

/// Every template of the rules.
pub struct Templates {
    env: Environment<'static>,
    origin: HashMap<String, (String, usize)>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("count", &self.origin.len())
            .finish()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// Names minijinja provides itself, never attributes of a record.
const GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "loop"];

impl Templates {
    /// No templates yet. An undefined value prints as nothing (a webhook may carry
    /// only some columns); `check-config` catches misspelt names before that matters.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        Self {
            env,
            origin: HashMap::new(),
        }
    }

    /// Compiles `source`, written at `file:line`; the error is `file:line: message`.
    pub fn add(
        &mut self,
        name: &str,
        source: &str,
        file: &str,
        line: usize,
    ) -> Result<TemplateId, String> {
        self.env
            .add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| {
                let at = line + e.line().unwrap_or(1).saturating_sub(1);
                let what = e
                    .detail()
                    .map_or_else(|| e.kind().to_string(), str::to_string);
                format!(
                    "{file}:{at}: {}: template syntax error: {what}",
                    field(name)
                )
            })?;
        self.origin
            .insert(name.to_string(), (file.to_string(), line));
        Ok(TemplateId(name.to_string()))
    }

    /// Where `id` was written, as `file:line`, and the field it is.
    pub fn origin(&self, id: &TemplateId) -> String {
        match self.origin.get(&id.0) {
            Some((file, line)) => format!("{file}:{line}: {}", field(&id.0)),
            None => id.0.clone(),
        }
    }

    /// The top-level names `id` reads from its context.
    pub fn variables(&self, id: &TemplateId) -> BTreeSet<String> {
        self.env
            .get_template(&id.0)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !GLOBALS.contains(&v.as_str()))
            .collect()
    }

    /// The dotted paths `id` reads from its context (`responder.name`), for the names
    /// it reads attributes of.
    pub fn paths(&self, id: &TemplateId) -> BTreeSet<String> {
        self.env
            .get_template(&id.0)
            .map(|t| t.undeclared_variables(true))
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v.contains('.'))
            .collect()
    }

    /// Renders `id` over `context` (a JSON object); the error names where the
    /// template was written.
    pub fn render(&self, id: &TemplateId, context: &Value) -> Result<String, String> {
        let template = self
            .env
            .get_template(&id.0)
            .map_err(|e| format!("{}: {e}", self.origin(id)))?;
        template
            .render(minijinja::Value::from(minijinja::value::Serde(context)))
            .map_err(|e| {
                let what = e
                    .detail()
                    .map_or_else(|| e.kind().to_string(), str::to_string);
                format!("{}: cannot render: {what}", self.origin(id))
            })
    }
}

/// The field part of a template name `rules[0].action.title` → `title`.
fn field(name: &str) -> &str {
    name.split_once(':').map_or(name, |(_, f)| f)
}
