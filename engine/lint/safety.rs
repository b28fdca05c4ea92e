//! General safety: destructive steps declared and undoable; raw shell that bypasses the
//! restore checks; --force-new-cluster only when every other member is down.

use std::collections::HashSet;

use super::instances;
use crate::action;
use crate::action::manifest_flags::ManifestFlags;
use crate::action::run::Run;
use crate::action::wait_process_gone::WaitProcessGone;
use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::StepGraph;

pub fn check(g: &StepGraph, ds: &mut Diagnostics) {
    let mut seen_steps = HashSet::new();
    for (i, inst) in instances(g) {
        if seen_steps.insert(inst.step.clone()) {
            let no_note = inst.rollback.as_deref().is_none_or(|r| r.trim().is_empty());
            if inst.destructive && no_note {
                ds.push(
                    Diagnostic::error(
                        "destructive-without-rollback",
                        inst.loc.clone(),
                        format!("destructive step `{}` has no rollback note", inst.step),
                    )
                    .hint(
                        "add `rollback:` saying how to undo it by hand; at 3 a.m. nobody remembers",
                    ),
                );
            }
            if !inst.destructive && action::lookup(&inst.action_name).is_some_and(|a| a.destructive)
            {
                ds.push(
                    Diagnostic::error(
                        "undeclared-destructive",
                        inst.loc.clone(),
                        format!(
                            "step `{}` runs {}, which changes the cluster, but is not marked destructive",
                            inst.step, inst.action_name
                        ),
                    )
                    .hint("add `destructive: true` and a `rollback:` note, so the run asks before it"),
                );
            }
        }
        if inst
            .action
            .get::<ManifestFlags>()
            .is_some_and(|f| f.sets("force-new-cluster"))
        {
            force_new_cluster(g, i, ds);
        }
        let Some(run) = inst.action.get::<Run>() else {
            continue;
        };
        if run.script.contains("snapshot restore") {
            raw_restore(g, i, &run.script, ds);
        }
        if run.script.contains("--force-new-cluster") {
            force_new_cluster(g, i, ds);
        }
    }
}

fn raw_restore(g: &StepGraph, i: usize, script: &str, ds: &mut Diagnostics) {
    let inst = g.instance(i);
    let data_dir = g.runbook.node_of(inst).map(|n| n.etcd.data_dir.clone());
    let into_live = data_dir.as_deref().is_some_and(|d| {
        script
            .split_whitespace()
            .any(|w| w == format!("--data-dir={d}") || w == format!("--data-dir={d}/"))
            || script.contains(&format!("--data-dir {d} "))
            || script.trim_end().ends_with(&format!("--data-dir {d}"))
    });
    if into_live {
        ds.push(
            Diagnostic::error(
                "restore-data-dir-not-cleared",
                inst.loc.clone(),
                format!(
                    "{} restores straight into the data dir {}",
                    inst.id,
                    data_dir.unwrap_or_default()
                ),
            )
            .hint("restore fails on an existing data dir and a half-written one blocks retries: use `action: etcd.restore`, which restores beside it, keeps the old data and moves the result in"),
        );
    } else {
        ds.push(
            Diagnostic::warning(
                "raw-restore",
                inst.loc.clone(),
                format!("step `{}` restores etcd in raw shell; runbook cannot check its token, member list or data dir", inst.step),
            )
            .hint("use `action: etcd.restore`"),
        );
    }
}

fn force_new_cluster(g: &StepGraph, i: usize, ds: &mut Diagnostics) {
    let inst = g.instance(i);
    let here = inst.node.clone();
    let unguarded: Vec<String> = g
        .runbook
        .inventory
        .etcd_members()
        .into_iter()
        .filter(|n| Some(&n.name) != here.as_ref())
        .filter(|n| {
            !g.ancestors_of(i).any(|j| {
                let a = g.instance(j);
                a.node.as_deref() == Some(n.name.as_str())
                    && a.action
                        .get::<WaitProcessGone>()
                        .is_some_and(|w| w.process == "etcd")
            })
        })
        .map(|n| n.name.clone())
        .collect();
    if !unguarded.is_empty() {
        ds.push(
            Diagnostic::error(
                "force-new-cluster-unguarded",
                inst.loc.clone(),
                format!(
                    "{} uses --force-new-cluster while etcd may still run on {}",
                    inst.id,
                    unguarded.join(", ")
                ),
            )
            .hint("a surviving member would split the cluster: stop etcd on every other member and add `wait.process_gone { process: etcd }` on each to `needs`"),
        );
    }
}
