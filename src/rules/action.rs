//! Action template files: a TOML file describing a Survey, Poll, Job or Announcement
//! whose strings are minijinja templates over the record's attributes.
//!
//! ```toml
//! action_type = "Survey"
//! title = "Qualify {{ name }} ({{ estimatedvalue }})"
//! due_in_hours = 48
//! [[questions]]
//! title = "Is the budget confirmed?"
//! type = "SingleOption"
//! options = ["Yes", "No"]
//! ```
//!
//! Every problem is reported with the file and line it is on.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::template::{TemplateId, Templates};
use crate::kaizala::api::{
    Action, AnnouncementBody, JobBody, PollBody, PollChoice, Question, QuestionOption,
    QuestionType, SurveyBody,
};

/// A template string as written in the file.
type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionFile {
    action_type: Spanned<String>,
    title: Option<Text>,
    due_in_hours: Option<Spanned<u32>>,
    #[serde(default)]
    accept_multiple_responses: bool,
    #[serde(default)]
    is_anonymous: bool,
    #[serde(default)]
    sender_only: bool,
    #[serde(default)]
    questions: Vec<QuestionFile>,
    question: Option<Text>,
    #[serde(default)]
    choices: Vec<Text>,
    #[serde(default)]
    assigned_to: Vec<Text>,
    message: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionFile {
    title: Text,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    #[serde(default)]
    options: Vec<Text>,
}

/// The kinds of action a template can describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// A survey: questions and answers.
    Survey,
    /// A poll: one question, a few choices.
    Poll,
    /// A job assigned to people.
    Job,
    /// An announcement (nothing to answer).
    Announcement,
}

impl ActionKind {
    /// The Kaizala `actionType`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Survey => "Survey",
            ActionKind::Poll => "Poll",
            ActionKind::Job => "Job",
            ActionKind::Announcement => "Announcement",
        }
    }
}

#[derive(Debug, Clone)]
struct QuestionTemplate {
    title: TemplateId,
    kind: QuestionType,
    options: Vec<TemplateId>,
}

/// A compiled action template.
#[derive(Debug, Clone)]
pub struct ActionTemplate {
    kind: ActionKind,
    title: Option<TemplateId>,
    due_in_hours: u32,
    accept_multiple_responses: bool,
    is_anonymous: bool,
    sender_only: bool,
    questions: Vec<QuestionTemplate>,
    question: Option<TemplateId>,
    choices: Vec<TemplateId>,
    assigned_to: Vec<TemplateId>,
    message: Option<TemplateId>,
}

/// Hours an action stays open when the template does not say.
const DEFAULT_DUE_HOURS: u32 = 48;

/// The line (from 1) of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

impl ActionTemplate {
    /// Reads and compiles `file` into `templates` under `prefix`; every problem is a
    /// `file:line: what` message.
    pub fn load(file: &Path, prefix: &str, templates: &mut Templates) -> Result<Self, Vec<String>> {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|e| vec![format!("{shown}: {e}")])?;
        let parsed: ActionFile = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&text, s.start));
            vec![format!("{shown}:{line}: {}", e.message().trim())]
        })?;
        let mut problems = Vec::new();
        let compile =
            |field: &str, value: &Text, templates: &mut Templates, problems: &mut Vec<String>| {
                let line = line_of(&text, value.span().start);
                let name = format!("{prefix}:{field}");
                match templates.add(&name, value.get_ref(), &shown, line) {
                    Ok(id) => Some(id),
                    Err(message) => {
                        problems.push(message);
                        None
                    }
                }
            };
        let at = |span: std::ops::Range<usize>| format!("{shown}:{}", line_of(&text, span.start));
        let kind = match parsed.action_type.get_ref().as_str() {
            "Survey" => ActionKind::Survey,
            "Poll" => ActionKind::Poll,
            "Job" => ActionKind::Job,
            "Announcement" => ActionKind::Announcement,
            other => {
                return Err(vec![format!(
                    "{}: action_type: unknown {other:?}, expected one of: Survey, Poll, Job, Announcement",
                    at(parsed.action_type.span())
                )])
            }
        };
        let title = parsed
            .title
            .as_ref()
            .and_then(|t| compile("title", t, templates, &mut problems));
        let mut questions = Vec::new();
        for (i, q) in parsed.questions.iter().enumerate() {
            let field = format!("questions[{i}]");
            let kind_value = Value::String(q.kind.get_ref().clone());
            let question_kind = match serde_json::from_value::<QuestionType>(kind_value) {
                Ok(kind) => kind,
                Err(_) => {
                    problems.push(format!(
                        "{}: {field}.type: unknown question type {:?} (Text, Numeric, SingleOption, MultiOption, Date, DateTime, Location, AttachmentList)",
                        at(q.kind.span()),
                        q.kind.get_ref()
                    ));
                    continue;
                }
            };
            let choice = matches!(
                question_kind,
                QuestionType::SingleOption | QuestionType::MultiOption
            );
            if choice && q.options.len() < 2 {
                problems.push(format!(
                    "{}: {field}.options: a {} question needs at least two options",
                    at(q.title.span()),
                    q.kind.get_ref()
                ));
            }
            if !choice && !q.options.is_empty() {
                problems.push(format!(
                    "{}: {field}.options: only SingleOption and MultiOption questions have options",
                    at(q.title.span())
                ));
            }
            let title = compile(
                &format!("{field}.title"),
                &q.title,
                templates,
                &mut problems,
            );
            let options: Vec<TemplateId> = q
                .options
                .iter()
                .enumerate()
                .filter_map(|(j, o)| {
                    compile(
                        &format!("{field}.options[{j}]"),
                        o,
                        templates,
                        &mut problems,
                    )
                })
                .collect();
            if let Some(title) = title {
                questions.push(QuestionTemplate {
                    title,
                    kind: question_kind,
                    options,
                });
            }
        }
        let question = parsed
            .question
            .as_ref()
            .and_then(|q| compile("question", q, templates, &mut problems));
        let choices: Vec<TemplateId> = parsed
            .choices
            .iter()
            .enumerate()
            .filter_map(|(i, c)| compile(&format!("choices[{i}]"), c, templates, &mut problems))
            .collect();
        let assigned_to: Vec<TemplateId> = parsed
            .assigned_to
            .iter()
            .enumerate()
            .filter_map(|(i, a)| compile(&format!("assigned_to[{i}]"), a, templates, &mut problems))
            .collect();
        let message = parsed
            .message
            .as_ref()
            .and_then(|m| compile("message", m, templates, &mut problems));
        let kind_at = at(parsed.action_type.span());
        let name = kind.as_str();
        // Which fields each type needs, and which it does not take.
        let needs = |present: bool, field: &str, problems: &mut Vec<String>| {
            if !present {
                problems.push(format!("{kind_at}: {field}: required for a {name}"));
            }
        };
        let refuses = |present: bool, field: &str, problems: &mut Vec<String>| {
            if present {
                problems.push(format!("{kind_at}: {field}: a {name} has no {field}"));
            }
        };
        match kind {
            ActionKind::Survey => {
                needs(parsed.title.is_some(), "title", &mut problems);
                needs(!parsed.questions.is_empty(), "questions", &mut problems);
                refuses(parsed.question.is_some(), "question", &mut problems);
                refuses(!parsed.choices.is_empty(), "choices", &mut problems);
                refuses(!parsed.assigned_to.is_empty(), "assigned_to", &mut problems);
                refuses(parsed.message.is_some(), "message", &mut problems);
            }
            ActionKind::Poll => {
                needs(parsed.question.is_some(), "question", &mut problems);
                if parsed.choices.len() < 2 {
                    problems.push(format!(
                        "{kind_at}: choices: a Poll needs at least two choices"
                    ));
                }
                refuses(!parsed.questions.is_empty(), "questions", &mut problems);
                refuses(!parsed.assigned_to.is_empty(), "assigned_to", &mut problems);
                refuses(parsed.message.is_some(), "message", &mut problems);
            }
            ActionKind::Job => {
                needs(parsed.title.is_some(), "title", &mut problems);
                needs(!parsed.assigned_to.is_empty(), "assigned_to", &mut problems);
                refuses(!parsed.questions.is_empty(), "questions", &mut problems);
                refuses(!parsed.choices.is_empty(), "choices", &mut problems);
                refuses(parsed.message.is_some(), "message", &mut problems);
            }
            ActionKind::Announcement => {
                needs(parsed.message.is_some(), "message", &mut problems);
                refuses(!parsed.questions.is_empty(), "questions", &mut problems);
                refuses(!parsed.choices.is_empty(), "choices", &mut problems);
                refuses(!parsed.assigned_to.is_empty(), "assigned_to", &mut problems);
            }
        }
        let due_in_hours = match &parsed.due_in_hours {
            Some(hours) if *hours.get_ref() == 0 => {
                problems.push(format!(
                    "{}: due_in_hours: must be at least 1",
                    at(hours.span())
                ));
                DEFAULT_DUE_HOURS
            }
            Some(hours) => *hours.get_ref(),
            None => DEFAULT_DUE_HOURS,
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            kind,
            title,
            due_in_hours,
            accept_multiple_responses: parsed.accept_multiple_responses,
            is_anonymous: parsed.is_anonymous,
            sender_only: parsed.sender_only,
            questions,
            question,
            choices,
            assigned_to,
            message,
        })
    }

    /// The kind of action.
    pub fn kind(&self) -> ActionKind {
        self.kind
    }

    /// Hours the action stays open.
    pub fn due_in_hours(&self) -> u32 {
        self.due_in_hours
    }

    /// Every template of the action, for checks.
    pub fn templates(&self) -> Vec<TemplateId> {
        let mut all: Vec<TemplateId> = Vec::new();
        all.extend(self.title.iter().cloned());
        for q in &self.questions {
            all.push(q.title.clone());
            all.extend(q.options.iter().cloned());
        }
        all.extend(self.question.iter().cloned());
        all.extend(self.choices.iter().cloned());
        all.extend(self.assigned_to.iter().cloned());
        all.extend(self.message.iter().cloned());
        all
    }

    /// Renders the action for a record (`context` holds its attributes); an error
    /// names the template that failed.
    pub fn render(&self, templates: &Templates, context: &Value) -> Result<Action, String> {
        let text = |id: &TemplateId| templates.render(id, context);
        let opt = |id: &Option<TemplateId>| {
            id.as_ref()
                .map(text)
                .transpose()
                .map(Option::unwrap_or_default)
        };
        Ok(match self.kind {
            ActionKind::Survey => Action::Survey(SurveyBody {
                title: opt(&self.title)?,
                due_date: self.due_in_hours,
                is_anonymous: self.is_anonymous,
                is_sender_only: self.sender_only,
                accept_multiple_responses: self.accept_multiple_responses,
                questions: self
                    .questions
                    .iter()
                    .map(|q| {
                        Ok(Question {
                            title: text(&q.title)?,
                            kind: q.kind,
                            options: q
                                .options
                                .iter()
                                .map(|o| text(o).map(|title| QuestionOption { title }))
                                .collect::<Result<_, String>>()?,
                            is_invisible: false,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            }),
            ActionKind::Poll => Action::Poll(PollBody {
                question: opt(&self.question)?,
                choices: self
                    .choices
                    .iter()
                    .map(|c| text(c).map(|title| PollChoice { title }))
                    .collect::<Result<_, String>>()?,
                expiry_in_hours: self.due_in_hours,
            }),
            ActionKind::Job => Action::Job(JobBody {
                title: opt(&self.title)?,
                assigned_to: self
                    .assigned_to
                    .iter()
                    .map(text)
                    .collect::<Result<Vec<_>, String>>()?
                    .into_iter()
                    .filter(|phone| !phone.trim().is_empty())
                    .collect(),
                due_date: self.due_in_hours,
            }),
            ActionKind::Announcement => {
                let message = opt(&self.message)?;
                Action::Announcement(AnnouncementBody {
                    title: match &self.title {
                        Some(title) => text(title)?,
                        None => message.clone(),
                    },
                    message,
                    media_resources: Vec::new(),
                })
            }
        })
    }
}
