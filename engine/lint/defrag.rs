//! Defragmentation blocks a member: two at once can cost quorum, so defrag runs serially.

use super::instances;
use crate::action::etcd_defrag::EtcdDefrag;
use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::StepGraph;

pub fn check(g: &StepGraph, ds: &mut Diagnostics) {
    let defrags: Vec<usize> = instances(g)
        .filter(|(_, inst)| inst.action.get::<EtcdDefrag>().is_some())
        .map(|(i, _)| i)
        .collect();
    for (n, &a) in defrags.iter().enumerate() {
        for &b in &defrags[n + 1..] {
            if !g.precedes(a, b) && !g.precedes(b, a) {
                let (ia, ib) = (g.instance(a), g.instance(b));
                ds.push(
                    Diagnostic::error(
                        "defrag-not-serial",
                        ib.loc.clone(),
                        format!("{} and {} may defragment at the same time", ia.id, ib.id),
                    )
                    .hint("defragment one member at a time: one step per member, each needing the previous one (leader last)"),
                );
                return;
            }
        }
    }
}
