//! Cluster shape: etcd tolerates (n-1)/2 failures, so an even count adds risk without
//! fault tolerance, and one member tolerates none.

use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::StepGraph;

pub fn check(g: &StepGraph, ds: &mut Diagnostics) {
    let members = g.runbook.inventory.etcd_members();
    let Some(first) = members.first() else {
        return;
    };
    let n = members.len();
    if n == 1 {
        ds.push(
            Diagnostic::warning(
                "single-member",
                first.loc.clone(),
                "the cluster has a single etcd member: losing it loses the cluster",
            )
            .hint("run 3 or 5 members in production; a single member suits labs and drills"),
        );
    } else if n.is_multiple_of(2) {
        ds.push(
            Diagnostic::warning(
                "even-members",
                first.loc.clone(),
                format!(
                    "the cluster has {n} etcd members: it tolerates no more failures than {}",
                    n - 1
                ),
            )
            .hint("use an odd number of members (3, 5, 7)"),
        );
    }
}
