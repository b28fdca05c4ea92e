//! Command implementations: one file per subcommand, sharing input handling and exit codes.

mod apply;
mod diff;
mod discover;
mod docs;
mod drill;
mod get;
mod kube;
mod lab;
mod plan;
mod plans;
mod report;
mod schedule;
mod schema;
mod snapshot;
mod status;
mod unlock;
mod validate;

use std::process::ExitCode;

use crate::cli::{Cli, Command, PlanInput};
use crate::compile::ParamValue;
use crate::input::InputError;

/// Exit codes are part of the CLI contract.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

/// Loads an inventory for a command that needs nothing else, or why it cannot be used.
pub(crate) fn load_inventory(
    path: &std::path::Path,
) -> Result<crate::inventory::model::Inventory, Failure> {
    let mut sources = crate::diag::SourceMap::default();
    crate::inventory::load(path, &mut sources).map_err(|e| match e {
        crate::yaml::LoadFailure::Unreadable { path, error } => {
            Failure::usage(&format!("cannot read {path}"), &error, None)
        }
        crate::yaml::LoadFailure::Invalid(ds) => Failure::Located(ds.render(&sources)),
    })
}

/// How a command ended: `Ok` with its exit status once it did its work (a validation that
/// found errors did its work, and says 1), or the failure that stopped it, which `run` prints
/// in one place and maps to the exit code.
pub(crate) type Done = Result<u8, Failure>;

/// Why a command could not do its work.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Unusable input or arguments: `error:`, `Caused by:`, `hint:`, exit 2.
    Usage(UsageFailure),
    /// The input is invalid or the work failed: `error:`, its causes and the hint, exit 1.
    /// What is wrong in detail (located diagnostics, a run's summary) was shown as it was found.
    Invalid {
        what: String,
        causes: Vec<String>,
        hint: Option<String>,
    },
    /// Located diagnostics (file:line:column), rendered: the input is invalid, exit 1.
    Located(String),
    /// Shown in full where it happened; only the exit code is left to give.
    Shown(u8),
}

impl From<UsageFailure> for Failure {
    fn from(f: UsageFailure) -> Failure {
        Failure::Usage(f)
    }
}

impl Failure {
    pub fn usage(what: &str, cause: &dyn std::fmt::Display, hint: Option<&str>) -> Failure {
        Failure::Usage(UsageFailure::new(what, cause, hint))
    }

    pub fn invalid(what: impl Into<String>) -> Failure {
        Failure::Invalid {
            what: what.into(),
            causes: Vec::new(),
            hint: None,
        }
    }

    /// The one printer: prints the failure and returns its exit code.
    pub fn report(&self) -> u8 {
        match self {
            Failure::Usage(u) => u.report(),
            Failure::Invalid { what, causes, hint } => {
                eprintln!("error: {what}");
                for c in causes {
                    eprintln!("  Caused by: {c}");
                }
                if let Some(h) = hint {
                    eprintln!("  hint: {h}");
                }
                EXIT_INVALID
            }
            Failure::Located(rendered) => {
                eprint!("{rendered}");
                EXIT_INVALID
            }
            Failure::Shown(code) => *code,
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let done: Done = match cli.command {
        Command::Validate {
            input,
            output,
            deny_warnings,
        } => validate::run(&input, output, deny_warnings),
        Command::Plan { input, output, out } => plan::run(&input, output, out.as_deref()),
        Command::Schema { kind } => schema::run(kind),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { out } => docs::man(out.as_deref()),
        Command::Report { run, output } => report::run(&run, output),
        Command::Discover(args) => discover::run(&args),
        Command::Lab(cmd) => lab::run(cmd),
        Command::Snapshot(cmd) => snapshot::run(cmd),
        Command::Apply {
            input,
            run,
            dry_run,
            run_dir,
            local,
        } => apply::apply(&input, &run, dry_run, run_dir.as_deref(), local),
        Command::Resume {
            run,
            retry,
            skip,
            run_opts,
        } => apply::resume(&run, &retry, &skip, &run_opts),
        Command::Plans { output } => plans::run(output),
        Command::Schedule(cmd) => schedule::run(cmd),
        Command::Status { run, output } => status::run(&run, output),
        Command::Unlock(args) => unlock::run(&args),
    };
    ExitCode::from(done.unwrap_or_else(|f| f.report()))
}

/// Writes a command's output to standard output, flushed.
///
/// A reader that went away (`runbook status RUN | head -1`: EPIPE) is not an error: the rest
/// was not wanted, and the command's own exit status stands. Any other failure
/// (`> /dev/full`: ENOSPC) is the command's failure.
///
/// SIGPIPE stays ignored, as Rust sets it, instead of being reset so that the process dies
/// like a C tool: `apply` prints while a run is going, and a closed pipe must never kill a
/// run mid-step, before its journal, node locks and SSH control directory are settled.
pub(crate) fn print_out(text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::usage("cannot write to standard output", &e, None)),
    }
}

/// A failure before any work is done (unreadable input, unusable arguments): exit 2.
///
/// Held as data rather than printed where it arises, so that a command whose output is a JSON
/// document (`validate -o json`) can put it in that document as well as on stderr.
#[derive(Debug)]
pub(crate) struct UsageFailure {
    pub what: String,
    pub cause: String,
    pub hint: Option<String>,
}

impl UsageFailure {
    pub fn new(what: &str, cause: &dyn std::fmt::Display, hint: Option<&str>) -> Self {
        UsageFailure {
            what: what.to_string(),
            cause: cause.to_string(),
            hint: hint.map(str::to_string),
        }
    }

    /// Prints it the uv way (`error:`, `Caused by:`, `hint:`) and returns the exit code.
    pub fn report(&self) -> u8 {
        eprintln!("error: {}", self.what);
        eprintln!("  Caused by: {}", self.cause);
        if let Some(h) = &self.hint {
            eprintln!("  hint: {h}");
        }
        EXIT_USAGE
    }

    /// The same three parts, for a JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "message": self.what,
            "cause": self.cause,
            "hint": self.hint,
        })
    }
}

impl From<runbook_lab::LabError> for Failure {
    /// Not root, not Linux, a bad name: a usage failure; doing it failed: invalid, with the
    /// chain of causes.
    fn from(e: runbook_lab::LabError) -> Failure {
        match e {
            runbook_lab::LabError::Usage { what, cause, hint } => {
                Failure::usage(&what, &cause, hint.as_deref())
            }
            runbook_lab::LabError::Failed { error, hint } => Failure::Invalid {
                what: error.to_string(),
                causes: error.chain().skip(1).map(|c| c.to_string()).collect(),
                hint,
            },
        }
    }
}

/// Why a plan or inventory could not be read, with a hint for the cause.
pub(crate) fn unreadable_failure(e: &crate::pipeline::Unreadable) -> UsageFailure {
    let hint = match &e.error {
        InputError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            "check the path; plans live in plans/ (or name a bundled one: `runbook plans` lists them), inventories in examples/ or your own repository"
                .to_string()
        }
        InputError::Io(_) => "check the path and its permissions".to_string(),
        InputError::NotRegular { .. } => {
            "plans and inventories are read from regular files: a FIFO or a device could block or never end; write it to a file first".to_string()
        }
        InputError::TooLarge { .. } => format!(
            "plans and inventories are small text files (at most {}): check the path",
            crate::input::size_text(crate::input::DOCUMENT_LIMIT)
        ),
    };
    UsageFailure::new(&format!("cannot read {}", e.path), &e.error, Some(&hint))
}

/// `--set` and `--set-file` as parameter values, or why a `--set-file` cannot be read.
pub(crate) fn read_param_values(input: &PlanInput) -> Result<Vec<ParamValue>, UsageFailure> {
    let mut out: Vec<ParamValue> = input
        .set
        .iter()
        .map(|(k, v)| ParamValue {
            name: k.clone(),
            value: v.clone(),
            origin: format!("--set {k}=..."),
        })
        .collect();
    for (k, path) in &input.set_file {
        let what =
            format!("cannot read the value of parameter `{k}` from {path} (--set-file {k}={path})");
        let read = crate::input::read_bytes(std::path::Path::new(path), crate::input::VALUE_LIMIT)
            .map(crate::input::utf8);
        match read {
            Ok(Ok(text)) => out.push(ParamValue {
                name: k.clone(),
                // A file written by an editor ends with a newline the value does not contain.
                value: text.strip_suffix('\n').unwrap_or(&text).to_string(),
                origin: format!("--set-file {k}={path}"),
            }),
            Ok(Err((at, _))) => {
                return Err(UsageFailure::new(
                    &what,
                    &format!("{path}:{}:{}: {at}", at.line, at.column),
                    Some(&format!(
                        "a parameter value is UTF-8 text: save the file as UTF-8; to pass a binary file, pass its path: --set {k}={path}"
                    )),
                ));
            }
            Err(e) => {
                let hint = match &e {
                    InputError::TooLarge { .. } => format!(
                        "--set-file NAME=PATH reads a small file (a token, a certificate) whole, as the value, up to {}; to pass a large file, pass its path: --set {k}={path}",
                        crate::input::size_text(crate::input::VALUE_LIMIT)
                    ),
                    InputError::NotRegular { .. } => format!(
                        "--set-file NAME=PATH reads a regular file whole, as the value; a pipe or device could block or never end: write the value to a file first, or use --set {k}=VALUE"
                    ),
                    InputError::Io(_) => {
                        "--set-file NAME=PATH reads the whole file as the value".to_string()
                    }
                };
                return Err(UsageFailure::new(&what, &e, Some(&hint)));
            }
        }
    }
    Ok(out)
}
