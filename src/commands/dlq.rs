//! `dlq list`, `dlq replay` and `dlq purge`: the dead letters of the configured queue.

use std::process::ExitCode;

use super::runtime;
use crate::cli::{DlqAction, EXIT_OK, EXIT_RUNTIME};
use crate::config::Config;

/// `dlq list|replay|purge`: the dead letters of the configured queue.
pub fn execute(config: &Config, action: &DlqAction) -> ExitCode {
    use crate::queue::Queue;
    let runtime = match runtime(&config.log) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let (backend, store) = match super::open_store(config).await {
            Ok(opened) => opened,
            Err(message) => return Ok(Some(message)),
        };
        let queue = Queue::open(&backend, &config.queue, store).await?;
        match action {
            DlqAction::List => {
                let letters = queue.dead_letters().list().await?;
                if letters.is_empty() {
                    println!("no dead letters");
                }
                for letter in letters {
                    println!(
                        "{}  {}  attempts {}  dead at epoch ms {}  {}",
                        letter.id,
                        letter.kind.queue(),
                        letter.attempts,
                        letter.dead_ms,
                        letter.last_error
                    );
                }
            }
            DlqAction::Replay { id: Some(id), .. } => {
                if !queue.replay(id).await? {
                    return Ok(Some(format!(
                        "dlq replay: no dead letter {id:?} (see `dlq list`)"
                    )));
                }
                println!("replayed {id}");
            }
            DlqAction::Replay { id: None, .. } => {
                println!("replayed {} dead letter(s)", queue.replay_all().await?);
            }
            DlqAction::Purge => println!("purged {} dead letter(s)", queue.purge().await?),
        }
        Ok::<Option<String>, crate::queue::QueueError>(None)
    });
    match result {
        Ok(None) => ExitCode::from(EXIT_OK),
        Ok(Some(message)) => {
            eprintln!("kaizala-bridge: {message}");
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
