//! `cargo bench --bench lab` (Linux, root): the engine's own cost on real hosts.
//! Brings up a 3-node lab (etcd 3.6, kubelet's 30 s stop grace), then measures
//!   - a no-op command's round trip on a warm SSH master (30 chained `true` steps),
//!   - the gap between one step's end and the start of the step that needs it,
//!   - the wall time of a full 3-member restore (`runbook apply plans/etcd-restore-ha.yaml`),
//!     from an outage that wiped every member's data, several times, and its slowest
//!     `wait-etcd-gone`; once as bundled (etcd's leader parked last) and once with every
//!     member parked at once (`leader_last: false`, the order before),
//!   - the same restore by a hand-written parallel shell script (benches/peer/restore-ha.sh),
//!     the peer the engine is compared with.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{ok, runbook};
use std::time::{Duration, Instant, SystemTime};

const LAB: &str = "bench";
const CHAIN: usize = 30;
const RESTORES: usize = 5;

fn in_node(node: &str, script: &str) -> Vec<u8> {
    common::in_node(LAB, node, script)
}

fn time(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).expect("journal times are RFC 3339")
}

fn events(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Keys, a snapshot on cp1 copied here, then every member's data wiped and etcd killed.
fn outage(work: &Path, k: usize, by_hand: bool) -> PathBuf {
    in_node(
        "cp1",
        "for i in $(seq 1 100); do echo \"put /bench/k$i v$i\"; done | (echo; cat; echo; echo) | etcdctl txn >/dev/null",
    );
    in_node(
        "cp1",
        "etcdctl snapshot save /var/lib/runbook/bench.db >/dev/null",
    );
    let snap = work.join(format!("bench-{k}-{by_hand}.db"));
    std::fs::write(&snap, in_node("cp1", "cat /var/lib/runbook/bench.db")).unwrap();
    for n in ["cp1", "cp2", "cp3"] {
        in_node(n, "rm -rf /var/lib/etcd/* && pkill -9 -x etcd; true");
    }
    snap
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

    // 1 and 2: a chain of no-op steps on one node.
    let mut plan = String::from("name: chain\nsteps:\n");
    for i in 0..CHAIN {
        plan.push_str(&format!("  - id: s{i}\n    on: cp1\n    run: 'true'\n"));
        if i > 0 {
            plan.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    let plan_path = work.path().join("chain.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    let chain_run = work.path().join("chain-run");
    ok(
        runbook()
            .arg("apply")
            .arg(&plan_path)
            .arg("-i")
            .arg(&inventory)
            .arg("--run-dir")
            .arg(&chain_run),
        "chain apply",
    );
    let ev = events(&chain_run);
    let (mut round_trips, mut gaps) = (Vec::new(), Vec::new());
    let mut last_end: Option<SystemTime> = None;
    for e in &ev {
        match e["event"].as_str() {
            Some("step_started") => {
                if let Some(end) = last_end {
                    let t = time(e["time"].as_str().unwrap());
                    gaps.push(t.duration_since(end).unwrap_or_default().as_secs_f64() * 1000.0);
                }
            }
            Some("step_finished") => {
                round_trips.push(e["duration_ms"].as_f64().unwrap());
                last_end = Some(time(e["time"].as_str().unwrap()));
            }
            _ => {}
        }
    }
    println!(
        "no-op step on a warm SSH master: median {:.1} ms, min {:.1} ms ({} steps)",
        median(round_trips.clone()),
        round_trips.iter().copied().fold(f64::MAX, f64::min),
        round_trips.len()
    );
    println!(
        "end of a step -> start of the step that needs it: median {:.2} ms, max {:.2} ms (journal ms resolution)",
        median(gaps.clone()),
        gaps.iter().copied().fold(0.0, f64::max)
    );

    // 3: full restores from an outage, by runbook and by the hand-written peer, alternating.
    let field = |pointer: &str| common::inventory_field(&inventory, pointer);
    let (ssh_config, etcdutl, etcdctl) = (
        field("/ssh/config_file"),
        field("/etcd/etcdutl"),
        field("/etcd/etcdctl"),
    );
    let nodes: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "{}={}",
                field(&format!("/nodes/{i}/name")),
                field(&format!("/nodes/{i}/address"))
            )
        })
        .collect();
    // The bundled plan, and the same plan parking every member at once (the order before).
    let bundled = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plans/etcd-restore-ha.yaml");
    let at_once = work.path().join("etcd-restore-ha-at-once.yaml");
    let text = std::fs::read_to_string(&bundled).unwrap();
    let parked = "action: etcd.stop\n    with: { parking_dir: \"{{ params.parking_dir }}\" }\n    needs: [wait-apiserver-gone]";
    assert!(
        text.contains(parked),
        "the stop-etcd step of the bundled plan changed"
    );
    std::fs::write(
        &at_once,
        text.replace(
            parked,
            &parked.replace(
                "parking_dir }}\" }",
                "parking_dir }}\", leader_last: false }",
            ),
        ),
    )
    .unwrap();
    let variants: [(&str, Option<&Path>); 3] = [
        ("runbook apply (leader parked last)", Some(&bundled)),
        (
            "runbook apply (every member parked at once)",
            Some(&at_once),
        ),
        ("the hand-written parallel script", None),
    ];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut gone: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for k in 0..RESTORES {
        for (v, (_, plan)) in variants.iter().enumerate() {
            let snap = outage(work.path(), k, plan.is_none());
            let t = Instant::now();
            match plan {
                None => {
                    ok(
                        Command::new(concat!(
                            env!("CARGO_MANIFEST_DIR"),
                            "/benches/peer/restore-ha.sh"
                        ))
                        .arg(&ssh_config)
                        .arg(&snap)
                        .arg(format!("peer-{k}"))
                        .arg(&etcdutl)
                        .arg(&etcdctl)
                        .args(&nodes),
                        "peer restore",
                    );
                }
                Some(plan) => {
                    let run = work.path().join(format!("restore-{k}-{v}"));
                    ok(
                        runbook()
                            .arg("apply")
                            .arg(plan)
                            .arg("-i")
                            .arg(&inventory)
                            .arg("--set")
                            .arg(format!("snapshot={}", snap.display()))
                            .arg(format!("--set=token=bench-{k}-{v}"))
                            .arg("--yes")
                            .arg("--run-dir")
                            .arg(&run),
                        "restore apply",
                    );
                    let slowest = events(&run)
                        .iter()
                        .filter(|e| {
                            e["event"] == "step_finished"
                                && e["id"]
                                    .as_str()
                                    .is_some_and(|i| i.starts_with("wait-etcd-gone@"))
                        })
                        .filter_map(|e| e["duration_ms"].as_f64())
                        .fold(0.0, f64::max);
                    gone[v].push(slowest / 1000.0);
                }
            }
            wall[v].push(t.elapsed().as_secs_f64());
            // Each must leave a working cluster with the snapshot's data.
            let got = in_node("cp3", "etcdctl get /bench/k1 --print-value-only");
            assert_eq!(String::from_utf8_lossy(&got).trim(), "v1");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let stats = |v: &[f64]| {
        format!(
            "median {:.2} s, min {:.2} s, max {:.2} s",
            median(v.to_vec()),
            v.iter().copied().fold(f64::MAX, f64::min),
            v.iter().copied().fold(0.0, f64::max)
        )
    };
    let peer = median(wall[2].clone());
    for (v, (who, plan)) in variants.iter().enumerate() {
        println!(
            "3-member restore by {who}, {RESTORES} runs: {}",
            stats(&wall[v])
        );
        if plan.is_some() {
            println!("    slowest wait-etcd-gone: {}", stats(&gone[v]));
            println!(
                "    ratio to the script: {:.2}",
                median(wall[v].clone()) / peer
            );
        }
    }
    ok(runbook().args(["lab", "down", "--name", LAB]), "lab down");
}
