//! Rolling member changes: a version change only after a verified snapshot of the cluster
//! (etcd's upgrade and downgrade guides: the way back is a restore), and a backend quota
//! above what etcd recommends said out loud.

use super::instances;
use crate::action::etcd_roll::{EtcdRoll, QUOTA_WARN_BYTES};
use crate::action::snapshot_save::SnapshotSave;
use crate::action::snapshot_verify::SnapshotVerify;
use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::StepGraph;

pub fn check(g: &StepGraph, ds: &mut Diagnostics) {
    for (i, inst) in instances(g) {
        let Some(roll) = inst.action.get::<EtcdRoll>() else {
            continue;
        };
        if let Some(v) = roll.change.version {
            // A snapshot saved and that same file verified, both before the roll.
            let saved: Vec<&str> = g
                .ancestors_of(i)
                .filter_map(|j| g.instance(j).action.get::<SnapshotSave>())
                .map(|s| s.dest.as_str())
                .collect();
            let verified = g.ancestors_of(i).any(|j| {
                g.instance(j)
                    .action
                    .get::<SnapshotVerify>()
                    .is_some_and(|v| saved.contains(&v.path.as_str()))
            });
            if !verified {
                ds.push(
                    Diagnostic::error(
                        "roll-without-snapshot",
                        inst.arg_loc("version"),
                        format!(
                            "{} moves the members to etcd {v} without a verified snapshot taken first",
                            inst.id
                        ),
                    )
                    .hint("add `snapshot.save` and a `snapshot.verify` of that file in steps this one needs: after a failed upgrade or downgrade, the way back is a restore"),
                );
            }
        }
        if let Some(q) = roll.quota_above_recommended() {
            ds.push(
                Diagnostic::warning(
                    "quota-above-recommended",
                    inst.arg_loc("set"),
                    format!(
                        "{}: quota-backend-bytes {q} is above {QUOTA_WARN_BYTES} (8 GiB), the most etcd's documentation suggests",
                        inst.id
                    ),
                )
                .hint("a larger backend makes snapshots, defragmentation and restores slower; etcd logs a warning at start"),
            );
        }
    }
}
