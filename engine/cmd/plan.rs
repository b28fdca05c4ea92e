//! `runbook plan`: compile and render the step graph (text, json, mermaid, dot).

use std::path::Path;

use super::{Done, EXIT_OK, Failure, read_param_values, unreadable_failure};
use crate::cli::PlanInput;
use crate::graph::render::{self, PlanFormat};
use crate::pipeline;

pub fn run(input: &PlanInput, format: PlanFormat, out: Option<&Path>) -> Done {
    let sets = read_param_values(input)?;
    let compiled = pipeline::compile_files(&input.plan, &input.inventory, &sets)
        .map_err(|e| unreadable_failure(&e))?;
    // Warnings go with the plan (to stderr); errors mean there is no plan to show.
    eprint!("{}", compiled.diagnostics.render(&compiled.sources));
    let Some(graph) = compiled.graph else {
        return Err(Failure::invalid(format!(
            "{} does not compile with {}; nothing to plan",
            input.plan.display(),
            input.inventory.display()
        )));
    };
    let mut text = render::render(&graph, format);
    // A JSON plan written to a file is a saved plan: it carries what it was compiled from, so
    // `runbook apply FILE --approve FINGERPRINT` can run exactly it, and refuse if that changed.
    if let (Some(_), PlanFormat::Json) = (out, format) {
        match crate::execute::saved::record(&input.plan, &input.inventory, &sets) {
            Ok(inputs) => {
                let mut v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                v[crate::execute::saved::KEY] = serde_json::to_value(inputs).unwrap_or_default();
                text = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
            }
            Err(e) => return Err(Failure::usage("cannot record the plan's inputs", &e, None)),
        }
    }
    match out {
        None => {
            super::print_out(&text)?;
        }
        Some(path) => {
            if let Err(e) = write_atomically(path, &text) {
                let what = format!("cannot write {}", path.display());
                return Err(Failure::usage(&what, &e, None));
            }
            eprintln!("wrote {} ({})", path.display(), graph.fingerprint);
        }
    }
    Ok(EXIT_OK)
}

/// Write beside the target and rename, so a reviewer never sees half a plan. The temporary
/// file (tempfile's: a unique name, removed if anything fails) is created with the mode a plain
/// write would give, umask applied.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".runbook-plan")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
