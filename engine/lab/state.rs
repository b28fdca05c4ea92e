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
    /// How the nodes run etcd (absent in the lab.json of a lab made before systemd nodes).
    #[serde(default)]
    pub etcd_runtime: EtcdRuntime,
    pub nodes: Vec<NodeState>,
}

/// How a lab's nodes run etcd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtcdRuntime {
    /// kubeadm's layout: `lab init` is the node's first process and runs etcd.yaml as a
    /// static pod, with the control plane.
    #[default]
    #[serde(rename = "static-pod")]
    StaticPod,
    /// Kubespray's (etcd_deployment_type: host): real systemd is the node's init and runs
    /// etcd.service from /etc/etcd.env; kubelet.service runs the control plane's static pods.
    #[serde(rename = "systemd")]
    Systemd,
}

impl EtcdRuntime {
    /// The inventory's and the CLI's spelling.
    pub fn name(self) -> &'static str {
        match self {
            EtcdRuntime::StaticPod => "static-pod",
            EtcdRuntime::Systemd => "systemd",
        }
    }
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

/// An etcd client's CA, certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdClient {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl LabState {
    /// What etcdctl presents on a node (`lab exec`, the inventory), as paths inside it:
    /// kubeadm's server certificate (it carries clientAuth), or Kubespray's admin-<node>.
    pub fn etcdctl_client(&self, n: &NodeState) -> EtcdClient {
        match self.etcd_runtime {
            EtcdRuntime::StaticPod => EtcdClient {
                ca: super::manifests::ETCD_CA.to_string(),
                cert: super::manifests::ETCD_SERVER_CERT.to_string(),
                key: super::manifests::ETCD_SERVER_KEY.to_string(),
            },
            EtcdRuntime::Systemd => super::kubespray::admin_client(&n.name),
        }
    }

    /// What this machine's probes (`up`'s wait, `status`) present to a member, as host paths:
    /// kubeadm's healthcheck client, or Kubespray's admin-<node>.
    pub fn probe_client(&self, n: &NodeState) -> EtcdClient {
        match self.etcd_runtime {
            EtcdRuntime::StaticPod => EtcdClient {
                ca: n.kube_file("pki/etcd/ca.crt"),
                cert: n.kube_file("pki/etcd/healthcheck-client.crt"),
                key: n.kube_file("pki/etcd/healthcheck-client.key"),
            },
            EtcdRuntime::Systemd => {
                let inside = super::kubespray::admin_client(&n.name);
                let host = |p: &str| super::kubespray::host_path(n, p);
                EtcdClient {
                    ca: host(&inside.ca),
                    cert: host(&inside.cert),
                    key: host(&inside.key),
                }
            }
        }
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
