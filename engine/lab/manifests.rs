//! The static pod manifests of each node, in kubeadm's format: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler.

use std::fmt::Write as _;
use std::path::Path;

use super::deps::EtcdTools;
use super::kubernetes::ENCRYPTION_CONFIG;
use super::node::write_file;
use super::state::{EtcdClient, EtcdRuntime, NodeState};

pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
pub const APISERVER_PORT: u16 = 6443;
pub const ETCD_CA: &str = "/etc/kubernetes/pki/etcd/ca.crt";
pub const ETCD_SERVER_CERT: &str = "/etc/kubernetes/pki/etcd/server.crt";
pub const ETCD_SERVER_KEY: &str = "/etc/kubernetes/pki/etcd/server.key";

/// Writes the control-plane manifests into every node's manifests directory: etcd's too
/// when etcd is a static pod (kubeadm), not when systemd runs it (Kubespray).
pub fn write_all(
    nodes: &[NodeState],
    etcd: &EtcdTools,
    runtime: EtcdRuntime,
) -> anyhow::Result<()> {
    let initial_cluster = nodes
        .iter()
        .map(|n| format!("{}=https://{}:{PEER_PORT}", n.name, n.address))
        .collect::<Vec<_>>()
        .join(",");
    for n in nodes {
        let dir = Path::new(&n.dir).join("etc-kubernetes/manifests");
        if runtime == EtcdRuntime::StaticPod {
            write_file(
                &dir.join("etcd.yaml"),
                &etcd_manifest(n, &initial_cluster, &etcd.image()),
                0o600,
            )?;
        }
        write_file(
            &dir.join("kube-apiserver.yaml"),
            &apiserver_manifest(n, nodes, runtime),
            0o600,
        )?;
        write_file(
            &dir.join("kube-controller-manager.yaml"),
            &controller_manager_manifest(),
            0o600,
        )?;
        write_file(
            &dir.join("kube-scheduler.yaml"),
            &scheduler_manifest(),
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

fn etcd_manifest(n: &NodeState, initial_cluster: &str, image: &str) -> String {
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
\x20   image: {image}\n\
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

/// A kubeadm-format control-plane static pod: the command, image, mounts and probe port.
struct ControlPlanePod<'a> {
    name: &'a str,
    command: Vec<String>,
    annotation: Option<String>,
    /// (name, host path) of every hostPath volume, mounted at the same place.
    volumes: &'a [(&'a str, &'a str)],
}

fn control_plane_manifest(pod: &ControlPlanePod) -> String {
    let version = super::build::KUBERNETES.version();
    let annotations = pod
        .annotation
        .as_ref()
        .map(|a| format!("  annotations:\n    {a}\n"))
        .unwrap_or_default();
    let mut mounts = String::new();
    let mut volumes = String::new();
    for (name, path) in pod.volumes {
        let _ = write!(
            mounts,
            "    - mountPath: {path}\n      name: {name}\n      readOnly: true\n"
        );
        let _ = write!(
            volumes,
            "  - hostPath:\n      path: {path}\n      type: DirectoryOrCreate\n    name: {name}\n"
        );
    }
    format!(
        "apiVersion: v1\n\
kind: Pod\n\
metadata:\n\
{annotations}\
\x20 creationTimestamp: null\n\
\x20 labels:\n\
\x20   component: {name}\n\
\x20   tier: control-plane\n\
\x20 name: {name}\n\
\x20 namespace: kube-system\n\
spec:\n\
\x20 containers:\n\
\x20 - command:\n\
{command}\
\x20   image: registry.k8s.io/{name}:v{version}\n\
\x20   imagePullPolicy: IfNotPresent\n\
\x20   name: {name}\n\
\x20   resources:\n\
\x20     requests:\n\
\x20       cpu: 100m\n\
\x20   volumeMounts:\n\
{mounts}\
\x20 hostNetwork: true\n\
\x20 priorityClassName: system-node-critical\n\
\x20 securityContext:\n\
\x20   seccompProfile:\n\
\x20     type: RuntimeDefault\n\
\x20 volumes:\n\
{volumes}\
status: {{}}\n",
        name = pod.name,
        command = command_list(&pod.command),
    )
}

/// kube-apiserver as kubeadm runs it, with encryption at rest for Secrets: talking to its
/// own member with kubeadm's etcd client certificate, or, as Kubespray runs it beside etcd
/// under systemd, to every member with the node's node-<node>.pem.
fn apiserver_manifest(n: &NodeState, nodes: &[NodeState], runtime: EtcdRuntime) -> String {
    let a = &n.address;
    let (servers, client, volumes): (String, EtcdClient, &[(&str, &str)]) = match runtime {
        EtcdRuntime::StaticPod => (
            format!("https://127.0.0.1:{CLIENT_PORT}"),
            EtcdClient {
                ca: ETCD_CA.to_string(),
                cert: "/etc/kubernetes/pki/apiserver-etcd-client.crt".to_string(),
                key: "/etc/kubernetes/pki/apiserver-etcd-client.key".to_string(),
            },
            &[
                ("k8s-certs", "/etc/kubernetes/pki"),
                ("encryption-config", "/etc/kubernetes/enc"),
            ],
        ),
        EtcdRuntime::Systemd => (
            nodes
                .iter()
                .map(|m| format!("https://{}:{CLIENT_PORT}", m.address))
                .collect::<Vec<_>>()
                .join(","),
            super::kubespray::apiserver_client(&n.name),
            &[
                ("k8s-certs", "/etc/kubernetes/pki"),
                ("etcd-certs", super::kubespray::CERT_DIR),
                ("encryption-config", "/etc/kubernetes/enc"),
            ],
        ),
    };
    let command: Vec<String> = vec![
        "kube-apiserver".to_string(),
        format!("--advertise-address={a}"),
        "--allow-privileged=true".to_string(),
        "--authorization-mode=Node,RBAC".to_string(),
        "--client-ca-file=/etc/kubernetes/pki/ca.crt".to_string(),
        "--enable-admission-plugins=NodeRestriction".to_string(),
        "--enable-bootstrap-token-auth=true".to_string(),
        format!("--encryption-provider-config={ENCRYPTION_CONFIG}"),
        format!("--etcd-cafile={}", client.ca),
        format!("--etcd-certfile={}", client.cert),
        format!("--etcd-keyfile={}", client.key),
        format!("--etcd-servers={servers}"),
        format!("--secure-port={APISERVER_PORT}"),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub".to_string(),
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key".to_string(),
        "--service-cluster-ip-range=10.96.0.0/12".to_string(),
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt".to_string(),
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key".to_string(),
    ];
    control_plane_manifest(&ControlPlanePod {
        name: "kube-apiserver",
        command,
        annotation: Some(format!(
            "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: {a}:{APISERVER_PORT}"
        )),
        volumes,
    })
}

fn controller_manager_manifest() -> String {
    let conf = "/etc/kubernetes/controller-manager.conf";
    let command: Vec<String> = vec![
        "kube-controller-manager".to_string(),
        format!("--authentication-kubeconfig={conf}"),
        format!("--authorization-kubeconfig={conf}"),
        "--bind-address=127.0.0.1".to_string(),
        "--client-ca-file=/etc/kubernetes/pki/ca.crt".to_string(),
        "--cluster-name=kubernetes".to_string(),
        "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt".to_string(),
        "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key".to_string(),
        "--controllers=*,bootstrapsigner,tokencleaner".to_string(),
        format!("--kubeconfig={conf}"),
        "--leader-elect=true".to_string(),
        "--root-ca-file=/etc/kubernetes/pki/ca.crt".to_string(),
        "--service-account-private-key-file=/etc/kubernetes/pki/sa.key".to_string(),
        "--use-service-account-credentials=true".to_string(),
    ];
    control_plane_manifest(&ControlPlanePod {
        name: "kube-controller-manager",
        command,
        annotation: None,
        volumes: &[
            ("k8s-certs", "/etc/kubernetes/pki"),
            ("kubeconfig", "/etc/kubernetes/controller-manager.conf"),
        ],
    })
}

fn scheduler_manifest() -> String {
    let conf = "/etc/kubernetes/scheduler.conf";
    let command: Vec<String> = vec![
        "kube-scheduler".to_string(),
        format!("--authentication-kubeconfig={conf}"),
        format!("--authorization-kubeconfig={conf}"),
        "--bind-address=127.0.0.1".to_string(),
        format!("--kubeconfig={conf}"),
        "--leader-elect=true".to_string(),
    ];
    control_plane_manifest(&ControlPlanePod {
        name: "kube-scheduler",
        command,
        annotation: None,
        volumes: &[("kubeconfig", "/etc/kubernetes/scheduler.conf")],
    })
}
