//! `runbook status RUN`: every step's state, from the run's journal and its recorded plan.

use super::{Done, EXIT_OK, Failure, print_out};
use crate::cli::DiagFormat;
use crate::execute::journal::{self, Event, RunStatus};
use crate::execute::report::table;
use crate::execute::rundir::RunDir;
use crate::execute::state::{RunState, Status};

/// The part of the recorded `plan.json` that status needs.
pub fn run(run: &str, format: DiagFormat) -> Done {
    fn cannot(what: &'static str) -> impl Fn(String) -> Failure {
        move |e| Failure::usage(what, &e, None)
    }
    let dir = RunDir::find(run).map_err(cannot("cannot show the run"))?;
    let plan = dir
        .recorded_plan()
        .map_err(cannot("cannot read the run's plan.json"))?;
    let info = dir.info().map_err(cannot("cannot show the run"))?;
    let records = journal::read(&dir.journal()).map_err(cannot("cannot read the journal"))?;
    let ids: Vec<String> = plan.steps.iter().map(|s| s.id.clone()).collect();
    let state = RunState::replay_ids(&ids, &records);
    let finished = records.iter().rev().find_map(|r| match &r.event {
        Event::RunFinished { status, .. } => Some(*status),
        _ => None,
    });
    let last_start = records
        .iter()
        .rposition(|r| matches!(r.event, Event::RunStarted { .. }));
    let last_end = records
        .iter()
        .rposition(|r| matches!(r.event, Event::RunFinished { .. }));
    let overall = match (finished, last_start > last_end) {
        (_, true) => "incomplete (the engine stopped without finishing; resume it)",
        (Some(RunStatus::Succeeded), _) => "succeeded",
        (Some(RunStatus::Failed), _) => "failed",
        (Some(RunStatus::Interrupted), _) => "interrupted",
        (None, _) => "not started",
    };
    let text = match format {
        DiagFormat::Json => {
            let steps: Vec<_> = plan
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    serde_json::json!({
                        "id": s.id,
                        "step": s.step,
                        "node": s.node,
                        "destructive": s.destructive,
                        "status": state.status[i],
                        "attempts": state.attempts[i],
                        "duration_ms": state.duration_ms[i],
                        "exit_code": state.exit_code[i],
                        "error": state.error[i],
                    })
                })
                .collect();
            let v = serde_json::json!({
                "run_id": info.run_id,
                "plan": plan.plan,
                "cluster": plan.cluster,
                "fingerprint": plan.fingerprint,
                "state": overall,
                "steps": steps,
            });
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        DiagFormat::Text => {
            let mut out = format!(
                "Run {} of {} on {} (started {})\nFingerprint: {}\nState: {overall}\n",
                info.run_id, plan.plan, plan.cluster, info.created, plan.fingerprint
            );
            let rows: Vec<[String; 4]> = plan
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    [
                        s.step.clone(),
                        s.node.clone().unwrap_or_else(|| "local".into()),
                        state.status[i].label(),
                        if state.attempts[i] > 0 {
                            format!("{:.2}s", state.duration_ms[i] as f64 / 1000.0)
                        } else {
                            "-".into()
                        },
                    ]
                })
                .collect();
            out.push_str(&table(&rows, None));
            for (i, s) in plan.steps.iter().enumerate() {
                if state.status[i] == Status::Unknown {
                    let what = if s.idempotent {
                        "resume settles it from the host's record of the run, or runs it again (safe to re-run)"
                    } else {
                        "resume settles it from the host's record of the run; without one it asks for --retry or --skip"
                    };
                    out.push_str(&format!("{} started and never finished; {what}\n", s.id));
                }
            }
            out
        }
    };
    print_out(&text)?;
    Ok(EXIT_OK)
}
