//! `runbook apply` and `runbook resume`: compile, approve, lock, connect, walk, report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::{
    Done, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_USAGE, Failure, read_param_values,
};
use crate::cli::{ApplyInput, PlanInput, RunOptions};
use crate::compile::{ParamValue, RunValues};
use crate::execute::gate::Approval;
use crate::execute::journal::{self, Decision, RunStatus};
use crate::execute::rundir::RunDir;
use crate::execute::session::{self, Hosts, Rollback, Session, reap_earlier};
use crate::execute::state::{RunState, Status};
use crate::execute::walk::Limits;
use crate::graph::StepGraph;
use crate::pipeline;

pub fn apply(
    input: &ApplyInput,
    opts: &RunOptions,
    dry_run: bool,
    run_dir: Option<&Path>,
    local: bool,
) -> Done {
    let (plan, inventory, sets, reviewed) = inputs(input, opts, dry_run)?;
    let approval = approval(&reviewed, opts, dry_run)?;
    // What only the run decides (its start, its id) comes in now, after the approval.
    let values = RunValues::now(&crate::execute::rundir::new_run_id());
    let graph =
        pipeline::for_run(reviewed, &plan, &inventory, &sets, &values).map_err(Failure::invalid)?;
    if dry_run {
        return drive(
            opts,
            Session {
                graph,
                run: None,
                state: None,
                approval,
                output: opts.output,
                limits: limits(opts),
                hosts: Hosts::DryRun,
                resumed: false,
            },
        );
    }
    let run = session::record_run(&graph, plan, inventory, &sets, &values, run_dir, local)
        .map_err(|p| Failure::usage(&p.what, &p.cause, p.hint.as_deref()))?;
    drive(
        opts,
        Session {
            graph,
            run: Some(run),
            state: None,
            approval,
            output: opts.output,
            limits: limits(opts),
            hosts: hosts(local),
            resumed: false,
        },
    )
}

/// The plan to run: compiled from a plan and inventory, or from a saved plan's recorded
/// inputs after checking that none of them changed and that they compile to what was saved.
fn inputs(
    input: &ApplyInput,
    opts: &RunOptions,
    dry_run: bool,
) -> Result<(PathBuf, PathBuf, Vec<ParamValue>, StepGraph), Failure> {
    if let Some(saved) = crate::execute::saved::read(&input.plan) {
        let (fingerprint, rec) =
            saved.map_err(|e| Failure::usage("cannot read the saved plan", &e, None))?;
        if input.inventory.is_some() || !input.set.is_empty() || !input.set_file.is_empty() {
            return Err(Failure::usage(
                "a saved plan carries its own inventory and parameters",
                &format!("{} was given -i or --set", input.plan.display()),
                Some("run it as it was reviewed: runbook apply FILE --approve FINGERPRINT"),
            ));
        }
        if opts.approve.is_none() && !dry_run {
            return Err(Failure::usage(
                "a saved plan runs only with the approval of its fingerprint",
                &format!("{} is {fingerprint}", input.plan.display()),
                Some(&format!(
                    "runbook apply {} --approve {fingerprint}",
                    input.plan.display()
                )),
            ));
        }
        let changed = crate::execute::saved::changed(&rec);
        if !changed.is_empty() {
            return Err(Failure::usage(
                "refusing to run the saved plan: its inputs changed since it was reviewed",
                &changed.join("; "),
                Some("compile and review it again with `runbook plan ... --out FILE`"),
            ));
        }
        let sets = crate::execute::saved::params(&rec);
        let graph = compile(&rec.plan.path, &rec.inventory.path, &sets)?;
        if graph.fingerprint != fingerprint {
            return Err(Failure::usage(
                "refusing to run the saved plan: it no longer compiles to what was saved",
                &format!("saved {fingerprint}, now {}", graph.fingerprint),
                Some("this runbook version compiles the plan differently; review it again"),
            ));
        }
        return Ok((rec.plan.path, rec.inventory.path, sets, graph));
    }
    let Some(inv) = &input.inventory else {
        return Err(Failure::usage(
            &format!("{} needs an inventory", input.plan.display()),
            &"no -i INVENTORY was given",
            Some("runbook apply PLAN -i INVENTORY [--set NAME=VALUE ...]"),
        ));
    };
    let as_plan_input = PlanInput {
        plan: input.plan.clone(),
        inventory: inv.clone(),
        set: input.set.clone(),
        set_file: input.set_file.clone(),
    };
    let sets = read_param_values(&as_plan_input)?;
    let plan = crate::plan::bundled::reference(&input.plan);
    let inventory = absolute(inv);
    let graph = compile(&plan, &inventory, &sets)?;
    Ok((plan, inventory, sets, graph))
}

pub fn resume(run: &str, retry: &[String], skip: &[String], opts: &RunOptions) -> Done {
    let dir = match RunDir::find(run) {
        Ok(d) => d,
        Err(e) => {
            return Err(Failure::usage(
                "cannot resume",
                &e,
                Some("runs live in .runbook/runs/<run-id>; pass the id or the directory"),
            ));
        }
    };
    let info = match dir.info() {
        Ok(i) => i,
        Err(e) => return Err(Failure::usage("cannot resume", &e, None)),
    };
    let sets: Vec<ParamValue> = info.params.iter().map(ParamValue::from).collect();
    let graph = compile(&info.plan, &info.inventory, &sets)?;
    if graph.fingerprint != info.fingerprint {
        return Err(Failure::usage(
            &format!("refusing to resume run {}: the plan changed", info.run_id),
            &format!(
                "the run was started with {} and {} now compile to {}",
                info.fingerprint,
                info.plan.display(),
                graph.fingerprint
            ),
            Some(
                "a resumed run must do exactly what was approved; start a new run with `runbook apply`",
            ),
        ));
    }
    // The run goes on with the values it started with (its file names, say), recorded then.
    let graph = match &info.run_values {
        Some(values) => pipeline::for_run(graph, &info.plan, &info.inventory, &sets, values)
            .map_err(Failure::invalid)?,
        None => graph,
    };
    let records = match journal::read(&dir.journal()) {
        Ok(r) => r,
        Err(e) => return Err(Failure::usage("cannot resume", &e, None)),
    };
    let mut state = RunState::replay(&graph, &records);
    if state.status.iter().all(Status::satisfied) {
        // An engine killed as it finished may have left its masters behind.
        for w in reap_earlier(&dir, None) {
            eprintln!("warning: {w}");
        }
        eprintln!("run {} already succeeded; nothing to resume", info.run_id);
        return Ok(EXIT_OK);
    }
    // The operator's decisions, checked before anything is written.
    let mut decisions = Vec::new();
    for (ids, decision) in [(retry, Decision::Retry), (skip, Decision::Skip)] {
        for id in ids {
            let Some(i) = graph.runbook.instances.iter().position(|x| &x.id == id) else {
                return Err(Failure::usage(
                    &format!("no step {id:?} in run {}", info.run_id),
                    &"--retry and --skip take a STEP@NODE id as `runbook status` shows it",
                    None,
                ));
            };
            if state.status[i].satisfied() {
                return Err(Failure::usage(
                    &format!("{id} already succeeded in run {}", info.run_id),
                    &"only unknown, failed or skipped steps take --retry or --skip",
                    None,
                ));
            }
            decisions.push((i, decision));
        }
    }
    for &(i, d) in &decisions {
        state.status[i] = match d {
            Decision::Retry => Status::Pending,
            Decision::Skip => Status::SkippedByOperator,
        };
    }
    // Unknown steps stay unknown until the hosts' record of the run has been read (once
    // connected): settled from it, re-run if safe, or left to the operator.
    for s in state.status.iter_mut() {
        if matches!(
            s,
            Status::Failed | Status::TimedOut | Status::Declined | Status::Skipped(_)
        ) {
            *s = Status::Pending;
        }
    }
    let approval = approval(&graph, opts, false)?;
    let local = info.local;
    drive(
        opts,
        Session {
            graph,
            run: Some((dir, info)),
            state: Some((state, decisions)),
            approval,
            output: opts.output,
            limits: limits(opts),
            hosts: hosts(local),
            resumed: true,
        },
    )
}

/// Runs a session and renders its outcome: the summary on stdout, the verdict, rollback
/// notes and the next step on stderr, and the exit code.
fn drive(opts: &RunOptions, s: Session) -> Done {
    let o = session::run(s).map_err(|p| Failure::usage(&p.what, &p.cause, p.hint.as_deref()))?;
    // Written whatever the outcome: a failed backup is exactly what the metrics must show.
    let metrics = match (&opts.metrics_file, &o.run_dir) {
        (Some(path), Some(dir)) => write_metrics(path, dir).err(),
        _ => None,
    };
    // The run is over whatever happens to its output; output that could not be written
    // (other than to a reader that left) fails a run that otherwise succeeded.
    let printed = match (&o.summary, &o.output_failed) {
        (_, Some(e)) => {
            eprintln!("error: cannot write the run's events to standard output: {e}");
            false
        }
        // Said now, by the one printer, as the run's own verdict follows.
        (Some(summary), None) => super::print_out(summary).map_err(|f| f.report()).is_ok(),
        (None, None) => true,
    };
    let took = o.took.as_secs_f64();
    let run_id = &o.run_id;
    match o.status {
        RunStatus::Succeeded if o.dry_run => {
            eprintln!("dry-run of {} steps: nothing was run", o.steps);
        }
        RunStatus::Succeeded => eprintln!("run {run_id} succeeded in {took:.1}s"),
        RunStatus::Failed | RunStatus::Interrupted => {
            eprintln!(
                "run {run_id} {} after {took:.1}s: {} of {} steps succeeded",
                if o.status == RunStatus::Interrupted {
                    "interrupted"
                } else {
                    "FAILED"
                },
                o.succeeded,
                o.steps
            );
            match &o.rollback {
                Some(Rollback::Notes { text, written }) => {
                    eprint!("{text}");
                    match written {
                        Some(Ok(path)) => eprintln!("  (written to {})", path.display()),
                        Some(Err(e)) => eprintln!("warning: {e}"),
                        None => {}
                    }
                }
                Some(Rollback::Unchanged) | None => {
                    eprintln!(
                        "No destructive step started; the cluster was not changed by this run."
                    )
                }
            }
            if let Some(d) = &o.run_dir {
                eprintln!(
                    "  hint: fix the cause, then `runbook resume {}`; logs in {}",
                    d.display(),
                    d.join("logs").display()
                );
            }
        }
    }
    if let Some(f) = &metrics {
        f.report();
    }
    // The run's failure was told as it happened, and summed up above.
    Err(Failure::Shown(match o.status {
        RunStatus::Succeeded if printed && metrics.is_none() => return Ok(EXIT_OK),
        RunStatus::Succeeded => EXIT_INVALID,
        RunStatus::Interrupted => EXIT_INTERRUPTED,
        RunStatus::Failed if o.refusal.as_ref().is_some_and(|r| r.needs_a_fix()) => EXIT_USAGE,
        RunStatus::Failed => EXIT_INVALID,
    }))
}

/// Decides how gates are passed, or refuses before anything starts.
fn approval(g: &StepGraph, opts: &RunOptions, dry_run: bool) -> Result<Approval, Failure> {
    if dry_run {
        return Ok(Approval::DryRun);
    }
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if opts.step && !tty {
        return Err(Failure::usage(
            "--step needs a terminal to ask on",
            &"standard input or standard error is not a terminal",
            None,
        ));
    }
    if let Some(fp) = &opts.approve {
        let want = fp.strip_prefix("sha256:").unwrap_or(fp);
        let have = g
            .fingerprint
            .strip_prefix("sha256:")
            .unwrap_or(&g.fingerprint);
        if want != have {
            return Err(Failure::usage(
                "refusing to run: the approval is for a different plan",
                &format!("--approve {fp} but this plan compiles to {}", g.fingerprint),
                Some("re-review with `runbook plan` (plan, inventory or parameters changed)"),
            ));
        }
    }
    // `--step` asks even when the plan was approved in advance: the operator asked to.
    if opts.step {
        return Ok(Approval::Stages);
    }
    if opts.approve.is_some() {
        return Ok(Approval::Fingerprint);
    }
    if opts.yes {
        return Ok(Approval::Yes);
    }
    let gated = g
        .runbook
        .instances
        .iter()
        .filter(|i| i.destructive || i.confirm)
        .count();
    if gated == 0 {
        return Ok(Approval::Yes);
    }
    if tty {
        // Read-only checks at the plan's start (what a restore rolls back, whether Secrets
        // stay readable) run first, and the one question shows what they found.
        if crate::execute::gate::checks(g).contains(&true) {
            return Ok(Approval::AfterChecks);
        }
        // Otherwise the whole plan, once, before anything is locked or started: time at the
        // prompt is not the run's.
        if crate::execute::gate::confirm_plan(g) {
            return Ok(Approval::Confirmed);
        }
        return Err(Failure::invalid("declined: nothing was run"));
    }
    Err(Failure::usage(
        &format!("refusing to run {gated} destructive steps without approval"),
        &"there is no terminal to confirm them on",
        Some(&format!(
            "review `runbook plan`, then pass --approve {} (or --yes)",
            g.fingerprint
        )),
    ))
}

/// The run's metrics into `path`, atomically (a temporary file beside it, renamed), carrying
/// the last success over from the file it replaces.
fn write_metrics(path: &Path, run_dir: &Path) -> Result<(), Failure> {
    let cannot = |e: &dyn std::fmt::Display| {
        Failure::usage(
            &format!("cannot write the metrics to {}", path.display()),
            e,
            None,
        )
    };
    let dir = RunDir::find(&run_dir.display().to_string()).map_err(|e| cannot(&e))?;
    let report = crate::report::build(&dir).map_err(|e| cannot(&e))?;
    let previous = std::fs::read_to_string(path).ok();
    let text = crate::report::prometheus(&report, previous.as_deref());
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".runbook-metrics")
        .tempfile_in(parent)
        .map_err(|e| cannot(&e))?;
    use std::io::Write as _;
    tmp.write_all(text.as_bytes()).map_err(|e| cannot(&e))?;
    // node-exporter runs as another user: the file is readable, like any textfile metric.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(|e| cannot(&e))?;
    tmp.persist(path).map_err(|e| cannot(&e.error))?;
    Ok(())
}

/// `--parallel` and `--per-host`.
fn limits(opts: &RunOptions) -> Limits {
    Limits {
        parallel: usize::from(opts.parallel),
        per_host: usize::from(opts.per_host),
    }
}

/// Over SSH, or on this machine with `--local`.
fn hosts(local: bool) -> Hosts {
    if local { Hosts::Local } else { Hosts::Ssh }
}

fn compile(plan: &Path, inventory: &Path, sets: &[ParamValue]) -> Result<StepGraph, Failure> {
    let compiled = pipeline::compile_files(plan, inventory, sets)
        .map_err(|e| super::unreadable_failure(&e))?;
    eprint!("{}", compiled.diagnostics.render(&compiled.sources));
    compiled.graph.ok_or_else(|| {
        Failure::invalid(format!(
            "{} does not compile with {}; nothing was run",
            plan.display(),
            inventory.display()
        ))
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
