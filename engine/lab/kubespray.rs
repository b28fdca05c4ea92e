//! A lab node laid out as Kubespray lays out a control-plane node whose etcd runs on the host
//! (`etcd_deployment_type: host`): etcd.service reading its flags from /etc/etcd.env, the
//! etcd certificates under /etc/ssl/etcd/ssl (ca.pem, member-, admin- and node-<node>.pem),
//! `etcd`, `etcdctl` and `etcdutl` in /usr/local/bin, and kubelet.service running the control
//! plane's static pods (no etcd.yaml), kube-apiserver talking to every member.
//!
//! What this file decides is the node's content; systemd.rs boots it (real systemd as the
//! node's init, in the node's own network namespace) and `NodeRoot` is the hand-over.

use std::path::Path;

use super::deps::{EtcdTools, Flavor};
use super::manifests::{CLIENT_PORT, PEER_PORT};
use super::node::NodeMounts;
use super::state::{EtcdClient, NodeState};
use super::systemd::{NodeFile, NodeMount, NodeRoot};

/// Kubespray's `etcd_cert_dir`, and the node directory bind-mounted over /etc/ssl/etcd.
pub const CERT_DIR: &str = "/etc/ssl/etcd/ssl";
const SSL_ETCD: &str = "/etc/ssl/etcd";
const SSL_ETCD_DIR: &str = "etc-ssl-etcd";
/// The etcd CA on a node, relative to the node's directory.
pub const NODE_ETCD_CA: &str = "etc-ssl-etcd/ssl/ca.pem";
pub const NODE_ETCD_CA_KEY: &str = "etc-ssl-etcd/ssl/ca-key.pem";
pub const UNIT: &str = "etcd.service";
pub const ENV_FILE: &str = "/etc/etcd.env";
/// Kubespray's `etcd_cluster_token` default.
pub const CLUSTER_TOKEN: &str = "k8s_etcd";
/// Where the runbook binary that is the node's kubelet stand-in appears inside the node.
const KUBELET_EXE: &str = "/usr/local/lib/runbook-lab/runbook";

/// One of Kubespray's etcd certificates of a node, paths relative to the node's directory.
pub struct EtcdCertificate {
    pub crt: String,
    pub key: String,
    pub subject: String,
    pub usage: &'static str,
    /// Whether it serves (the member's SANs then go in).
    pub serving: bool,
}

/// Kubespray's `<dir>/<kind>-<node>.pem` and `<kind>-<node>-key.pem`, as paths inside a node.
fn pem(kind: &str, node: &str) -> (String, String) {
    (
        format!("{CERT_DIR}/{kind}-{node}.pem"),
        format!("{CERT_DIR}/{kind}-{node}-key.pem"),
    )
}

/// A path inside a node under /etc/ssl/etcd, as this machine sees it.
pub fn host_path(n: &NodeState, inside: &str) -> String {
    match inside.strip_prefix(SSL_ETCD) {
        Some(rest) => format!("{}/{SSL_ETCD_DIR}{rest}", n.dir),
        None => inside.to_string(),
    }
}

fn relative(inside: &str) -> String {
    format!(
        "{SSL_ETCD_DIR}{}",
        inside.strip_prefix(SSL_ETCD).unwrap_or(inside)
    )
}

/// member-<node> (serving and peer, with the member's SANs), admin-<node> (etcdctl's client)
/// and node-<node> (kube-apiserver's client), as Kubespray's make-ssl-etcd.sh names them.
pub fn etcd_certificates(n: &NodeState) -> Vec<EtcdCertificate> {
    [
        ("member", "serverAuth,clientAuth", true),
        ("admin", "clientAuth", false),
        ("node", "clientAuth", false),
    ]
    .into_iter()
    .map(|(kind, usage, serving)| {
        let (crt, key) = pem(kind, &n.name);
        EtcdCertificate {
            crt: relative(&crt),
            key: relative(&key),
            subject: format!("/CN=etcd-{kind}-{}", n.name),
            usage,
            serving,
        }
    })
    .collect()
}

/// etcdctl's client on a node: its admin-<node> certificate.
pub fn admin_client(node: &str) -> EtcdClient {
    let (cert, key) = pem("admin", node);
    EtcdClient {
        ca: format!("{CERT_DIR}/ca.pem"),
        cert,
        key,
    }
}

/// kube-apiserver's etcd client on a node: its node-<node> certificate.
pub fn apiserver_client(node: &str) -> EtcdClient {
    let (cert, key) = pem("node", node);
    EtcdClient {
        ca: format!("{CERT_DIR}/ca.pem"),
        cert,
        key,
    }
}

/// Where etcd's binaries are inside a node: Debian's 3.4 where its package puts them, the
/// others linked into /usr/local/bin as Kubespray installs them.
pub struct Binaries {
    pub etcd: String,
    pub etcdctl: String,
    pub etcdutl: Option<String>,
}

pub fn binaries(etcd: &EtcdTools) -> Binaries {
    match etcd.flavor {
        Flavor::V3_4 => Binaries {
            etcd: etcd.etcd.clone(),
            etcdctl: etcd.etcdctl.clone(),
            etcdutl: etcd.etcdutl.clone(),
        },
        _ => Binaries {
            etcd: "/usr/local/bin/etcd".to_string(),
            etcdctl: "/usr/local/bin/etcdctl".to_string(),
            etcdutl: etcd
                .etcdutl
                .as_ref()
                .map(|_| "/usr/local/bin/etcdutl".to_string()),
        },
    }
}

/// /etc/etcd.env: etcd's flags as ETCD_* variables, Kubespray's etcd.env.j2 for one member.
pub fn env_file(n: &NodeState, nodes: &[NodeState], version: &str) -> String {
    let a = &n.address;
    let initial_cluster = nodes
        .iter()
        .map(|m| format!("{}=https://{}:{PEER_PORT}", m.name, m.address))
        .collect::<Vec<_>>()
        .join(",");
    let (cert, key) = pem("member", &n.name);
    let ca = format!("{CERT_DIR}/ca.pem");
    let vars: Vec<(&str, String)> = vec![
        ("ETCD_DATA_DIR", "/var/lib/etcd".to_string()),
        (
            "ETCD_ADVERTISE_CLIENT_URLS",
            format!("https://{a}:{CLIENT_PORT}"),
        ),
        (
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            format!("https://{a}:{PEER_PORT}"),
        ),
        ("ETCD_INITIAL_CLUSTER_STATE", "new".to_string()),
        ("ETCD_METRICS", "basic".to_string()),
        (
            "ETCD_LISTEN_CLIENT_URLS",
            format!("https://{a}:{CLIENT_PORT},https://127.0.0.1:{CLIENT_PORT}"),
        ),
        ("ETCD_ELECTION_TIMEOUT", "5000".to_string()),
        ("ETCD_HEARTBEAT_INTERVAL", "250".to_string()),
        ("ETCD_INITIAL_CLUSTER_TOKEN", CLUSTER_TOKEN.to_string()),
        ("ETCD_LISTEN_PEER_URLS", format!("https://{a}:{PEER_PORT}")),
        ("ETCD_NAME", n.name.clone()),
        ("ETCD_INITIAL_CLUSTER", initial_cluster),
        ("ETCD_AUTO_COMPACTION_RETENTION", "8".to_string()),
        ("ETCD_SNAPSHOT_COUNT", "10000".to_string()),
        ("ETCD_TRUSTED_CA_FILE", ca.clone()),
        ("ETCD_CERT_FILE", cert.clone()),
        ("ETCD_KEY_FILE", key.clone()),
        ("ETCD_CLIENT_CERT_AUTH", "true".to_string()),
        ("ETCD_PEER_TRUSTED_CA_FILE", ca),
        ("ETCD_PEER_CERT_FILE", cert),
        ("ETCD_PEER_KEY_FILE", key),
        ("ETCD_PEER_CLIENT_CERT_AUTH", "true".to_string()),
    ];
    let mut text = format!(
        "# Environment file for etcd v{version} (written by `runbook lab up`, as Kubespray's etcd.env)\n"
    );
    for (k, v) in vars {
        text.push_str(&format!("{k}={v}\n"));
    }
    text
}

/// Kubespray's etcd.service (etcd_deployment_type: host), RestartSec shortened from 10 s
/// for a lab.
pub fn etcd_unit(etcd: &str) -> String {
    format!(
        "[Unit]\n\
         Description=etcd\n\
         After=network.target\n\
         \n\
         [Service]\n\
         Type=notify\n\
         User=root\n\
         EnvironmentFile={ENV_FILE}\n\
         ExecStart={etcd}\n\
         NotifyAccess=all\n\
         Restart=always\n\
         RestartSec=5s\n\
         LimitNOFILE=40000\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// The lab's kubelet stand-in as Kubespray's kubelet.service runs kubelet.
fn kubelet_unit(n: &NodeState) -> String {
    format!(
        "[Unit]\n\
         Description=Kubernetes Kubelet Server (the runbook lab's stand-in: static pods only)\n\
         After=etcd.service\n\
         Wants=etcd.service\n\
         \n\
         [Service]\n\
         ExecStart={KUBELET_EXE} lab kubelet {dir}\n\
         Restart=always\n\
         RestartSec=10s\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        dir = n.dir
    )
}

/// Debian's ssh.service with the node's sshd_config.
fn sshd_unit(sshd: &Path, n: &NodeState) -> String {
    let sshd = sshd.display();
    format!(
        "[Unit]\n\
         Description=OpenBSD Secure Shell server (lab node {node})\n\
         After=network.target\n\
         \n\
         [Service]\n\
         ExecStartPre={sshd} -t -f {dir}/sshd_config\n\
         ExecStart={sshd} -D -e -f {dir}/sshd_config\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         KillMode=process\n\
         Restart=on-failure\n\
         RestartPreventExitStatus=255\n\
         Type=notify\n\
         RuntimeDirectory=sshd\n\
         RuntimeDirectoryMode=0755\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n\
         Alias=sshd.service\n",
        node = n.name,
        dir = n.dir
    )
}

/// Everything systemd.rs needs to boot node `n`: its mounts, its files and units.
/// `needed`: host paths the node must see where they are (tools, the lab directory).
pub fn node_root(
    n: &NodeState,
    nodes: &[NodeState],
    etcd: &EtcdTools,
    sshd: &Path,
    exe: &Path,
    mounts: NodeMounts,
    needed: &[&str],
) -> NodeRoot {
    let mut root = NodeRoot {
        prepare: mounts.prepare,
        ..NodeRoot::default()
    };
    // The lab directory and the tools at the same place (their own paths are in sshd_config,
    // the units and init.json); not recursively: the lab directory holds the node's own root.
    for path in needed {
        if path.starts_with("/root/") || path.starts_with("/usr/") || *path == "/root" {
            continue;
        }
        root.mounts.push(NodeMount {
            source: path.to_string(),
            target: path.to_string(),
            recursive: false,
        });
    }
    for (source, target) in mounts.node {
        root.mounts.push(NodeMount {
            source,
            target,
            recursive: true,
        });
    }
    root.mounts.push(NodeMount {
        source: format!("{}/{SSL_ETCD_DIR}", n.dir),
        target: SSL_ETCD.to_string(),
        recursive: false,
    });
    root.mounts.push(NodeMount {
        source: exe.display().to_string(),
        target: KUBELET_EXE.to_string(),
        recursive: false,
    });
    let bin = binaries(etcd);
    if etcd.flavor != Flavor::V3_4 {
        root.symlinks.push((bin.etcd.clone(), etcd.etcd.clone()));
        root.symlinks
            .push((bin.etcdctl.clone(), etcd.etcdctl.clone()));
        if let (Some(link), Some(target)) = (&bin.etcdutl, &etcd.etcdutl) {
            root.symlinks.push((link.clone(), target.clone()));
        }
    }
    let units = "/etc/systemd/system";
    root.files.push(NodeFile {
        path: ENV_FILE.to_string(),
        content: env_file(n, nodes, &etcd.version),
        mode: 0o640,
    });
    for (unit, content) in [
        (UNIT, etcd_unit(&bin.etcd)),
        ("kubelet.service", kubelet_unit(n)),
        ("ssh.service", sshd_unit(sshd, n)),
    ] {
        root.files.push(NodeFile {
            path: format!("{units}/{unit}"),
            content,
            mode: 0o644,
        });
        // `systemctl enable`: the [Install] section's WantedBy, as a link.
        root.symlinks.push((
            format!("{units}/multi-user.target.wants/{unit}"),
            format!("{units}/{unit}"),
        ));
        root.own_units.push(unit.to_string());
    }
    root.symlinks.push((
        format!("{units}/sshd.service"),
        format!("{units}/ssh.service"),
    ));
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<NodeState> {
        (1..=3)
            .map(|i| NodeState {
                name: format!("cp{i}"),
                address: format!("10.201.1.{}", 10 + i),
                netns: format!("runbook-sd-cp{i}"),
                veth: format!("rb000000n{i}"),
                dir: format!("/var/lib/runbook-lab/sd/nodes/cp{i}"),
                init_pid: 0,
            })
            .collect()
    }

    #[test]
    fn the_env_file_is_kubesprays() {
        let all = nodes();
        let env = env_file(&all[1], &all, "3.6.16");
        for line in [
            "ETCD_DATA_DIR=/var/lib/etcd\n",
            "ETCD_NAME=cp2\n",
            "ETCD_ADVERTISE_CLIENT_URLS=https://10.201.1.12:2379\n",
            "ETCD_LISTEN_CLIENT_URLS=https://10.201.1.12:2379,https://127.0.0.1:2379\n",
            "ETCD_INITIAL_ADVERTISE_PEER_URLS=https://10.201.1.12:2380\n",
            "ETCD_LISTEN_PEER_URLS=https://10.201.1.12:2380\n",
            "ETCD_INITIAL_CLUSTER=cp1=https://10.201.1.11:2380,cp2=https://10.201.1.12:2380,cp3=https://10.201.1.13:2380\n",
            "ETCD_INITIAL_CLUSTER_STATE=new\n",
            "ETCD_INITIAL_CLUSTER_TOKEN=k8s_etcd\n",
            "ETCD_CERT_FILE=/etc/ssl/etcd/ssl/member-cp2.pem\n",
            "ETCD_KEY_FILE=/etc/ssl/etcd/ssl/member-cp2-key.pem\n",
            "ETCD_TRUSTED_CA_FILE=/etc/ssl/etcd/ssl/ca.pem\n",
            "ETCD_CLIENT_CERT_AUTH=true\n",
            "ETCD_PEER_CERT_FILE=/etc/ssl/etcd/ssl/member-cp2.pem\n",
            "ETCD_PEER_KEY_FILE=/etc/ssl/etcd/ssl/member-cp2-key.pem\n",
            "ETCD_PEER_TRUSTED_CA_FILE=/etc/ssl/etcd/ssl/ca.pem\n",
            "ETCD_PEER_CLIENT_CERT_AUTH=true\n",
        ] {
            assert!(env.contains(line), "{line}{env}");
        }
        // Every line is a comment or NAME=VALUE, as systemd's EnvironmentFile reads it.
        assert!(env.lines().all(|l| {
            l.starts_with('#')
                || l.split_once('=')
                    .is_some_and(|(k, _)| k.starts_with("ETCD_") && !k.contains(' '))
        }));
    }

    #[test]
    fn the_unit_is_kubesprays() {
        let unit = etcd_unit("/usr/local/bin/etcd");
        for line in [
            "Type=notify\n",
            "EnvironmentFile=/etc/etcd.env\n",
            "ExecStart=/usr/local/bin/etcd\n",
            "Restart=always\n",
            "LimitNOFILE=40000\n",
            "WantedBy=multi-user.target\n",
        ] {
            assert!(unit.contains(line), "{line}{unit}");
        }
    }

    #[test]
    fn certificates_and_their_host_paths() {
        let all = nodes();
        let certs = etcd_certificates(&all[0]);
        let names: Vec<&str> = certs.iter().map(|c| c.crt.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc-ssl-etcd/ssl/member-cp1.pem",
                "etc-ssl-etcd/ssl/admin-cp1.pem",
                "etc-ssl-etcd/ssl/node-cp1.pem"
            ]
        );
        assert_eq!(certs[0].key, "etc-ssl-etcd/ssl/member-cp1-key.pem");
        assert!(certs[0].serving && !certs[1].serving);
        let admin = admin_client("cp1");
        assert_eq!(admin.cert, "/etc/ssl/etcd/ssl/admin-cp1.pem");
        assert_eq!(
            host_path(&all[0], &admin.key),
            "/var/lib/runbook-lab/sd/nodes/cp1/etc-ssl-etcd/ssl/admin-cp1-key.pem"
        );
        assert_eq!(
            apiserver_client("cp3").cert,
            "/etc/ssl/etcd/ssl/node-cp3.pem"
        );
    }
}
