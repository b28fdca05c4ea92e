//! The walk: starts every step whose dependencies succeeded, as many at once as allowed, and
//! records each start and end in the journal before acting on it.
//!
//! On the first failure no new step starts; running steps finish; every step that depends on
//! the failure is skipped as "upstream failed", the rest as "run stopped". Ctrl-C does the
//! same; a second Ctrl-C abandons the running steps (their outcome is then unknown).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::gate::{Gate, Verdict};
use super::journal::{Event, Finish, Journal, Record};
use super::record::{Place, launcher};
use super::report::Reporter;
use super::rundir::RunDir;
use super::state::{RunState, Status};
use crate::action::{Captures, Command, Files, RUN_ID_VAR, RunCx};
use crate::executor::{Executor, Target};
use crate::graph::StepGraph;
use crate::shell::group_script;

/// Limits of the walk.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Steps running at once (`--parallel`).
    pub parallel: usize,
    /// Steps running at once on one host; below sshd's MaxSessions (10 by default).
    pub per_host: usize,
}

/// Everything the step tasks share.
pub struct Shared<E> {
    pub graph: Arc<StepGraph>,
    pub exec: Arc<E>,
    pub gate: Gate,
    pub reporter: Reporter,
    pub journal: Option<Journal>,
    pub run_dir: Option<RunDir>,
    /// Captured outputs, (name, node) -> value.
    captures: Captures,
    /// sha256 of local files, computed once per run.
    files: Files,
    /// The journal could not be written: the run must stop, it could not be resumed safely.
    journal_broken: std::sync::atomic::AtomicBool,
    /// The walk stopped scheduling (a failure or Ctrl-C): a step still waiting at its gate or
    /// between retries must not start after all.
    stop: std::sync::atomic::AtomicBool,
    /// Where step commands leave their host-side record (none for a dry-run).
    records: Option<Records>,
}

/// The run's host-side records: the run id names them on the nodes; `on: local` steps keep
/// theirs in the run directory.
pub struct Records {
    pub run_id: String,
    pub local: Place,
}

impl<E: Executor + 'static> Shared<E> {
    pub fn new(
        graph: Arc<StepGraph>,
        exec: Arc<E>,
        gate: Gate,
        reporter: Reporter,
        journal: Option<Journal>,
        run_dir: Option<RunDir>,
        records: Option<Records>,
    ) -> Shared<E> {
        Shared {
            records,
            graph,
            exec,
            gate,
            reporter,
            journal,
            run_dir,
            captures: Captures::default(),
            files: Files::default(),
            journal_broken: false.into(),
            stop: false.into(),
        }
    }

    /// Journals an event (fsynced) and shows it.
    pub fn emit(&self, event: Event) {
        let record = Record::now(event);
        if let Some(j) = &self.journal
            && let Err(e) = j.append(&record)
        {
            self.journal_broken
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.reporter.say(&format!(
                "error: cannot write the journal: {e}; stopping the run"
            ));
        }
        self.reporter.event(&record);
    }
}

impl<E> Shared<E> {
    fn log(&self, id: &str, text: &[u8]) {
        if let Some(d) = &self.run_dir
            && let Err(e) = d.append_log(id, text)
        {
            self.reporter.say(&format!("warning: {e}"));
        }
    }
}

/// The result of one instance's task.
struct Done {
    index: usize,
    status: Status,
    duration_ms: u64,
    attempts: u32,
}

/// Walks the graph from `state` (fresh, or replayed for a resume) until everything that can
/// run has run. Returns the final state.
pub async fn walk<E: Executor + 'static>(
    shared: Arc<Shared<E>>,
    mut state: RunState,
    limits: Limits,
) -> RunState {
    let g = shared.graph.clone();
    for ((name, node), value) in &state.captures {
        shared.captures.insert(name, node.as_deref(), value.clone());
    }
    // Checks a resumed run finished before: the question does not wait for them again.
    for (i, st) in state.status.iter().enumerate() {
        if *st != Status::Pending {
            shared.gate.check_finished(i);
        }
    }
    let global = Arc::new(Semaphore::new(limits.parallel.max(1)));
    let mut per_host: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut stopping = false;
    let mut interrupts = 0u32;
    // Installed before the first step starts: a Ctrl-C right after it must reach this loop,
    // not the default handler that would kill the process mid-step.
    let mut ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();

    loop {
        if shared
            .journal_broken
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            stopping = true;
        }
        if stopping {
            shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            shared.gate.release();
        } else {
            for &i in &g.order {
                if state.status[i] != Status::Pending {
                    continue;
                }
                let ready = g
                    .dag
                    .neighbors_directed(
                        petgraph::graph::NodeIndex::new(i),
                        petgraph::Direction::Incoming,
                    )
                    .all(|p| state.status[g.dag[p]].satisfied());
                if !ready || shared.gate.holds_back(i) {
                    continue;
                }
                let host = g.instance(i).node.clone().unwrap_or_else(|| "local".into());
                let host_sem = per_host
                    .entry(host)
                    .or_insert_with(|| Arc::new(Semaphore::new(limits.per_host.max(1))))
                    .clone();
                let Ok(gp) = global.clone().try_acquire_owned() else {
                    break;
                };
                let Ok(hp) = host_sem.try_acquire_owned() else {
                    continue;
                };
                state.status[i] = Status::Running;
                let sh = shared.clone();
                // A step a resume settles from the hosts' record goes on with the attempt the
                // record is filed under; anything else starts a new one.
                let first_attempt = if std::mem::take(&mut state.reattach[i]) {
                    state.attempts[i].max(1)
                } else {
                    state.attempts[i] + 1
                };
                let handle = tasks.spawn(run_instance(sh, i, first_attempt, gp, hp));
                running.insert(handle.id(), i);
            }
        }
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            joined = tasks.join_next_with_id() => {
                let Some(joined) = joined else { break };
                match joined {
                    Ok((id, done)) => {
                        running.remove(&id);
                        let i = done.index;
                        state.attempts[i] = done.attempts;
                        state.duration_ms[i] += done.duration_ms;
                        if done.status.failed() {
                            stopping = true;
                        }
                        if done.status == Status::Succeeded {
                            state.finished_order.push(i);
                        }
                        state.status[i] = done.status;
                    }
                    Err(e) => {
                        // A panicking or aborted task: its outcome on the host is unknown.
                        if let Some(i) = running.remove(&e.id()) {
                            state.status[i] = Status::Unknown;
                        }
                        stopping = true;
                    }
                }
            }
            _ = interrupted(&mut ctrl_c) => {
                interrupts += 1;
                stopping = true;
                let ids: Vec<String> = running.values().map(|&i| g.instance(i).id.clone()).collect();
                if interrupts == 1 {
                    shared.emit(Event::Interrupted { running: ids });
                } else {
                    tasks.abort_all();
                    for (_, i) in running.drain() {
                        state.status[i] = Status::Unknown;
                        shared.emit(Event::StepAbandoned { id: g.instance(i).id.clone() });
                    }
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
    }

    // Whatever did not start is skipped, with the reason the operator needs.
    let failed: Vec<usize> = (0..state.status.len())
        .filter(|&i| state.status[i].failed() || state.status[i] == Status::Unknown)
        .collect();
    for &i in &g.order {
        if state.status[i] != Status::Pending {
            continue;
        }
        let reason = match failed.iter().find(|&&f| g.precedes(f, i)) {
            Some(&f) => format!("upstream failed: {}", g.instance(f).id),
            None if interrupts > 0 => "interrupted".to_string(),
            None => "run stopped".to_string(),
        };
        shared.emit(Event::StepSkipped {
            id: g.instance(i).id.clone(),
            reason: reason.clone(),
        });
        state.status[i] = Status::Skipped(reason);
    }
    state.captures = shared.captures.all();
    state
}

/// Resolves at the next SIGINT (never, if the handler could not be installed).
async fn interrupted(sig: &mut Option<tokio::signal::unix::Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// One instance: gate, then attempts until success or the retries are spent.
async fn run_instance<E: Executor + 'static>(
    sh: Arc<Shared<E>>,
    i: usize,
    first_attempt: u32,
    _global: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
) -> Done {
    let g = sh.graph.clone();
    let inst = g.instance(i);
    let stopped = || sh.stop.load(std::sync::atomic::Ordering::SeqCst);
    if sh.gate.applies(i, inst) {
        match sh.gate.check(&g, i, &sh.reporter).await {
            // Approved while the run was stopping: it stays pending and is skipped.
            Verdict::Go(..) if stopped() => {
                return Done {
                    index: i,
                    status: Status::Pending,
                    duration_ms: 0,
                    attempts: first_attempt - 1,
                };
            }
            Verdict::Go(by, waited) => sh.emit(Event::Approved {
                id: inst.id.clone(),
                by: by.to_string(),
                waited_ms: waited.as_millis() as u64,
            }),
            Verdict::Stop => {
                sh.emit(Event::Declined {
                    id: inst.id.clone(),
                });
                return Done {
                    index: i,
                    status: Status::Declined,
                    duration_ms: 0,
                    attempts: first_attempt - 1,
                };
            }
        }
    }
    let mut attempt = first_attempt;
    let last = first_attempt + inst.retries;
    let mut total = 0u64;
    loop {
        sh.emit(Event::StepStarted {
            id: inst.id.clone(),
            attempt,
        });
        let started = Instant::now();
        let result = attempt_once(&sh, i, attempt).await;
        let ms = started.elapsed().as_millis() as u64;
        total += ms;
        let status = result.status;
        let capture = match (&inst.capture, status) {
            (Some(name), Finish::Succeeded) => {
                let value = String::from_utf8_lossy(&result.stdout).trim().to_string();
                sh.captures
                    .insert(name, inst.node.as_deref(), value.clone());
                Some(value)
            }
            _ => None,
        };
        let error = result.error;
        if sh.gate.is_check(i)
            && status != Finish::Succeeded
            && let Some(e) = &error
        {
            sh.gate.finding(&inst.id, &format!("FAILED: {e}"));
        }
        sh.emit(Event::StepFinished {
            id: inst.id.clone(),
            attempt,
            status,
            exit_code: result.exit_code,
            duration_ms: ms,
            error,
            capture,
        });
        if status != Finish::Succeeded && attempt < last && !stopped() {
            // Backoff 1 s, 2 s, 4 s … capped at 30 s: enough for a member to come back.
            let delay = Duration::from_secs((1u64 << (attempt - first_attempt).min(5)).min(30));
            sh.emit(Event::StepRetry {
                id: inst.id.clone(),
                attempt,
                delay_ms: delay.as_millis() as u64,
            });
            tokio::time::sleep(delay).await;
            attempt += 1;
            continue;
        }
        sh.gate.check_finished(i);
        return Done {
            index: i,
            status: match status {
                Finish::Succeeded => Status::Succeeded,
                Finish::Failed => Status::Failed,
                Finish::TimedOut => Status::TimedOut,
            },
            duration_ms: total,
            attempts: attempt,
        };
    }
}

struct Attempt {
    status: Finish,
    exit_code: Option<i32>,
    error: Option<String>,
    stdout: Vec<u8>,
}

/// Runs the step's commands once, in order, within the step's time limit. Consecutive shell
/// commands go to the host as one script: one round trip, and the first failure ends it.
async fn attempt_once<E: Executor + 'static>(sh: &Shared<E>, i: usize, attempt: u32) -> Attempt {
    let g = &sh.graph;
    let inst = g.instance(i);
    let node = g.runbook.node_of(inst);
    let target = node.map_or(Target::Local, Target::Node);
    let deadline = Instant::now() + inst.timeout;
    let commands = inst.action.commands();
    sh.log(
        &inst.id,
        format!(
            "== {} attempt {attempt} on {} ==\n",
            humantime::format_rfc3339_millis(std::time::SystemTime::now()),
            target.name()
        )
        .as_bytes(),
    );
    let cx = RunCx {
        exec: sh.exec.as_ref(),
        inventory: &g.runbook.inventory,
        node,
        deadline,
        captures: &sh.captures,
        files: &sh.files,
    };
    let mut env = Vec::new();
    if let Some(r) = &sh.records {
        env.push((RUN_ID_VAR.to_string(), r.run_id.clone()));
    }
    // Values only the run knows (a local file's digest, earlier steps' captures); a dry-run
    // leaves them unset, as it runs nothing that reads them.
    match sh.exec.own_work(inst.action.env(&cx)).await {
        Some(Ok(values)) => env.extend(values),
        Some(Err(e)) => return failed(sh, &inst.id, e),
        None => {}
    }
    let mut stdout_all = Vec::new();
    let mut k = 0;
    while k < commands.len() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return timed_out(sh, &inst.id, inst.timeout);
        }
        match &commands[k] {
            Command::Native { work, text } => {
                sh.log(&inst.id, format!("# runbook: {text}\n").as_bytes());
                k += 1;
                let ran = sh
                    .exec
                    .own_work(tokio::time::timeout(remaining, work.run(&cx)));
                match ran.await {
                    None => {}
                    Some(Err(_)) => return timed_out(sh, &inst.id, inst.timeout),
                    Some(Ok(Err(e))) => return failed(sh, &inst.id, e),
                    Some(Ok(Ok(said))) => {
                        sh.log(&inst.id, format!("{}\n", said.text).as_bytes());
                        if sh.gate.is_check(i) {
                            sh.gate.finding(&inst.id, &said.text);
                        }
                        sh.emit(Event::StepOutput {
                            id: inst.id.clone(),
                            text: said.text,
                            shown: said.shown,
                        });
                    }
                }
            }
            Command::Shell(_) => {
                let mut group = Vec::new();
                while let Some(Command::Shell(s)) = commands.get(k) {
                    group.push(s.as_str());
                    k += 1;
                }
                let first = k - group.len();
                let script = group_script(&group);
                for c in &group {
                    sh.log(&inst.id, format!("$ {c}\n").as_bytes());
                }
                let sent = match &sh.records {
                    Some(r) => {
                        let place = match node {
                            Some(_) => Place::node(&r.run_id),
                            None => r.local.clone(),
                        };
                        let prefix = place.prefix(&inst.id, attempt, first);
                        sh.log(&inst.id, format!("# record: {prefix}.*\n").as_bytes());
                        // The host bounds the work itself; the launcher only waits for it.
                        let waiting = remaining + Duration::from_secs(20);
                        let line = launcher(&prefix, &script, &env, remaining);
                        sh.exec.shell(target, &line, &[], waiting).await
                    }
                    None => sh.exec.shell(target, &script, &env, remaining).await,
                };
                let out = match sent {
                    Ok(o) => o,
                    Err(e) => return failed(sh, &inst.id, e.0),
                };
                sh.log(&inst.id, &out.stdout);
                sh.log(&inst.id, &out.stderr);
                sh.log(
                    &inst.id,
                    format!(
                        "-- exit {}\n",
                        out.code.map_or("signal".into(), |c| c.to_string())
                    )
                    .as_bytes(),
                );
                stdout_all.extend_from_slice(&out.stdout);
                if out.timed_out {
                    return timed_out(sh, &inst.id, inst.timeout);
                }
                if !out.success() {
                    return Attempt {
                        status: Finish::Failed,
                        exit_code: out.code,
                        error: Some(failure(&group, &out)),
                        stdout: stdout_all,
                    };
                }
            }
        }
    }
    Attempt {
        status: Finish::Succeeded,
        exit_code: Some(0),
        error: None,
        stdout: stdout_all,
    }
}

fn failed<E>(sh: &Shared<E>, id: &str, e: String) -> Attempt {
    sh.log(id, format!("error: {e}\n").as_bytes());
    Attempt {
        status: Finish::Failed,
        exit_code: None,
        error: Some(e),
        stdout: Vec::new(),
    }
}

fn timed_out<E>(sh: &Shared<E>, id: &str, limit: Duration) -> Attempt {
    let e = format!("timed out after {}s", limit.as_secs());
    sh.log(id, format!("error: {e}\n").as_bytes());
    Attempt {
        status: Finish::TimedOut,
        exit_code: None,
        error: Some(e),
        stdout: Vec::new(),
    }
}

/// Lines of a failed command's stderr shown on the console (the log keeps everything).
const STDERR_SHOWN: usize = 5;

/// What the console says about a failed group: its status and last line of stderr (or
/// stdout), then which command it was, as written, and the lines before (the log keeps all).
fn failure(group: &[&str], out: &crate::executor::Outcome) -> String {
    let code = out
        .code
        .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"));
    let text = String::from_utf8_lossy(&out.stderr);
    // The group script names the failing command on its last stderr line.
    let failed_at = text.lines().rev().find_map(|l| {
        l.strip_prefix("runbook: command ")?
            .split_once(" of ")?
            .0
            .parse::<usize>()
            .ok()
    });
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("runbook: command "))
        .collect();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if lines.is_empty() {
        lines = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    }
    let command = failed_at.and_then(|k| group.get(k.wrapping_sub(1)).map(|c| (k, c)));
    let mut msg = match command {
        Some((k, _)) if group.len() > 1 => format!("command {k} of {} ({code})", group.len()),
        _ => code,
    };
    let shown = &lines[lines.len().saturating_sub(STDERR_SHOWN)..];
    if let Some(last) = shown.last() {
        msg.push_str(": ");
        msg.push_str(&clip(last, 300));
    }
    if let Some((_, c)) = command {
        msg.push_str(&format!("\n{CONTINUED}$ {}", clip(c, 200)));
    }
    if shown.len() > 1 {
        for l in &shown[..shown.len() - 1] {
            msg.push_str(&format!("\n{CONTINUED}| {}", clip(l, 300)));
        }
    }
    msg
}

/// Indent of the lines that continue a step's line on the console.
const CONTINUED: &str = "           ";

/// The first line of `text`, at most `max` characters, marked when cut.
fn clip(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or_default().trim_end();
    let mut s: String = first.chars().take(max).collect();
    if s.len() < text.trim_end().len() {
        s.push_str(" …");
    }
    s
}
