//! `runbook snapshot diff`: what differs between two snapshots, or a snapshot and the live
//! cluster, by Kubernetes resource — what restoring the first would roll back.

use std::path::Path;

use super::snapshot::fetch_if_s3;
use super::{Done, EXIT_OK, Failure, print_out};
use crate::cli::SnapshotFormat;
use crate::executor::Executor;
use crate::snapshot::contents::{Contents, Diff};

pub fn run(
    snapshot: &Path,
    newer: Option<&Path>,
    inventory: Option<&Path>,
    output: SnapshotFormat,
) -> Done {
    let started = std::time::Instant::now();
    let older = read(snapshot)?;
    let (newer_name, newer) = match (newer, inventory) {
        (Some(p), _) => (p.display().to_string(), read(p)?),
        (None, Some(inv)) => live(inv)?,
        (None, None) => {
            return Err(Failure::usage(
                "snapshot diff needs a second side",
                &"neither a second snapshot nor -i INVENTORY was given",
                None,
            ));
        }
    };
    let diff = Diff::of(&older, &newer);
    let text = match output {
        SnapshotFormat::Json => {
            let mut v = serde_json::to_value(&diff).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("older".into(), snapshot.display().to_string().into());
                o.insert("newer".into(), newer_name.clone().into());
                o.insert("restore".into(), diff.restore_sentence().into());
            }
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        SnapshotFormat::Text => format!(
            "{} (revision {}) -> {newer_name} (revision {})\n{}",
            snapshot.display(),
            diff.older_revision,
            diff.newer_revision,
            crate::snapshot::contents::render(&diff, true)
        ),
    };
    print_out(&text)?;
    eprintln!(
        "compared {} and {} keys in {:.2}s",
        older.keys.len(),
        newer.keys.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(EXIT_OK)
}

fn read(path: &Path) -> Result<Contents, Failure> {
    let fetched = fetch_if_s3(path)?;
    let local = fetched.as_ref().map_or(path, |f| f.path.as_path());
    Contents::of_file(local).map_err(|e| Failure::invalid(e.to_string()))
}

/// The cluster's keys over etcd's API, through SSH forwards to its members.
fn live(inventory: &Path) -> Result<(String, Contents), Failure> {
    let inv = super::load_inventory(inventory)?;
    let members = inv.etcd_members();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::usage("cannot start the async runtime", &e, None))?;
    let dir = crate::executor::ssh::private_control_dir("diff")
        .map_err(|e| Failure::usage("cannot create the SSH control directory", &e, None))?;
    // The directory is removed when `dir` is dropped, after the masters are closed.
    let read = rt.block_on(async {
        let exec = crate::executor::ssh::Ssh::new(dir.path().to_path_buf());
        let _ = exec.connect(&members).await;
        let r = crate::etcd::cluster_contents(&exec, &members).await;
        exec.close().await;
        r
    });
    let (member, c) = read.map_err(Failure::invalid)?;
    Ok((format!("cluster {} (read from {member})", inv.cluster), c))
}
