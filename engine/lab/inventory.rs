//! The lab's inventory.yaml, in the repository's inventory format (see examples/, schemas/).
//!
//! Built as a serde value and written by serde-saphyr's serializer, the crate that reads it
//! back: quoting is the serializer's job, so no value can come out as other YAML than meant.
//! The engine's tests load what `render` writes with the real inventory loader
//! (engine/cmd/lab.rs), so a renamed or new field in the format breaks a test, not `lab up`.

use std::path::Path;

use serde::Serialize;
use serde_saphyr::FlowMap;

use super::kubespray;
use super::manifests::{CLIENT_PORT, ETCD_CA, ETCD_SERVER_CERT, ETCD_SERVER_KEY, PEER_PORT};
use super::node::write_file;
use super::state::{EtcdClient, EtcdRuntime, LabState};

/// Seconds the engine waits for an ssh connection to a lab node: they are local.
pub const CONNECT_TIMEOUT: u32 = 5;

/// Only the fields the lab sets; the loader gives every other one its default.
#[derive(Serialize)]
struct Inventory<'a> {
    cluster: &'a str,
    etcd: Etcd<'a>,
    ssh: Ssh<'a>,
    /// One flow mapping per node, one line each, as in examples/.
    nodes: Vec<FlowMap<Node<'a>>>,
}

#[derive(Serialize)]
struct Etcd<'a> {
    version: &'a str,
    /// Only for etcd run by systemd (the loader's default is static-pod), with its unit, the
    /// environment file holding its flags and Kubespray's cluster token.
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    env_file: Option<&'a str>,
    data_dir: &'a str,
    owner: &'a str,
    manifests_dir: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_token: Option<&'a str>,
    scheme: &'a str,
    client_port: u16,
    peer_port: u16,
    tls: Tls,
    etcdctl: &'a str,
    /// Absent before 3.5: the loader's default (`etcdutl` from PATH) is never used there.
    #[serde(skip_serializing_if = "Option::is_none")]
    etcdutl: Option<&'a str>,
}

#[derive(Serialize)]
struct Tls {
    ca: String,
    cert: String,
    key: String,
}

impl From<EtcdClient> for Tls {
    fn from(c: EtcdClient) -> Tls {
        Tls {
            ca: c.ca,
            cert: c.cert,
            key: c.key,
        }
    }
}

#[derive(Serialize)]
struct Ssh<'a> {
    user: &'a str,
    port: u16,
    identity_file: &'a str,
    known_hosts: &'a str,
    config_file: &'a str,
    connect_timeout: u32,
}

#[derive(Serialize)]
struct Node<'a> {
    name: &'a str,
    address: &'a str,
    roles: [&'a str; 2],
    /// A node whose etcdctl client certificate is not the cluster's (Kubespray: its own
    /// admin-<node>.pem).
    #[serde(skip_serializing_if = "Option::is_none")]
    etcd: Option<NodeEtcd>,
}

#[derive(Serialize)]
struct NodeEtcd {
    tls: Tls,
}

/// The inventory of a lab, with a header saying what wrote it (comments are not part of the
/// serde model, so the header is text put before the document).
pub fn render(state: &LabState) -> String {
    let systemd = state.etcd_runtime == EtcdRuntime::Systemd;
    let binaries = kubespray::binaries(&state.etcd);
    let (etcdctl, etcdutl) = if systemd {
        (binaries.etcdctl.as_str(), binaries.etcdutl.as_deref())
    } else {
        (state.etcd.etcdctl.as_str(), state.etcd.etcdutl.as_deref())
    };
    // The first node's client is the cluster's; the others say theirs where it differs.
    let cluster_client = state.nodes.first().map(|n| state.etcdctl_client(n));
    let inventory = Inventory {
        cluster: &state.name,
        etcd: Etcd {
            version: &state.etcd.version,
            runtime: systemd.then_some(EtcdRuntime::Systemd.name()),
            unit: systemd.then_some(kubespray::UNIT),
            env_file: systemd.then_some(kubespray::ENV_FILE),
            data_dir: "/var/lib/etcd",
            owner: "root:root",
            manifests_dir: "/etc/kubernetes/manifests",
            cluster_token: systemd.then_some(kubespray::CLUSTER_TOKEN),
            scheme: "https",
            client_port: CLIENT_PORT,
            peer_port: PEER_PORT,
            tls: cluster_client
                .clone()
                .unwrap_or_else(|| EtcdClient {
                    ca: ETCD_CA.to_string(),
                    cert: ETCD_SERVER_CERT.to_string(),
                    key: ETCD_SERVER_KEY.to_string(),
                })
                .into(),
            etcdctl,
            etcdutl,
        },
        ssh: Ssh {
            user: "root",
            port: 22,
            identity_file: &state.identity_file,
            known_hosts: &state.known_hosts,
            config_file: &state.ssh_config,
            connect_timeout: CONNECT_TIMEOUT,
        },
        nodes: state
            .nodes
            .iter()
            .map(|n| {
                let client = state.etcdctl_client(n);
                FlowMap(Node {
                    name: &n.name,
                    address: &n.address,
                    roles: ["etcd", "control-plane"],
                    etcd: (Some(&client) != cluster_client.as_ref())
                        .then(|| NodeEtcd { tls: client.into() }),
                })
            })
            .collect(),
    };
    let header = [
        format!(
            "Inventory of the runbook lab {:?}, written by `runbook lab up` (rewritten by every `up`).",
            state.name
        ),
        format!(
            "Nodes are network namespaces on this machine running etcd {}{} and Kubernetes {}; admin kubeconfig: {}",
            state.etcd.version,
            if systemd {
                " as etcd.service under systemd (Kubespray's layout)"
            } else {
                ""
            },
            state.kubernetes_version,
            state.kubeconfig
        ),
    ];
    let mut text: String = header
        .iter()
        // A comment is one line: nothing in it may start a YAML line of its own.
        .map(|line| format!("# {}\n", line.replace(['\n', '\r'], " ")))
        .collect();
    text.push_str(
        &serde_saphyr::to_string(&inventory)
            .expect("an inventory of strings and numbers always serializes"),
    );
    text
}

pub fn write(state: &LabState, path: &Path) -> anyhow::Result<()> {
    write_file(path, &render(state), 0o644)
}
