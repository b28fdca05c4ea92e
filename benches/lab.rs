//! `cargo bench --bench lab` (Linux, root): the engine's own cost on real hosts.
//! Brings up a 3-node lab (etcd 3.5), then measures
//!   - a no-op command's round trip on a warm SSH master (30 chained `true` steps),
//!   - the gap between one step's end and the start of the step that needs it,
//!   - the wall time of a full 3-member restore (`runbook apply plans/etcd-restore-ha.yaml`),
//!     from an outage that wiped every member's data, several times.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const LAB: &str = "bench";
const CHAIN: usize = 30;
const RESTORES: usize = 5;

fn runbook() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1");
    c
}

fn ok(c: &mut Command, what: &str) -> Vec<u8> {
    let out = c.stdin(Stdio::null()).output().expect(what);
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn in_node(node: &str, script: &str) -> Vec<u8> {
    ok(
        runbook().args(["lab", "exec", "--name", LAB, node, "--", "sh", "-c", script]),
        script,
    )
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

fn main() {
    let work = tempfile::tempdir().unwrap();
    let inventory = PathBuf::from(
        String::from_utf8(ok(
            runbook().args(["lab", "up", "--name", LAB, "--etcd", "3.5"]),
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

    // 3: full restores from an outage.
    let mut walls = Vec::new();
    for k in 0..RESTORES {
        in_node(
            "cp1",
            "for i in $(seq 1 200); do echo \"put /bench/k$i v$i\"; done | (echo; cat; echo; echo) | etcdctl txn >/dev/null 2>&1 || true",
        );
        in_node(
            "cp1",
            "etcdctl snapshot save /var/lib/runbook/bench.db >/dev/null",
        );
        let snap = work.path().join(format!("bench-{k}.db"));
        std::fs::write(&snap, in_node("cp1", "cat /var/lib/runbook/bench.db")).unwrap();
        for n in ["cp1", "cp2", "cp3"] {
            in_node(n, "rm -rf /var/lib/etcd/* && pkill -9 -x etcd; true");
        }
        let t = Instant::now();
        ok(
            runbook()
                .args(["apply", "plans/etcd-restore-ha.yaml", "-i"])
                .arg(&inventory)
                .arg("--set")
                .arg(format!("snapshot={}", snap.display()))
                .arg(format!("--set=token=bench-{k}"))
                .arg("--yes")
                .arg("--run-dir")
                .arg(work.path().join(format!("restore-{k}"))),
            "restore apply",
        );
        walls.push(t.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "3-member restore (35 steps, whole `runbook apply` process): median {:.2} s, min {:.2} s, max {:.2} s over {RESTORES} runs",
        median(walls.clone()),
        walls.iter().copied().fold(f64::MAX, f64::min),
        walls.iter().copied().fold(0.0, f64::max)
    );
    ok(runbook().args(["lab", "down", "--name", LAB]), "lab down");
}
