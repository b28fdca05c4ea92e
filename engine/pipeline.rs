//! The offline pipeline in one call: load plan and inventory, compile, build the graph, lint.

use std::path::Path;

use crate::compile::{self, ParamValue, RunValues};
use crate::diag::{Diagnostics, SourceMap};
use crate::graph::StepGraph;
use crate::yaml::LoadFailure;
use crate::{inventory, lint, plan};

/// What a compile produced: the graph when there were no errors, and every diagnostic.
pub struct Compiled {
    pub sources: SourceMap,
    pub diagnostics: Diagnostics,
    pub graph: Option<StepGraph>,
}

/// A file could not be read at all: a usage problem, not an invalid plan.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {error}")]
pub struct Unreadable {
    pub path: String,
    #[source]
    pub error: crate::input::InputError,
}

/// Compiles for review: `run.*` values are placeholders (see [`compile::RunValues`]).
pub fn compile_files(
    plan_path: &Path,
    inventory_path: &Path,
    sets: &[ParamValue],
) -> Result<Compiled, Unreadable> {
    compile_for(plan_path, inventory_path, sets, &RunValues::placeholders())
}

/// The reviewed graph as a run executes it: compiled again with the run's own values when
/// the plan reads any (`{{ run.started }}`), keeping the reviewed fingerprint; else as is.
pub fn for_run(
    reviewed: StepGraph,
    plan_path: &Path,
    inventory_path: &Path,
    sets: &[ParamValue],
    run: &RunValues,
) -> Result<StepGraph, String> {
    if reviewed.run_values().is_empty() {
        return Ok(reviewed);
    }
    let compiled = compile_for(plan_path, inventory_path, sets, run).map_err(|e| e.to_string())?;
    compiled
        .graph
        .and_then(|g| g.as_reviewed(&reviewed))
        .ok_or_else(|| {
            format!(
                "{} compiles with the run's own values ({} {}) to another plan than the one reviewed",
                plan_path.display(),
                run.started,
                run.id
            )
        })
}

/// Compiles with a run's own values.
pub fn compile_for(
    plan_path: &Path,
    inventory_path: &Path,
    sets: &[ParamValue],
    run: &RunValues,
) -> Result<Compiled, Unreadable> {
    let mut sources = SourceMap::default();
    let mut diagnostics = Diagnostics::default();
    // Load both files before failing, so one run reports the problems of both.
    let plan = match plan::load::load(plan_path, &mut sources) {
        Ok(p) => Some(p),
        Err(LoadFailure::Unreadable { path, error }) => return Err(Unreadable { path, error }),
        Err(LoadFailure::Invalid(ds)) => {
            diagnostics.extend(ds.items);
            None
        }
    };
    let inventory = match inventory::load(inventory_path, &mut sources) {
        Ok(i) => Some(i),
        Err(LoadFailure::Unreadable { path, error }) => return Err(Unreadable { path, error }),
        Err(LoadFailure::Invalid(ds)) => {
            diagnostics.extend(ds.items);
            None
        }
    };
    let mut graph = None;
    if let (Some(plan), Some(inventory)) = (plan, inventory) {
        let (runbook, ds) = compile::compile(&plan, &inventory, sets, run);
        diagnostics.extend(ds.items);
        if let Some(rb) = runbook {
            let g = StepGraph::build(rb);
            diagnostics.extend(lint::run(&g).items);
            graph = Some(g);
        }
    }
    diagnostics.sort();
    if diagnostics.has_errors() {
        graph = None;
    }
    Ok(Compiled {
        sources,
        diagnostics,
        graph,
    })
}
