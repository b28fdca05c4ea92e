//! Where every step instance stands, rebuilt from the journal (for resume and `runbook status`).

use std::collections::HashMap;

use serde::Serialize;

use super::journal::{Decision, Event, Finish, Record};
use crate::graph::StepGraph;

/// A step instance's state as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum Status {
    /// Not started yet.
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    /// A gate stopped it.
    Declined,
    /// The operator said on resume that it is done (`--skip`).
    SkippedByOperator,
    /// Will not run in this run, and why.
    Skipped(String),
    /// Started and never finished: whether it changed the host is not known.
    Unknown,
}

impl Status {
    /// Lets dependents run.
    pub fn satisfied(&self) -> bool {
        matches!(self, Status::Succeeded | Status::SkippedByOperator)
    }

    pub fn failed(&self) -> bool {
        matches!(self, Status::Failed | Status::TimedOut | Status::Declined)
    }

    pub fn label(&self) -> String {
        match self {
            Status::Pending => "pending".into(),
            Status::Running => "running".into(),
            Status::Succeeded => "ok".into(),
            Status::Failed => "FAILED".into(),
            Status::TimedOut => "TIMED OUT".into(),
            Status::Declined => "declined".into(),
            Status::SkippedByOperator => "skipped (--skip)".into(),
            Status::Skipped(why) => format!("skipped ({why})"),
            Status::Unknown => "UNKNOWN (started, never finished)".into(),
        }
    }
}

/// Per instance (indexed like the runbook's instances): state, attempts and time spent.
#[derive(Debug, Clone)]
pub struct RunState {
    pub status: Vec<Status>,
    pub attempts: Vec<u32>,
    pub duration_ms: Vec<u64>,
    pub exit_code: Vec<Option<i32>>,
    pub error: Vec<Option<String>>,
    /// Captured outputs: (capture name, node) -> value.
    pub captures: HashMap<(String, Option<String>), String>,
    /// When each destructive instance finished, in order (for rollback notes, newest last).
    pub finished_order: Vec<usize>,
    /// Started and never seen to finish, to be settled from the hosts' record of that
    /// attempt (a resume sets it; the walk goes on with the same attempt number).
    pub reattach: Vec<bool>,
}

impl RunState {
    pub fn new(g: &StepGraph) -> RunState {
        RunState::empty(g.runbook.instances.len())
    }

    fn empty(n: usize) -> RunState {
        RunState {
            status: vec![Status::Pending; n],
            attempts: vec![0; n],
            duration_ms: vec![0; n],
            exit_code: vec![None; n],
            error: vec![None; n],
            captures: HashMap::new(),
            finished_order: Vec::new(),
            reattach: vec![false; n],
        }
    }

    /// Replays a journal. Instances the journal names but the graph lacks are ignored
    /// (the fingerprint check has already refused a changed plan).
    pub fn replay(g: &StepGraph, records: &[Record]) -> RunState {
        let ids: Vec<String> = g.runbook.instances.iter().map(|i| i.id.clone()).collect();
        let mut s = RunState::replay_ids(&ids, records);
        for r in records {
            if let Event::StepFinished {
                id,
                capture: Some(v),
                status: Finish::Succeeded,
                ..
            } = &r.event
                && let Some(inst) = g.runbook.instances.iter().find(|i| &i.id == id)
                && let Some(name) = &inst.capture
            {
                s.captures
                    .insert((name.clone(), inst.node.clone()), v.clone());
            }
        }
        s
    }

    /// Replays a journal over instance ids (what `runbook status` has without compiling).
    pub fn replay_ids(ids: &[String], records: &[Record]) -> RunState {
        let index: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut s = RunState::empty(ids.len());
        for r in records {
            match &r.event {
                Event::StepStarted { id, attempt } => {
                    if let Some(&i) = index.get(id.as_str()) {
                        s.status[i] = Status::Unknown;
                        s.attempts[i] = *attempt;
                    }
                }
                Event::StepFinished {
                    id,
                    status,
                    exit_code,
                    duration_ms,
                    error,
                    ..
                } => {
                    if let Some(&i) = index.get(id.as_str()) {
                        s.status[i] = match status {
                            Finish::Succeeded => Status::Succeeded,
                            Finish::Failed => Status::Failed,
                            Finish::TimedOut => Status::TimedOut,
                        };
                        s.duration_ms[i] += duration_ms;
                        s.exit_code[i] = *exit_code;
                        s.error[i] = error.clone();
                        s.finished_order.retain(|&j| j != i);
                        s.finished_order.push(i);
                    }
                }
                Event::StepRetry { id, .. } => {
                    if let Some(&i) = index.get(id.as_str()) {
                        s.status[i] = Status::Failed;
                    }
                }
                Event::StepSkipped { id, reason } => {
                    if let Some(&i) = index.get(id.as_str()) {
                        s.status[i] = Status::Skipped(reason.clone());
                    }
                }
                Event::Declined { id } => {
                    if let Some(&i) = index.get(id.as_str()) {
                        s.status[i] = Status::Declined;
                    }
                }
                Event::StepAbandoned { id } => {
                    if let Some(&i) = index.get(id.as_str()) {
                        s.status[i] = Status::Unknown;
                    }
                }
                Event::Decision { id, decision } => {
                    if let Some(&i) = index.get(id.as_str()) {
                        s.status[i] = match decision {
                            Decision::Skip => Status::SkippedByOperator,
                            Decision::Retry => Status::Pending,
                        };
                    }
                }
                Event::RunStarted { .. }
                | Event::StepOutput { .. }
                | Event::Approved { .. }
                | Event::Interrupted { .. }
                | Event::RunFinished { .. } => {}
            }
        }
        s
    }
}
