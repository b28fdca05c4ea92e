//! `runbook lab`: bring a local lab of real hosts up and down, inspect it, run commands in it.

use runbook_lab::{self as lab, Flavor};

use super::{Done, EXIT_OK, print_out};
use crate::cli::{LabCommand, LabEtcd, LabEtcdRuntime, LabShape};

pub fn run(cmd: LabCommand) -> Done {
    let result = match cmd {
        LabCommand::Up { lab, shape } => {
            // The inventory path is the command's data: the only thing on stdout.
            lab::up(&lab.name, &spec(shape)).map(|inventory| format!("{}\n", inventory.display()))
        }
        LabCommand::Drill {
            lab,
            shape,
            keys,
            keep,
            snapshot,
            run_dir,
        } => {
            return super::drill::run(&super::drill::Drill {
                name: lab.name,
                spec: spec(shape),
                keys,
                keep,
                snapshot,
                run_dir,
            });
        }
        LabCommand::Bin { etcd, kubernetes } => {
            let which = match etcd {
                Some(e) if !kubernetes => lab::Binaries::Etcd(flavor(e)),
                _ => lab::Binaries::Kubernetes,
            };
            // The directory is the command's data: the only thing on stdout.
            lab::bin(which).map(|dir| format!("{}\n", dir.display()))
        }
        LabCommand::Down { lab } => lab::down(&lab.name).map(|()| String::new()),
        // The table is the command's data.
        LabCommand::Status { lab } => lab::status(&lab.name),
        // Replaces this process on success: the command's exit status is the exit status.
        LabCommand::Exec { lab, node, command } => Err(lab::exec(&lab.name, &node, &command)),
        LabCommand::Init { node_dir } => lab::init(&node_dir).map(|()| String::new()),
        LabCommand::Kubelet { node_dir } => lab::kubelet(&node_dir).map(|()| String::new()),
        LabCommand::SystemdInit { dir } => lab::systemd_init(&dir).map(|()| String::new()),
    };
    print_out(&result?)?;
    Ok(EXIT_OK)
}

fn spec(shape: LabShape) -> lab::Spec {
    lab::Spec {
        nodes: shape.nodes,
        flavor: flavor(shape.etcd),
        images: shape.etcd_images.into_iter().map(flavor).collect(),
        encryption_config: shape.encryption_config,
        etcd_runtime: match shape.etcd_runtime {
            LabEtcdRuntime::StaticPod => lab::EtcdRuntime::StaticPod,
            LabEtcdRuntime::Systemd => lab::EtcdRuntime::Systemd,
        },
    }
}

fn flavor(etcd: LabEtcd) -> Flavor {
    match etcd {
        LabEtcd::V3_4 => Flavor::V3_4,
        LabEtcd::V3_5_1 => Flavor::V3_5_1,
        LabEtcd::V3_5 => Flavor::V3_5,
        LabEtcd::V3_6 => Flavor::V3_6,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use runbook_lab::{EtcdTools, Flavor, LabState, NodeState};

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
            etcd_runtime: runbook_lab::EtcdRuntime::StaticPod,
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

    /// The inventory `runbook lab up` writes goes through the engine's real loader, so a
    /// renamed or new field in the inventory format breaks this test rather than `lab up`.
    #[test]
    fn the_lab_inventory_loads_in_the_engine() {
        for etcdutl in [None, Some("/opt/etcd/etcdutl")] {
            let text = runbook_lab::render_inventory(&lab(etcdutl));
            assert!(
                text.starts_with("# Inventory of the runbook lab \"drill\""),
                "{text}"
            );
            // Quoted where YAML would read another type: the version is a string, not 3.5.
            assert!(text.contains("version: \"3.5.1\"") || text.contains("version: '3.5.1'"));
            let file: Arc<str> = Arc::from("inventory.yaml");
            let raw =
                crate::yaml::parse::<crate::inventory::InventoryFile>(&text, &file, "inventory")
                    .unwrap_or_else(|e| panic!("{text}\n{e:?}"));
            let inv = crate::inventory::resolve::resolve(&raw, &file)
                .unwrap_or_else(|e| panic!("{text}\n{e:?}"));
            assert_eq!(inv.cluster, "drill");
            assert_eq!(inv.nodes.len(), 3);
            assert_eq!(inv.etcd_members().len(), 3);
            assert_eq!(inv.etcd.version.to_string(), "3.5.1");
            assert_eq!(inv.etcd.etcdctl, "/opt/etcd/etcdctl");
            assert_eq!(inv.etcd.etcdutl, etcdutl.unwrap_or("etcdutl"));
            assert_eq!(inv.etcd.owner, "root:root");
            assert_eq!(inv.nodes[1].peer_url(), "https://10.201.1.12:2380");
            assert_eq!(
                inv.nodes[0].ssh.connect_timeout,
                runbook_lab::INVENTORY_CONNECT_TIMEOUT
            );
            assert_eq!(
                inv.nodes[0].ssh.identity_file.as_deref(),
                Some("/var/lib/runbook-lab/drill/id_ed25519")
            );
        }
    }

    /// A lab whose etcd runs under systemd describes it as the engine reads it: Kubespray's
    /// unit, env file, token and binaries, and each node's own admin certificate.
    #[test]
    fn a_systemd_lab_inventory_loads_in_the_engine() {
        let mut state = lab(Some("/opt/etcd/etcdutl"));
        state.etcd_runtime = runbook_lab::EtcdRuntime::Systemd;
        let text = runbook_lab::render_inventory(&state);
        let file: Arc<str> = Arc::from("inventory.yaml");
        let raw = crate::yaml::parse::<crate::inventory::InventoryFile>(&text, &file, "inventory")
            .unwrap_or_else(|e| panic!("{text}\n{e:?}"));
        let inv = crate::inventory::resolve::resolve(&raw, &file)
            .unwrap_or_else(|e| panic!("{text}\n{e:?}"));
        assert_eq!(
            inv.etcd.runtime,
            crate::inventory::model::Runtime::Systemd {
                unit: "etcd.service".to_string(),
                env_file: "/etc/etcd.env".to_string()
            },
            "{text}"
        );
        assert_eq!(inv.etcd.cluster_token, "k8s_etcd");
        assert_eq!(inv.etcd.data_dir, "/var/lib/etcd");
        assert_eq!(inv.etcd.etcdctl, "/usr/local/bin/etcdctl");
        assert_eq!(inv.etcd.etcdutl, "/usr/local/bin/etcdutl");
        for (i, node) in inv.nodes.iter().enumerate() {
            let tls = node.etcd.tls.as_ref().unwrap();
            assert_eq!(tls.ca, "/etc/ssl/etcd/ssl/ca.pem");
            assert_eq!(tls.cert, format!("/etc/ssl/etcd/ssl/admin-cp{}.pem", i + 1));
            assert_eq!(
                tls.key,
                format!("/etc/ssl/etcd/ssl/admin-cp{}-key.pem", i + 1)
            );
            assert_eq!(node.roles, ["etcd", "control-plane"]);
        }
        // Only the nodes whose client is not the cluster's say theirs.
        assert_eq!(text.matches("admin-cp1.pem").count(), 1, "{text}");
    }
}
