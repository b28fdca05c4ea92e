//! A run session: lock, journal, connect, tool check, settle a resume, walk, release, and
//! the outcome — typed, for `cmd/` to render (and the lab drill to read) without printing
//! anything itself but the run's live progress.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::gate::{Approval, Gate};
use super::journal::{Decision, Event, Journal, RunStatus};
use super::lock::{self, Holder, LocalLock};
use super::record;
use super::report::{OutputMode, Reporter};
use super::rundir::{self, RunDir, RunInfo, SetParam};
use super::state::{RunState, Status};
use super::walk::{self, Limits, Records, Shared};
use crate::executor::{Executor, dry_run::DryRun, local::Local, ssh::Ssh};
use crate::graph::{StepGraph, render};
use crate::inventory::model::Node;

/// Everything a walk needs, for a new run, a resumed one or a dry-run.
pub struct Session {
    pub graph: StepGraph,
    /// The run's directory and record (none for a dry-run, which writes nothing).
    pub run: Option<(RunDir, RunInfo)>,
    /// A resumed run's replayed state and the operator's decisions.
    pub state: Option<(RunState, Vec<(usize, Decision)>)>,
    pub approval: Approval,
    pub output: OutputMode,
    pub limits: Limits,
    pub hosts: Hosts,
    pub resumed: bool,
}

/// How steps reach their hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosts {
    Ssh,
    /// `--local`: node commands run on this machine.
    Local,
    /// Nothing is reached: the dry-run executor.
    DryRun,
}

/// Why a run stopped before its first step; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unreachable(Vec<String>),
    /// etcd tools missing or mismatched on a node.
    Tools,
    /// Steps of unknown outcome that the hosts' record cannot settle.
    Undecided,
    Locked,
}

impl Refusal {
    /// The reason its steps are skipped with.
    pub fn reason(&self) -> String {
        match self {
            Refusal::Unreachable(nodes) => format!("not started: unreachable {}", nodes.join(", ")),
            Refusal::Tools => "not started: etcd tools missing or mismatched".into(),
            Refusal::Undecided => "not started: steps of unknown outcome need a decision".into(),
            Refusal::Locked => "not started: cluster locked".into(),
        }
    }

    /// Something the operator must fix before running again (not a passing outage).
    pub fn needs_a_fix(&self) -> bool {
        !matches!(self, Refusal::Unreachable(_))
    }
}

/// What a failed run changed, for the operator to undo.
#[derive(Debug)]
pub enum Rollback {
    /// No destructive step started.
    Unchanged,
    /// The notes, newest first, and where they were written.
    Notes {
        text: String,
        written: Option<Result<PathBuf, String>>,
    },
}

/// How a session ended.
#[derive(Debug)]
pub struct Outcome {
    pub run_id: String,
    pub status: RunStatus,
    pub refusal: Option<Refusal>,
    pub steps: usize,
    pub succeeded: usize,
    /// The run's time, without the time spent at prompts.
    pub took: Duration,
    pub dry_run: bool,
    pub run_dir: Option<PathBuf>,
    /// The summary table (text output), to print on stdout.
    pub summary: Option<String>,
    /// JSON events could not be written to stdout.
    pub output_failed: Option<String>,
    /// On failure: what it changed.
    pub rollback: Option<Rollback>,
}

/// A failure of the session itself, before any step could run: what, why, and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {cause}")]
pub struct Problem {
    pub what: String,
    pub cause: String,
    pub hint: Option<String>,
    /// The new run's directory was removed again: nothing of it is left.
    pub discarded: bool,
}

impl Problem {
    fn new(what: &str, cause: impl std::fmt::Display, hint: Option<&str>) -> Problem {
        Problem {
            what: what.to_string(),
            cause: cause.to_string(),
            hint: hint.map(str::to_string),
            discarded: false,
        }
    }
}

/// Starts a new run's directory (`run_dir`, or one named by the run's id under the default
/// runs directory) and records in it what the run will do: its inputs (`run.json`, which a
/// resume compiles again and checks against the fingerprint) and its plan (`plan.json`,
/// `plan.txt`).
pub fn record_run(
    graph: &StepGraph,
    plan: PathBuf,
    inventory: PathBuf,
    sets: &[crate::compile::ParamValue],
    values: &crate::compile::RunValues,
    run_dir: Option<&Path>,
    local: bool,
) -> Result<(RunDir, RunInfo), Problem> {
    let run_id = values.id.clone();
    let dir = run_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(rundir::DEFAULT_RUNS).join(&run_id));
    let run = RunDir::create(&dir).map_err(|e| Problem::new("cannot start the run", e, None))?;
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
        run_values: Some(values.clone()),
    };
    serde_json::to_vec_pretty(&info)
        .map_err(|e| e.to_string())
        .and_then(|j| run.write("run.json", &j))
        .and_then(|()| run.write("plan.json", render::json(graph).as_bytes()))
        .and_then(|()| run.write("plan.txt", render::text(graph).as_bytes()))
        .map_err(|e| Problem::new("cannot record the run", e, None))?;
    Ok((run, info))
}

/// Runs a session to its end on its own async runtime.
pub fn run(s: Session) -> Result<Outcome, Problem> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Problem::new("cannot start the async runtime", e, None))?;
    rt.block_on(async move {
        match s.hosts {
            Hosts::DryRun => run_with(s, DryRun, None).await,
            Hosts::Local => run_with(s, Local, None).await,
            Hosts::Ssh => {
                let control = crate::executor::ssh::private_control_dir("apply").map_err(|e| {
                    Problem::new("cannot create the SSH control directory", e, None)
                })?;
                let exec = Ssh::new(control.path().to_path_buf());
                let out = run_with(s, exec, Some(control.path())).await;
                // Dropping it removes it (also when unwinding from a panic).
                drop(control);
                out
            }
        }
    })
}

async fn run_with<E: Executor + 'static>(
    s: Session,
    exec: E,
    control: Option<&Path>,
) -> Result<Outcome, Problem> {
    let graph = Arc::new(s.graph);
    let exec = Arc::new(exec);
    let dry_run = s.hosts == Hosts::DryRun;
    let run_id = s
        .run
        .as_ref()
        .map_or_else(|| "dry-run".to_string(), |r| r.1.run_id.clone());
    let cluster = graph.runbook.inventory.cluster.clone();
    let holder = Holder::this_process(&run_id, &cluster);
    let (user, host) = (holder.user.clone(), holder.host.clone());
    let reporter = Reporter::new(s.output, graph.runbook.instances.len());
    // Every node of the cluster: the lock covers the cluster, and etcd-native steps on this
    // machine reach every member through its master.
    let nodes: Vec<&Node> = graph.runbook.inventory.nodes.iter().collect();

    // One run per cluster: first on this machine (a dry-run takes no lock), then on every
    // node once reachable.
    let _local_lock = match exec.own_work(async { LocalLock::acquire(&holder) }).await {
        None => None,
        Some(Ok(lock)) => Some(lock),
        Some(Err(e)) => {
            let mut p = Problem::new(
                "another run holds this cluster",
                e,
                Some("wait for it to finish, or resume it with `runbook resume RUN`"),
            );
            // A new run refused this early has done nothing: leave no run directory behind.
            if let (false, Some((dir, _))) = (s.resumed, &s.run) {
                p.discarded = std::fs::remove_dir_all(&dir.path).is_ok();
            }
            return Err(p);
        }
    };
    // Under the lock, so a run still going keeps its masters: those of earlier processes of
    // this run (killed, say) are stopped, and this process's directory is recorded after theirs.
    if let (Some(control), Some((dir, _))) = (control, &s.run) {
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
        Some((dir, _)) => Some(Journal::open(&dir.journal()).map_err(|e| {
            Problem::new(
                &format!("cannot open the journal {}", dir.journal().display()),
                e,
                None,
            )
        })?),
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
    let run_dir = s.run.as_ref().map(|r| r.0.clone());
    let shared = Arc::new(Shared::new(
        graph.clone(),
        exec.clone(),
        Gate::new(s.approval, &graph),
        reporter,
        journal,
        run_dir.clone(),
        run_dir.as_ref().map(|d| Records {
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
        dry_run,
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
    // for want of a host should not start changing the others. (A dry-run checks nothing.)
    let refusal = prepare(&shared, &nodes, &holder, run_dir.as_ref(), &mut state).await;
    if let Some(refusal) = &refusal {
        let reason = refusal.reason();
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
        state = walk::walk(shared.clone(), state, s.limits).await;
        let _ = exec
            .own_work(lock::release_nodes(exec.as_ref(), &nodes, &run_id))
            .await;
    }
    shared.reporter.finish();

    let interrupted = state
        .status
        .iter()
        .any(|x| matches!(x, Status::Skipped(r) if r == "interrupted"));
    let status = if state.status.iter().all(Status::satisfied) {
        RunStatus::Succeeded
    } else if interrupted {
        RunStatus::Interrupted
    } else {
        RunStatus::Failed
    };
    let prompts = shared.gate.waited();
    shared.emit(Event::RunFinished {
        status,
        prompt_ms: prompts.as_millis() as u64,
    });
    exec.close().await;
    // A master an earlier process was still starting when this one reaped its directory
    // may have come up since: stop it too, now that nothing of the run needs the hosts.
    if let (Some(control), Some((dir, _))) = (control, &s.run) {
        for w in reap_earlier(dir, Some(control)) {
            shared.reporter.say(&format!("warning: {w}"));
        }
    }
    let json = shared.reporter.is_json();
    Ok(Outcome {
        run_id,
        status,
        refusal,
        steps: state.status.len(),
        succeeded: state.status.iter().filter(|x| x.satisfied()).count(),
        // Time the operator spent reading a question is not the run's.
        took: shared.reporter.elapsed().saturating_sub(prompts),
        dry_run,
        run_dir: run_dir.as_ref().map(|d| d.path.clone()),
        summary: (!json).then(|| shared.reporter.summary(&graph, &state, dry_run)),
        output_failed: shared.reporter.stdout_failure(),
        rollback: (status != RunStatus::Succeeded)
            .then(|| rollback_notes(&graph, &state, run_dir.as_ref())),
    })
}

/// Connects every host, checks the tools the plan needs, settles a resume from the hosts'
/// records and locks every node; the first thing that fails refuses the run. The executor
/// decides what applies: a dry-run reaches no host and checks nothing.
async fn prepare<E: Executor + 'static>(
    shared: &Shared<E>,
    nodes: &[&Node],
    holder: &Holder,
    run_dir: Option<&RunDir>,
    state: &mut RunState,
) -> Option<Refusal> {
    let exec = shared.exec.as_ref();
    let graph = shared.graph.as_ref();
    let say = |e: &str| shared.reporter.say(&format!("error: {e}"));
    let unreachable = exec.connect(nodes).await;
    if !unreachable.is_empty() {
        for (_, e) in &unreachable {
            say(&e.to_string());
        }
        return Some(Refusal::Unreachable(
            unreachable.into_iter().map(|(n, _)| n).collect(),
        ));
    }
    let problems = exec
        .own_work(super::tools::check(exec, graph))
        .await
        .unwrap_or_default();
    if !problems.is_empty() {
        problems.iter().for_each(|p| say(p));
        return Some(Refusal::Tools);
    }
    if let Some(dir) = run_dir {
        let settled = settle_from_records(
            exec,
            graph,
            nodes,
            &holder.run_id,
            dir,
            state,
            &shared.reporter,
        );
        if let Some(Err(problems)) = exec.own_work(settled).await {
            problems.iter().for_each(|p| say(p));
            return Some(Refusal::Undecided);
        }
    }
    if let Some(Err(e)) = exec
        .own_work(lock::acquire_nodes(exec, nodes, holder))
        .await
    {
        say(&e.to_string());
        let inventory = run_dir.and_then(|d| d.info().ok()).map_or_else(
            || "INVENTORY".to_string(),
            |i| crate::shell::quote(&i.inventory.display().to_string()),
        );
        let local = run_dir.and_then(|d| d.info().ok()).is_some_and(|i| i.local);
        shared.reporter.say(&format!(
            "  hint: wait for that run, or resume it; once it is over, `runbook unlock {} -i {inventory}{}` removes a lock whose holder is provably gone, and with --force any lock",
            graph.runbook.inventory.cluster,
            if local { " --local" } else { "" }
        ));
        return Some(Refusal::Locked);
    }
    None
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

/// On failure: what each completed destructive step changed and how to undo it, newest first.
fn rollback_notes(g: &StepGraph, state: &RunState, run_dir: Option<&RunDir>) -> Rollback {
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
        return Rollback::Unchanged;
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
    let written = run_dir.map(|d| {
        d.write("rollback.txt", text.as_bytes())
            .map(|()| d.path.join("rollback.txt"))
    });
    Rollback::Notes { text, written }
}

/// Stops the masters of this run's earlier processes (killed, say), from the directories
/// they recorded, all but `own`; returns warnings about directories it left alone.
pub fn reap_earlier(dir: &RunDir, own: Option<&Path>) -> Vec<String> {
    let earlier = std::fs::read_to_string(dir.path.join(CONTROL_RECORD)).unwrap_or_default();
    earlier
        .lines()
        .filter(|l| !l.is_empty() && Some(Path::new(l)) != own)
        .filter_map(|l| crate::executor::ssh::reap_stale_masters(Path::new(l)).err())
        .collect()
}

/// The run directory's record of the SSH control directory of every process that ran it, one
/// a line.
pub const CONTROL_RECORD: &str = "ssh-control-dirs";
