//! Membership changes: a member's data is cleared only with its etcd stopped, and a member
//! is added back only onto a cleared data dir (old data carries the removed member's identity).

use super::{instances, same_node_ancestors};
use crate::action::etcd_clear_data::EtcdClearData;
use crate::action::etcd_members::EtcdMemberAdd;
use crate::action::wait_process_gone::WaitProcessGone;
use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::StepGraph;

pub fn check(g: &StepGraph, ds: &mut Diagnostics) {
    for (i, inst) in instances(g) {
        if inst.action.get::<EtcdClearData>().is_some() {
            let stopped = same_node_ancestors(g, i).any(|(_, a)| {
                a.action
                    .get::<WaitProcessGone>()
                    .is_some_and(|w| w.process == "etcd")
            });
            if !stopped {
                ds.push(
                        Diagnostic::error(
                            "clear-data-while-running",
                            inst.loc.clone(),
                            format!(
                                "`{}` clears etcd's data on {} before etcd is seen gone there",
                                inst.id,
                                inst.node.as_deref().unwrap_or("the node")
                            ),
                        )
                        .hint("stop etcd on the node (`etcd.stop`) and add a `wait.process_gone { process: etcd }` step on the same node to `needs`"),
                    );
            }
        } else if inst.action.get::<EtcdMemberAdd>().is_some() {
            let cleared =
                same_node_ancestors(g, i).any(|(_, a)| a.action.get::<EtcdClearData>().is_some());
            if !cleared {
                ds.push(
                        Diagnostic::error(
                            "member-add-with-old-data",
                            inst.loc.clone(),
                            format!(
                                "`{}` adds {} back as a member onto a data dir that was not cleared",
                                inst.id,
                                inst.node.as_deref().unwrap_or("the node")
                            ),
                        )
                        .hint("a new member must start empty: add an `etcd.clear_data` step on the same node to `needs`"),
                    );
            }
        }
    }
}
