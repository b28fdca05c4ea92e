//! Gates: destructive steps (or every step with `--step`) need the operator's yes.
//!
//! On a terminal the operator sees the whole plan's summary once — steps, the destructive
//! ones, nodes, fingerprint — and types `yes`, as `terraform apply` asks; with `--step` the
//! run asks once per stage instead, in stage order, and a `no` stops all asking at once.
//! When the plan has read-only checks on this machine at its start (the snapshot's digest,
//! what a restore rolls back, whether Secrets stay readable), they run first and the one
//! question shows what they found. Elsewhere `--yes` or `--approve FINGERPRINT` must have been
//! given up front, or the run is refused before anything starts.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::report::Reporter;
use crate::compile::Instance;
use crate::graph::StepGraph;

/// How approvals are obtained for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// The operator typed `yes` to the whole plan on the terminal before it started.
    Confirmed,
    /// On a terminal: the plan's read-only checks run first, then the operator answers for
    /// the whole plan with what they found in view.
    AfterChecks,
    /// `--step`: ask on the terminal, stage by stage.
    Stages,
    /// `--yes`: approved in advance.
    Yes,
    /// `--approve FINGERPRINT` matched the compiled plan.
    Fingerprint,
    /// Dry-run: nothing runs, nothing to approve.
    DryRun,
}

impl Approval {
    /// Who let gated steps through, as the journal records it.
    fn by(self) -> &'static str {
        match self {
            Approval::Confirmed | Approval::AfterChecks | Approval::Stages => "tty",
            Approval::Yes => "--yes",
            Approval::Fingerprint => "--approve",
            Approval::DryRun => "dry-run",
        }
    }
}

pub struct Gate {
    pub approval: Approval,
    /// Answers per stage under `--step`; one question at a time, even when several steps
    /// become ready together.
    asked: tokio::sync::Mutex<Asked>,
    /// Time spent waiting for answers, which is not the steps' time.
    waited: Mutex<Duration>,
    /// AfterChecks: which instances are the checks that run before the question, how many
    /// are still to finish, and what they said.
    checks: Vec<bool>,
    /// Per instance: counted as finished (a resumed run's earlier checks count at its start).
    finished: Vec<AtomicBool>,
    checks_left: AtomicUsize,
    checks_done: tokio::sync::Notify,
    findings: Mutex<Vec<(String, String)>>,
    /// The run is stopping: nobody is asked any more.
    released: AtomicBool,
}

/// The actions that only look (on this machine, over SSH or at a file) and whose findings
/// an operator wants before approving what changes the cluster.
const CHECK_ACTIONS: &[&str] = &[
    "snapshot.verify",
    "snapshot.impact",
    "snapshot.encryption_keys",
    "snapshot.not_source",
    "etcd.preflight",
];

/// Per instance: a check that runs before the question — one of `CHECK_ACTIONS`, on this
/// machine, not gated itself, after nothing but other checks.
pub fn checks(g: &StepGraph) -> Vec<bool> {
    let mut is = vec![false; g.runbook.instances.len()];
    for &i in &g.order {
        let inst = g.instance(i);
        let before_only_checks = g
            .dag
            .neighbors_directed(
                petgraph::graph::NodeIndex::new(i),
                petgraph::Direction::Incoming,
            )
            .all(|p| is[g.dag[p]]);
        is[i] = inst.node.is_none()
            && !inst.destructive
            && !inst.confirm
            && CHECK_ACTIONS.contains(&inst.action_name.as_str())
            && before_only_checks;
    }
    is
}

#[derive(Default)]
struct Asked {
    stages: HashMap<usize, bool>,
    /// AfterChecks: the answer for the whole plan, once given.
    plan: Option<bool>,
    /// The operator said no: nothing more is asked or run.
    declined: bool,
}

/// The operator's answer.
pub enum Verdict {
    /// Go, approved by whom (as the journal records it), after waiting this long for an answer.
    Go(&'static str, Duration),
    Stop,
}

impl Gate {
    pub fn new(approval: Approval, g: &StepGraph) -> Gate {
        let checks = if approval == Approval::AfterChecks {
            checks(g)
        } else {
            vec![false; g.runbook.instances.len()]
        };
        Gate {
            approval,
            asked: Default::default(),
            waited: Mutex::new(Duration::ZERO),
            checks_left: AtomicUsize::new(checks.iter().filter(|&&c| c).count()),
            finished: checks.iter().map(|_| AtomicBool::new(false)).collect(),
            checks,
            checks_done: tokio::sync::Notify::new(),
            findings: Mutex::new(Vec::new()),
            released: AtomicBool::new(false),
        }
    }

    pub fn applies(&self, i: usize, inst: &Instance) -> bool {
        match self.approval {
            // Everything but the checks waits for the answer, destructive or not.
            Approval::AfterChecks => !self.checks[i],
            _ => inst.destructive || inst.confirm || self.approval == Approval::Stages,
        }
    }

    /// AfterChecks: instance `i` must not start yet — the checks are still running, and a
    /// step waiting at the question must not hold one of the run's slots the checks need.
    pub fn holds_back(&self, i: usize) -> bool {
        self.approval == Approval::AfterChecks
            && !self.checks[i]
            && self.checks_left.load(Ordering::SeqCst) > 0
            && !self.released.load(Ordering::SeqCst)
    }

    /// Whether instance `i` is one of the checks the question waits for.
    pub fn is_check(&self, i: usize) -> bool {
        self.checks[i]
    }

    /// What a check said (or why it failed), for the question.
    pub fn finding(&self, id: &str, text: &str) {
        self.findings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id.to_string(), text.trim().to_string()));
    }

    /// A check ended (whatever its outcome), or had ended before a resume; counted once.
    pub fn check_finished(&self, i: usize) {
        if self.checks[i]
            && !self.finished[i].swap(true, Ordering::SeqCst)
            && self.checks_left.fetch_sub(1, Ordering::SeqCst) == 1
        {
            self.checks_done.notify_waiters();
        }
    }

    /// The run is stopping: whoever waits for the question stops waiting, unasked.
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::SeqCst) {
            self.checks_done.notify_waiters();
        }
    }

    /// AfterChecks: waits for the checks, then asks once for the whole plan.
    async fn after_checks(&self, g: &StepGraph, reporter: &Reporter) -> Verdict {
        loop {
            let done = self.checks_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.checks_left.load(Ordering::SeqCst) == 0 || self.released.load(Ordering::SeqCst)
            {
                break;
            }
            done.await;
        }
        let mut asked = self.asked.lock().await;
        if asked.declined {
            return Verdict::Stop;
        }
        // Stopping: the walk leaves the step pending, and nobody is asked.
        if self.released.load(Ordering::SeqCst) {
            return Verdict::Go(self.approval.by(), Duration::ZERO);
        }
        let (yes, waited) = match asked.plan {
            Some(yes) => (yes, Duration::ZERO),
            None => {
                let started = Instant::now();
                let findings = self
                    .findings
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let text = format!("{}{}", findings_text(&findings), plan_prompt(g));
                let yes = reporter.suspend(|| ask(&text, true));
                let waited = started.elapsed();
                *self.waited.lock().unwrap_or_else(|p| p.into_inner()) += waited;
                asked.plan = Some(yes);
                (yes, waited)
            }
        };
        if yes {
            Verdict::Go(self.approval.by(), waited)
        } else {
            asked.declined = true;
            Verdict::Stop
        }
    }

    /// Time spent at prompts so far.
    pub fn waited(&self) -> Duration {
        *self.waited.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The verdict for instance `i`; under `--step` the first instance of a stage asks for
    /// the whole stage.
    pub async fn check(&self, g: &StepGraph, i: usize, reporter: &Reporter) -> Verdict {
        if self.approval == Approval::AfterChecks {
            return self.after_checks(g, reporter).await;
        }
        if self.approval != Approval::Stages {
            return Verdict::Go(self.approval.by(), Duration::ZERO);
        }
        let mut asked = self.asked.lock().await;
        if asked.declined {
            return Verdict::Stop;
        }
        let stage = g.stage[i];
        let mut waited = Duration::ZERO;
        let yes = match asked.stages.get(&stage) {
            Some(&yes) => yes,
            None => {
                let started = Instant::now();
                let text = stage_prompt(g, stage);
                let yes = reporter.suspend(|| ask(&text, false));
                waited = started.elapsed();
                *self.waited.lock().unwrap_or_else(|p| p.into_inner()) += waited;
                asked.stages.insert(stage, yes);
                yes
            }
        };
        if yes {
            Verdict::Go(self.approval.by(), waited)
        } else {
            asked.declined = true;
            Verdict::Stop
        }
    }
}

/// Prints `text` on the terminal and reads one line: `yes` approves (and `y`, unless `strict`).
fn ask(text: &str, strict: bool) -> bool {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{text}");
    let _ = err.flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    match line.trim() {
        "yes" => true,
        "y" | "Y" | "YES" | "Yes" => !strict,
        _ => false,
    }
}

/// The plan's summary shown once before a run on a terminal, and its question; `true` when
/// the operator typed `yes`.
pub fn confirm_plan(g: &StepGraph) -> bool {
    ask(&plan_prompt(g), true)
}

/// What the operator approves: the plan, its size, what it changes and where, its fingerprint.
pub fn plan_prompt(g: &StepGraph) -> String {
    let rb = &g.runbook;
    let mut nodes: Vec<&str> = rb
        .instances
        .iter()
        .filter_map(|i| i.node.as_deref())
        .collect();
    nodes.sort();
    nodes.dedup();
    let destructive: Vec<&Instance> = g
        .order
        .iter()
        .map(|&i| g.instance(i))
        .filter(|i| i.destructive || i.confirm)
        .collect();
    let mut s = format!(
        "\n{} on {}: {} steps in {} stages, on {}\n",
        rb.name,
        rb.inventory.cluster,
        rb.instances.len(),
        g.stage.iter().max().map_or(0, |m| m + 1),
        if nodes.is_empty() {
            "this machine".to_string()
        } else {
            nodes.join(", ")
        }
    );
    s.push_str(&format!(
        "{} of them change the cluster (destructive) or ask for confirmation:\n",
        destructive.len()
    ));
    for inst in &destructive {
        s.push_str(&format!(
            "  - {}  [{}]{}\n",
            inst.id,
            inst.action_name,
            if inst.destructive {
                "  DESTRUCTIVE"
            } else {
                ""
            }
        ));
        if let Some(r) = &inst.rollback {
            s.push_str(&format!("      rollback: {}\n", r.trim()));
        }
    }
    s.push_str(&format!(
        "fingerprint {}\n`runbook plan` shows every command.\n\
Run this plan? Only `yes` is accepted: ",
        g.fingerprint
    ));
    s
}

/// What the checks found, shown above the question.
fn findings_text(findings: &[(String, String)]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nWhat the checks found before anything changes:\n");
    for (id, text) in findings {
        let mut lines = text.lines();
        s.push_str(&format!("  {id}: {}\n", lines.next().unwrap_or("")));
        for l in lines {
            s.push_str(&format!("    {l}\n"));
        }
    }
    s
}

/// One stage's question under `--step`: its steps with their commands and rollback notes.
fn stage_prompt(g: &StepGraph, stage: usize) -> String {
    let mut s = format!("\n== Stage {} ==\n", stage + 1);
    for &i in g.order.iter().filter(|&&i| g.stage[i] == stage) {
        let inst = g.instance(i);
        let kind = if inst.destructive {
            "  [DESTRUCTIVE]"
        } else {
            ""
        };
        s.push_str(&format!(
            "{}  on {}  [{}]{kind}\n",
            inst.id,
            inst.node.as_deref().unwrap_or("this machine"),
            inst.action_name
        ));
        if let Some(d) = &inst.description {
            s.push_str(&format!("  {}\n", d.trim()));
        }
        for c in inst.commands() {
            s.push_str(&format!("  $ {c}\n"));
        }
        if let Some(r) = &inst.rollback {
            s.push_str(&format!("  rollback: {}\n", r.trim()));
        }
    }
    s.push_str(&format!(
        "Run stage {}? [y]es / [n]o (no stops the run): ",
        stage + 1
    ));
    s
}
