//! The `runbook` binary: parse arguments, run the command, map the outcome to an exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = runbook::cli::Cli::parse();
    runbook::cmd::run(args)
}
