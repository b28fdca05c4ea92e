//! Manifest lints: a parked manifest inside kubelet's manifests directory is still run.

use super::instances;
use crate::action::manifest::ManifestMove;
use crate::check::is_within;
use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::StepGraph;

pub fn check(g: &StepGraph, ds: &mut Diagnostics) {
    for (_, inst) in instances(g) {
        let Some(m) = inst.action.get::<ManifestMove>() else {
            continue;
        };
        if is_within(&m.parking_dir, &m.manifests_dir) {
            ds.push(
                Diagnostic::error(
                    "manifest-parking-inside",
                    inst.arg_loc("parking_dir"),
                    format!(
                        "step `{}` parks manifests in {}, inside the manifests directory {}",
                        inst.step, m.parking_dir, m.manifests_dir
                    ),
                )
                .hint("kubelet watches that directory and runs whatever is in it, the \"parked\" copy included: park outside it, e.g. /etc/kubernetes/runbook-parked"),
            );
        }
    }
}
