//! `runbook validate`: compile and lint, report every diagnostic, exit 0/1/2.

use super::{
    Done, EXIT_INVALID, EXIT_OK, Failure, UsageFailure, print_out, read_param_values,
    unreadable_failure,
};
use crate::cli::{DiagFormat, PlanInput};
use crate::diag::Severity;
use crate::pipeline;

pub fn run(input: &PlanInput, format: DiagFormat, deny_warnings: bool) -> Done {
    let compiled = read_param_values(input).and_then(|sets| {
        pipeline::compile_files(&input.plan, &input.inventory, &sets)
            .map_err(|e| unreadable_failure(&e))
    });
    let compiled = match compiled {
        Ok(c) => c,
        Err(failure) => return cannot_validate(failure, format),
    };
    let ds = &compiled.diagnostics;
    let errors = ds.count(Severity::Error);
    let warnings = ds.count(Severity::Warning);
    let valid = errors == 0 && !(deny_warnings && warnings > 0);
    match format {
        DiagFormat::Json => {
            let v = serde_json::json!({
                "valid": valid,
                "diagnostics": ds.to_json(),
            });
            let text = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
            print_out(&text)?;
        }
        DiagFormat::Text => {
            eprint!("{}", ds.render(&compiled.sources));
            let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
            if valid {
                let steps = compiled
                    .graph
                    .as_ref()
                    .map_or(0, |g| g.runbook.instances.len());
                let line = format!(
                    "valid: {} with {} ({}, {})\n",
                    input.plan.display(),
                    input.inventory.display(),
                    plural(steps, "step"),
                    plural(warnings, "warning")
                );
                print_out(&line)?;
            } else {
                let why = if errors == 0 {
                    " (--deny-warnings)".to_string()
                } else {
                    String::new()
                };
                eprintln!(
                    "invalid: {} with {}: {}, {}{why}",
                    input.plan.display(),
                    input.inventory.display(),
                    plural(errors, "error"),
                    plural(warnings, "warning")
                );
            }
        }
    }
    // Invalid input is what validate is for: it did its work, and says so by its status.
    Ok(if valid { EXIT_OK } else { EXIT_INVALID })
}

/// An input that cannot be read (exit 2). A CI job that asked for JSON parses standard output
/// whatever happened, so it gets a document there too; the error also goes to stderr, for the
/// job's log.
fn cannot_validate(failure: UsageFailure, format: DiagFormat) -> Done {
    if format == DiagFormat::Json {
        let v = serde_json::json!({
            "valid": false,
            "error": failure.to_json(),
            "diagnostics": [],
        });
        print_out(&(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"))?;
    }
    Err(Failure::Usage(failure))
}
