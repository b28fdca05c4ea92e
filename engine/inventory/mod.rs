//! The inventory as written (cluster topology: nodes, roles, ssh access, etcd settings).
//! Raw serde types only; `resolve` turns them into the checked [`model::Inventory`].

pub mod model;
pub mod resolve;
pub mod version;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::located::Sp;

/// A cluster: etcd and ssh defaults, and the nodes that may override them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// Cluster name, used in locks, reports and default tokens.
    pub cluster: Sp<String>,
    /// etcd settings shared by every node.
    pub etcd: EtcdSettings,
    /// ssh settings shared by every node.
    #[serde(default)]
    pub ssh: SshSettings,
    /// The nodes, in the order plans fan out over them.
    pub nodes: Vec<NodeSpec>,
}

/// etcd settings; at the cluster level `version` is required, on a node every field overrides.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdSettings {
    /// etcd version, e.g. "3.5.16": decides etcdutl or etcdctl and which flags exist.
    #[serde(default)]
    pub version: Option<Sp<String>>,
    /// Data directory (default /var/lib/etcd). May be a mount point: restores move its contents.
    #[serde(default)]
    pub data_dir: Option<Sp<String>>,
    /// Owner set on the data directory after a restore, `user:group` (default root:root).
    #[serde(default)]
    pub owner: Option<Sp<String>>,
    /// Static pod manifests directory (default /etc/kubernetes/manifests).
    #[serde(default)]
    pub manifests_dir: Option<Sp<String>>,
    /// How etcd runs on the node: `static-pod` (kubeadm, the default: a manifest in
    /// `manifests_dir` that kubelet runs) or `systemd` (a unit on the host, as Kubespray and
    /// packaged etcd run it).
    #[serde(default)]
    pub runtime: Option<Sp<String>>,
    /// systemd only: etcd's unit (default etcd.service).
    #[serde(default)]
    pub unit: Option<Sp<String>>,
    /// systemd only: the environment file holding the unit's `ETCD_*` settings, etcd's
    /// flags as variables (default /etc/etcd.env, Kubespray's).
    #[serde(default)]
    pub env_file: Option<Sp<String>>,
    /// Client and peer URL scheme: https (default) or http (labs only).
    #[serde(default)]
    pub scheme: Option<Sp<String>>,
    /// Client port (default 2379).
    #[serde(default)]
    pub client_port: Option<Sp<u16>>,
    /// Peer port (default 2380).
    #[serde(default)]
    pub peer_port: Option<Sp<u16>>,
    /// Client TLS material on the node, used by etcdctl.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// The running cluster's --initial-cluster-token (etcd's default is "etcd-cluster").
    #[serde(default)]
    pub cluster_token: Option<Sp<String>>,
    /// Path of etcdctl on the node (default: etcdctl from PATH).
    #[serde(default)]
    pub etcdctl: Option<Sp<String>>,
    /// Path of etcdutl on the node, etcd 3.5+ (default: etcdutl from PATH).
    #[serde(default)]
    pub etcdutl: Option<Sp<String>>,
}

/// Client certificate paths on the node.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub ca: Sp<String>,
    pub cert: Sp<String>,
    pub key: Sp<String>,
}

/// ssh access; ~/.ssh/config is honoured on top of these.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Remote user (default root).
    #[serde(default)]
    pub user: Option<Sp<String>>,
    /// Port (default 22).
    #[serde(default)]
    pub port: Option<Sp<u16>>,
    /// Private key file.
    #[serde(default)]
    pub identity_file: Option<Sp<String>>,
    /// known_hosts file checked strictly.
    #[serde(default)]
    pub known_hosts: Option<Sp<String>>,
    /// An ssh_config file to honour (ProxyJump etc.).
    #[serde(default)]
    pub config_file: Option<Sp<String>>,
    /// Seconds to wait for a connection (default 10).
    #[serde(default)]
    pub connect_timeout: Option<Sp<u32>>,
}

/// One host.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Node name: an RFC 1123 label, also the etcd member name.
    pub name: Sp<String>,
    /// IP address or DNS name, used for ssh and for peer/client URLs.
    pub address: Sp<String>,
    /// Roles, e.g. [etcd, control-plane]; plans fan out over them.
    #[serde(default)]
    pub roles: Vec<Sp<String>>,
    /// Per-node ssh overrides.
    #[serde(default)]
    pub ssh: Option<SshSettings>,
    /// Per-node etcd overrides.
    #[serde(default)]
    pub etcd: Option<EtcdSettings>,
}

/// Read, parse and check an inventory file.
pub fn load(
    path: &std::path::Path,
    sources: &mut crate::diag::SourceMap,
) -> Result<model::Inventory, crate::yaml::LoadFailure> {
    let (raw, file) = crate::yaml::load::<InventoryFile>(path, "inventory", sources)?;
    resolve::resolve(&raw, &file).map_err(crate::yaml::LoadFailure::Invalid)
}
