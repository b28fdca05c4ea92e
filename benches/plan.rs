//! `cargo bench --bench plan`: compile + lint + render the HA restore for a 7-member
//! cluster, in process, and report the time per plan (min and median).

use std::time::{Duration, Instant};

use runbook::compile::ParamValue;
use runbook::graph::render::{self, PlanFormat};
use runbook::pipeline::compile_files;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let base = std::fs::read_to_string(root.join("examples/kubeadm-ha-3.yaml")).expect("example");
    let head = base.split("nodes:").next().expect("nodes");
    let mut inv = format!("{head}nodes:\n");
    for i in 1..=7 {
        inv.push_str(&format!(
            "  - {{ name: cp{i}, address: 10.0.0.{}, roles: [etcd, control-plane] }}\n",
            10 + i
        ));
    }
    let inv_path = dir.path().join("ha-7.yaml");
    std::fs::write(&inv_path, inv).expect("write");
    let plan = root.join("plans/etcd-restore-ha.yaml");
    let sets = [ParamValue {
        name: "snapshot".into(),
        value: "/backups/etcd.db".into(),
        origin: "bench".into(),
    }];
    let mut times: Vec<Duration> = Vec::new();
    let mut steps = 0;
    for _ in 0..300 {
        let t = Instant::now();
        let compiled = compile_files(&plan, &inv_path, &sets).expect("readable");
        let g = compiled.graph.expect("compiles");
        let text = render::render(&g, PlanFormat::Text);
        let json = render::render(&g, PlanFormat::Json);
        std::hint::black_box((text, json));
        times.push(t.elapsed());
        steps = g.runbook.instances.len();
    }
    times.sort();
    println!(
        "plan etcd-restore-ha, 7 members ({steps} step instances): min {:?}, median {:?}, max {:?} over {} runs",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
    println!(
        "inventory for the whole-process figure: {}",
        inv_path.display()
    );
    // Keep the directory for a `time runbook plan ...` run by hand when asked.
    if std::env::var_os("RUNBOOK_BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }
}
