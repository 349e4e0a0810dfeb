//! `dlq list`, `dlq replay` and `dlq purge`: the dead letters of the configured queue.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use super::runtime;
use crate::cli::{DlqAction, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE};
use crate::config::Config;
use crate::queue::{DeadLetter, Queue, QueueError};

/// How a command ended short of success: the line to print and the exit code.
type Refusal = (String, u8);

/// `dlq list|replay|purge`: the dead letters of the configured queue.
pub fn execute(config: &Config, action: &DlqAction) -> ExitCode {
    let runtime = match runtime(&config.log) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let (backend, store) = match super::open_store(config).await {
            Ok(opened) => opened,
            Err(message) => return Ok(Some((message, EXIT_RUNTIME))),
        };
        let queue = Queue::open(&backend, &config.queue, store).await?;
        act(&queue, action).await
    });
    match result {
        Ok(None) => ExitCode::from(EXIT_OK),
        Ok(Some((message, code))) => {
            eprintln!("kaizala-bridge: {message}");
            ExitCode::from(code)
        }
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn act(queue: &Queue, action: &DlqAction) -> Result<Option<Refusal>, QueueError> {
    match action {
        DlqAction::List { json } => {
            let letters = queue.dead_letters().list().await?;
            if *json {
                let text = serde_json::to_string_pretty(&letters).expect("plain data serializes");
                println!("{text}");
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                print!("{}", table(&letters, crate::queue::now_ms()));
            }
        }
        DlqAction::Replay { id: Some(id), .. } => {
            if !queue.replay(id).await? {
                let message = format!("dlq replay: no dead letter {id:?} (see `dlq list`)");
                return Ok(Some((message, EXIT_RUNTIME)));
            }
            println!("replayed {id}");
        }
        DlqAction::Replay { id: None, .. } => {
            println!("replayed {} dead letter(s)", queue.replay_all().await?);
        }
        DlqAction::Purge { yes } => {
            let count = queue.dead_letters().list().await?.len();
            if count > 0 && !yes {
                if let Err(refusal) = confirm_purge(count) {
                    return Ok(Some(refusal));
                }
            }
            println!("purged {} dead letter(s)", queue.purge().await?);
        }
    }
    Ok(None)
}

/// Asks on the terminal before `count` dead letters are forgotten; without a
/// terminal to ask on, refuses (a script says `--yes`).
fn confirm_purge(count: usize) -> Result<(), Refusal> {
    let refused = |why: &str| (format!("dlq purge: {why}; nothing was purged"), EXIT_USAGE);
    if !std::io::stdin().is_terminal() {
        return Err(refused(&format!(
            "{count} dead letter(s) would be forgotten for good: confirm with --yes"
        )));
    }
    print!("Forget {count} dead letter(s) for good? They cannot be replayed afterwards. [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    match answer.trim() {
        "y" | "Y" | "yes" => Ok(()),
        _ => Err(refused("not confirmed")),
    }
}

/// The dead letters as a table with a header, a row each; `now_ms` says how long
/// ago each died.
pub fn table(letters: &[DeadLetter], now_ms: i64) -> String {
    const HEADER: [&str; 8] = [
        "ID",
        "QUEUE",
        "ATTEMPTS",
        "DIED",
        "RULE",
        "RECORD",
        "GROUP",
        "LAST ERROR",
    ];
    let rows: Vec<[String; 8]> = letters.iter().map(|letter| row(letter, now_ms)).collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(str::to_string);
    for cells in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = (cells.iter().zip(widths))
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One letter's cells: what its job was for, read from the job as queued (a
/// `SendAction` names its rule, record and group; a `RecordResponse` its tenant and
/// the answered action's group).
fn row(letter: &DeadLetter, now_ms: i64) -> [String; 8] {
    let job = &letter.job;
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("").to_string();
    let record = &job["record"];
    let record = if record.is_object() {
        format!(
            "{}/{}/{}",
            text(&record["crm"]),
            text(&record["entity_set"]),
            text(&record["id"])
        )
    } else {
        String::new()
    };
    let group = job.get("group").unwrap_or(&job["response"]["group_id"]);
    let died = crate::model::time::rfc3339_from_ms(letter.dead_ms).unwrap_or_default();
    let ago = age(((now_ms - letter.dead_ms).max(0) / 1000) as u64);
    [
        letter.id.clone(),
        letter.kind.queue().to_string(),
        letter.attempts.to_string(),
        format!("{died} ({ago} ago)"),
        text(&job["rule"]),
        record,
        text(group),
        shown(&letter.last_error),
    ]
}

/// `secs` as a person reads an age: in its largest unit or two (`3 days`, `5 h 12 min`).
fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..172_800 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} days", secs / 86_400),
    }
}

/// An error for one line of a terminal: control characters escaped, cut at 120.
fn shown(error: &str) -> String {
    let escaped: String = error.chars().flat_map(char::escape_debug).collect();
    match escaped.char_indices().nth(120) {
        Some((at, _)) => format!("{}…", &escaped[..at]),
        None => escaped,
    }
}
