//! `runbook apply` and `runbook resume`: compile, approve, lock, connect, walk, report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_USAGE, param_values, usage_error};
use crate::cli::{ApplyInput, PlanInput, RunOptions};
use crate::compile::ParamValue;
use crate::execute::gate::{Approval, Gate};
use crate::execute::journal::{self, Decision, Event, Journal, RunStatus};
use crate::execute::lock::{self, Holder, LocalLock};
use crate::execute::record;
use crate::execute::report::Reporter;
use crate::execute::rundir::{self, RunDir, RunInfo, SetParam};
use crate::execute::state::{RunState, Status};
use crate::execute::walk::{self, Limits, Records, Shared};
use crate::executor::{Executor, dry_run::DryRun, local::Local, ssh::Ssh};
use crate::graph::{StepGraph, render};
use crate::inventory::model::Node;
use crate::pipeline;

pub fn apply(
    input: &ApplyInput,
    opts: &RunOptions,
    dry_run: bool,
    run_dir: Option<&Path>,
    local: bool,
) -> u8 {
    let (plan, inventory, sets, graph) = match inputs(input, opts, dry_run) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let approval = match approval(&graph, opts, dry_run) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if dry_run {
        return drive(Session {
            graph,
            run: None,
            state: None,
            approval,
            opts,
            local,
            resumed: false,
            dry_run: true,
            control: None,
        });
    }
    let run_id = rundir::new_run_id();
    let dir = run_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(rundir::DEFAULT_RUNS).join(&run_id));
    let run = match RunDir::create(&dir) {
        Ok(r) => r,
        Err(e) => return usage_error("cannot start the run", &e, None),
    };
    let info = RunInfo {
        run_id,
        plan,
        inventory,
        params: sets.iter().map(SetParam::from).collect(),
        fingerprint: graph.fingerprint.clone(),
        cluster: graph.runbook.inventory.cluster.clone(),
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        local,
        runbook_version: Some(env!("CARGO_PKG_VERSION").into()),
        etcd_version: Some(graph.runbook.inventory.etcd.version.to_string()),
    };
    let saved = serde_json::to_vec_pretty(&info)
        .map_err(|e| e.to_string())
        .and_then(|j| run.write("run.json", &j))
        .and_then(|()| run.write("plan.json", render::json(&graph).as_bytes()))
        .and_then(|()| run.write("plan.txt", render::text(&graph).as_bytes()));
    if let Err(e) = saved {
        return usage_error("cannot record the run", &e, None);
    }
    drive(Session {
        graph,
        run: Some((run, info)),
        state: None,
        approval,
        opts,
        local,
        resumed: false,
        dry_run: false,
        control: None,
    })
}

/// The plan to run: compiled from a plan and inventory, or from a saved plan's recorded
/// inputs after checking that none of them changed and that they compile to what was saved.
fn inputs(
    input: &ApplyInput,
    opts: &RunOptions,
    dry_run: bool,
) -> Result<(PathBuf, PathBuf, Vec<ParamValue>, StepGraph), u8> {
    if let Some(saved) = crate::execute::saved::read(&input.plan) {
        let (fingerprint, rec) =
            saved.map_err(|e| usage_error("cannot read the saved plan", &e, None))?;
        if input.inventory.is_some() || !input.set.is_empty() || !input.set_file.is_empty() {
            return Err(usage_error(
                "a saved plan carries its own inventory and parameters",
                &format!("{} was given -i or --set", input.plan.display()),
                Some("run it as it was reviewed: runbook apply FILE --approve FINGERPRINT"),
            ));
        }
        if opts.approve.is_none() && !dry_run {
            return Err(usage_error(
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
            return Err(usage_error(
                "refusing to run the saved plan: its inputs changed since it was reviewed",
                &changed.join("; "),
                Some("compile and review it again with `runbook plan ... --out FILE`"),
            ));
        }
        let sets = crate::execute::saved::params(&rec);
        let graph = compile(&rec.plan.path, &rec.inventory.path, &sets)?;
        if graph.fingerprint != fingerprint {
            return Err(usage_error(
                "refusing to run the saved plan: it no longer compiles to what was saved",
                &format!("saved {fingerprint}, now {}", graph.fingerprint),
                Some("this runbook version compiles the plan differently; review it again"),
            ));
        }
        return Ok((rec.plan.path, rec.inventory.path, sets, graph));
    }
    let Some(inv) = &input.inventory else {
        return Err(usage_error(
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
    let sets = param_values(&as_plan_input)?;
    let plan = absolute(&input.plan);
    let inventory = absolute(inv);
    let graph = compile(&plan, &inventory, &sets)?;
    Ok((plan, inventory, sets, graph))
}

pub fn resume(run: &str, retry: &[String], skip: &[String], opts: &RunOptions) -> u8 {
    let dir = match RunDir::find(run) {
        Ok(d) => d,
        Err(e) => {
            return usage_error(
                "cannot resume",
                &e,
                Some("runs live in .runbook/runs/<run-id>; pass the id or the directory"),
            );
        }
    };
    let info = match dir.info() {
        Ok(i) => i,
        Err(e) => return usage_error("cannot resume", &e, None),
    };
    let sets: Vec<ParamValue> = info.params.iter().map(ParamValue::from).collect();
    let graph = match compile(&info.plan, &info.inventory, &sets) {
        Ok(g) => g,
        Err(code) => return code,
    };
    if graph.fingerprint != info.fingerprint {
        return usage_error(
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
        );
    }
    let records = match journal::read(&dir.journal()) {
        Ok(r) => r,
        Err(e) => return usage_error("cannot resume", &e, None),
    };
    let mut state = RunState::replay(&graph, &records);
    if state.status.iter().all(Status::satisfied) {
        // An engine killed as it finished may have left its masters behind.
        for w in reap_earlier(&dir, None) {
            eprintln!("warning: {w}");
        }
        eprintln!("run {} already succeeded; nothing to resume", info.run_id);
        return EXIT_OK;
    }
    // The operator's decisions, checked before anything is written.
    let mut decisions = Vec::new();
    for (ids, decision) in [(retry, Decision::Retry), (skip, Decision::Skip)] {
        for id in ids {
            let Some(i) = graph.runbook.instances.iter().position(|x| &x.id == id) else {
                return usage_error(
                    &format!("no step {id:?} in run {}", info.run_id),
                    &"--retry and --skip take a STEP@NODE id as `runbook status` shows it",
                    None,
                );
            };
            if state.status[i].satisfied() {
                return usage_error(
                    &format!("{id} already succeeded in run {}", info.run_id),
                    &"only unknown, failed or skipped steps take --retry or --skip",
                    None,
                );
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
    let approval = match approval(&graph, opts, false) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let local = info.local;
    drive(Session {
        graph,
        run: Some((dir, info)),
        state: Some((state, decisions)),
        approval,
        opts,
        local,
        resumed: true,
        dry_run: false,
        control: None,
    })
}

/// Everything a walk needs, for a new run, a resumed one or a dry-run.
struct Session<'a> {
    graph: StepGraph,
    run: Option<(RunDir, RunInfo)>,
    /// A resumed run's replayed state and the operator's decisions.
    state: Option<(RunState, Vec<(usize, Decision)>)>,
    approval: Approval,
    opts: &'a RunOptions,
    local: bool,
    resumed: bool,
    dry_run: bool,
    /// This process's private SSH control directory, when steps run over SSH.
    control: Option<PathBuf>,
}

fn drive(s: Session) -> u8 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return usage_error("cannot start the async runtime", &e, None),
    };
    rt.block_on(async move {
        if s.dry_run {
            drive_with(s, DryRun).await
        } else if s.local {
            drive_with(s, Local).await
        } else {
            let control = match crate::executor::ssh::private_control_dir("apply") {
                Ok(d) => d,
                Err(e) => {
                    return usage_error("cannot create the SSH control directory", &e, None);
                }
            };
            let exec = Ssh::new(control.path().to_path_buf());
            let code = drive_with(
                Session {
                    control: Some(control.path().to_path_buf()),
                    ..s
                },
                exec,
            )
            .await;
            // Dropping it removes it (also when unwinding from a panic).
            drop(control);
            code
        }
    })
}

async fn drive_with<E: Executor + 'static>(s: Session<'_>, exec: E) -> u8 {
    let graph = Arc::new(s.graph);
    let exec = Arc::new(exec);
    let run_id = s
        .run
        .as_ref()
        .map_or_else(|| "dry-run".to_string(), |r| r.1.run_id.clone());
    let cluster = graph.runbook.inventory.cluster.clone();
    let holder = Holder::this_process(&run_id, &cluster);
    let (user, host) = (holder.user.clone(), holder.host.clone());
    let reporter = Reporter::new(s.opts.output, graph.runbook.instances.len());
    // Every node of the cluster: the lock covers the cluster, and etcd-native steps on this
    // machine reach every member through its master.
    let nodes: Vec<&Node> = graph.runbook.inventory.nodes.iter().collect();

    // One run per cluster: first on this machine, then on every node once reachable.
    let _local_lock = if s.dry_run {
        None
    } else {
        match LocalLock::acquire(&holder) {
            Ok(l) => Some(l),
            Err(e) => {
                // A new run refused this early has done nothing: leave no run directory behind.
                if let (false, Some((dir, _))) = (s.resumed, &s.run) {
                    let _ = std::fs::remove_dir_all(&dir.path);
                }
                return usage_error(
                    "another run holds this cluster",
                    &e,
                    Some("wait for it to finish, or resume it with `runbook resume RUN`"),
                );
            }
        }
    };
    // Under the lock, so a run still going keeps its masters: those of earlier processes of
    // this run (killed, say) are stopped, and this process's directory is recorded after theirs.
    if let (Some(control), Some((dir, _))) = (&s.control, &s.run) {
        for w in reap_earlier(dir, None) {
            reporter.say(&format!("warning: {w}"));
        }
        let mut line = control.as_os_str().as_encoded_bytes().to_vec();
        line.push(b'\n');
        if let Err(e) = dir.append(CONTROL_RECORD, &line) {
            reporter.say(&format!("warning: {e}"));
        }
    }
    let journal = match &s.run {
        Some((dir, _)) => match Journal::open(&dir.journal()) {
            Ok(j) => Some(j),
            Err(e) => {
                return usage_error(
                    &format!("cannot open the journal {}", dir.journal().display()),
                    &e,
                    None,
                );
            }
        },
        None => None,
    };
    if let Some((dir, _)) = &s.run {
        reporter.say(&format!(
            "run {run_id}: {} on {cluster} ({} steps); journal and logs in {}",
            graph.runbook.name,
            graph.runbook.instances.len(),
            dir.path.display()
        ));
    }
    let gate = Gate::new(s.approval, s.opts.step);
    let run_dir = s.run.as_ref().map(|r| r.0.clone());
    let shared = Arc::new(Shared::new(
        graph.clone(),
        exec.clone(),
        gate,
        reporter,
        journal,
        run_dir.clone(),
        run_dir.as_ref().filter(|_| !s.dry_run).map(|d| Records {
            run_id: run_id.clone(),
            local: record::Place::local(&d.path),
        }),
    ));
    shared.emit(Event::RunStarted {
        run_id: run_id.clone(),
        plan: graph.runbook.name.clone(),
        cluster: cluster.clone(),
        fingerprint: graph.fingerprint.clone(),
        user,
        host,
        pid: std::process::id(),
        resumed: s.resumed,
        dry_run: s.dry_run,
    });
    let (mut state, decisions) = s
        .state
        .unwrap_or_else(|| (RunState::new(&graph), Vec::new()));
    for (i, decision) in decisions {
        shared.emit(Event::Decision {
            id: graph.instance(i).id.clone(),
            decision,
        });
    }

    // Every host is reached and locked before the first step: a run that cannot finish
    // for want of a host should not start changing the others.
    let unreachable = exec.connect(&nodes).await;
    let mut refused = None;
    // Refused before anything ran for a reason the operator must fix (exit 2).
    let mut refused_early = false;
    if !unreachable.is_empty() {
        for (_, e) in &unreachable {
            shared.reporter.say(&format!("error: {e}"));
        }
        refused = Some(format!(
            "not started: unreachable {}",
            unreachable
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else if !s.dry_run
        && let problems = crate::execute::tools::check(exec.as_ref(), &graph).await
        && !problems.is_empty()
    {
        for p in &problems {
            shared.reporter.say(&format!("error: {p}"));
        }
        refused = Some("not started: etcd tools missing or mismatched".to_string());
        refused_early = true;
    } else if let Some(dir) = run_dir.as_ref().filter(|_| !s.dry_run)
        && let Err(problems) = settle_from_records(
            exec.as_ref(),
            &graph,
            &nodes,
            &run_id,
            dir,
            &mut state,
            &shared.reporter,
        )
        .await
    {
        for p in &problems {
            shared.reporter.say(&format!("error: {p}"));
        }
        refused = Some("not started: steps of unknown outcome need a decision".to_string());
        refused_early = true;
    } else if !s.dry_run
        && let Err(e) = lock::acquire_nodes(exec.as_ref(), &nodes, &holder).await
    {
        shared.reporter.say(&format!("error: {e}"));
        let inventory = s.run.as_ref().map_or_else(
            || "INVENTORY".to_string(),
            |r| crate::shell::quote(&r.1.inventory.display().to_string()),
        );
        shared.reporter.say(&format!(
            "  hint: wait for that run, or resume it; once it is over, `runbook unlock {cluster} -i {inventory}{}` removes a lock whose holder is provably gone, and with --force any lock",
            if s.local { " --local" } else { "" }
        ));
        refused = Some("not started: cluster locked".to_string());
        refused_early = true;
    }
    if let Some(reason) = &refused {
        for &i in &graph.order {
            if state.status[i] == Status::Pending {
                shared.emit(Event::StepSkipped {
                    id: graph.instance(i).id.clone(),
                    reason: reason.clone(),
                });
                state.status[i] = Status::Skipped(reason.clone());
            }
        }
    } else {
        let limits = Limits {
            parallel: usize::from(s.opts.parallel),
            per_host: usize::from(s.opts.per_host),
        };
        state = walk::walk(shared.clone(), state, limits).await;
        if !s.dry_run {
            lock::release_nodes(exec.as_ref(), &nodes, &run_id).await;
        }
    }
    shared.reporter.finish();

    let interrupted = state
        .status
        .iter()
        .any(|x| matches!(x, Status::Skipped(r) if r == "interrupted"));
    let ok = state.status.iter().all(Status::satisfied);
    let status = if ok {
        RunStatus::Succeeded
    } else if interrupted {
        RunStatus::Interrupted
    } else {
        RunStatus::Failed
    };
    shared.emit(Event::RunFinished { status });
    exec.close().await;
    // A master an earlier process was still starting when this one reaped its directory
    // may have come up since: stop it too, now that nothing of the run needs the hosts.
    if let (Some(control), Some((dir, _))) = (&s.control, &s.run) {
        for w in reap_earlier(dir, Some(control)) {
            shared.reporter.say(&format!("warning: {w}"));
        }
    }

    // The run is over whatever happens to its output; output that could not be written
    // (other than to a reader that left) fails a run that otherwise succeeded.
    let printed = if shared.reporter.is_json() {
        match shared.reporter.stdout_failure() {
            Some(e) => {
                eprintln!("error: cannot write the run's events to standard output: {e}");
                false
            }
            None => true,
        }
    } else {
        super::print_out(&shared.reporter.summary(&graph, &state, s.dry_run)).is_ok()
    };
    let took = shared.reporter.elapsed().as_secs_f64();
    let counts = count(&state);
    match status {
        RunStatus::Succeeded if s.dry_run => {
            eprintln!("dry-run of {} steps: nothing was run", counts.0);
        }
        RunStatus::Succeeded => eprintln!("run {run_id} succeeded in {took:.1}s"),
        _ => {
            eprintln!(
                "run {run_id} {} after {took:.1}s: {} of {} steps succeeded",
                if interrupted { "interrupted" } else { "FAILED" },
                counts.1,
                counts.0
            );
            rollback_notes(&graph, &state, run_dir.as_ref());
            if let Some(d) = &run_dir {
                eprintln!(
                    "  hint: fix the cause, then `runbook resume {}`; logs in {}",
                    d.path.display(),
                    d.path.join("logs").display()
                );
            }
        }
    }
    match status {
        RunStatus::Succeeded if !printed => EXIT_INVALID,
        RunStatus::Succeeded => EXIT_OK,
        RunStatus::Interrupted => EXIT_INTERRUPTED,
        RunStatus::Failed if refused_early => EXIT_USAGE,
        RunStatus::Failed => EXIT_INVALID,
    }
}

/// Reads (on resume) and opens this run's record on every host, then settles each step the
/// journal saw start but never end: with a record, the walk re-attaches to that attempt
/// (finished → its recorded status, running → waited for, never launched → run); without
/// one, a step safe to re-run starts afresh, and any other needs the operator, who is told
/// what was found.
async fn settle_from_records<E: Executor>(
    exec: &E,
    graph: &StepGraph,
    nodes: &[&Node],
    run_id: &str,
    dir: &RunDir,
    state: &mut RunState,
    reporter: &Reporter,
) -> Result<(), Vec<String>> {
    let local = record::Place::local(&dir.path);
    let local_kept = std::path::Path::new(local.dir()).is_dir();
    let unknown: Vec<usize> = (0..state.status.len())
        .filter(|&i| state.status[i] == Status::Unknown)
        .collect();
    let found = record::prepare(exec, nodes, run_id, unknown.is_empty()).await?;
    let mut undecided = Vec::new();
    for &i in &unknown {
        let inst = graph.instance(i);
        let recorded = match &inst.node {
            Some(n) => !found.without_record.contains(n),
            None => local_kept,
        };
        if recorded {
            state.status[i] = Status::Pending;
            state.reattach[i] = true;
            reporter.say(&format!(
                "settle   {} from the record of attempt {} on {}",
                inst.id,
                state.attempts[i].max(1),
                inst.node.as_deref().unwrap_or("this machine")
            ));
        } else if inst.idempotent {
            state.status[i] = Status::Pending;
            reporter.say(&format!(
                "rerun    {} (no record of it on {}; safe to run again)",
                inst.id,
                inst.node.as_deref().unwrap_or("this machine")
            ));
        } else {
            undecided.push(i);
        }
    }
    if !undecided.is_empty() {
        let mut problems = vec![format!(
            "refusing to resume run {run_id}: these steps started and never finished, the hosts keep no record of them, and they are not safe to re-run blindly:"
        )];
        for &i in &undecided {
            let inst = graph.instance(i);
            let (host, place) = match &inst.node {
                Some(n) => (n.as_str(), record::Place::node(run_id).dir().to_string()),
                None => ("this machine", local.dir().to_string()),
            };
            problems.push(format!(
                "  {}  [{}]{}: {host} has no {place} (the host was rebuilt, or its record removed); log: {}",
                inst.id,
                inst.action_name,
                if inst.destructive { "  DESTRUCTIVE" } else { "" },
                dir.log(&inst.id).display()
            ));
        }
        problems.push(
            "  hint: check each host, then resume with --retry STEP@NODE (run it again) or --skip STEP@NODE (it is done)".to_string(),
        );
        // One message: printed once behind `error:`.
        return Err(vec![problems.join("\n")]);
    }
    if !unknown.is_empty() {
        record::prepare(exec, nodes, run_id, true).await?;
    }
    crate::execute::rundir::private_dir(std::path::Path::new(local.dir())).map_err(|e| vec![e])?;
    Ok(())
}

fn count(state: &RunState) -> (usize, usize) {
    (
        state.status.len(),
        state.status.iter().filter(|s| s.satisfied()).count(),
    )
}

/// On failure: what each completed destructive step changed and how to undo it, newest first.
fn rollback_notes(g: &StepGraph, state: &RunState, run_dir: Option<&RunDir>) {
    let notes: Vec<String> = state
        .finished_order
        .iter()
        .rev()
        .filter(|&&i| g.instance(i).destructive && state.status[i].satisfied())
        .map(|&i| {
            let inst = g.instance(i);
            format!(
                "{} (on {}): {}",
                inst.id,
                inst.node.as_deref().unwrap_or("this machine"),
                inst.rollback.as_deref().unwrap_or("no rollback note")
            )
        })
        .collect();
    // A destructive step that started and did not succeed may have done part of its work
    // (a manifest parked before the next one failed): its note is shown too, said as such.
    let partial: Vec<String> = (0..state.status.len())
        .filter(|&i| {
            g.instance(i).destructive
                && state.attempts[i] > 0
                && (state.status[i].failed() || state.status[i] == Status::Unknown)
        })
        .map(|i| {
            let inst = g.instance(i);
            format!(
                "{} (on {}, {}): {}",
                inst.id,
                inst.node.as_deref().unwrap_or("this machine"),
                state.status[i].label(),
                inst.rollback.as_deref().unwrap_or("no rollback note")
            )
        })
        .collect();
    if notes.is_empty() && partial.is_empty() {
        eprintln!("No destructive step started; the cluster was not changed by this run.");
        return;
    }
    let mut text = String::new();
    if !notes.is_empty() {
        text.push_str("Completed destructive steps, newest first, with their rollback notes:\n");
        for n in &notes {
            text.push_str(&format!("  - {n}\n"));
        }
    }
    if !partial.is_empty() {
        text.push_str(
            "Destructive steps that started and did not finish cleanly (they may have done part of their work):\n",
        );
        for n in &partial {
            text.push_str(&format!("  - {n}\n"));
        }
    }
    eprint!("{text}");
    if let Some(d) = run_dir {
        match d.write("rollback.txt", text.as_bytes()) {
            Ok(()) => eprintln!("  (written to {})", d.path.join("rollback.txt").display()),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
}

/// Decides how gates are passed, or refuses before anything starts.
fn approval(g: &StepGraph, opts: &RunOptions, dry_run: bool) -> Result<Approval, u8> {
    if dry_run {
        return Ok(Approval::DryRun);
    }
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if opts.step && !tty {
        return Err(usage_error(
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
            return Err(usage_error(
                "refusing to run: the approval is for a different plan",
                &format!("--approve {fp} but this plan compiles to {}", g.fingerprint),
                Some("re-review with `runbook plan` (plan, inventory or parameters changed)"),
            ));
        }
        return Ok(Approval::Fingerprint);
    }
    if opts.yes {
        return Ok(Approval::Yes);
    }
    if tty {
        return Ok(Approval::Ask);
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
    Err(usage_error(
        &format!("refusing to run {gated} destructive steps without approval"),
        &"there is no terminal to confirm them on",
        Some(&format!(
            "review `runbook plan`, then pass --approve {} (or --yes)",
            g.fingerprint
        )),
    ))
}

fn compile(plan: &Path, inventory: &Path, sets: &[ParamValue]) -> Result<StepGraph, u8> {
    let compiled = match pipeline::compile_files(plan, inventory, sets) {
        Ok(c) => c,
        Err(e) => return Err(super::unreadable(&e)),
    };
    eprint!("{}", compiled.diagnostics.render(&compiled.sources));
    compiled.graph.ok_or_else(|| {
        eprintln!(
            "error: {} does not compile with {}; nothing was run",
            plan.display(),
            inventory.display()
        );
        EXIT_INVALID
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Stops the masters of this run's earlier processes (killed, say), from the directories
/// they recorded, all but `own`; returns warnings about directories it left alone.
fn reap_earlier(dir: &RunDir, own: Option<&Path>) -> Vec<String> {
    let earlier = std::fs::read_to_string(dir.path.join(CONTROL_RECORD)).unwrap_or_default();
    earlier
        .lines()
        .filter(|l| !l.is_empty() && Some(Path::new(l)) != own)
        .filter_map(|l| crate::executor::ssh::reap_stale_masters(Path::new(l)).err())
        .collect()
}

/// The run directory's record of the SSH control directory of every process that ran it, one
/// a line.
const CONTROL_RECORD: &str = "ssh-control-dirs";
