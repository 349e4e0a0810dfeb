//! Rules: which CRM change becomes which Kaizala action in which group, and how each
//! answer is written back. Compiled once from the configuration; `check-config`
//! reports every template problem with its file and line.
//!
//! Here the CRM side and the Kaizala side meet (with `jobs/`): a [`CrmEvent`] in, a
//! [`SendAction`] job out; a [`ResponseEvent`] in, an [`Activity`] out.

pub mod action;
pub mod filter;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::config::{Config, Problems, RuleConfig, TriggerEvent};
use crate::model::{
    Activity, ActivityKind, ChangeKind, ConnectorId, Correlation, CrmEvent, IdempotencyKey,
    ResponseEvent, SendAction, TenantId,
};
pub use action::{ActionKind, ActionTemplate};
pub use filter::Filter;
pub use template::{TemplateId, Templates};

/// `kaizala_bridge_rule_decisions_total{rule,outcome}`: how CRM events fared against
/// each rule (`matched`, `filtered_out`, `no_group`, `incomplete`, `render_failed`).
pub const DECISIONS_TOTAL: &str = "kaizala_bridge_rule_decisions_total";

/// Names the write-back templates can use.
pub const WRITE_BACK_NAMES: &[&str] = &[
    "responder",
    "answers",
    "time",
    "action",
    "record",
    "is_update",
];

/// The attributes of the names write-back templates see that are objects, as
/// [`Rules::activity`] and [`Rules::sent_activity`] build them (a test keeps the two
/// in step): a template reading another attribute gets nothing at run time, so
/// `check-config` names it.
pub const ATTRIBUTES: &[(&str, &[&str])] = &[
    ("responder", &["name", "phone"]),
    ("action", &["title", "group", "id"]),
    ("record", &["crm", "entity_set", "id"]),
];

/// Names the "survey sent" templates can use.
pub const SENT_NAMES: &[&str] = &["action", "record", "time"];

/// How a rule finds its group.
#[derive(Debug, Clone)]
enum GroupChoice {
    Fixed(String),
    Lookup {
        attribute: String,
        groups: BTreeMap<String, String>,
        fallback: Option<String>,
    },
}

/// One compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    id: String,
    crm: String,
    entity_set: String,
    on: ChangeKind,
    filter: Option<Filter>,
    tenant: TenantId,
    connector: ConnectorId,
    group: GroupChoice,
    action: ActionTemplate,
    activity: ActivityKind,
    subject: TemplateId,
    description: TemplateId,
    sent: Option<(TemplateId, TemplateId)>,
    /// The attributes the rule reads: a partial event lacking one cannot be judged.
    reads: BTreeSet<String>,
}

/// What a rule made of a CRM event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send this action.
    Send(Box<SendAction>),
    /// The rule applies to the event but sends nothing; why.
    Skip {
        /// The rule.
        rule: String,
        /// Why (also a metric label).
        outcome: &'static str,
        /// For the log.
        detail: String,
    },
}

/// Every rule of the configuration, compiled.
#[derive(Debug)]
pub struct Rules {
    templates: Templates,
    rules: Vec<Rule>,
}

/// A problem found while compiling a rule: key path and message.
pub type RuleProblem = (String, String);

/// Records a problem at `at` for each name template `id` uses that is not `known`.
fn unknown_names(
    templates: &Templates,
    id: &Option<TemplateId>,
    known: &[&str],
    whose: &str,
    at: &str,
    problems: &mut Vec<RuleProblem>,
) {
    let Some(id) = id else { return };
    for name in templates.variables(id) {
        if !known.contains(&name.as_str()) {
            let message = format!(
                "uses {name:?}; {whose} templates know: {}",
                known.join(", ")
            );
            problems.push((at.to_string(), message));
        }
    }
}

fn compile_rule(
    path: &str,
    rule: &RuleConfig,
    select: &[String],
    templates: &mut Templates,
) -> Result<Rule, Vec<RuleProblem>> {
    let (Some(trigger), Some(target), Some(write_back)) =
        (&rule.trigger, &rule.target, &rule.write_back)
    else {
        let missing = [
            ("trigger", rule.trigger.is_none()),
            ("target", rule.target.is_none()),
            ("write_back", rule.write_back.is_none()),
        ];
        return Err(missing
            .iter()
            .filter(|(_, absent)| *absent)
            .map(|(table, _)| (format!("{path}.{table}"), "missing".into()))
            .collect());
    };
    let mut cx = RuleCompiler {
        path,
        select,
        templates,
        problems: Vec::new(),
        reads: BTreeSet::new(),
    };
    let filter = cx.filter(trigger.filter.as_deref());
    let action = cx.action(&rule.action);
    let subject = cx.written("subject", &write_back.subject, WRITE_BACK_NAMES);
    let description = cx.written("description", &write_back.description, WRITE_BACK_NAMES);
    let sent = write_back.sent_subject.as_ref().and_then(|sent_subject| {
        let subject = cx.written("sent_subject", sent_subject, SENT_NAMES);
        let description = cx.written("sent_description", &write_back.sent_description, SENT_NAMES);
        subject.zip(description)
    });
    let group = cx.group(target);
    let RuleCompiler {
        problems, reads, ..
    } = cx;
    match (problems.is_empty(), action, subject, description) {
        (true, Some(action), Some(subject), Some(description)) => Ok(Rule {
            id: rule.id.clone(),
            crm: trigger.crm.clone(),
            entity_set: trigger.entity.clone(),
            on: match trigger.on {
                Some(TriggerEvent::Updated) => ChangeKind::Updated,
                _ => ChangeKind::Created,
            },
            filter,
            tenant: (&target.tenant).into(),
            connector: (&target.connector).into(),
            group,
            action,
            activity: match write_back.activity {
                crate::config::ActivityKind::Task => ActivityKind::Task,
                crate::config::ActivityKind::Note => ActivityKind::Note,
            },
            subject,
            description,
            sent,
            reads,
        }),
        _ => Err(problems),
    }
}

/// One rule being compiled: its templates added, every problem kept with the field it
/// is on, and the record's columns it reads gathered.
struct RuleCompiler<'a> {
    path: &'a str,
    select: &'a [String],
    templates: &'a mut Templates,
    problems: Vec<RuleProblem>,
    reads: BTreeSet<String>,
}

impl RuleCompiler<'_> {
    /// Records that the rule reads `column` at `field`: a problem when the source's
    /// `select` does not fetch it.
    fn reads(&mut self, field: &str, column: &str, what: impl FnOnce(&str) -> String) {
        if !self.select.iter().any(|s| s == column) {
            let message = format!(
                "{}, which crm[].select does not fetch (it fetches: {})",
                what(column),
                self.select.join(", ")
            );
            self.problems
                .push((format!("{}.{field}", self.path), message));
        }
        self.reads.insert(column.to_string());
    }

    fn filter(&mut self, text: Option<&str>) -> Option<Filter> {
        let filter = match Filter::parse(text?) {
            Ok(filter) => filter,
            Err(e) => {
                let field = format!("{}.trigger.filter", self.path);
                self.problems.push((field, e.to_string()));
                return None;
            }
        };
        for column in filter.columns() {
            self.reads("trigger.filter", &column, |c| format!("reads {c:?}"));
        }
        Some(filter)
    }

    fn action(&mut self, file: &std::path::Path) -> Option<ActionTemplate> {
        let action = match ActionTemplate::load(file, self.path, self.templates) {
            Ok(action) => action,
            Err(messages) => {
                let field = format!("{}.action", self.path);
                (self.problems).extend(messages.into_iter().map(|m| (field.clone(), m)));
                return None;
            }
        };
        for id in action.templates() {
            let origin = self.templates.origin(&id);
            for name in self.templates.variables(&id) {
                if name != "record" {
                    self.reads("action", &name, |n| format!("{origin}: uses {n:?}"));
                }
            }
        }
        Some(action)
    }

    /// The write-back template of `field`, compiled and checked against the names
    /// its templates can use.
    fn written(&mut self, field: &str, source: &str, names: &[&str]) -> Option<TemplateId> {
        let at = format!("{}.write_back.{field}", self.path);
        let name = format!("{}:write_back.{field}", self.path);
        let id = match self.templates.add(&name, source, "the configuration", 1) {
            Ok(id) => Some(id),
            Err(message) => {
                let message = message.trim_start_matches("the configuration:1: ");
                self.problems.push((at.clone(), message.to_string()));
                None
            }
        };
        let whose = if names == SENT_NAMES {
            "a sent survey's"
        } else {
            "an answer's"
        };
        unknown_names(self.templates, &id, names, whose, &at, &mut self.problems);
        if let Some(id) = &id {
            self.attributes(id, names, &at);
        }
        id
    }

    /// Problems for attributes `id` reads that its names do not have
    /// (`responder.nmae`).
    fn attributes(&mut self, id: &TemplateId, names: &[&str], at: &str) {
        for path in self.templates.paths(id) {
            let mut parts = path.split('.');
            let (Some(name), Some(attribute)) = (parts.next(), parts.next()) else {
                continue;
            };
            let known = ATTRIBUTES
                .iter()
                .find(|(n, _)| *n == name && names.contains(n));
            if let Some((_, attributes)) = known {
                if !attributes.contains(&attribute) {
                    let message = format!(
                        "uses {name}.{attribute}, which is always empty: {name} has {}",
                        attributes.join(", ")
                    );
                    self.problems.push((at.to_string(), message));
                }
            }
        }
    }

    fn group(&mut self, target: &crate::config::TargetConfig) -> GroupChoice {
        let Some(attribute) = &target.group_by else {
            return GroupChoice::Fixed(target.group.clone());
        };
        self.reads("target.group_by", attribute, |a| format!("groups by {a:?}"));
        GroupChoice::Lookup {
            attribute: attribute.clone(),
            groups: target.groups.clone(),
            fallback: target.fallback_group.clone(),
        }
    }
}

impl Rules {
    /// Compiles every rule of a validated configuration.
    pub fn compile(config: &Config) -> Result<Self, Problems> {
        Self::compile_where(config, |_| true)
    }

    /// Compiles the rules whose path (`rules[i]`) `include` takes, leaving out those
    /// the configuration's own checks already found wrong (their template problems
    /// would only repeat the shape's).
    pub fn compile_where(
        config: &Config,
        include: impl Fn(&str) -> bool,
    ) -> Result<Self, Problems> {
        let mut templates = Templates::new();
        let mut rules = Vec::new();
        let mut problems = Problems::default();
        for (i, rule) in config.rules.iter().enumerate() {
            if !include(&format!("rules[{i}]")) {
                continue;
            }
            let select = rule
                .trigger
                .as_ref()
                .and_then(|t| config.crm.iter().find(|c| c.id == t.crm))
                .map(|c| c.select.clone())
                .unwrap_or_default();
            match compile_rule(&format!("rules[{i}]"), rule, &select, &mut templates) {
                Ok(rule) => rules.push(rule),
                Err(found) => {
                    for (path, message) in found {
                        problems.push(path, message);
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Self { templates, rules })
        } else {
            Err(problems)
        }
    }

    /// Whether any rule listens to `crm`'s `entity_set`.
    pub fn watches(&self, crm: &str, entity_set: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.crm == crm && r.entity_set == entity_set)
    }

    /// What every rule of the event's source and entity set makes of it.
    pub fn decide(&self, event: &CrmEvent) -> Vec<Decision> {
        let record = &event.record;
        let mut decisions = Vec::new();
        for rule in &self.rules {
            if rule.crm != record.crm
                || rule.entity_set != record.entity_set
                || rule.on != event.kind
            {
                continue;
            }
            let decision = self.decide_one(rule, event);
            let outcome = match &decision {
                Decision::Send(_) => "matched",
                Decision::Skip { outcome, .. } => outcome,
            };
            metrics::counter!(DECISIONS_TOTAL, "rule" => rule.id.clone(), "outcome" => outcome)
                .increment(1);
            decisions.push(decision);
        }
        decisions
    }

    fn decide_one(&self, rule: &Rule, event: &CrmEvent) -> Decision {
        let skip = |outcome: &'static str, detail: String| Decision::Skip {
            rule: rule.id.clone(),
            outcome,
            detail,
        };
        if event.partial {
            let missing: Vec<&String> = rule
                .reads
                .iter()
                .filter(|c| !event.attributes.contains_key(*c))
                .collect();
            if !missing.is_empty() {
                return skip(
                    "incomplete",
                    format!(
                        "the event does not carry {missing:?}; change tracking will show the whole record"
                    ),
                );
            }
        }
        if let Some(filter) = &rule.filter {
            if !filter.matches(&event.attributes) {
                return skip("filtered_out", "the filter does not hold".into());
            }
        }
        let group = match &rule.group {
            GroupChoice::Fixed(group) => group.clone(),
            GroupChoice::Lookup {
                attribute,
                groups,
                fallback,
            } => {
                let value = match event.attributes.get(attribute) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                match groups.get(&value).or(fallback.as_ref()) {
                    Some(group) => group.clone(),
                    None => {
                        return skip(
                            "no_group",
                            format!("{attribute} = {value:?} is not in target.groups and there is no fallback_group"),
                        )
                    }
                }
            }
        };
        let context = record_context(event);
        let action = match rule.action.render(&self.templates, &context) {
            Ok(action) => action,
            Err(error) => return skip("render_failed", error),
        };
        let record = event.record.clone();
        Decision::Send(Box::new(SendAction {
            rule: rule.id.clone(),
            tenant: rule.tenant.clone(),
            connector: rule.connector.clone(),
            group: group.into(),
            action,
            idempotency_key: IdempotencyKey::for_change(&rule.id, &record, event.kind),
            record,
            activity: rule.activity,
        }))
    }

    /// The activity an answer becomes: the rule's write-back templates over the
    /// answer, or, when the rule is no longer configured or a template cannot be
    /// rendered, a plain summary (an answer is never lost to a template).
    pub fn activity(
        &self,
        correlation: &Correlation,
        response: &ResponseEvent,
        time: &str,
    ) -> Activity {
        let fallback = || Activity::summary(correlation, response);
        let Some(rule) = self.rules.iter().find(|r| r.id == correlation.rule) else {
            return fallback();
        };
        let context = json!({
            "responder": { "name": response.responder_name, "phone": response.responder },
            "answers": response.answers,
            "time": time,
            "action": { "title": correlation.title, "group": correlation.group, "id": response.action_id },
            "record": correlation.record,
            "is_update": response.is_update,
        });
        let subject = self.templates.render(&rule.subject, &context);
        let description = self.templates.render(&rule.description, &context);
        match (subject, description) {
            (Ok(subject), Ok(description)) => Activity {
                kind: correlation.activity,
                regarding: correlation.record.clone(),
                subject: subject.trim().to_string(),
                description: description.trim_end().to_string(),
                source_key: response.source_key(),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(rule = %rule.id, error = %e, "a write-back template failed; writing a plain summary");
                fallback()
            }
        }
    }
}

impl Rules {
    /// The "survey sent" activity of the rule an action was sent for, when the rule
    /// asks for one (`write_back.sent_subject`); its key is derived from the action's
    /// idempotency key, so it is written once however often the job runs.
    pub fn sent_activity(
        &self,
        correlation: &Correlation,
        action_id: &str,
        time: &str,
    ) -> Option<Activity> {
        let rule = self.rules.iter().find(|r| r.id == correlation.rule)?;
        let (subject, description) = rule.sent.as_ref()?;
        let context = json!({
            "action": { "title": correlation.title, "group": correlation.group, "id": action_id },
            "record": correlation.record,
            "time": time,
        });
        let render = |id| self.templates.render(id, &context);
        let (subject, description) = match (render(subject), render(description)) {
            (Ok(s), Ok(d)) => (s, d),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(rule = %rule.id, error = %e, "a survey-sent template failed; writing a plain one");
                (
                    format!("Kaizala survey sent: {}", correlation.title),
                    String::new(),
                )
            }
        };
        Some(Activity {
            kind: correlation.activity,
            regarding: correlation.record.clone(),
            subject: subject.trim().to_string(),
            description: description.trim_end().to_string(),
            source_key: format!("sent:{}", correlation.key),
        })
    }
}

/// What action templates see: the record's attributes (empty ones left out, so they
/// print as nothing) and `record` (crm, entity_set, id).
fn record_context(event: &CrmEvent) -> Value {
    let mut context: Map<String, Value> = event
        .attributes
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    context.insert("record".into(), json!(event.record));
    Value::Object(context)
}

#[cfg(test)]
mod tests;
