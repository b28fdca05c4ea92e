//! Reaching kube-apiserver for a command: with an operator's kubeconfig straight to its
//! server, or with an inventory through a control-plane node — kubeadm's admin.conf read over
//! SSH into memory, the API through an SSH forward to the node's loopback.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use super::Failure;
use crate::executor::Executor;
use crate::kube::api::{Api, Kubeconfig, api_nodes, through_nodes};

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
    let dir = crate::executor::ssh::private_control_dir("kube")
        .map_err(|e| Failure::usage("cannot create the SSH control directory", &e, None))?;
    let result = rt.block_on(async {
        let exec = crate::executor::ssh::Ssh::new(dir.path().to_path_buf());
        let _ = exec.connect(&api_nodes(&inv)).await;
        let out = match through_nodes(&exec, &inv).await {
            Ok((api, node, conf)) => {
                eprintln!("kube-apiserver of {node} (admin credentials from {conf})");
                work(&api).await
            }
            Err(e) => Err(e),
        };
        exec.close().await;
        out
    });
    result.map_err(|e| Failure::Invalid {
        what: e,
        causes: Vec::new(),
        hint: Some(
            "kube-apiserver must answer on a control-plane node (kubeadm's admin.conf beside its manifests); \
             or pass --kubeconfig FILE"
                .into(),
        ),
    })
}
