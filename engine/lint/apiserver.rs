//! kube-apiserver must not start before etcd has quorum and is verified: an API server on a
//! half-formed etcd answers 5xx and fills its watch caches with the wrong state.

use super::{instances, is_apiserver_manifest, starts_etcd};
use crate::action::etcd_verify_cluster::EtcdVerifyCluster;
use crate::action::manifest::ManifestMove;
use crate::action::wait_etcd_healthy::WaitEtcdHealthy;
use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::StepGraph;

pub fn check(g: &StepGraph, ds: &mut Diagnostics) {
    let etcd_starts: Vec<usize> = instances(g)
        .filter(|(_, inst)| starts_etcd(inst))
        .map(|(i, _)| i)
        .collect();
    for (i, inst) in instances(g) {
        let Some(m) = inst.action.get::<ManifestMove>().filter(|m| m.start) else {
            continue;
        };
        if !m.manifests.iter().any(|f| is_apiserver_manifest(f)) {
            continue;
        }
        // A health check that runs after every etcd start proves quorum before this start.
        let gated = g.ancestors_of(i).any(|h| {
            let a = &g.instance(h).action;
            (a.get::<WaitEtcdHealthy>().is_some() || a.get::<EtcdVerifyCluster>().is_some())
                && etcd_starts.iter().all(|&s| g.precedes(s, h))
        });
        if !gated {
            ds.push(
                Diagnostic::error(
                    "apiserver-before-healthy",
                    inst.loc.clone(),
                    format!(
                        "{} starts kube-apiserver before etcd is verified healthy with quorum",
                        inst.id
                    ),
                )
                .hint("put a `wait.etcd_healthy` (or `etcd.verify_cluster`) step that needs every etcd start into this step's `needs`"),
            );
        }
    }
}
