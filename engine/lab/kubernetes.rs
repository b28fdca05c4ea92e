//! The lab's Kubernetes control plane beside etcd: kubeconfigs and encryption at rest in
//! kubeadm's layout, and the real objects seeded through kubectl once it is up.
//!
//! Every node gets `admin.conf`, `controller-manager.conf` and `scheduler.conf` (client
//! certificates embedded, as kubeadm writes them) and one EncryptionConfiguration whose `aescbc` key is the
//! same on every node: HA API servers share one store, so they must share its keys. The lab
//! admin's kubeconfig (`admin.conf`, beside the inventory) talks to the first node.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::manifests::APISERVER_PORT;
use super::node::write_file;
use super::pki::{CONTROLLER_MANAGER_CLIENT, SCHEDULER_CLIENT};
use super::state::{LabState, NodeState};

/// Where kube-apiserver reads its EncryptionConfiguration, on every node.
pub const ENCRYPTION_CONFIG: &str = "/etc/kubernetes/enc/encryption-config.yaml";
/// The name of the lab's aescbc key: Secrets are stored as `k8s:enc:aescbc:v1:key1:...`.
pub const ENCRYPTION_KEY_NAME: &str = "key1";

/// The seeded objects: what a restore must bring back (and what a later change must lose).
const SEED: &str = "apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: billing}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: shop-settings, namespace: shop}
data: {currency: EUR, region: eu-1}
---
apiVersion: v1
kind: Secret
metadata: {name: shop-db, namespace: shop}
stringData: {password: lab-secret-value}
---
apiVersion: v1
kind: Secret
metadata: {name: billing-api, namespace: billing}
stringData: {token: lab-billing-token}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.k8s.io/pause:3.10}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: invoicer, namespace: billing}
spec:
  replicas: 1
  selector: {matchLabels: {app: invoicer}}
  template:
    metadata: {labels: {app: invoicer}}
    spec:
      containers: [{name: invoicer, image: registry.k8s.io/pause:3.10}]
";

/// An EncryptionConfiguration given by the operator (a drill of a production snapshot needs
/// production's keys). Checked only for what it is: kube-apiserver validates the rest.
pub fn read_encryption_config(path: &Path) -> anyhow::Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        anyhow::bail!("{} is not a regular file of at most 1 MiB", path.display());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
    if !text
        .lines()
        .any(|l| l.trim() == "kind: EncryptionConfiguration")
    {
        anyhow::bail!(
            "{} has no `kind: EncryptionConfiguration` line",
            path.display()
        );
    }
    Ok(text)
}

/// Writes every node's kubeconfigs and encryption config (`given`, else a new aescbc key),
/// and the admin kubeconfig.
pub fn write_all(
    lab_dir: &Path,
    pki_dir: &Path,
    nodes: &[NodeState],
    given: Option<&str>,
) -> anyhow::Result<()> {
    let ca = read(&pki_dir.join("ca.crt"))?;
    let encryption = match given {
        Some(text) => text.to_string(),
        None => encryption_config(&encryption_key()?),
    };
    for n in nodes {
        let kube = Path::new(&n.dir).join("etc-kubernetes");
        let server = format!("https://{}:{APISERVER_PORT}", n.address);
        for (client, file, user) in [
            (
                CONTROLLER_MANAGER_CLIENT,
                "controller-manager.conf",
                "system:kube-controller-manager",
            ),
            (SCHEDULER_CLIENT, "scheduler.conf", "system:kube-scheduler"),
        ] {
            let crt = kube.join(format!("pki/{client}.crt"));
            let key = kube.join(format!("pki/{client}.key"));
            let text = kubeconfig(&server, &ca, user, &read(&crt)?, &read(&key)?);
            write_file(&kube.join(file), &text, 0o600)?;
            for f in [crt, key] {
                std::fs::remove_file(&f)
                    .with_context(|| format!("cannot remove {}", f.display()))?;
            }
        }
        // kubeadm writes the admin kubeconfig on every control-plane node too: what tools on
        // the node (and `snapshot get --apply -i`) use.
        let admin = kubeconfig(
            &server,
            &ca,
            "kubernetes-admin",
            &read(&pki_dir.join("admin.crt"))?,
            &read(&pki_dir.join("admin.key"))?,
        );
        write_file(&kube.join("admin.conf"), &admin, 0o600)?;
        let enc_dir = kube.join("enc");
        std::fs::create_dir_all(&enc_dir)
            .with_context(|| format!("cannot create {}", enc_dir.display()))?;
        write_file(&enc_dir.join("encryption-config.yaml"), &encryption, 0o600)?;
    }
    if let Some(first) = nodes.first() {
        let server = format!("https://{}:{APISERVER_PORT}", first.address);
        let text = kubeconfig(
            &server,
            &ca,
            "kubernetes-admin",
            &read(&pki_dir.join("admin.crt"))?,
            &read(&pki_dir.join("admin.key"))?,
        );
        write_file(&lab_dir.join("admin.conf"), &text, 0o600)?;
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A kubeconfig with everything embedded, as kubeadm writes them.
fn kubeconfig(server: &str, ca: &[u8], user: &str, crt: &[u8], key: &[u8]) -> String {
    format!(
        "apiVersion: v1\n\
kind: Config\n\
clusters:\n\
- cluster:\n\
\x20   certificate-authority-data: {ca}\n\
\x20   server: {server}\n\
\x20 name: kubernetes\n\
contexts:\n\
- context:\n\
\x20   cluster: kubernetes\n\
\x20   user: {user}\n\
\x20 name: {user}@kubernetes\n\
current-context: {user}@kubernetes\n\
preferences: {{}}\n\
users:\n\
- name: {user}\n\
\x20 user:\n\
\x20   client-certificate-data: {crt}\n\
\x20   client-key-data: {key}\n",
        ca = B64.encode(ca),
        crt = B64.encode(crt),
        key = B64.encode(key),
    )
}

/// 32 random bytes: an AES-256 key for the aescbc provider.
fn encryption_key() -> anyhow::Result<String> {
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("cannot read /dev/urandom for the encryption key")?;
    Ok(B64.encode(key))
}

/// Secrets encrypted with aescbc; everything else (and reading old plaintext) by identity.
fn encryption_config(key: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\n\
kind: EncryptionConfiguration\n\
resources:\n\
- resources:\n\
\x20 - secrets\n\
\x20 providers:\n\
\x20 - aescbc:\n\
\x20     keys:\n\
\x20     - name: {ENCRYPTION_KEY_NAME}\n\
\x20       secret: {key}\n\
\x20 - identity: {{}}\n"
    )
}

/// kubectl on this machine with the lab admin's kubeconfig.
pub fn kubectl(state: &LabState) -> Command {
    let mut c = Command::new(Path::new(&state.kubernetes_dir).join("kubectl"));
    c.env_clear()
        .env("PATH", super::deps::STANDARD_PATH)
        .env("KUBECONFIG", &state.kubeconfig)
        .env("HOME", &state.dir);
    c
}

/// Creates the seed objects through the real API (Secrets land encrypted in etcd).
pub fn seed(state: &LabState) -> anyhow::Result<()> {
    let dir = Path::new(&state.dir);
    let file = dir.join("seed.yaml");
    write_file(&file, SEED, 0o644)?;
    // Ready API servers may still be creating the default namespaces' service accounts and
    // RBAC roles; `apply` is idempotent, so a failed first try is simply repeated.
    let mut last = None;
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        match super::run(
            kubectl(state)
                .args(["apply", "--request-timeout=30s", "-f"])
                .arg(&file),
        ) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context("cannot seed the lab's Kubernetes objects"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_embeds_base64() {
        let k = kubeconfig("https://10.0.0.1:6443", b"CA", "u", b"CRT", b"KEY");
        assert!(k.contains("certificate-authority-data: Q0E=\n"));
        assert!(k.contains("client-certificate-data: Q1JU\n"));
        assert!(k.contains("current-context: u@kubernetes\n"));
    }

    #[test]
    fn a_given_encryption_config_must_be_one() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("enc.yaml");
        std::fs::write(&good, encryption_config("c2VjcmV0")).unwrap();
        assert!(read_encryption_config(&good).unwrap().contains("aescbc"));
        let other = dir.path().join("kubeconfig.yaml");
        std::fs::write(&other, "apiVersion: v1\nkind: Config\n").unwrap();
        let e = format!("{:#}", read_encryption_config(&other).unwrap_err());
        assert!(
            e.contains("has no `kind: EncryptionConfiguration` line"),
            "{e}"
        );
        let e = format!("{:#}", read_encryption_config(dir.path()).unwrap_err());
        assert!(e.contains("is not a regular file"), "{e}");
        let e = format!(
            "{:#}",
            read_encryption_config(&dir.path().join("nope")).unwrap_err()
        );
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn encryption_config_names_the_key_first() {
        let c = encryption_config("c2VjcmV0");
        let aescbc = c.find("aescbc").unwrap();
        assert!(aescbc < c.find("identity").unwrap());
        assert!(c.contains("- name: key1\n"));
    }
}
