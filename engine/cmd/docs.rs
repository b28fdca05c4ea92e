//! `runbook completions SHELL` and `runbook man`: generated from the clap definitions, so they
//! can never disagree with the commands.

use clap::CommandFactory;

use super::{EXIT_OK, print_out};
use crate::cli::Cli;

/// Both are rendered in memory first: clap_complete panics when its writer fails, and a
/// closed pipe is handled in one place (`print_out`).
pub fn completions(shell: clap_complete::Shell) -> u8 {
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "runbook", &mut text);
    done(print_out(&String::from_utf8_lossy(&text)))
}

pub fn man() -> u8 {
    let mut text = Vec::new();
    // Writing into memory does not fail.
    let _ = clap_mangen::Man::new(Cli::command()).render(&mut text);
    done(print_out(&String::from_utf8_lossy(&text)))
}

fn done(printed: Result<(), u8>) -> u8 {
    printed.err().unwrap_or(EXIT_OK)
}
