//! `cargo bench --bench backup` (Linux, root): the wall time of one backup on a 3-member lab
//! (etcd 3.6, ~40 MB of keys), `runbook apply etcd-backup` against the shell script
//! operators keep for it (benches/peer/backup.sh): the same save, check, copy and rotation,
//! alternated run by run on the same cluster, medians compared.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

mod common;
use common::{inventory_field, ok, runbook};

const LAB: &str = "bench-bak";
const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let inventory = PathBuf::from(
        String::from_utf8(ok(
            runbook().args(["lab", "up", "--name", LAB, "--etcd", "3.6"]),
            "lab up",
        ))
        .unwrap()
        .trim(),
    );
    // ~40 MB: 20,000 keys of 2 kB, written 100 to a transaction.
    common::in_node(
        LAB,
        "cp1",
        "v=$(head -c 1500 /dev/urandom | base64 -w0); for b in $(seq 1 200); do \
           for i in $(seq 1 100); do echo \"put /bench/$b/$i $v\"; done | (echo; cat; echo; echo) | etcdctl txn >/dev/null; done",
    );
    let etcdutl = PathBuf::from(
        String::from_utf8(ok(
            runbook().args(["lab", "bin", "--etcd", "3.6"]),
            "lab bin",
        ))
        .unwrap()
        .trim(),
    )
    .join("etcdutl");
    let ssh_config = inventory_field(&inventory, "/ssh/config_file");
    let address = inventory_field(&inventory, "/nodes/1/address");
    let etcdctl = inventory_field(&inventory, "/etcd/etcdctl");
    let cluster = inventory_field(&inventory, "/cluster");
    let (mut engine, mut peer) = (Vec::new(), Vec::new());
    let mut size = 0;
    for k in 0..RUNS {
        let t = Instant::now();
        ok(
            runbook()
                .args(["apply", "etcd-backup", "-i"])
                .arg(&inventory)
                .arg("--set")
                .arg(format!("dir={}", work.path().join("engine").display()))
                .arg("--set")
                .arg(format!(
                    "copy_to={}",
                    work.path().join("engine-copy").display()
                ))
                .args(["--set", "keep=3", "--yes", "--run-dir"])
                .arg(work.path().join(format!("run-{k}"))),
            "runbook apply etcd-backup",
        );
        engine.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        ok(
            Command::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/benches/peer/backup.sh"
            ))
            .arg(&ssh_config)
            .arg(&address)
            .arg(&etcdctl)
            .arg(&etcdutl)
            .arg(work.path().join("peer"))
            .arg(work.path().join("peer-copy"))
            .arg("3")
            .arg(&cluster),
            "peer backup",
        );
        peer.push(t.elapsed().as_secs_f64());
        size = std::fs::read_dir(work.path().join("peer"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
            .map(|e| e.metadata().unwrap().len())
            .max()
            .unwrap_or(0);
    }
    let (e, p) = (median(engine.clone()), median(peer.clone()));
    println!("snapshot: {:.1} MB", size as f64 / 1e6);
    println!("runbook apply etcd-backup: median {e:.2} s ({engine:.2?})");
    println!("the shell script:           median {p:.2} s ({peer:.2?})");
    println!("ratio runbook / script: {:.2}", e / p);
    ok(runbook().args(["lab", "down", "--name", LAB]), "lab down");
}
