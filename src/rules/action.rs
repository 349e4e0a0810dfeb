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
use crate::model::action::{
    Action, AnnouncementBody, JobBody, PollBody, PollChoice, Question, QuestionOption,
    QuestionType, SurveyBody,
};

/// A template string as written in the file.
type Text = Spanned<String>;

/// What the first pass reads: the kind, which says which file shape to read next.
#[derive(Debug, Deserialize)]
struct Tagged {
    action_type: Spanned<String>,
}

/// A Survey's file: a title and questions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SurveyFile {
    /// Read by the first pass; named here so that it is not an unknown key.
    #[serde(rename = "action_type")]
    _action_type: serde::de::IgnoredAny,
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
}

/// A Poll's file: one question and its choices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PollFile {
    /// Read by the first pass; named here so that it is not an unknown key.
    #[serde(rename = "action_type")]
    _action_type: serde::de::IgnoredAny,
    question: Option<Text>,
    #[serde(default)]
    choices: Vec<Text>,
    due_in_hours: Option<Spanned<u32>>,
}

/// A Job's file: a title and the people it is assigned to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    /// Read by the first pass; named here so that it is not an unknown key.
    #[serde(rename = "action_type")]
    _action_type: serde::de::IgnoredAny,
    title: Option<Text>,
    #[serde(default)]
    assigned_to: Vec<Text>,
    due_in_hours: Option<Spanned<u32>>,
}

/// An Announcement's file: a message, and a title (the message when left out).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnnouncementFile {
    /// Read by the first pass; named here so that it is not an unknown key.
    #[serde(rename = "action_type")]
    _action_type: serde::de::IgnoredAny,
    title: Option<Text>,
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

    fn parse(name: &str) -> Option<Self> {
        [Self::Survey, Self::Poll, Self::Job, Self::Announcement]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// A question of a survey template.
#[derive(Debug, Clone)]
pub struct QuestionTemplate {
    title: TemplateId,
    kind: QuestionType,
    options: Vec<TemplateId>,
}

/// A compiled action template: one variant per Kaizala action kind, each holding
/// exactly what that kind takes, so rendering cannot miss or invent a field.
#[derive(Debug, Clone)]
pub enum ActionTemplate {
    /// A survey.
    Survey {
        /// The heading.
        title: TemplateId,
        /// Hours it takes answers.
        due_in_hours: u32,
        /// Whether one person may answer more than once.
        accept_multiple_responses: bool,
        /// Whether answers are anonymous.
        is_anonymous: bool,
        /// Whether only the sender sees the summary.
        sender_only: bool,
        /// The questions.
        questions: Vec<QuestionTemplate>,
    },
    /// A poll.
    Poll {
        /// The question.
        question: TemplateId,
        /// The choices.
        choices: Vec<TemplateId>,
        /// Hours it takes answers.
        due_in_hours: u32,
    },
    /// A job.
    Job {
        /// The heading.
        title: TemplateId,
        /// Phone numbers of the assignees (an empty one is left out).
        assigned_to: Vec<TemplateId>,
        /// Hours until it is due.
        due_in_hours: u32,
    },
    /// An announcement.
    Announcement {
        /// The heading; the message when absent.
        title: Option<TemplateId>,
        /// The text.
        message: TemplateId,
    },
}

/// Hours an action stays open when the template does not say.
const DEFAULT_DUE_HOURS: u32 = 48;

/// The line (from 1) of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// One template file being compiled: where each problem is, and the problems so far.
struct Compiler<'a> {
    text: String,
    shown: String,
    prefix: &'a str,
    kind: &'static str,
    kind_at: String,
    templates: &'a mut Templates,
    problems: Vec<String>,
}

impl Compiler<'_> {
    /// `file:line` of `span`.
    fn at(&self, span: std::ops::Range<usize>) -> String {
        format!("{}:{}", self.shown, line_of(&self.text, span.start))
    }

    /// The file read as `T`; an unknown or misspelt key is named with its line.
    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, Vec<String>> {
        toml::from_str(&self.text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&self.text, s.start));
            vec![format!("{}:{line}: {}", self.shown, e.message().trim())]
        })
    }

    /// `value` compiled as the template of `field`.
    fn text(&mut self, field: &str, value: &Text) -> Option<TemplateId> {
        let line = line_of(&self.text, value.span().start);
        let name = format!("{}:{field}", self.prefix);
        match self
            .templates
            .add(&name, value.get_ref(), &self.shown, line)
        {
            Ok(id) => Some(id),
            Err(message) => {
                self.problems.push(message);
                None
            }
        }
    }

    /// `value`, which this kind needs, compiled.
    fn required(&mut self, field: &str, value: Option<&Text>) -> Option<TemplateId> {
        match value {
            Some(value) => self.text(field, value),
            None => {
                let message = format!("{}: {field}: required for a {}", self.kind_at, self.kind);
                self.problems.push(message);
                None
            }
        }
    }

    /// Each of `values` compiled as `field[i]`.
    fn texts(&mut self, field: &str, values: &[Text]) -> Vec<TemplateId> {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, value)| self.text(&format!("{field}[{i}]"), value))
            .collect()
    }

    /// The hours the action stays open: at least 1, 48 when not given.
    fn due(&mut self, hours: Option<&Spanned<u32>>) -> u32 {
        match hours {
            Some(hours) if *hours.get_ref() == 0 => {
                let message = format!(
                    "{}: due_in_hours: must be at least 1",
                    self.at(hours.span())
                );
                self.problems.push(message);
                DEFAULT_DUE_HOURS
            }
            Some(hours) => *hours.get_ref(),
            None => DEFAULT_DUE_HOURS,
        }
    }

    /// Question `i` of a survey, checked against its type.
    fn question(&mut self, i: usize, q: &QuestionFile) -> Option<QuestionTemplate> {
        let field = format!("questions[{i}]");
        let kind_value = Value::String(q.kind.get_ref().clone());
        let Ok(kind) = serde_json::from_value::<QuestionType>(kind_value) else {
            self.problems.push(format!(
                "{}: {field}.type: unknown question type {:?} (Text, Numeric, SingleOption, MultiOption, Date, DateTime, Location, AttachmentList)",
                self.at(q.kind.span()),
                q.kind.get_ref()
            ));
            return None;
        };
        let choice = matches!(kind, QuestionType::SingleOption | QuestionType::MultiOption);
        let at = self.at(q.title.span());
        if choice && q.options.len() < 2 {
            self.problems.push(format!(
                "{at}: {field}.options: a {} question needs at least two options",
                q.kind.get_ref()
            ));
        }
        if !choice && !q.options.is_empty() {
            self.problems.push(format!(
                "{at}: {field}.options: only SingleOption and MultiOption questions have options"
            ));
        }
        let title = self.text(&format!("{field}.title"), &q.title);
        let options = self.texts(&format!("{field}.options"), &q.options);
        Some(QuestionTemplate {
            title: title?,
            kind,
            options,
        })
    }

    fn survey(&mut self) -> Result<Option<ActionTemplate>, Vec<String>> {
        let file: SurveyFile = self.parse()?;
        let title = self.required("title", file.title.as_ref());
        if file.questions.is_empty() {
            let message = format!("{}: questions: required for a Survey", self.kind_at);
            self.problems.push(message);
        }
        let questions: Vec<QuestionTemplate> = (file.questions.iter().enumerate())
            .filter_map(|(i, q)| self.question(i, q))
            .collect();
        let due_in_hours = self.due(file.due_in_hours.as_ref());
        Ok(title.map(|title| ActionTemplate::Survey {
            title,
            due_in_hours,
            accept_multiple_responses: file.accept_multiple_responses,
            is_anonymous: file.is_anonymous,
            sender_only: file.sender_only,
            questions,
        }))
    }

    fn poll(&mut self) -> Result<Option<ActionTemplate>, Vec<String>> {
        let file: PollFile = self.parse()?;
        let question = self.required("question", file.question.as_ref());
        if file.choices.len() < 2 {
            let message = format!(
                "{}: choices: a Poll needs at least two choices",
                self.kind_at
            );
            self.problems.push(message);
        }
        let choices = self.texts("choices", &file.choices);
        let due_in_hours = self.due(file.due_in_hours.as_ref());
        Ok(question.map(|question| ActionTemplate::Poll {
            question,
            choices,
            due_in_hours,
        }))
    }

    fn job(&mut self) -> Result<Option<ActionTemplate>, Vec<String>> {
        let file: JobFile = self.parse()?;
        let title = self.required("title", file.title.as_ref());
        if file.assigned_to.is_empty() {
            let message = format!("{}: assigned_to: required for a Job", self.kind_at);
            self.problems.push(message);
        }
        let assigned_to = self.texts("assigned_to", &file.assigned_to);
        let due_in_hours = self.due(file.due_in_hours.as_ref());
        Ok(title.map(|title| ActionTemplate::Job {
            title,
            assigned_to,
            due_in_hours,
        }))
    }

    fn announcement(&mut self) -> Result<Option<ActionTemplate>, Vec<String>> {
        let file: AnnouncementFile = self.parse()?;
        let message = self.required("message", file.message.as_ref());
        let title = file.title.as_ref().and_then(|t| self.text("title", t));
        Ok(message.map(|message| ActionTemplate::Announcement { title, message }))
    }
}

impl ActionTemplate {
    /// Reads and compiles `file` into `templates` under `prefix`; every problem is a
    /// `file:line: what` message. The file is read twice: for its `action_type`, then
    /// as that kind's shape, so a key the kind does not take is named with its line.
    pub fn load(file: &Path, prefix: &str, templates: &mut Templates) -> Result<Self, Vec<String>> {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|e| vec![format!("{shown}: {e}")])?;
        let mut compiler = Compiler {
            text,
            shown,
            prefix,
            kind: "",
            kind_at: String::new(),
            templates,
            problems: Vec::new(),
        };
        let tagged: Tagged = compiler.parse()?;
        compiler.kind_at = compiler.at(tagged.action_type.span());
        let Some(kind) = ActionKind::parse(tagged.action_type.get_ref()) else {
            return Err(vec![format!(
                "{}: action_type: unknown {:?}, expected one of: Survey, Poll, Job, Announcement",
                compiler.kind_at,
                tagged.action_type.get_ref()
            )]);
        };
        compiler.kind = kind.as_str();
        let template = match kind {
            ActionKind::Survey => compiler.survey()?,
            ActionKind::Poll => compiler.poll()?,
            ActionKind::Job => compiler.job()?,
            ActionKind::Announcement => compiler.announcement()?,
        };
        match template {
            Some(template) if compiler.problems.is_empty() => Ok(template),
            _ => Err(compiler.problems),
        }
    }

    /// Every template of the action, for checks.
    pub fn templates(&self) -> Vec<TemplateId> {
        match self {
            Self::Survey {
                title, questions, ..
            } => std::iter::once(title)
                .chain(
                    questions
                        .iter()
                        .flat_map(|q| std::iter::once(&q.title).chain(&q.options)),
                )
                .cloned()
                .collect(),
            Self::Poll {
                question, choices, ..
            } => std::iter::once(question).chain(choices).cloned().collect(),
            Self::Job {
                title, assigned_to, ..
            } => std::iter::once(title).chain(assigned_to).cloned().collect(),
            Self::Announcement { title, message } => {
                title.iter().chain([message]).cloned().collect()
            }
        }
    }

    /// Renders the action for a record (`context` holds its attributes); an error
    /// names the template that failed.
    pub fn render(&self, templates: &Templates, context: &Value) -> Result<Action, String> {
        let text = |id: &TemplateId| templates.render(id, context);
        let all = |ids: &[TemplateId]| ids.iter().map(text).collect::<Result<Vec<_>, String>>();
        Ok(match self {
            Self::Survey {
                title,
                due_in_hours,
                accept_multiple_responses,
                is_anonymous,
                sender_only,
                questions,
            } => Action::Survey(SurveyBody {
                title: text(title)?,
                due_date: *due_in_hours,
                is_anonymous: *is_anonymous,
                is_sender_only: *sender_only,
                accept_multiple_responses: *accept_multiple_responses,
                questions: questions
                    .iter()
                    .map(|q| q.render(templates, context))
                    .collect::<Result<_, String>>()?,
            }),
            Self::Poll {
                question,
                choices,
                due_in_hours,
            } => Action::Poll(PollBody {
                question: text(question)?,
                choices: (all(choices)?.into_iter())
                    .map(|title| PollChoice { title })
                    .collect(),
                expiry_in_hours: *due_in_hours,
            }),
            Self::Job {
                title,
                assigned_to,
                due_in_hours,
            } => Action::Job(JobBody {
                title: text(title)?,
                assigned_to: (all(assigned_to)?.into_iter())
                    .filter(|phone| !phone.trim().is_empty())
                    .collect(),
                due_date: *due_in_hours,
            }),
            Self::Announcement { title, message } => {
                let message = text(message)?;
                Action::Announcement(AnnouncementBody {
                    title: match title {
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

impl QuestionTemplate {
    fn render(&self, templates: &Templates, context: &Value) -> Result<Question, String> {
        Ok(Question {
            title: templates.render(&self.title, context)?,
            kind: self.kind,
            options: (self.options.iter())
                .map(|o| {
                    templates
                        .render(o, context)
                        .map(|title| QuestionOption { title })
                })
                .collect::<Result<_, String>>()?,
            is_invisible: false,
        })
    }
}
