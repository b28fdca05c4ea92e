//! `runbook validate`: compile and lint, report every diagnostic, exit 0/1/2.

use super::{EXIT_INVALID, EXIT_OK, param_values, print_out, unreadable};
use crate::cli::{DiagFormat, PlanInput};
use crate::diag::Severity;
use crate::pipeline;

pub fn run(input: &PlanInput, format: DiagFormat, deny_warnings: bool) -> u8 {
    let sets = match param_values(input) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let compiled = match pipeline::compile_files(&input.plan, &input.inventory, &sets) {
        Ok(c) => c,
        Err(e) => return unreadable(&e),
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
            if let Err(code) = print_out(&text) {
                return code;
            }
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
                if let Err(code) = print_out(&line) {
                    return code;
                }
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
    if valid { EXIT_OK } else { EXIT_INVALID }
}
