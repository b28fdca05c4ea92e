//! The lab's inventory.yaml, in the repository's inventory format (see examples/, schemas/).
//!
//! Built as a serde value and written by serde-saphyr's serializer, the crate that reads it
//! back: quoting is the serializer's job, so no value can come out as other YAML than meant.
//! The engine's tests load what `render` writes with the real inventory loader
//! (engine/cmd/lab.rs), so a renamed or new field in the format breaks a test, not `lab up`.

use std::path::Path;

use serde::Serialize;
use serde_saphyr::FlowMap;

use super::manifests::{CLIENT_PORT, ETCD_CA, ETCD_SERVER_CERT, ETCD_SERVER_KEY, PEER_PORT};
use super::node::write_file;
use super::state::LabState;

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
    data_dir: &'a str,
    owner: &'a str,
    manifests_dir: &'a str,
    scheme: &'a str,
    client_port: u16,
    peer_port: u16,
    tls: Tls<'a>,
    etcdctl: &'a str,
    /// Absent before 3.5: the loader's default (`etcdutl` from PATH) is never used there.
    #[serde(skip_serializing_if = "Option::is_none")]
    etcdutl: Option<&'a str>,
}

#[derive(Serialize)]
struct Tls<'a> {
    ca: &'a str,
    cert: &'a str,
    key: &'a str,
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
}

/// The inventory of a lab, with a header saying what wrote it (comments are not part of the
/// serde model, so the header is text put before the document).
pub fn render(state: &LabState) -> String {
    let inventory = Inventory {
        cluster: &state.name,
        etcd: Etcd {
            version: &state.etcd.version,
            data_dir: "/var/lib/etcd",
            owner: "root:root",
            manifests_dir: "/etc/kubernetes/manifests",
            scheme: "https",
            client_port: CLIENT_PORT,
            peer_port: PEER_PORT,
            tls: Tls {
                ca: ETCD_CA,
                cert: ETCD_SERVER_CERT,
                key: ETCD_SERVER_KEY,
            },
            etcdctl: &state.etcd.etcdctl,
            etcdutl: state.etcd.etcdutl.as_deref(),
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
                FlowMap(Node {
                    name: &n.name,
                    address: &n.address,
                    roles: ["etcd", "control-plane"],
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
            "Nodes are network namespaces on this machine running etcd {} and Kubernetes {}; admin kubeconfig: {}",
            state.etcd.version, state.kubernetes_version, state.kubeconfig
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
