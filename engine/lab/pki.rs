//! The lab's TLS material in kubeadm's layout, made with openssl (EC P-256: fast to generate).
//!
//! One etcd CA, one kubernetes CA and one service-account key pair for the whole lab (HA
//! API servers must share them, as kubeadm copies them); per node the etcd server, peer and
//! healthcheck-client certificates, the kube-apiserver serving and etcd-client ones, and the
//! client certificates of kube-controller-manager and kube-scheduler (kubeadm embeds those in
//! their kubeconfigs; kubeconfig.rs does the same). The lab admin's client certificate lives
//! beside the CAs, for the admin kubeconfig written next to the inventory.
//! server.crt carries clientAuth as well as serverAuth, as kubeadm's does, because etcdctl
//! (in plans and in `lab exec`) presents it as its client certificate. A lab whose etcd runs
//! under systemd gets Kubespray's etcd certificates instead (kubespray.rs), from the same CA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::deps::program;
use super::node::{run_all, write_file};
use super::state::{EtcdRuntime, NodeState};

/// A minimal openssl config, so that the host's openssl.cnf (default extensions, prompts)
/// plays no part.
const REQ_CONFIG: &str = "[req]\n\
distinguished_name = dn\n\
prompt = no\n\
[dn]\n\
CN = placeholder\n\
[ca]\n\
basicConstraints = critical,CA:TRUE\n\
keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign\n\
subjectKeyIdentifier = hash\n";

const DAYS: &str = "3650";

/// The lab admin: a member of system:masters, like kubeadm's super-admin.conf.
const ADMIN_SUBJECT: &str = "/O=system:masters/CN=kubernetes-admin";
/// Client certificates (under the node's pki dir) that kubeconfig.rs embeds and removes.
pub const CONTROLLER_MANAGER_CLIENT: &str = "controller-manager-client";
pub const SCHEDULER_CLIENT: &str = "scheduler-client";

struct Ca {
    crt: PathBuf,
    key: PathBuf,
}

/// One leaf certificate to issue.
struct Leaf {
    ca: &'static str,
    /// Certificate and key, relative to the node's directory (the lab's for its admin).
    crt: String,
    key: String,
    subject: String,
    usage: &'static str,
    sans: Option<String>,
}

/// A kubeadm certificate: `pki/<path>.crt` and `.key` under the node's /etc/kubernetes.
fn kubeadm_leaf(
    ca: &'static str,
    path: &str,
    subject: String,
    usage: &'static str,
    sans: Option<String>,
) -> Leaf {
    Leaf {
        ca,
        crt: format!("etc-kubernetes/pki/{path}.crt"),
        key: format!("etc-kubernetes/pki/{path}.key"),
        subject,
        usage,
        sans,
    }
}

/// Generates the CAs into `dir` and every node's certificates: kubeadm's in its
/// `etc-kubernetes/pki`, with a copy of the CAs there as kubeadm leaves them; for etcd run by
/// systemd, etcd's in Kubespray's `/etc/ssl/etcd/ssl` (kubespray.rs) instead.
pub fn generate(dir: &Path, nodes: &[NodeState], runtime: EtcdRuntime) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("etcd"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // Requests and extension files, gone with the guard however this returns.
    let scratch = tempfile::Builder::new()
        .prefix("work-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a work directory in {}", dir.display()))?;
    let work = scratch.path().to_path_buf();
    let config = work.join("req.cnf");
    write_file(&config, REQ_CONFIG, 0o600)?;

    let etcd_ca = Ca {
        crt: dir.join("etcd/ca.crt"),
        key: dir.join("etcd/ca.key"),
    };
    let kube_ca = Ca {
        crt: dir.join("ca.crt"),
        key: dir.join("ca.key"),
    };
    let sa_key = dir.join("sa.key");
    run_all(vec![
        ca_command(&config, &etcd_ca, "etcd-ca"),
        ca_command(&config, &kube_ca, "kubernetes"),
        ec_key(&sa_key),
    ])
    .context("cannot create the lab's certificate authorities")?;
    let mut public = Command::new(program("openssl"));
    public
        .args(["pkey", "-pubout", "-in"])
        .arg(&sa_key)
        .arg("-out")
        .arg(dir.join("sa.pub"));
    run_all(vec![public]).context("cannot write the service-account public key")?;

    // Key + CSR for every certificate at once, then every signature at once.
    let mut requests = Vec::new();
    let mut signatures = Vec::new();
    let admin = vec![Leaf {
        ca: "kubernetes",
        crt: "admin.crt".to_string(),
        key: "admin.key".to_string(),
        subject: ADMIN_SUBJECT.to_string(),
        usage: "clientAuth",
        sans: None,
    }];
    let mut issued: Vec<(String, PathBuf, Vec<Leaf>)> = nodes
        .iter()
        .map(|n| (n.name.clone(), PathBuf::from(&n.dir), leaves(n, runtime)))
        .collect();
    issued.push(("lab".to_string(), dir.to_path_buf(), admin));
    for (name, base, leaves) in &issued {
        for (i, leaf) in leaves.iter().enumerate() {
            let ca = if leaf.ca == "etcd" {
                &etcd_ca
            } else {
                &kube_ca
            };
            let key = base.join(&leaf.key);
            let crt = base.join(&leaf.crt);
            let csr = work.join(format!("{name}-{i}.csr"));
            let ext = work.join(format!("{name}-{i}.ext"));
            let mut extensions = format!(
                "basicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage = {}\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n",
                leaf.usage
            );
            if let Some(sans) = &leaf.sans {
                extensions.push_str(&format!("subjectAltName = {sans}\n"));
            }
            write_file(&ext, &extensions, 0o600)?;

            let mut req = Command::new(program("openssl"));
            req.args(["req", "-new", "-nodes", "-newkey", "ec"])
                .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", &leaf.subject, "-config"])
                .arg(&config);
            requests.push(req);

            let mut sign = Command::new(program("openssl"));
            sign.args(["x509", "-req", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&ca.crt)
                .arg("-CAkey")
                .arg(&ca.key)
                // Random serials: no shared serial file between parallel signatures.
                .args(["-set_serial", &serial(name, &leaf.crt), "-days", DAYS])
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&crt);
            signatures.push(sign);
        }
    }
    run_all(requests).context("cannot create the lab's keys")?;
    run_all(signatures).context("cannot sign the lab's certificates")?;

    for n in nodes {
        let base = Path::new(&n.dir);
        let sa_pub = dir.join("sa.pub");
        // The etcd CA where the etcd of this layout reads it: kubeadm's pki/etcd, or
        // Kubespray's ca.pem and ca-key.pem.
        let (etcd_ca_crt, etcd_ca_key) = match runtime {
            EtcdRuntime::StaticPod => (
                "etc-kubernetes/pki/etcd/ca.crt",
                "etc-kubernetes/pki/etcd/ca.key",
            ),
            EtcdRuntime::Systemd => (
                super::kubespray::NODE_ETCD_CA,
                super::kubespray::NODE_ETCD_CA_KEY,
            ),
        };
        for (from, to) in [
            (&etcd_ca.crt, etcd_ca_crt),
            (&etcd_ca.key, etcd_ca_key),
            (&kube_ca.crt, "etc-kubernetes/pki/ca.crt"),
            (&kube_ca.key, "etc-kubernetes/pki/ca.key"),
            (&sa_key, "etc-kubernetes/pki/sa.key"),
            (&sa_pub, "etc-kubernetes/pki/sa.pub"),
        ] {
            std::fs::copy(from, base.join(to))
                .with_context(|| format!("cannot copy {} to {}", from.display(), n.name))?;
        }
        for leaf in leaves(n, runtime) {
            protect(&base.join(&leaf.key))?;
        }
        protect(&base.join(etcd_ca_key))?;
        protect(&base.join("etc-kubernetes/pki/ca.key"))?;
        protect(&base.join("etc-kubernetes/pki/sa.key"))?;
    }
    protect(&etcd_ca.key)?;
    protect(&kube_ca.key)?;
    protect(&sa_key)?;
    protect(&dir.join("admin.key"))?;
    scratch
        .close()
        .with_context(|| format!("cannot remove {}", work.display()))
}

fn protect(key: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", key.display()))
}

/// An EC P-256 private key (kube-apiserver signs service-account tokens with it).
fn ec_key(path: &Path) -> Command {
    let mut c = Command::new(program("openssl"));
    c.args([
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
    ])
    .arg(path);
    c
}

fn ca_command(config: &Path, ca: &Ca, cn: &str) -> Command {
    let mut c = Command::new(program("openssl"));
    c.args(["req", "-x509", "-new", "-nodes", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout"])
        .arg(&ca.key)
        .arg("-out")
        .arg(&ca.crt)
        .args(["-days", DAYS, "-subj", &format!("/CN={cn}"), "-config"])
        .arg(config)
        .args(["-extensions", "ca"]);
    c
}

/// The certificates of one node: kubeadm's etcd ones (server, peer, healthcheck client,
/// kube-apiserver's etcd client) or Kubespray's (kubespray.rs), then kube-apiserver's serving
/// certificate and the client ones of kube-controller-manager and kube-scheduler.
fn leaves(n: &NodeState, runtime: EtcdRuntime) -> Vec<Leaf> {
    let member_sans = format!("IP:{},IP:127.0.0.1,DNS:localhost,DNS:{}", n.address, n.name);
    let apiserver_sans = format!(
        "IP:10.96.0.1,IP:{},IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,\
         DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:{}",
        n.address, n.name
    );
    let mut out = match runtime {
        EtcdRuntime::StaticPod => vec![
            kubeadm_leaf(
                "etcd",
                "etcd/server",
                format!("/CN={}", n.name),
                "serverAuth,clientAuth",
                Some(member_sans.clone()),
            ),
            kubeadm_leaf(
                "etcd",
                "etcd/peer",
                format!("/CN={}", n.name),
                "serverAuth,clientAuth",
                Some(member_sans),
            ),
            kubeadm_leaf(
                "etcd",
                "etcd/healthcheck-client",
                "/O=system:masters/CN=kube-etcd-healthcheck-client".to_string(),
                "clientAuth",
                None,
            ),
            kubeadm_leaf(
                "etcd",
                "apiserver-etcd-client",
                "/O=system:masters/CN=kube-apiserver-etcd-client".to_string(),
                "clientAuth",
                None,
            ),
        ],
        EtcdRuntime::Systemd => super::kubespray::etcd_certificates(n)
            .into_iter()
            .map(|c| Leaf {
                ca: "etcd",
                crt: c.crt,
                key: c.key,
                subject: c.subject,
                usage: c.usage,
                sans: c.serving.then(|| member_sans.clone()),
            })
            .collect(),
    };
    out.extend([
        kubeadm_leaf(
            "kubernetes",
            "apiserver",
            "/CN=kube-apiserver".to_string(),
            "serverAuth",
            Some(apiserver_sans),
        ),
        kubeadm_leaf(
            "kubernetes",
            CONTROLLER_MANAGER_CLIENT,
            "/CN=system:kube-controller-manager".to_string(),
            "clientAuth",
            None,
        ),
        kubeadm_leaf(
            "kubernetes",
            SCHEDULER_CLIENT,
            "/CN=system:kube-scheduler".to_string(),
            "clientAuth",
            None,
        ),
    ]);
    out
}

/// A positive 127-bit serial, unique per certificate and per run.
fn serial(node: &str, path: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::digest(format!("{node}/{path}/{nanos}/{}", std::process::id()));
    let mut hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    // Clear the top bit: serials are positive.
    hex.replace_range(0..1, "1");
    format!("0x{hex}")
}
