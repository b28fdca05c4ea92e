//! The checked topology every later stage reads: defaults applied, node overrides merged.

use std::sync::Arc;

use serde::Serialize;

use super::version::EtcdVersion;
use crate::diag::Loc;

/// A validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub file: Arc<str>,
    pub cluster: String,
    /// Cluster-level etcd settings (what local steps see as `etcd`).
    pub etcd: EtcdConfig,
    pub nodes: Vec<Node>,
}

impl Inventory {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Nodes carrying a role, in inventory order.
    pub fn with_role<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| n.has_role(role))
    }

    /// The etcd members: nodes with the `etcd` role.
    pub fn etcd_members(&self) -> Vec<&Node> {
        self.with_role(ETCD_ROLE).collect()
    }

    pub fn roles(&self) -> Vec<&str> {
        let mut roles: Vec<&str> = self
            .nodes
            .iter()
            .flat_map(|n| n.roles.iter().map(String::as_str))
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }
}

/// The role that makes a node an etcd member.
pub const ETCD_ROLE: &str = "etcd";
/// The role of nodes running kube-apiserver.
pub const CONTROL_PLANE_ROLE: &str = "control-plane";

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    pub ssh: SshConfig,
    pub etcd: EtcdConfig,
    /// Where the node's `name:` is written.
    pub loc: Loc,
}

impl Node {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// `scheme://address:peer_port`, the URL this member advertises to its peers.
    pub fn peer_url(&self) -> String {
        format!(
            "{}://{}:{}",
            self.etcd.scheme,
            url_host(&self.address),
            self.etcd.peer_port
        )
    }

    /// `scheme://address:client_port`.
    pub fn client_url(&self) -> String {
        format!(
            "{}://{}:{}",
            self.etcd.scheme,
            url_host(&self.address),
            self.etcd.client_port
        )
    }
}

/// IPv6 literals need brackets inside URLs.
fn url_host(address: &str) -> String {
    if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EtcdConfig {
    #[serde(serialize_with = "ser_display")]
    pub version: EtcdVersion,
    pub data_dir: String,
    pub owner: String,
    pub manifests_dir: String,
    /// How etcd runs on the node: what stops, starts and reconfigures it.
    pub runtime: Runtime,
    pub scheme: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub tls: Option<Tls>,
    pub cluster_token: String,
    pub etcdctl: String,
    pub etcdutl: String,
    /// Where `version` and `data_dir` were set, for lints that point at them.
    #[serde(skip)]
    pub version_loc: Loc,
    #[serde(skip)]
    pub data_dir_loc: Loc,
}

/// How an etcd member runs on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Runtime {
    /// kubeadm's: `etcd.yaml` in the manifests directory, run by kubelet; its flags are the
    /// manifest's command line.
    StaticPod,
    /// A systemd unit on the host; its flags are `ETCD_*` variables in `env_file`.
    Systemd { unit: String, env_file: String },
}

impl Runtime {
    /// `static-pod` or `systemd`, as the inventory spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Runtime::StaticPod => "static-pod",
            Runtime::Systemd { .. } => "systemd",
        }
    }
}

fn ser_display<S: serde::Serializer>(v: &EtcdVersion, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[derive(Debug, Clone, Serialize)]
pub struct Tls {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SshConfig {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
    pub config_file: Option<String>,
    pub connect_timeout: u32,
}
