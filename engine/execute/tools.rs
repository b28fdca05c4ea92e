//! Tool detection: before the first step, every node is asked for the etcd tools the plan
//! will run there (etcdutl, etcdctl), and their versions. A missing tool, or a restore tool
//! whose version is not the inventory's, refuses the run with the remedy — instead of
//! failing halfway, with the cluster already stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use crate::action::Action;
use crate::executor::{Executor, Target};
use crate::graph::StepGraph;
use crate::inventory::model::Node;
use crate::inventory::version::EtcdVersion;
use crate::shell::quote;

/// A tool a step needs on a node.
#[derive(Debug, Clone)]
struct Need {
    path: String,
    step: String,
    /// The restore tool must match the inventory's etcd version (it decides flags and format).
    version: Option<EtcdVersion>,
}

fn needs(g: &StepGraph) -> BTreeMap<String, Vec<Need>> {
    let inv = &g.runbook.inventory;
    let mut out: BTreeMap<String, Vec<Need>> = BTreeMap::new();
    for inst in &g.runbook.instances {
        let Some(node) = inst.node.as_deref().and_then(|n| inv.node(n)) else {
            continue;
        };
        let need = match &inst.action {
            Action::EtcdRestore(a) => Need {
                path: a.tool_path.clone(),
                step: inst.id.clone(),
                version: Some(a.version),
            },
            Action::WaitEtcdHealthy(_) | Action::EtcdDefrag(_) => Need {
                path: node.etcd.etcdctl.clone(),
                step: inst.id.clone(),
                version: None,
            },
            _ => continue,
        };
        let list = out.entry(node.name.clone()).or_default();
        if !list
            .iter()
            .any(|n| n.path == need.path && n.version == need.version)
        {
            list.push(need);
        }
    }
    out
}

/// Asks each node, all at once; returns every problem found, with its remedy.
pub async fn check<E: Executor>(exec: &E, g: &StepGraph) -> Vec<String> {
    let wanted = needs(g);
    let inv = &g.runbook.inventory;
    let asks = wanted.iter().filter_map(|(name, list)| {
        let node: &Node = inv.node(name)?;
        Some(async move {
            // One round trip: "PATH<TAB>missing" or "PATH<TAB>ok<TAB>first version line".
            let script: String = list
                .iter()
                .map(|n| {
                    let t = quote(&n.path);
                    format!(
                        "if command -v {t} >/dev/null 2>&1; then printf '%s\\tok\\t%s\\n' {t} \"$({t} version 2>/dev/null | head -n 1)\"; else printf '%s\\tmissing\\n' {t}; fi; "
                    )
                })
                .collect();
            let out = exec
                .shell(Target::Node(node), &script, &[], Duration::from_secs(30))
                .await;
            (node, list, out)
        })
    });
    let mut problems = Vec::new();
    for (node, list, out) in join_all(asks).await {
        let out = match out {
            Ok(o) if o.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => {
                problems.push(format!(
                    "cannot look for etcd tools on {}: {}",
                    node.name,
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!("cannot look for etcd tools on {}: {e}", node.name));
                continue;
            }
        };
        for (need, line) in list.iter().zip(out.lines()) {
            let mut f = line.split('\t');
            let (_, state, version) = (f.next(), f.next(), f.next().unwrap_or(""));
            if state != Some("ok") {
                let field = if need.path.ends_with("etcdutl") {
                    "etcd.etcdutl"
                } else {
                    "etcd.etcdctl"
                };
                problems.push(format!(
                    "{} has no {} (needed by {}): install it there, or set {field} in the inventory to where it is",
                    node.name, need.path, need.step
                ));
                continue;
            }
            let found = version
                .split("version:")
                .nth(1)
                .and_then(|v| EtcdVersion::parse(v.trim()));
            if let (Some(want), Some(have)) = (need.version, found)
                && (want.major, want.minor) != (have.major, have.minor)
            {
                problems.push(format!(
                    "{}: {} is {}.{}.{} but the inventory says etcd {}.{}.{} (it decides the restore's tool and flags): fix etcd.version, or point the tool at a matching build",
                    node.name,
                    need.path,
                    have.major,
                    have.minor,
                    have.patch,
                    want.major,
                    want.minor,
                    want.patch
                ));
            }
        }
    }
    problems
}
