//! Domain rules (DESIGN.md §5): what an etcd operator must never run, decided on the
//! compiled graph before any host is touched. One file per family.

mod apiserver;
mod defrag;
mod manifest;
mod membership;
mod restore;
mod roll;
mod safety;
mod topology;

use crate::action::manifest::ManifestMove;
use crate::compile::Instance;
use crate::diag::Diagnostics;
use crate::graph::StepGraph;

/// Every lint code, its level and what it protects against (for docs and tests).
pub const RULES: &[(&str, &str)] = &[
    (
        "restore-token-mismatch",
        "members restored with different --initial-cluster-token",
    ),
    (
        "restore-cluster-mismatch",
        "members restored with different or wrong --initial-cluster",
    ),
    (
        "restore-partial-cluster",
        "a restore that leaves some etcd members out",
    ),
    (
        "restore-member-identity",
        "a member's --name or peer URL not its own node's",
    ),
    (
        "restore-snapshot-mismatch",
        "members restored from different snapshots",
    ),
    (
        "restore-while-running",
        "restore without etcd (and kube-apiserver) stopped on that node",
    ),
    (
        "restore-data-dir-not-cleared",
        "restore straight into a live data dir",
    ),
    (
        "restore-unverified-snapshot",
        "restore without a verified snapshot",
    ),
    (
        "etcdctl-snapshot-removed",
        "etcdctl snapshot restore on etcd 3.6+ (warning on 3.5)",
    ),
    (
        "restore-no-bump-revision",
        "restore without --bump-revision/--mark-compacted where supported",
    ),
    (
        "restore-token-reused",
        "the restored cluster reuses the running cluster's token",
    ),
    (
        "manifest-parking-inside",
        "manifests parked inside the manifests directory",
    ),
    (
        "apiserver-before-healthy",
        "kube-apiserver started before etcd quorum is verified",
    ),
    (
        "destructive-without-rollback",
        "a destructive step without a rollback note",
    ),
    (
        "undeclared-destructive",
        "a destructive action on a step not marked destructive",
    ),
    ("defrag-not-serial", "members defragmented concurrently"),
    (
        "roll-without-snapshot",
        "an etcd upgrade or downgrade without a verified snapshot first",
    ),
    (
        "quota-above-recommended",
        "a backend quota above 8 GiB (warning)",
    ),
    (
        "force-new-cluster-unguarded",
        "--force-new-cluster while other members may run",
    ),
    (
        "raw-restore",
        "a restore in raw shell that runbook cannot check",
    ),
    (
        "clear-data-while-running",
        "a member's data cleared while etcd may still run there",
    ),
    (
        "member-add-with-old-data",
        "a member added back onto a data dir that was not cleared",
    ),
    ("even-members", "an even number of etcd members"),
    ("single-member", "a single etcd member"),
];

pub fn run(g: &StepGraph) -> Diagnostics {
    let mut ds = Diagnostics::default();
    restore::check(g, &mut ds);
    manifest::check(g, &mut ds);
    apiserver::check(g, &mut ds);
    safety::check(g, &mut ds);
    membership::check(g, &mut ds);
    defrag::check(g, &mut ds);
    roll::check(g, &mut ds);
    topology::check(g, &mut ds);
    ds
}

/// Instances (index, instance) in execution order.
fn instances(g: &StepGraph) -> impl Iterator<Item = (usize, &Instance)> {
    g.order.iter().map(move |&i| (i, g.instance(i)))
}

/// Ancestors of `i` that run on the same node.
fn same_node_ancestors(g: &StepGraph, i: usize) -> impl Iterator<Item = (usize, &Instance)> {
    let node = g.instance(i).node.clone();
    g.ancestors_of(i)
        .map(move |j| (j, g.instance(j)))
        .filter(move |(_, a)| a.node == node && node.is_some())
}

/// Whether a manifest file name is etcd's / kube-apiserver's static pod.
fn is_etcd_manifest(name: &str) -> bool {
    name.starts_with("etcd")
}
fn is_apiserver_manifest(name: &str) -> bool {
    name.starts_with("kube-apiserver")
}

/// Whether an instance starts etcd: a `manifest.start` of its manifest, or an `etcd.start`.
fn starts_etcd(inst: &Instance) -> bool {
    inst.action
        .get::<ManifestMove>()
        .is_some_and(|m| m.start && m.manifests.iter().any(|f| is_etcd_manifest(f)))
        || inst
            .action
            .get::<crate::action::etcd_service::EtcdUnit>()
            .is_some_and(|u| u.start)
}
