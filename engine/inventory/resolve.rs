//! Raw inventory -> checked [`Inventory`]: defaults, node overrides, shape checks, all errors collected.

use std::collections::HashMap;
use std::sync::Arc;

use super::model::{EtcdConfig, Inventory, Node, Runtime, SshConfig, Tls};
use super::version::EtcdVersion;
use super::{EtcdSettings, InventoryFile, SshSettings};
use crate::check;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::located::Sp;

/// etcd's own default for --initial-cluster-token.
pub const DEFAULT_CLUSTER_TOKEN: &str = "etcd-cluster";

pub fn resolve(raw: &InventoryFile, file: &Arc<str>) -> Result<Inventory, Diagnostics> {
    let mut ds = Diagnostics::default();
    let at = |sp_line: u64, sp_col: u64| Loc::new(file, sp_line.max(1), sp_col.max(1));

    if !check::is_label(&raw.cluster) {
        ds.push(
            Diagnostic::error(
                "invalid-name",
                raw.cluster.loc(file),
                format!("cluster name {:?} is not a valid name", raw.cluster.value),
            )
            .hint("use lowercase letters, digits and '-' (an RFC 1123 label)"),
        );
    }
    if raw.etcd.version.is_none() {
        ds.push(
            Diagnostic::error(
                "missing-field",
                at(1, 1),
                "the cluster-level `etcd.version` is missing",
            )
            .hint("set `etcd: { version: \"3.5.16\" }`: it decides etcdutl or etcdctl and which flags exist"),
        );
    }
    let cluster_etcd = merge_etcd(&raw.etcd, None, file, &mut ds);
    if raw.nodes.is_empty() {
        ds.push(
            Diagnostic::error(
                "no-nodes",
                raw.cluster.loc(file),
                "the inventory has no nodes",
            )
            .hint("list the cluster's hosts under `nodes:`"),
        );
    }

    let mut nodes = Vec::new();
    let mut names: HashMap<&str, Loc> = HashMap::new();
    let mut addresses: HashMap<&str, Loc> = HashMap::new();
    for spec in &raw.nodes {
        let loc = spec.name.loc(file);
        if !check::is_label(&spec.name) {
            ds.push(
                Diagnostic::error(
                    "invalid-name",
                    loc.clone(),
                    format!("node name {:?} is not an RFC 1123 label", spec.name.value),
                )
                .hint(
                    "use 1-63 lowercase letters, digits and '-'; it becomes the etcd member name",
                ),
            );
        }
        if let Some(first) = names.insert(&spec.name, loc.clone()) {
            ds.push(
                Diagnostic::error(
                    "duplicate-node",
                    loc.clone(),
                    format!("node `{}` is listed twice", spec.name.value),
                )
                .note(first, "first listed here"),
            );
        }
        if !check::is_address(&spec.address) {
            ds.push(
                Diagnostic::error(
                    "invalid-address",
                    spec.address.loc(file),
                    format!(
                        "address {:?} is not an IP address or a DNS name",
                        spec.address.value
                    ),
                )
                .hint("write an IPv4/IPv6 address or a host name such as cp1.example.com"),
            );
        }
        if let Some(first) = addresses.insert(&spec.address, spec.address.loc(file)) {
            ds.push(
                Diagnostic::error(
                    "duplicate-address",
                    spec.address.loc(file),
                    format!("address {} is used by two nodes", spec.address.value),
                )
                .note(first, "first used here"),
            );
        }
        for role in &spec.roles {
            if !check::is_label(role) {
                ds.push(
                    Diagnostic::error(
                        "invalid-name",
                        role.loc(file),
                        format!("role {:?} is not a valid role name", role.value),
                    )
                    .hint("roles are lowercase labels such as etcd, control-plane, worker"),
                );
            }
        }
        let etcd = merge_etcd(&raw.etcd, spec.etcd.as_ref(), file, &mut ds);
        let ssh = merge_ssh(&raw.ssh, spec.ssh.as_ref(), file, &mut ds);
        nodes.push(Node {
            name: spec.name.value.clone(),
            address: spec.address.value.clone(),
            roles: spec.roles.iter().map(|r| r.value.clone()).collect(),
            ssh,
            etcd,
            loc,
        });
    }

    if ds.has_errors() {
        return Err(ds);
    }
    Ok(Inventory {
        file: file.clone(),
        cluster: raw.cluster.value.clone(),
        etcd: cluster_etcd,
        nodes,
    })
}

/// Picks the node's value over the cluster's, remembering where the winner was written.
fn pick<'a, T>(node: Option<&'a Option<Sp<T>>>, cluster: &'a Option<Sp<T>>) -> Option<&'a Sp<T>> {
    node.and_then(|n| n.as_ref()).or(cluster.as_ref())
}

fn path_field(
    name: &str,
    value: Option<&Sp<String>>,
    default: &str,
    file: &Arc<str>,
    ds: &mut Diagnostics,
) -> (String, Loc) {
    match value {
        Some(v) => {
            if let Some(problem) = check::path_problem(v) {
                ds.push(
                    Diagnostic::error(
                        "invalid-path",
                        v.loc(file),
                        format!("`{name}` {:?} {problem}", v.value),
                    )
                    .hint("write an absolute path on the node, e.g. /var/lib/etcd"),
                );
            }
            (v.value.clone(), v.loc(file))
        }
        None => (default.to_string(), Loc::new(file, 0, 0)),
    }
}

/// `runtime`, with the systemd unit's settings: `unit` and `env_file` only mean something
/// for a systemd member, and a unit name is what `systemctl` accepts.
fn runtime(
    cluster: &EtcdSettings,
    node: Option<&EtcdSettings>,
    file: &Arc<str>,
    ds: &mut Diagnostics,
) -> Runtime {
    match pick(node.map(|n| &n.runtime), &cluster.runtime) {
        Some(r) if r.value == "systemd" => {
            let unit = pick(node.map(|n| &n.unit), &cluster.unit);
            let env_file = pick(node.map(|n| &n.env_file), &cluster.env_file);
            let unit = match unit {
                Some(u) => {
                    if !is_unit_name(&u.value) {
                        ds.push(
                            Diagnostic::error(
                                "invalid-unit",
                                u.loc(file),
                                format!("{:?} is not a systemd service name", u.value),
                            )
                            .hint("e.g. etcd.service (`systemctl cat etcd` shows it)"),
                        );
                    }
                    u.value.clone()
                }
                None => "etcd.service".to_string(),
            };
            let env_file = path_field("env_file", env_file, "/etc/etcd.env", file, ds).0;
            Runtime::Systemd { unit, env_file }
        }
        other => {
            if let Some(r) = other
                && r.value != "static-pod"
            {
                ds.push(
                    Diagnostic::error(
                        "invalid-runtime",
                        r.loc(file),
                        format!("etcd runtime {:?} is neither static-pod nor systemd", r.value),
                    )
                    .hint("static-pod: kubeadm's etcd.yaml run by kubelet; systemd: a unit on the host (Kubespray, packaged etcd)"),
                );
            }
            // Set where etcd is not a unit: on this node, or at a cluster level that is
            // not systemd either (a static pod node among systemd ones inherits them).
            let cluster_systemd = cluster
                .runtime
                .as_ref()
                .is_some_and(|r| r.value == "systemd");
            let own = |field: fn(&EtcdSettings) -> &Option<Sp<String>>| {
                node.and_then(|n| field(n).as_ref())
                    .or_else(|| field(cluster).as_ref().filter(|_| !cluster_systemd))
            };
            for (name, v) in [
                ("unit", own(|e| &e.unit)),
                ("env_file", own(|e| &e.env_file)),
            ] {
                if let Some(v) = v {
                    ds.push(
                        Diagnostic::error(
                            "systemd-only",
                            v.loc(file),
                            format!("`{name}` applies to etcd run by systemd"),
                        )
                        .hint("add `runtime: systemd`, or remove it for a static pod member"),
                    );
                }
            }
            Runtime::StaticPod
        }
    }
}

/// A service unit name: letters, digits and `-_.@:\`, ending in `.service`.
fn is_unit_name(u: &str) -> bool {
    u.len() > ".service".len()
        && u.len() <= 255
        && u.ends_with(".service")
        && !u.starts_with('.')
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:\\".contains(&b))
}

fn merge_etcd(
    cluster: &EtcdSettings,
    node: Option<&EtcdSettings>,
    file: &Arc<str>,
    ds: &mut Diagnostics,
) -> EtcdConfig {
    let version_sp = pick(node.map(|n| &n.version), &cluster.version);
    let (version, version_loc) = match version_sp {
        Some(v) => match EtcdVersion::parse(v) {
            Ok(parsed) => (parsed, v.loc(file)),
            Err(why) => {
                ds.push(
                    Diagnostic::error(
                        "invalid-version",
                        v.loc(file),
                        format!("etcd version {:?} is not a version number: {why}", v.value),
                    )
                    .hint("write the full version the node runs, e.g. \"3.5.16\" (see `etcd --version`)"),
                );
                (EtcdVersion::new(0, 0, 0), v.loc(file))
            }
        },
        None => (EtcdVersion::new(0, 0, 0), Loc::new(file, 0, 0)),
    };
    let (data_dir, data_dir_loc) = path_field(
        "data_dir",
        pick(node.map(|n| &n.data_dir), &cluster.data_dir),
        "/var/lib/etcd",
        file,
        ds,
    );
    let (manifests_dir, _) = path_field(
        "manifests_dir",
        pick(node.map(|n| &n.manifests_dir), &cluster.manifests_dir),
        "/etc/kubernetes/manifests",
        file,
        ds,
    );
    let runtime = runtime(cluster, node, file, ds);
    let owner = match pick(node.map(|n| &n.owner), &cluster.owner) {
        Some(o) => {
            if !check::is_owner(o) {
                ds.push(
                    Diagnostic::error(
                        "invalid-owner",
                        o.loc(file),
                        format!("owner {:?} is not `user` or `user:group`", o.value),
                    )
                    .hint("e.g. root:root (kubeadm) or etcd:etcd (packaged etcd)"),
                );
            }
            o.value.clone()
        }
        None => "root:root".to_string(),
    };
    let scheme = match pick(node.map(|n| &n.scheme), &cluster.scheme) {
        Some(s) if s.value == "http" || s.value == "https" => s.value.clone(),
        Some(s) => {
            ds.push(
                Diagnostic::error(
                    "invalid-scheme",
                    s.loc(file),
                    format!("scheme {:?} is neither https nor http", s.value),
                )
                .hint("kubeadm clusters use https; http is for labs"),
            );
            "https".to_string()
        }
        None => "https".to_string(),
    };
    let port = |v: Option<&Sp<u16>>, default: u16, name: &str, ds: &mut Diagnostics| match v {
        Some(p) if p.value == 0 => {
            ds.push(Diagnostic::error(
                "invalid-port",
                p.loc(file),
                format!("`{name}` must be between 1 and 65535"),
            ));
            default
        }
        Some(p) => p.value,
        None => default,
    };
    let client_port = port(
        pick(node.map(|n| &n.client_port), &cluster.client_port),
        2379,
        "client_port",
        ds,
    );
    let peer_port = port(
        pick(node.map(|n| &n.peer_port), &cluster.peer_port),
        2380,
        "peer_port",
        ds,
    );
    let tls_raw = node.and_then(|n| n.tls.as_ref()).or(cluster.tls.as_ref());
    let tls = tls_raw.map(|t| Tls {
        ca: path_field("tls.ca", Some(&t.ca), "", file, ds).0,
        cert: path_field("tls.cert", Some(&t.cert), "", file, ds).0,
        key: path_field("tls.key", Some(&t.key), "", file, ds).0,
    });
    if tls.is_none()
        && let Some(s) = pick(node.map(|n| &n.scheme), &cluster.scheme)
        && s.value == "https"
    {
        ds.push(
            Diagnostic::error(
                "missing-tls",
                s.loc(file),
                "scheme https needs client certificates (`etcd.tls`)",
            )
            .hint("add `tls: { ca: ..., cert: ..., key: ... }`, e.g. kubeadm's /etc/kubernetes/pki/etcd/{ca,server}.{crt,key}"),
        );
    }
    let cluster_token = pick(node.map(|n| &n.cluster_token), &cluster.cluster_token)
        .map(|t| t.value.clone())
        .unwrap_or_else(|| DEFAULT_CLUSTER_TOKEN.to_string());
    let tool = |v: Option<&Sp<String>>, default: &str, name: &str, ds: &mut Diagnostics| match v {
        Some(p) => path_field(name, Some(p), default, file, ds).0,
        None => default.to_string(),
    };
    let etcdctl = tool(
        pick(node.map(|n| &n.etcdctl), &cluster.etcdctl),
        "etcdctl",
        "etcdctl",
        ds,
    );
    let etcdutl = tool(
        pick(node.map(|n| &n.etcdutl), &cluster.etcdutl),
        "etcdutl",
        "etcdutl",
        ds,
    );
    EtcdConfig {
        version,
        data_dir,
        owner,
        manifests_dir,
        runtime,
        scheme,
        client_port,
        peer_port,
        tls,
        cluster_token,
        etcdctl,
        etcdutl,
        version_loc,
        data_dir_loc,
    }
}

fn merge_ssh(
    cluster: &SshSettings,
    node: Option<&SshSettings>,
    file: &Arc<str>,
    ds: &mut Diagnostics,
) -> SshConfig {
    let user = match pick(node.map(|n| &n.user), &cluster.user) {
        Some(u) => {
            if !check::is_owner(u) || u.contains(':') {
                ds.push(Diagnostic::error(
                    "invalid-user",
                    u.loc(file),
                    format!("ssh user {:?} is not a user name", u.value),
                ));
            }
            u.value.clone()
        }
        None => "root".to_string(),
    };
    let port = match pick(node.map(|n| &n.port), &cluster.port) {
        Some(p) if p.value == 0 => {
            ds.push(Diagnostic::error(
                "invalid-port",
                p.loc(file),
                "ssh `port` must be between 1 and 65535",
            ));
            22
        }
        Some(p) => p.value,
        None => 22,
    };
    let local_path = |v: Option<&Sp<String>>, ds: &mut Diagnostics| {
        v.map(|p| {
            if p.chars().any(|c| c.is_control()) {
                ds.push(Diagnostic::error(
                    "invalid-path",
                    p.loc(file),
                    "path contains a control character",
                ));
            }
            p.value.clone()
        })
    };
    SshConfig {
        user,
        port,
        identity_file: local_path(
            pick(node.map(|n| &n.identity_file), &cluster.identity_file),
            ds,
        ),
        known_hosts: local_path(pick(node.map(|n| &n.known_hosts), &cluster.known_hosts), ds),
        config_file: local_path(pick(node.map(|n| &n.config_file), &cluster.config_file), ds),
        connect_timeout: pick(node.map(|n| &n.connect_timeout), &cluster.connect_timeout)
            .map(|t| t.value)
            .unwrap_or(10),
    }
}
