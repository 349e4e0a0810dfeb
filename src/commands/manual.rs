//! `completions SHELL` and `man`: the command line described for shells and `man`,
//! generated from the same definition clap parses with, so they never drift from it.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, EXIT_OK, EXIT_RUNTIME};

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "kaizala-bridge",
        &mut std::io::stdout(),
    );
    ExitCode::from(EXIT_OK)
}

/// Writes the manual page (roff) to stdout.
pub fn man() -> ExitCode {
    match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            eprintln!("kaizala-bridge: cannot write the manual page: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
