//! Reaching kube-apiserver for a command: with an operator's kubeconfig straight to its
//! server, or with an inventory through a control-plane node — kubeadm's admin.conf read over
//! SSH into memory, the API through an SSH forward to the node's loopback.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use super::Failure;
use crate::executor::{Executor, output_on};
use crate::inventory::model::CONTROL_PLANE_ROLE;
use crate::kube::api::{Api, Kubeconfig};

type Work<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + 'a>>;

/// Runs `work` against the cluster's kube-apiserver.
pub fn with_api<T>(
    inventory: Option<&Path>,
    kubeconfig: Option<&Path>,
    work: impl for<'a> FnOnce(&'a Api) -> Work<'a, T>,
) -> Result<T, Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::usage("cannot start the async runtime", &e, None))?;
    if let Some(path) = kubeconfig {
        let read = |p: &Path| {
            crate::input::read_bytes(p, crate::input::DOCUMENT_LIMIT)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let text = read(path).map_err(Failure::invalid)?;
        let config = Kubeconfig::parse(&String::from_utf8_lossy(&text)).map_err(|e| {
            Failure::usage(
                &format!("{} is not a usable kubeconfig", path.display()),
                &e,
                None,
            )
        })?;
        // Relative file references are relative to the kubeconfig, as kubectl reads them.
        let base = path.parent().unwrap_or(Path::new("."));
        let creds = config
            .credentials(&|f| read(&base.join(f)).ok())
            .map_err(Failure::invalid)?;
        let api = Api::connect(&creds, None).map_err(Failure::invalid)?;
        return rt.block_on(work(&api)).map_err(Failure::invalid);
    }
    let Some(inventory) = inventory else {
        return Err(Failure::usage(
            "no cluster to reach",
            &"neither -i INVENTORY nor --kubeconfig FILE was given",
            None,
        ));
    };
    let inv = super::load_inventory(inventory)?;
    let mut nodes: Vec<_> = inv.with_role(CONTROL_PLANE_ROLE).collect();
    if nodes.is_empty() {
        nodes = inv.etcd_members();
    }
    let dir = crate::executor::ssh::private_control_dir("kube")
        .map_err(|e| Failure::usage("cannot create the SSH control directory", &e, None))?;
    let result = rt.block_on(async {
        let exec = crate::executor::ssh::Ssh::new(dir.path().to_path_buf());
        let unreachable = exec.connect(&nodes).await;
        let mut tried = Vec::new();
        let mut out = None;
        for node in &nodes {
            if let Some((_, e)) = unreachable.iter().find(|(n, _)| *n == node.name) {
                tried.push(format!("{}: {}", node.name, e.0));
                continue;
            }
            // kubeadm writes the admin kubeconfig beside the manifests' directory.
            let conf = Path::new(&node.etcd.manifests_dir)
                .parent()
                .unwrap_or(Path::new("/etc/kubernetes"))
                .join("admin.conf");
            let conf = conf.to_string_lossy();
            let attempt = async {
                let text = output_on(
                    &exec,
                    node,
                    &format!("cat -- {}", crate::shell::quote(&conf)),
                    &format!("cannot read {conf}"),
                )
                .await?;
                let config = Kubeconfig::parse(&String::from_utf8_lossy(&text))
                    .map_err(|e| format!("{conf}: {e}"))?;
                let mut files = std::collections::HashMap::new();
                for f in config.files() {
                    let data = output_on(
                        &exec,
                        node,
                        &format!("cat -- {}", crate::shell::quote(&f)),
                        &format!("cannot read {f}"),
                    )
                    .await?;
                    files.insert(f, data);
                }
                let creds = config.credentials(&|f| files.get(f).cloned())?;
                let addr = exec.tunnel(node, creds.port()).await.map_err(|e| e.0)?;
                Api::connect(&creds, Some(addr))
            };
            match attempt.await {
                Ok(api) => {
                    eprintln!(
                        "kube-apiserver of {} (admin credentials from {conf})",
                        node.name
                    );
                    out = Some(work(&api).await);
                    break;
                }
                Err(e) => tried.push(format!("{}: {e}", node.name)),
            }
        }
        exec.close().await;
        out.unwrap_or_else(|| {
            Err(format!(
                "no control-plane node's kube-apiserver could be reached: {}",
                tried.join("; ")
            ))
        })
    });
    result.map_err(Failure::invalid)
}
