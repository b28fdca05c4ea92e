//! Restore lints: one token, one member list, one snapshot, each member itself, etcd down,
//! the snapshot verified, the right tool and flags for the version.

use std::collections::BTreeMap;

use super::{instances, same_node_ancestors};
use crate::action::etcd_restore::{EtcdRestore, Tool, initial_cluster};
use crate::action::manifest::ManifestMove;
use crate::action::snapshot_distribute::SnapshotDistribute;
use crate::action::snapshot_verify::SnapshotVerify;
use crate::action::wait_process_gone::WaitProcessGone;
use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::StepGraph;
use crate::inventory::model::CONTROL_PLANE_ROLE;

pub fn check(g: &StepGraph, ds: &mut Diagnostics) {
    let restores: Vec<(usize, &EtcdRestore)> = instances(g)
        .filter_map(|(i, inst)| Some((i, inst.action.get::<EtcdRestore>()?)))
        .collect();
    if restores.is_empty() {
        return;
    }
    agreement(g, &restores, ds);
    for &(i, r) in &restores {
        identity(g, i, r, ds);
        stopped_first(g, i, ds);
        verified_first(g, i, r, ds);
        tool_and_flags(g, i, r, ds);
    }
}

/// Values that must be equal on every member: report one diagnostic listing them all.
fn disagreement<'a>(
    g: &StepGraph,
    restores: &[(usize, &'a EtcdRestore)],
    value: impl Fn(usize, &'a EtcdRestore) -> String,
) -> Option<(usize, String)> {
    let mut by_value: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for &(i, r) in restores {
        by_value
            .entry(value(i, r))
            .or_default()
            .push(g.instance(i).node.as_deref().unwrap_or("?"));
    }
    if by_value.len() < 2 {
        return None;
    }
    let first_value = value(restores[0].0, restores[0].1);
    let odd = restores
        .iter()
        .find(|(i, r)| value(*i, r) != first_value)
        .map(|(i, _)| *i)
        .unwrap_or(restores[0].0);
    let listing = by_value
        .iter()
        .map(|(v, nodes)| format!("{} on {}", v, nodes.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    Some((odd, listing))
}

fn agreement(g: &StepGraph, restores: &[(usize, &EtcdRestore)], ds: &mut Diagnostics) {
    if let Some((i, listing)) = disagreement(g, restores, |_, r| r.token.clone()) {
        ds.push(
            Diagnostic::error(
                "restore-token-mismatch",
                g.instance(i).arg_loc("token"),
                format!("members are restored with different --initial-cluster-token values: {listing}"),
            )
            .hint("restore derives member and cluster IDs from the token: give every member the same one (e.g. a plan parameter), or the members form separate clusters"),
        );
    }
    if let Some((i, listing)) = disagreement(g, restores, |_, r| r.initial_cluster.clone()) {
        ds.push(
            Diagnostic::error(
                "restore-cluster-mismatch",
                g.instance(i).arg_loc("initial_cluster"),
                format!("members are restored with different --initial-cluster lists: {listing}"),
            )
            .hint("every member must be restored with the same list of all members; drop `initial_cluster` to use the inventory's"),
        );
    }
    // The restored set must be the inventory's etcd members, and the list must say so.
    let inv = &g.runbook.inventory;
    let members = inv.etcd_members();
    let restored: Vec<&str> = restores
        .iter()
        .filter_map(|(i, _)| g.instance(*i).node.as_deref())
        .collect();
    let missing: Vec<&str> = members
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| !restored.contains(n))
        .collect();
    let (first, _) = restores[0];
    if !missing.is_empty() {
        ds.push(
            Diagnostic::error(
                "restore-partial-cluster",
                g.instance(first).loc.clone(),
                format!(
                    "the restore leaves out etcd member{} {}: they would keep the old cluster's data and ID",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", ")
                ),
            )
            .hint("fan the restore out over every etcd member: `for_each: { role: etcd }`; replace a single failed member with a member-replace plan instead"),
        );
    }
    let expected = initial_cluster(&members);
    if let Some(&(i, r)) = restores.iter().find(|(_, r)| r.initial_cluster != expected)
        && missing.is_empty()
    {
        ds.push(
            Diagnostic::error(
                "restore-cluster-mismatch",
                g.instance(i).arg_loc("initial_cluster"),
                format!(
                    "--initial-cluster {} does not match the inventory's members {expected}",
                    r.initial_cluster
                ),
            )
            .hint("drop `initial_cluster` so runbook builds it from the inventory"),
        );
    }
    let snapshot_origin = |i: usize, r: &EtcdRestore| -> String {
        // A node-side copy stands for the operator-side file it was distributed from.
        same_node_ancestors(g, i)
            .find_map(|(_, a)| {
                let d = a.action.get::<SnapshotDistribute>()?;
                (d.dest == r.snapshot).then(|| d.source.clone())
            })
            .unwrap_or_else(|| r.snapshot.clone())
    };
    if let Some((i, listing)) = disagreement(g, restores, snapshot_origin) {
        ds.push(
            Diagnostic::error(
                "restore-snapshot-mismatch",
                g.instance(i).arg_loc("snapshot"),
                format!("members are restored from different snapshots: {listing}"),
            )
            .hint("restore every member from one snapshot: distribute the same file to each node"),
        );
    }
}

fn identity(g: &StepGraph, i: usize, r: &EtcdRestore, ds: &mut Diagnostics) {
    let inst = g.instance(i);
    let Some(node) = g.runbook.node_of(inst) else {
        return;
    };
    if r.name != node.name {
        ds.push(
            Diagnostic::error(
                "restore-member-identity",
                inst.arg_loc("name"),
                format!(
                    "{} restores member `{}` on node `{}`",
                    inst.id, r.name, node.name
                ),
            )
            .hint("a member's --name must be its own node's name; drop `name` to use it"),
        );
    }
    if r.peer_url != node.peer_url() {
        ds.push(
            Diagnostic::error(
                "restore-member-identity",
                inst.arg_loc("peer_url"),
                format!(
                    "{} advertises peer URL {} but node `{}` is at {}",
                    inst.id,
                    r.peer_url,
                    node.name,
                    node.peer_url()
                ),
            )
            .hint("drop `peer_url` to use the node's own"),
        );
    }
}

fn stopped_first(g: &StepGraph, i: usize, ds: &mut Diagnostics) {
    let inst = g.instance(i);
    let Some(node) = g.runbook.node_of(inst) else {
        return;
    };
    let waits_for = |process: &str| {
        same_node_ancestors(g, i).any(|(_, a)| {
            a.action
                .get::<WaitProcessGone>()
                .is_some_and(|w| w.process == process)
        })
    };
    let parks = |pred: fn(&str) -> bool| {
        same_node_ancestors(g, i).any(|(_, a)| {
            a.action
                .get::<ManifestMove>()
                .is_some_and(|m| !m.start && m.manifests.iter().any(|f| pred(f)))
        })
    };
    if !waits_for("etcd") {
        ds.push(
            Diagnostic::error(
                "restore-while-running",
                inst.loc.clone(),
                format!("{} restores on {} without first waiting for etcd to be gone there", inst.id, node.name),
            )
            .hint("stop etcd on the node (`etcd.stop`) and add a `wait.process_gone { process: etcd }` step on the same node to `needs`"),
        );
    }
    if node.has_role(CONTROL_PLANE_ROLE)
        && !parks(super::is_apiserver_manifest)
        && !waits_for("kube-apiserver")
    {
        ds.push(
            Diagnostic::error(
                "restore-while-running",
                inst.loc.clone(),
                format!("{} restores on control-plane node {} while kube-apiserver may still run there", inst.id, node.name),
            )
            .hint("park kube-apiserver.yaml (manifest.stop) on the node before the restore, so it cannot write to etcd mid-restore"),
        );
    }
}

fn verified_first(g: &StepGraph, i: usize, r: &EtcdRestore, ds: &mut Diagnostics) {
    let inst = g.instance(i);
    let verified_here = same_node_ancestors(g, i).any(|(_, a)| {
        a.action
            .get::<SnapshotVerify>()
            .is_some_and(|v| v.path == r.snapshot)
    });
    if verified_here {
        return;
    }
    let distribute = same_node_ancestors(g, i).find_map(|(j, a)| {
        let d = a.action.get::<SnapshotDistribute>()?;
        (d.dest == r.snapshot).then_some((j, d))
    });
    match distribute {
        Some((j, d)) => {
            let source_verified = g.ancestors_of(j).any(|k| {
                let a = g.instance(k);
                a.node.is_none() && a.action.get::<SnapshotVerify>().is_some_and(|v| v.path == d.source)
            });
            if !source_verified {
                ds.push(
                    Diagnostic::error(
                        "restore-unverified-snapshot",
                        inst.arg_loc("snapshot"),
                        format!(
                            "{}: the copy on {} is checked against {}, but that file itself is never verified",
                            inst.id,
                            inst.node.as_deref().unwrap_or("?"),
                            d.source
                        ),
                    )
                    .hint("add a local `snapshot.verify` of the source and put it in the distribute step's `needs`: an empty or truncated download copies perfectly"),
                );
            }
        }
        None => ds.push(
            Diagnostic::error(
                "restore-unverified-snapshot",
                inst.arg_loc("snapshot"),
                format!("{} restores {} without verifying it first", inst.id, r.snapshot),
            )
            .hint("verify the snapshot (snapshot.verify) or distribute it (snapshot.distribute checks the copy) in a step this one needs"),
        ),
    }
}

fn tool_and_flags(g: &StepGraph, i: usize, r: &EtcdRestore, ds: &mut Diagnostics) {
    let inst = g.instance(i);
    if r.tool == Tool::Etcdctl && r.version.etcdctl_snapshot_removed() {
        ds.push(
            Diagnostic::error(
                "etcdctl-snapshot-removed",
                inst.arg_loc("tool"),
                format!(
                    "`etcdctl snapshot restore` does not exist in etcd {}",
                    r.version
                ),
            )
            .hint("etcd 3.6 removed it: use etcdutl (drop `tool: etcdctl`)"),
        );
    } else if r.tool == Tool::Etcdctl && r.version.has_etcdutl() {
        ds.push(
            Diagnostic::warning(
                "etcdctl-snapshot-removed",
                inst.arg_loc("tool"),
                format!(
                    "`etcdctl snapshot restore` is deprecated in etcd {} and removed in 3.6",
                    r.version
                ),
            )
            .hint("use etcdutl (drop `tool: etcdctl`)"),
        );
    }
    if r.bump_disabled {
        ds.push(
            Diagnostic::warning(
                "restore-no-bump-revision",
                inst.arg_loc("bump_revision"),
                format!(
                    "step `{}` restores without --bump-revision/--mark-compacted although etcd {} supports them",
                    inst.step, r.version
                ),
            )
            .hint("Kubernetes informers would serve pre-snapshot state: keep the default bump (1000000000)"),
        );
    }
    let current = g
        .runbook
        .node_of(inst)
        .map(|n| n.etcd.cluster_token.clone())
        .unwrap_or_default();
    if r.token == current {
        ds.push(
            Diagnostic::warning(
                "restore-token-reused",
                inst.arg_loc("token"),
                format!("step `{}` restores with token {:?}, the running cluster's own", inst.step, r.token),
            )
            .hint("a fresh token keeps restored members from joining peers of the old cluster that still run"),
        );
    }
}
