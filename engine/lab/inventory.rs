//! The lab's inventory.yaml, in the repository's inventory format (see examples/, schemas/).

use std::fmt::Write as _;
use std::path::Path;

use super::manifests::{CLIENT_PORT, ETCD_CA, ETCD_SERVER_CERT, ETCD_SERVER_KEY, PEER_PORT};
use super::node::write_file;
use super::state::LabState;

/// Seconds the engine waits for an ssh connection to a lab node: they are local.
const CONNECT_TIMEOUT: u32 = 5;

/// A YAML double-quoted scalar. JSON string syntax is a subset of it, so serde_json's
/// escaping is exactly right for any value.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

pub fn render(state: &LabState) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Inventory of the runbook lab {:?}, written by `runbook lab up` (rewritten by every `up`).",
        state.name
    );
    let _ = writeln!(
        y,
        "# Nodes are network namespaces on this machine running etcd {} and Kubernetes {}; admin kubeconfig: {}",
        state.etcd.version, state.kubernetes_version, state.kubeconfig
    );
    let _ = writeln!(y, "cluster: {}", q(&state.name));
    let _ = writeln!(y, "etcd:");
    let _ = writeln!(y, "  version: {}", q(&state.etcd.version));
    let _ = writeln!(y, "  data_dir: /var/lib/etcd");
    let _ = writeln!(y, "  owner: \"root:root\"");
    let _ = writeln!(y, "  manifests_dir: /etc/kubernetes/manifests");
    let _ = writeln!(y, "  scheme: https");
    let _ = writeln!(y, "  client_port: {CLIENT_PORT}");
    let _ = writeln!(y, "  peer_port: {PEER_PORT}");
    let _ = writeln!(y, "  tls:");
    let _ = writeln!(y, "    ca: {ETCD_CA}");
    let _ = writeln!(y, "    cert: {ETCD_SERVER_CERT}");
    let _ = writeln!(y, "    key: {ETCD_SERVER_KEY}");
    let _ = writeln!(y, "  etcdctl: {}", q(&state.etcd.etcdctl));
    if let Some(etcdutl) = &state.etcd.etcdutl {
        let _ = writeln!(y, "  etcdutl: {}", q(etcdutl));
    }
    let _ = writeln!(y, "ssh:");
    let _ = writeln!(y, "  user: root");
    let _ = writeln!(y, "  port: 22");
    let _ = writeln!(y, "  identity_file: {}", q(&state.identity_file));
    let _ = writeln!(y, "  known_hosts: {}", q(&state.known_hosts));
    let _ = writeln!(y, "  config_file: {}", q(&state.ssh_config));
    let _ = writeln!(y, "  connect_timeout: {CONNECT_TIMEOUT}");
    let _ = writeln!(y, "nodes:");
    for n in &state.nodes {
        let _ = writeln!(
            y,
            "  - {{ name: {}, address: {}, roles: [etcd, control-plane] }}",
            n.name, n.address
        );
    }
    y
}

pub fn write(state: &LabState, path: &Path) -> anyhow::Result<()> {
    write_file(path, &render(state), 0o644)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::lab::deps::{EtcdTools, Flavor};
    use crate::lab::state::NodeState;

    fn lab(etcdutl: Option<&str>) -> LabState {
        LabState {
            name: "drill".to_string(),
            dir: "/var/lib/runbook-lab/drill".to_string(),
            subnet: "10.201.1.0/24".to_string(),
            gateway: "10.201.1.1".to_string(),
            bridge: "rb000000".to_string(),
            etcd: EtcdTools {
                flavor: Flavor::V3_5,
                version: "3.5.1".to_string(),
                bin_dir: "/opt/etcd".to_string(),
                etcd: "/opt/etcd/etcd".to_string(),
                etcdctl: "/opt/etcd/etcdctl".to_string(),
                etcdutl: etcdutl.map(str::to_string),
            },
            kubernetes_dir: "/root/.cache/runbook/lab/kubernetes-1.34.4".to_string(),
            kubernetes_version: "1.34.4".to_string(),
            pod_path: "/opt/etcd:/usr/bin".to_string(),
            inventory: "/var/lib/runbook-lab/drill/inventory.yaml".to_string(),
            kubeconfig: "/var/lib/runbook-lab/drill/admin.conf".to_string(),
            identity_file: "/var/lib/runbook-lab/drill/id_ed25519".to_string(),
            known_hosts: "/var/lib/runbook-lab/drill/known_hosts".to_string(),
            ssh_config: "/var/lib/runbook-lab/drill/ssh_config".to_string(),
            pki_dir: "/var/lib/runbook-lab/drill/pki".to_string(),
            nodes: (1..=3)
                .map(|i| NodeState {
                    name: format!("cp{i}"),
                    address: format!("10.201.1.{}", 10 + i),
                    netns: format!("runbook-drill-cp{i}"),
                    veth: format!("rb000000n{i}"),
                    dir: format!("/var/lib/runbook-lab/drill/nodes/cp{i}"),
                    init_pid: 0,
                })
                .collect(),
        }
    }

    /// The rendered inventory goes through the real loader, so a renamed or new field in
    /// the inventory format breaks this test rather than `lab up`.
    #[test]
    fn the_inventory_is_valid_for_the_engine() {
        for etcdutl in [None, Some("/opt/etcd/etcdutl")] {
            let text = render(&lab(etcdutl));
            let file: Arc<str> = Arc::from("inventory.yaml");
            let raw =
                crate::yaml::parse::<crate::inventory::InventoryFile>(&text, &file, "inventory")
                    .unwrap_or_else(|e| panic!("{text}\n{e:?}"));
            let inv = crate::inventory::resolve::resolve(&raw, &file)
                .unwrap_or_else(|e| panic!("{text}\n{e:?}"));
            assert_eq!(inv.cluster, "drill");
            assert_eq!(inv.nodes.len(), 3);
            assert_eq!(inv.etcd_members().len(), 3);
            assert_eq!(inv.etcd.etcdctl, "/opt/etcd/etcdctl");
            assert_eq!(inv.etcd.etcdutl, etcdutl.unwrap_or("etcdutl"));
            assert_eq!(inv.nodes[1].peer_url(), "https://10.201.1.12:2380");
            assert_eq!(inv.nodes[0].ssh.connect_timeout, CONNECT_TIMEOUT);
            assert_eq!(
                inv.nodes[0].ssh.identity_file.as_deref(),
                Some("/var/lib/runbook-lab/drill/id_ed25519")
            );
        }
    }
}
