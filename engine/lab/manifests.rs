//! The static pod manifests of each node, in kubeadm's format, and the kube-apiserver stand-in.

use std::fmt::Write as _;
use std::path::Path;

use super::deps::EtcdTools;
use super::node::write_file;
use super::state::NodeState;

pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
pub const APISERVER_PORT: u16 = 6443;
pub const ETCD_CA: &str = "/etc/kubernetes/pki/etcd/ca.crt";
pub const ETCD_SERVER_CERT: &str = "/etc/kubernetes/pki/etcd/server.crt";
pub const ETCD_SERVER_KEY: &str = "/etc/kubernetes/pki/etcd/server.key";

/// The stand-in's source; its first line (the shebang) is replaced when it is installed.
const STAND_IN: &str = include_str!("kube-apiserver-stand-in.py");

/// Writes etcd.yaml and kube-apiserver.yaml into every node's manifests directory.
pub fn write_all(nodes: &[NodeState], etcd: &EtcdTools) -> anyhow::Result<()> {
    let initial_cluster = nodes
        .iter()
        .map(|n| format!("{}=https://{}:{PEER_PORT}", n.name, n.address))
        .collect::<Vec<_>>()
        .join(",");
    for n in nodes {
        let dir = Path::new(&n.dir).join("etc-kubernetes/manifests");
        write_file(
            &dir.join("etcd.yaml"),
            &etcd_manifest(n, &initial_cluster, &etcd.version),
            0o600,
        )?;
        write_file(
            &dir.join("kube-apiserver.yaml"),
            &apiserver_manifest(n),
            0o600,
        )?;
    }
    Ok(())
}

/// A YAML block sequence of plain scalars, indented as kubeadm writes it.
fn command_list(words: &[String]) -> String {
    let mut s = String::new();
    for w in words {
        let _ = writeln!(s, "    - {w}");
    }
    s
}

fn etcd_manifest(n: &NodeState, initial_cluster: &str, version: &str) -> String {
    let a = &n.address;
    let command: Vec<String> = vec![
        "etcd".to_string(),
        format!("--advertise-client-urls=https://{a}:{CLIENT_PORT}"),
        format!("--cert-file={ETCD_SERVER_CERT}"),
        "--client-cert-auth=true".to_string(),
        "--data-dir=/var/lib/etcd".to_string(),
        format!("--initial-advertise-peer-urls=https://{a}:{PEER_PORT}"),
        format!("--initial-cluster={initial_cluster}"),
        "--initial-cluster-state=new".to_string(),
        format!("--key-file={ETCD_SERVER_KEY}"),
        format!("--listen-client-urls=https://127.0.0.1:{CLIENT_PORT},https://{a}:{CLIENT_PORT}"),
        "--listen-metrics-urls=http://127.0.0.1:2381".to_string(),
        format!("--listen-peer-urls=https://{a}:{PEER_PORT}"),
        format!("--name={}", n.name),
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt".to_string(),
        "--peer-client-cert-auth=true".to_string(),
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key".to_string(),
        format!("--peer-trusted-ca-file={ETCD_CA}"),
        "--snapshot-count=10000".to_string(),
        format!("--trusted-ca-file={ETCD_CA}"),
    ];
    format!(
        "apiVersion: v1\n\
kind: Pod\n\
metadata:\n\
\x20 annotations:\n\
\x20   kubeadm.kubernetes.io/etcd.advertise-client-urls: https://{a}:{CLIENT_PORT}\n\
\x20 creationTimestamp: null\n\
\x20 labels:\n\
\x20   component: etcd\n\
\x20   tier: control-plane\n\
\x20 name: etcd\n\
\x20 namespace: kube-system\n\
spec:\n\
\x20 containers:\n\
\x20 - command:\n\
{command}\
\x20   image: registry.k8s.io/etcd:{version}-0\n\
\x20   imagePullPolicy: IfNotPresent\n\
\x20   name: etcd\n\
\x20   resources:\n\
\x20     requests:\n\
\x20       cpu: 100m\n\
\x20       memory: 100Mi\n\
\x20   volumeMounts:\n\
\x20   - mountPath: /var/lib/etcd\n\
\x20     name: etcd-data\n\
\x20   - mountPath: /etc/kubernetes/pki/etcd\n\
\x20     name: etcd-certs\n\
\x20 hostNetwork: true\n\
\x20 priorityClassName: system-node-critical\n\
\x20 securityContext:\n\
\x20   seccompProfile:\n\
\x20     type: RuntimeDefault\n\
\x20 volumes:\n\
\x20 - hostPath:\n\
\x20     path: /etc/kubernetes/pki/etcd\n\
\x20     type: DirectoryOrCreate\n\
\x20   name: etcd-certs\n\
\x20 - hostPath:\n\
\x20     path: /var/lib/etcd\n\
\x20     type: DirectoryOrCreate\n\
\x20   name: etcd-data\n\
status: {{}}\n",
        command = command_list(&command),
    )
}

fn apiserver_manifest(n: &NodeState) -> String {
    let a = &n.address;
    let command: Vec<String> = vec![
        "kube-apiserver".to_string(),
        format!("--advertise-address={a}"),
        format!("--etcd-cafile={ETCD_CA}"),
        "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt".to_string(),
        "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key".to_string(),
        format!("--etcd-servers=https://127.0.0.1:{CLIENT_PORT}"),
        format!("--secure-port={APISERVER_PORT}"),
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt".to_string(),
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key".to_string(),
    ];
    format!(
        "apiVersion: v1\n\
kind: Pod\n\
metadata:\n\
\x20 annotations:\n\
\x20   kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: {a}:{APISERVER_PORT}\n\
\x20 creationTimestamp: null\n\
\x20 labels:\n\
\x20   component: kube-apiserver\n\
\x20   tier: control-plane\n\
\x20 name: kube-apiserver\n\
\x20 namespace: kube-system\n\
spec:\n\
\x20 containers:\n\
\x20 # In the runbook lab this command is a stand-in (see `runbook lab status`), not the real kube-apiserver.\n\
\x20 - command:\n\
{command}\
\x20   image: registry.k8s.io/kube-apiserver:v1.29.0\n\
\x20   imagePullPolicy: IfNotPresent\n\
\x20   name: kube-apiserver\n\
\x20   volumeMounts:\n\
\x20   - mountPath: /etc/kubernetes/pki\n\
\x20     name: k8s-certs\n\
\x20     readOnly: true\n\
\x20 hostNetwork: true\n\
\x20 priorityClassName: system-node-critical\n\
\x20 volumes:\n\
\x20 - hostPath:\n\
\x20     path: /etc/kubernetes/pki\n\
\x20     type: DirectoryOrCreate\n\
\x20   name: k8s-certs\n\
status: {{}}\n",
        command = command_list(&command),
    )
}

/// Installs the stand-in as `<bin>/kube-apiserver`, started directly by the real interpreter
/// so that its process name is `kube-apiserver`.
pub fn write_stand_in(bin_dir: &Path, python: &Path) -> anyhow::Result<()> {
    let body = STAND_IN.split_once('\n').map_or("", |(_, rest)| rest);
    let script = format!("#!{}\n{body}", python.display());
    write_file(&bin_dir.join("kube-apiserver"), &script, 0o755)
}
