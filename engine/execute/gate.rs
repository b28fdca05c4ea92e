//! Gates: a destructive step (or every step with `--step`) needs the operator's yes.
//! On a terminal the operator answers per step; elsewhere `--yes` or `--approve FINGERPRINT`
//! must have been given up front, or the run is refused before anything starts.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use super::report::Reporter;
use crate::compile::Instance;

/// How approvals are obtained for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// Ask on the terminal.
    Ask,
    /// `--yes`: approved in advance.
    Yes,
    /// `--approve FINGERPRINT` matched the compiled plan.
    Fingerprint,
    /// Dry-run: nothing runs, nothing to approve.
    DryRun,
}

pub struct Gate {
    pub approval: Approval,
    /// `--step`: ask before every step, not only destructive ones.
    pub every_step: bool,
    /// The operator answered "all" once.
    all: AtomicBool,
    /// One question at a time, even when several steps become ready together.
    ask_lock: tokio::sync::Mutex<()>,
}

/// The operator's answer.
pub enum Verdict {
    Go(&'static str),
    Stop,
}

impl Gate {
    pub fn new(approval: Approval, every_step: bool) -> Gate {
        Gate {
            approval,
            every_step,
            all: AtomicBool::new(false),
            ask_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn applies(&self, inst: &Instance) -> bool {
        inst.destructive || inst.confirm || self.every_step
    }

    pub async fn check(&self, inst: &Instance, reporter: &Reporter) -> Verdict {
        match self.approval {
            Approval::DryRun => return Verdict::Go("dry-run"),
            Approval::Yes if !self.every_step => return Verdict::Go("--yes"),
            Approval::Fingerprint if !self.every_step => return Verdict::Go("--approve"),
            _ => {}
        }
        let _one = self.ask_lock.lock().await;
        if self.all.load(Ordering::SeqCst) {
            return Verdict::Go("tty (all)");
        }
        let text = prompt_text(inst);
        let answer = reporter.suspend(|| {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{text}");
            let _ = err.flush();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            line
        });
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Verdict::Go("tty"),
            "a" | "all" => {
                self.all.store(true, Ordering::SeqCst);
                Verdict::Go("tty (all)")
            }
            _ => Verdict::Stop,
        }
    }
}

fn prompt_text(inst: &Instance) -> String {
    let mut s = String::new();
    let kind = if inst.destructive {
        "  [DESTRUCTIVE]"
    } else {
        ""
    };
    s.push_str(&format!(
        "\n{}  on {}  [{}]{kind}\n",
        inst.id,
        inst.node.as_deref().unwrap_or("this machine"),
        inst.action_name
    ));
    if let Some(d) = &inst.description {
        s.push_str(&format!("  {d}\n"));
    }
    for c in inst.commands() {
        s.push_str(&format!("  $ {c}\n"));
    }
    if let Some(r) = &inst.rollback {
        s.push_str(&format!("  rollback: {r}\n"));
    }
    s.push_str(&format!(
        "Run {}? [y]es / [n]o / [a]ll remaining: ",
        inst.id
    ));
    s
}
