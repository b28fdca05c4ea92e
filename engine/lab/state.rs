//! lab.json: what `lab up` made (names, addresses, processes, tools), read by down, status and exec.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::deps::EtcdTools;

/// The whole lab. Paths are host paths unless a field says otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabState {
    pub name: String,
    pub dir: String,
    /// e.g. 10.213.4.0/24; the bridge holds `gateway`, nodes .11, .12, ...
    pub subnet: String,
    pub gateway: String,
    pub bridge: String,
    pub etcd: EtcdTools,
    /// kube-apiserver, kube-controller-manager, kube-scheduler and kubectl (`lab bin --kubernetes`).
    pub kubernetes_dir: String,
    /// The Kubernetes release they are, e.g. "1.34.4".
    pub kubernetes_version: String,
    /// PATH of the static pods and of `lab exec`: etcd's directory first, then Kubernetes'.
    pub pod_path: String,
    pub inventory: String,
    /// The lab admin's kubeconfig (system:masters), beside the inventory.
    pub kubeconfig: String,
    pub identity_file: String,
    pub known_hosts: String,
    pub ssh_config: String,
    /// The CAs (etcd/ca.*, ca.*), the same files every node has under /etc/kubernetes/pki.
    pub pki_dir: String,
    pub nodes: Vec<NodeState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeState {
    pub name: String,
    pub address: String,
    pub netns: String,
    /// Host end of the node's veth pair (the node end is `eth0`).
    pub veth: String,
    /// The node's directory: etc-kubernetes, var-lib-etcd, var-lib-runbook, logs.
    pub dir: String,
    /// Host pid of `runbook lab init`, PID 1 of the node's PID namespace.
    pub init_pid: i32,
}

impl NodeState {
    /// A file under the node's /etc/kubernetes, as the host sees it.
    pub fn kube_file(&self, rel: &str) -> String {
        format!("{}/etc-kubernetes/{rel}", self.dir)
    }

    pub fn log(&self, stem: &str) -> String {
        format!("{}/logs/{stem}.log", self.dir)
    }
}

impl LabState {
    pub fn load(path: &Path) -> anyhow::Result<LabState> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lab state", path.display()))
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot encode the lab state")?;
        super::node::write_file(path, &(text + "\n"), 0o644)
    }
}
