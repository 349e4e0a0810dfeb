//! The rules on their own: what `check-config` reports, and what a record becomes.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::config::{ActivityKind as ConfigActivity, TargetConfig, TriggerConfig, WriteBackConfig};
use crate::model::{AnsweredQuestion, CrmRecordRef};

fn rule(dir: &Path, action: &str, filter: Option<&str>, target: TargetConfig) -> RuleConfig {
    let file = dir.join("action.toml");
    std::fs::write(&file, action).unwrap();
    RuleConfig {
        id: "r1".into(),
        trigger: Some(TriggerConfig {
            crm: "d365".into(),
            entity: "opportunities".into(),
            on: Some(TriggerEvent::Created),
            filter: filter.map(str::to_string),
        }),
        target: Some(target),
        action: file,
        write_back: Some(WriteBackConfig {
            activity: ConfigActivity::Note,
            subject: "{{ responder.name }} on {{ action.title }}".into(),
            description: "{% for a in answers %}{{ a.question }}={{ a.answer }};{% endfor %}"
                .into(),
            sent_subject: Some("Sent {{ action.title }} to {{ action.group }}".into()),
            sent_description: "{{ record.id }}".into(),
        }),
    }
}

fn fixed(group: &str) -> TargetConfig {
    TargetConfig {
        tenant: "contoso".into(),
        connector: "bot".into(),
        group: group.into(),
        group_by: None,
        groups: Default::default(),
        fallback_group: None,
    }
}

fn select() -> Vec<String> {
    ["name", "estimatedvalue", "statecode", "unit"]
        .map(String::from)
        .to_vec()
}

/// The template problems of one rule, as `Rules::compile` reports them.
fn check(path: &str, rule: &RuleConfig, select: &[String]) -> Vec<RuleProblem> {
    let mut templates = Templates::new();
    compile_rule(path, rule, select, &mut templates)
        .err()
        .unwrap_or_default()
}

const SURVEY: &str = "action_type = \"Survey\"\ntitle = \"Qualify {{ name }}\"\n[[questions]]\ntitle = \"Budget?\"\ntype = \"SingleOption\"\noptions = [\"Yes\", \"No\"]\n";

#[test]
fn check_reports_template_problems_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let broken = "action_type = \"Survey\"\ntitle = \"Qualify {{ name }\"\n[[questions]]\ntitle = \"{{ budget }}?\"\ntype = \"SingleOption\"\noptions = [\"Yes\"]\n";
    let found = check(
        "rules[0]",
        &rule(dir.path(), broken, Some("estimatedvalue >"), fixed("g")),
        &select(),
    );
    let text: Vec<String> = found.iter().map(|(p, m)| format!("{p}: {m}")).collect();
    let file = dir.path().join("action.toml").display().to_string();
    assert!(
        text.iter()
            .any(|t| t.starts_with("rules[0].trigger.filter: at column 17")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains(&format!("{file}:2: title: template syntax error"))),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains(&format!(
            "{file}:4: questions[0].options: a SingleOption question needs at least two options"
        ))),
        "{text:#?}"
    );

    let unknown_name = SURVEY.replace("Budget?", "{{ budget }}?");
    let found = check(
        "rules[0]",
        &rule(dir.path(), &unknown_name, None, fixed("g")),
        &select(),
    );
    assert!(found.iter().any(|(p, m)| p == "rules[0].action" && m.contains(&format!("{file}:4: questions[0].title: uses \"budget\", which crm[].select does not fetch"))), "{found:#?}");
    let poll_without_choices = "action_type = \"Poll\"\nquestion = \"Go?\"\n";
    let found = check(
        "rules[0]",
        &rule(dir.path(), poll_without_choices, None, fixed("g")),
        &select(),
    );
    assert!(
        found
            .iter()
            .any(|(_, m)| m.ends_with(":1: choices: a Poll needs at least two choices")),
        "{found:#?}"
    );
    let unknown_type = "action_type = \"Quiz\"\n";
    let found = check(
        "rules[0]",
        &rule(dir.path(), unknown_type, None, fixed("g")),
        &select(),
    );
    assert!(
        found[0].1.contains(":1: action_type: unknown \"Quiz\""),
        "{found:#?}"
    );
    let unknown_key = "action_type = \"Survey\"\ntitel = \"x\"\n";
    let found = check(
        "rules[0]",
        &rule(dir.path(), unknown_key, None, fixed("g")),
        &select(),
    );
    assert!(
        found[0].1.contains(":2: unknown field `titel`"),
        "{found:#?}"
    );
    // A key of another kind is named with its line, and what this kind takes.
    let poll_key_in_a_survey = format!("{SURVEY}choices = [\"a\", \"b\"]\n");
    let found = check(
        "rules[0]",
        &rule(dir.path(), &poll_key_in_a_survey, None, fixed("g")),
        &select(),
    );
    assert!(
        found[0]
            .1
            .contains(":7: unknown field `choices`, expected one of"),
        "{found:#?}"
    );
    assert!(check(
        "rules[0]",
        &rule(dir.path(), SURVEY, Some("estimatedvalue >= 10"), fixed("g")),
        &select()
    )
    .is_empty());
}

fn compiled(dir: &Path, target: TargetConfig) -> Rules {
    let mut templates = Templates::new();
    let rule = compile_rule(
        "rules[0]",
        &rule(
            dir,
            SURVEY,
            Some("estimatedvalue >= 10000 and statecode == 0"),
            target,
        ),
        &select(),
        &mut templates,
    )
    .unwrap();
    Rules {
        templates,
        rules: vec![rule],
    }
}

fn event(id: &str, attributes: Value, partial: bool) -> CrmEvent {
    CrmEvent {
        record: CrmRecordRef {
            crm: "d365".into(),
            entity_set: "opportunities".into(),
            id: id.into(),
        },
        kind: ChangeKind::Created,
        attributes: attributes.as_object().unwrap().clone(),
        partial,
    }
}

#[test]
fn a_matching_record_becomes_one_rendered_survey_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let target = TargetConfig {
        group: String::new(),
        group_by: Some("unit".into()),
        groups: [("west".to_string(), "g-west".to_string())].into(),
        fallback_group: None,
        ..fixed("")
    };
    let rules = compiled(dir.path(), target);
    let decisions = rules.decide(&event(
        "o-1",
        json!({"name": "Northwind", "estimatedvalue": 20000, "statecode": 0, "unit": "west"}),
        false,
    ));
    let [Decision::Send(job)] = decisions.as_slice() else {
        panic!("{decisions:?}")
    };
    assert_eq!(job.group, "g-west");
    assert_eq!(job.idempotency_key, "r1/d365/opportunities/o-1/created");
    let crate::model::action::Action::Survey(survey) = &job.action else {
        panic!("a survey: {:?}", job.action)
    };
    assert_eq!(survey.title, "Qualify Northwind");
    assert_eq!(survey.questions[0].options[1].title, "No");

    let small = rules.decide(&event(
        "o-2",
        json!({"name": "x", "estimatedvalue": 5, "statecode": 0, "unit": "west"}),
        false,
    ));
    assert!(matches!(
        small.as_slice(),
        [Decision::Skip {
            outcome: "filtered_out",
            ..
        }]
    ));
    let elsewhere = rules.decide(&event(
        "o-3",
        json!({"name": "x", "estimatedvalue": 50000, "statecode": 0, "unit": "north"}),
        false,
    ));
    assert!(matches!(
        elsewhere.as_slice(),
        [Decision::Skip {
            outcome: "no_group",
            ..
        }]
    ));
    let partial = rules.decide(&event(
        "o-4",
        json!({"name": "x", "estimatedvalue": 50000}),
        true,
    ));
    assert!(matches!(
        partial.as_slice(),
        [Decision::Skip {
            outcome: "incomplete",
            ..
        }]
    ));
}

#[test]
fn an_answer_is_written_back_through_the_rules_templates() {
    let dir = tempfile::tempdir().unwrap();
    let rules = compiled(dir.path(), fixed("g-west"));
    let (correlation, response) = (correlation(), response());
    let activity = rules.activity(&correlation, &response, "2026-12-01T10:00:00Z");
    assert_eq!(activity.subject, "Asha on Qualify Northwind");
    assert_eq!(activity.description, "Budget?=Yes;");
    assert_eq!(activity.kind, ActivityKind::Note);
    assert_eq!(activity.source_key, response.source_key());
    let sent = rules.sent_activity(&correlation, "act-1", "t").unwrap();
    assert_eq!(sent.subject, "Sent Qualify Northwind to g-west");
    assert_eq!(sent.description, "o-1");
    assert_eq!(sent.source_key, "sent:k");
    let other = Correlation {
        rule: "gone".into(),
        ..correlation
    };
    assert!(rules
        .activity(&other, &response, "t")
        .description
        .contains("Budget?: Yes"));
}

fn correlation() -> Correlation {
    Correlation {
        key: "k".into(),
        rule: "r1".into(),
        tenant: "contoso".into(),
        connector: "bot".into(),
        group: "g-west".into(),
        title: "Qualify Northwind".into(),
        record: CrmRecordRef {
            crm: "d365".into(),
            entity_set: "opportunities".into(),
            id: "o-1".into(),
        },
        activity: ActivityKind::Note,
        due_ms: None,
        polled_out: false,
    }
}

fn response() -> ResponseEvent {
    ResponseEvent {
        action_id: "a".into(),
        group_id: "g-west".into(),
        response_id: "resp-1".into(),
        responder: "+1555".into(),
        responder_name: "Asha".into(),
        is_update: false,
        answers: vec![AnsweredQuestion {
            question: "Budget?".into(),
            answer: "Yes".into(),
        }],
    }
}

#[test]
fn write_back_templates_reading_an_attribute_no_answer_has_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut typo = rule(dir.path(), SURVEY, None, fixed("g"));
    typo.write_back.as_mut().unwrap().subject = "{{ responder.nmae }} answered".into();
    let found = check("rules[0]", &typo, &select());
    assert_eq!(
        found,
        vec![(
            "rules[0].write_back.subject".to_string(),
            "uses responder.nmae, which is always empty: responder has name, phone".to_string()
        )]
    );
    // Every attribute the check knows is filled in at run time.
    let mut every = rule(dir.path(), SURVEY, None, fixed("g"));
    let all = |names: &[&str]| -> String {
        ATTRIBUTES
            .iter()
            .filter(|(name, _)| names.contains(name))
            .flat_map(|(name, attributes)| {
                attributes
                    .iter()
                    .map(move |a| format!("{{{{ {name}.{a} }}}}"))
            })
            .collect::<Vec<_>>()
            .join("|")
    };
    let write_back = every.write_back.as_mut().unwrap();
    write_back.subject = all(WRITE_BACK_NAMES);
    write_back.sent_subject = Some(all(SENT_NAMES));
    let mut templates = Templates::new();
    let compiled = compile_rule("rules[0]", &every, &select(), &mut templates).unwrap();
    let rules = Rules {
        templates,
        rules: vec![compiled],
    };
    let answered = rules.activity(&correlation(), &response(), "t").subject;
    let sent = rules
        .sent_activity(&correlation(), "act-1", "t")
        .unwrap()
        .subject;
    for subject in [answered, sent] {
        assert!(subject.split('|').all(|part| !part.is_empty()), "{subject}");
    }
}
