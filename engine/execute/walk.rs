//! The walk: starts every step whose dependencies succeeded, as many at once as allowed, and
//! records each start and end in the journal before acting on it.
//!
//! On the first failure no new step starts; running steps finish; every step that depends on
//! the failure is skipped as "upstream failed", the rest as "run stopped". Ctrl-C does the
//! same; a second Ctrl-C abandons the running steps (their outcome is then unknown).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::gate::{Gate, Verdict};
use super::journal::{Event, Finish, Journal, Record};
use super::record::{Place, launcher};
use super::report::Reporter;
use super::rundir::RunDir;
use super::state::{RunState, Status};
use crate::action::snapshot_distribute::SOURCE_SHA256;
use crate::action::{Action, Command, Native};
use crate::executor::{Executor, Target};
use crate::graph::StepGraph;
use crate::snapshot;
use crate::snapshot::status::Trailer;

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
    captures: Mutex<HashMap<(String, Option<String>), String>>,
    /// sha256 of local files, computed once per run.
    digests: Mutex<HashMap<PathBuf, String>>,
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

/// The variable every step's commands see with the run's id (the restore marks its work with it).
pub const RUN_ID_VAR: &str = "RUNBOOK_RUN_ID";

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
            captures: Mutex::new(HashMap::new()),
            digests: Mutex::new(HashMap::new()),
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
    *shared.captures.lock().unwrap_or_else(|p| p.into_inner()) = state.captures.clone();
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
                if !ready {
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
    state.captures = shared
        .captures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
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
    if sh.gate.applies(inst) {
        match sh.gate.check(inst, &sh.reporter).await {
            // Approved while the run was stopping: it stays pending and is skipped.
            Verdict::Go(_) if stopped() => {
                return Done {
                    index: i,
                    status: Status::Pending,
                    duration_ms: 0,
                    attempts: first_attempt - 1,
                };
            }
            Verdict::Go(by) => sh.emit(Event::Approved {
                id: inst.id.clone(),
                by: by.to_string(),
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
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((name.clone(), inst.node.clone()), value.clone());
                Some(value)
            }
            _ => None,
        };
        sh.emit(Event::StepFinished {
            id: inst.id.clone(),
            attempt,
            status,
            exit_code: result.exit_code,
            duration_ms: ms,
            error: result.error,
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
    let node = inst.node.as_ref().and_then(|n| g.runbook.inventory.node(n));
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
    let env = match step_env(sh, inst).await {
        Ok(env) => env,
        Err(e) => return failed(sh, &inst.id, e),
    };
    let mut stdout_all = Vec::new();
    let mut k = 0;
    while k < commands.len() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return timed_out(sh, &inst.id, inst.timeout);
        }
        match &commands[k] {
            Command::Native { op, text } => {
                sh.log(&inst.id, format!("# runbook: {text}\n").as_bytes());
                k += 1;
                if sh.exec.is_dry_run() {
                    continue;
                }
                let r = tokio::time::timeout(remaining, native(sh, op, node, remaining)).await;
                match r {
                    Err(_) => return timed_out(sh, &inst.id, inst.timeout),
                    Ok(Err(e)) => return failed(sh, &inst.id, e),
                    Ok(Ok(msg)) => {
                        sh.log(&inst.id, format!("{msg}\n").as_bytes());
                        // What etcd said is the point of these steps: show it, not only log it.
                        if matches!(
                            op,
                            Native::Preflight { .. }
                                | Native::LeaderLast
                                | Native::MemberAdd { .. }
                                | Native::MemberRemove
                                | Native::NotSource { .. }
                                | Native::DefragCluster
                                | Native::Compact
                                | Native::CheckWrites
                                | Native::VerifyCluster { .. }
                                | Native::SaveSnapshot { .. }
                        ) {
                            let shown: Vec<String> =
                                msg.lines().map(|l| format!("           {l}")).collect();
                            sh.reporter.say(&shown.join("\n"));
                        }
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
                let sent = match (&sh.records, sh.exec.is_dry_run()) {
                    (Some(r), false) => {
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
                    _ => sh.exec.shell(target, &script, &env, remaining).await,
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

/// Commands as one script that stops at the first failure and says which command it was,
/// also when the command ends the script itself with `exit` (the EXIT trap sees that too).
fn group_script(commands: &[&str]) -> String {
    let n = commands.len();
    let mut s = format!(
        "trap 'rc=$?; [ \"$rc\" -eq 0 ] || echo \"runbook: command $runbook_k of {n} failed (exit $rc)\" >&2' EXIT\n"
    );
    for (k, c) in commands.iter().enumerate() {
        // The newline before `}` lets a command end in a comment or a here-doc.
        s.push_str(&format!("runbook_k={}\n{{ {c}\n}} || exit $?\n", k + 1));
    }
    s
}

/// Values only known at run time: the local snapshot's digest, earlier steps' captures.
async fn step_env<E: Executor + 'static>(
    sh: &Shared<E>,
    inst: &crate::compile::Instance,
) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    if let Some(r) = &sh.records {
        env.push((RUN_ID_VAR.to_string(), r.run_id.clone()));
    }
    match &inst.action {
        Action::SnapshotDistribute(a) if !sh.exec.is_dry_run() => {
            env.push((SOURCE_SHA256.to_string(), digest(sh, &a.source).await?));
        }
        Action::Run(a) => {
            let caps = sh.captures.lock().unwrap_or_else(|p| p.into_inner());
            for name in &a.captures {
                let own = caps.get(&(name.clone(), inst.node.clone()));
                let any = caps.iter().find(|((n, _), _)| n == name).map(|(_, v)| v);
                match own.or(any) {
                    Some(v) => env.push((crate::action::run::capture_var(name), v.clone())),
                    None if sh.exec.is_dry_run() => {}
                    None => return Err(format!("capture `{name}` has no value in this run")),
                }
            }
        }
        _ => {}
    }
    Ok(env)
}

async fn digest<E>(sh: &Shared<E>, path: &str) -> Result<String, String> {
    let p = PathBuf::from(path);
    if let Some(d) = sh.digests.lock().unwrap_or_else(|x| x.into_inner()).get(&p) {
        return Ok(d.clone());
    }
    let q = p.clone();
    let d = tokio::task::spawn_blocking(move || snapshot::sha256_file(&q))
        .await
        .map_err(|e| format!("hashing {path}: {e}"))?
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    sh.digests
        .lock()
        .unwrap_or_else(|x| x.into_inner())
        .insert(p, d.clone());
    Ok(d)
}

/// Work runbook does itself.
async fn native<E: Executor + 'static>(
    sh: &Shared<E>,
    op: &Native,
    node: Option<&crate::inventory::model::Node>,
    remaining: Duration,
) -> Result<String, String> {
    match op {
        Native::VerifySnapshot { path } => {
            let p = PathBuf::from(path);
            let st = tokio::task::spawn_blocking(move || snapshot::status::status(&p))
                .await
                .map_err(|e| format!("verifying {path}: {e}"))?
                .map_err(|e| e.to_string())?;
            match st.sha256 {
                Trailer::Ok => {}
                Trailer::Mismatch => {
                    return Err(format!(
                        "{path}: the SHA-256 trailer does not match the content (corrupted or truncated)"
                    ));
                }
                Trailer::Absent => {
                    return Err(format!(
                        "{path} has no SHA-256 trailer: a copy of member/snap/db, not a `snapshot save` file"
                    ));
                }
                Trailer::Damaged(damage) => return Err(format!("{path} is damaged: {damage}")),
            }
            sh.digests
                .lock()
                .unwrap_or_else(|x| x.into_inner())
                .insert(PathBuf::from(path), st.file_sha256.clone());
            Ok(format!(
                "{path}: {} bytes, sha256 {}, trailer ok, every bbolt page checked; revision {}, {} keys, hash {}",
                st.file_size, st.file_sha256, st.revision, st.total_keys, st.hash
            ))
        }
        Native::CheckSha256 { path, expected } => {
            let p = PathBuf::from(path);
            let e = expected.clone();
            tokio::task::spawn_blocking(move || snapshot::check_sha256(&p, &e))
                .await
                .map_err(|e| format!("hashing {path}: {e}"))?
                .map(|d| format!("{path}: sha256 {d} as expected"))
                .map_err(|e| e.to_string())
        }
        Native::Preflight { allow_alarms, skip } => {
            let inv = &sh.graph.runbook.inventory;
            let members: Vec<_> = inv
                .etcd_members()
                .into_iter()
                .filter(|n| !skip.contains(&n.name))
                .collect();
            let pre = crate::etcd::preflight::run(sh.exec.as_ref(), &members, allow_alarms).await?;
            let mut lines: Vec<String> = pre
                .members
                .iter()
                .map(crate::etcd::preflight::describe)
                .collect();
            if pre.alarms.is_empty() {
                lines.push(format!("no alarms; snapshot source: {}", pre.source));
            } else {
                lines.push(format!(
                    "alarms (accepted by this plan): {}; snapshot source: {}",
                    pre.alarms.join(", "),
                    pre.source
                ));
            }
            Ok(lines.join("\n"))
        }
        Native::SaveSnapshot { dest, member } => {
            let inv = &sh.graph.runbook.inventory;
            let members = inv.etcd_members();
            let mut pre = crate::etcd::preflight::run(sh.exec.as_ref(), &members, &[]).await?;
            let source = member.clone().unwrap_or_else(|| pre.source.clone());
            let client = pre
                .clients
                .get_mut(&source)
                .ok_or_else(|| format!("no connection to {source}"))?;
            let saved = crate::etcd::save::save(client, std::path::Path::new(dest)).await?;
            let mb = saved.bytes as f64 / 1e6;
            Ok(format!(
                "saved {dest} from {source}: {mb:.1} MB in {:.2}s, sha256 {}, trailer ok, revision {}, {} keys, hash {}",
                saved.took.as_secs_f64(),
                saved.sha256,
                saved.status.revision,
                saved.status.total_keys,
                saved.status.hash
            ))
        }
        Native::Compact => {
            crate::etcd::maintenance::compact(sh.exec.as_ref(), &sh.graph.runbook.inventory).await
        }
        Native::CheckWrites => {
            crate::etcd::maintenance::check_writes(sh.exec.as_ref(), &sh.graph.runbook.inventory)
                .await
        }
        Native::DefragCluster => {
            crate::etcd::defrag::defrag_cluster(
                sh.exec.as_ref(),
                &sh.graph.runbook.inventory,
                Duration::from_secs(60),
            )
            .await
        }
        Native::VerifyCluster {
            snapshot,
            bump_revision,
        } => {
            crate::etcd::verify::verify_cluster(
                sh.exec.as_ref(),
                &sh.graph.runbook.inventory,
                snapshot.as_deref().map(std::path::Path::new),
                *bump_revision,
            )
            .await
        }
        Native::NotSource { snapshot } => {
            crate::etcd::members::not_source(
                sh.exec.as_ref(),
                &sh.graph.runbook.inventory,
                std::path::Path::new(snapshot),
            )
            .await
        }
        Native::LeaderLast => {
            let node = node.ok_or_else(|| "leader-last needs a node".to_string())?;
            crate::etcd::stop::leader_last(sh.exec.as_ref(), &sh.graph.runbook.inventory, node)
                .await
        }
        Native::MemberRemove => {
            let node = node.ok_or_else(|| "a member removal needs a node".to_string())?;
            crate::etcd::members::remove(sh.exec.as_ref(), &sh.graph.runbook.inventory, node).await
        }
        Native::MemberAdd { manifest } => {
            let node = node.ok_or_else(|| "a member add needs a node".to_string())?;
            // The step's own time limit cuts the wait; leave a little for the manifest edit.
            let deadline = Instant::now() + remaining.saturating_sub(Duration::from_secs(10));
            let added = crate::etcd::members::add(
                sh.exec.as_ref(),
                &sh.graph.runbook.inventory,
                node,
                deadline,
            )
            .await?;
            let set = [
                ("initial-cluster".to_string(), added.initial_cluster.clone()),
                ("initial-cluster-state".to_string(), "existing".to_string()),
            ];
            let cmds = crate::action::manifest_flags::edit_commands(manifest, &set, &[]);
            let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
            let what = format!("setting the join flags in {manifest}");
            crate::executor::output_on(sh.exec.as_ref(), node, &group_script(&refs), &what)
                .await
                .map_err(|e| {
                    format!(
                        "{} (member {:x} is added: resume re-runs this step, which reuses it)\n{e}",
                        added.message, added.id
                    )
                })?;
            Ok(format!(
                "{}\n{manifest}: --initial-cluster-state=existing --initial-cluster={}",
                added.message, added.initial_cluster
            ))
        }
        Native::Upload { source, dest } => {
            let node = node.ok_or_else(|| "an upload needs a node".to_string())?;
            let started = Instant::now();
            sh.exec
                .upload(node, std::path::Path::new(source), dest)
                .await
                .map_err(|e| e.0)?;
            Ok(format!(
                "copied {source} to {}:{dest} in {:.2}s",
                node.name,
                started.elapsed().as_secs_f64()
            ))
        }
    }
}
