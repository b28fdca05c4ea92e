//! `runbook completions SHELL` and `runbook man`: generated from the clap definitions, so they
//! can never disagree with the commands.

use clap::CommandFactory;

use super::{EXIT_OK, usage_error};
use crate::cli::Cli;

pub fn completions(shell: clap_complete::Shell) -> u8 {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "runbook",
        &mut std::io::stdout(),
    );
    EXIT_OK
}

pub fn man() -> u8 {
    let mut out = std::io::stdout().lock();
    match clap_mangen::Man::new(Cli::command()).render(&mut out) {
        Ok(()) => EXIT_OK,
        // `runbook man | head` closing the pipe early is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => usage_error("cannot write the man page", &e, None),
    }
}
