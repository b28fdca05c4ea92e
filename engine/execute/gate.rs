//! Gates: destructive steps (or every step with `--step`) need the operator's yes.
//!
//! On a terminal the operator sees the whole plan's summary once — steps, the destructive
//! ones, nodes, fingerprint — and types `yes`, as `terraform apply` asks; with `--step` the
//! run asks once per stage instead, in stage order, and a `no` stops all asking at once.
//! Elsewhere `--yes` or `--approve FINGERPRINT` must have been given up front, or the run
//! is refused before anything starts.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::report::Reporter;
use crate::compile::Instance;
use crate::graph::StepGraph;

/// How approvals are obtained for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// The operator typed `yes` to the whole plan on the terminal before it started.
    Confirmed,
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
            Approval::Confirmed | Approval::Stages => "tty",
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
}

#[derive(Default)]
struct Asked {
    stages: HashMap<usize, bool>,
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
    pub fn new(approval: Approval) -> Gate {
        Gate {
            approval,
            asked: Default::default(),
            waited: Mutex::new(Duration::ZERO),
        }
    }

    pub fn applies(&self, inst: &Instance) -> bool {
        inst.destructive || inst.confirm || self.approval == Approval::Stages
    }

    /// Time spent at prompts so far.
    pub fn waited(&self) -> Duration {
        *self.waited.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The verdict for instance `i`; under `--step` the first instance of a stage asks for
    /// the whole stage.
    pub async fn check(&self, g: &StepGraph, i: usize, reporter: &Reporter) -> Verdict {
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
