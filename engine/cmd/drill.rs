//! `runbook lab drill`: a restore drill end to end in the local lab — bring it up, write keys,
//! take a snapshot, write more, destroy every member's data, restore with the bundled plan,
//! and prove the cluster is the snapshot again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use runbook_lab as lab;

use super::{Done, EXIT_OK, Failure};
use crate::compile::{ParamValue, RunValues};
use crate::execute::gate::Approval;
use crate::execute::journal::RunStatus;
use crate::execute::report::OutputMode;
use crate::execute::rundir::RunDir;
use crate::execute::session::{self, Hosts, Session};
use crate::execute::walk::Limits;
use crate::{pipeline, report};

pub struct Drill {
    pub name: String,
    pub spec: lab::Spec,
    pub keys: usize,
    pub keep: bool,
    /// A snapshot to restore into the lab with the drill plan, instead of the lab's own.
    pub snapshot: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
}

pub fn run(d: &Drill) -> Done {
    if let Some(snapshot) = &d.snapshot {
        return drill_snapshot(d, snapshot);
    }
    let started = Instant::now();
    let plan = bundled_plan(if d.spec.nodes == 1 {
        "etcd-restore-single.yaml"
    } else {
        "etcd-restore-ha.yaml"
    })?;
    eprintln!(
        "drill: bringing up lab {:?} ({} nodes)",
        d.name, d.spec.nodes
    );
    let inventory = lab::up(&d.name, &d.spec)?;
    let nodes: Vec<String> = (1..=d.spec.nodes).map(|i| format!("cp{i}")).collect();
    let drilled = drill(d, &plan, &inventory, &nodes, started);
    leave_lab(d, &inventory);
    match drilled {
        Ok(summary) => super::print_out(&summary).map(|()| EXIT_OK),
        Err(e) => Err(Failure::invalid(format!("restore drill FAILED: {e}"))),
    }
}

fn drill(
    d: &Drill,
    plan: &Path,
    inventory: &Path,
    nodes: &[String],
    started: Instant,
) -> Result<String, String> {
    let before = write_keys(&d.name, "/drill/", d.keys, "before")?;
    eprintln!("drill: wrote {} keys under /drill/", before.len());
    let namespaces = kubectl(&d.name, &["get", "namespaces", "-o", "name"])?;
    let snapshot = take_snapshot(&d.name, inventory)?;
    let snapshot_revision = crate::snapshot::status::status(&snapshot)
        .map_err(|e| format!("the drill's own snapshot is unusable: {e}"))?
        .revision;
    eprintln!(
        "drill: snapshot (revision {snapshot_revision}) saved on cp1, copied to {}",
        snapshot.display()
    );
    write_keys(&d.name, "/later/", d.keys / 10 + 1, "after")?;
    kubectl(&d.name, &["create", "namespace", "drill-later"])?;
    eprintln!(
        "drill: wrote keys under /later/ and created namespace drill-later after the snapshot (the restore must drop them)"
    );
    for n in nodes {
        sh(
            &d.name,
            n,
            "rm -rf /var/lib/etcd/* && pkill -9 -x etcd; true",
        )?;
    }
    eprintln!(
        "drill: outage: every member's data dir wiped and etcd killed; kubelet restarts it empty"
    );

    let restore_started = Instant::now();
    let applied = apply_in_lab(plan, inventory, &snapshot, &drill_run_dir(d))?;
    let restore = restore_started.elapsed();
    if applied.status != RunStatus::Succeeded {
        return Err(format!(
            "the restore {} ({} of {} steps succeeded; run directory {})",
            applied.status.word(),
            applied.succeeded,
            applied.steps,
            applied
                .run_dir
                .as_deref()
                .unwrap_or(Path::new("?"))
                .display()
        ));
    }

    let mut report = Vec::new();
    for n in nodes {
        let got = read_keys(&d.name, n, "/drill/")?;
        if got != before {
            return Err(format!(
                "{n} serves {} keys under /drill/, the snapshot had {} (or values differ)",
                got.len(),
                before.len()
            ));
        }
        if !read_keys(&d.name, n, "/later/")?.is_empty() {
            return Err(format!("{n} still serves keys written after the snapshot"));
        }
    }
    report.push(format!(
        "all {} snapshot keys back with their values on every member; later keys gone",
        before.len()
    ));
    let members = etcdctl(&d.name, "cp1", &["member", "list", "-w", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&members).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names != nodes {
        return Err(format!(
            "member list {names:?} differs from the inventory {nodes:?}"
        ));
    }
    report.push(format!(
        "member list equals the inventory: {}",
        names.join(", ")
    ));
    // etcdctl 3.4 prints health to stderr, 3.5 to stdout.
    let health = sh(&d.name, "cp1", "etcdctl endpoint health --cluster 2>&1")?;
    report.push(format!(
        "{} of {} members healthy",
        health.matches("is healthy").count(),
        nodes.len()
    ));
    // At one revision every member has applied: kube-apiserver is writing again, so each
    // member's latest revision moves from moment to moment.
    let statuses = etcdctl(
        &d.name,
        "cp1",
        &["endpoint", "status", "--cluster", "-w", "json"],
    )?;
    let sv: serde_json::Value = serde_json::from_str(&statuses).map_err(|e| e.to_string())?;
    let revision = sv
        .as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(|s| s["Status"]["header"]["revision"].as_u64())
                .min()
        })
        .ok_or_else(|| format!("no revisions in `etcdctl endpoint status`: {statuses}"))?;
    let hashes = etcdctl(
        &d.name,
        "cp1",
        &[
            "endpoint",
            "hashkv",
            "--cluster",
            &format!("--rev={revision}"),
            "-w",
            "json",
        ],
    )?;
    let hv: serde_json::Value = serde_json::from_str(&hashes).map_err(|e| e.to_string())?;
    let hs: Vec<u64> = hv
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h["HashKV"]["hash"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    if hs.len() != nodes.len() || hs.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("HashKV differs between members: {hs:?}"));
    }
    report.push(format!(
        "HashKV equal on every member at revision {revision} ({})",
        hs[0]
    ));
    // etcd 3.5.10+ and 3.6 restore with --bump-revision; the lab's 3.4.23 and 3.5.1 cannot.
    let bumps = matches!(d.spec.flavor, lab::Flavor::V3_5 | lab::Flavor::V3_6);
    report.push(bump_finding(&d.name, snapshot_revision, bumps)?);
    for n in nodes {
        sh(
            &d.name,
            n,
            "curl -fsS --max-time 3 --cacert /etc/kubernetes/pki/ca.crt https://127.0.0.1:6443/readyz >/dev/null",
        )
        .map_err(|e| format!("kube-apiserver on {n} is not ready: {e}"))?;
    }
    let restored = kubectl(&d.name, &["get", "namespaces", "-o", "name"])?;
    if restored != namespaces {
        return Err(format!(
            "kube-apiserver lists the namespaces {:?}, the snapshot held {:?}",
            restored.lines().collect::<Vec<_>>(),
            namespaces.lines().collect::<Vec<_>>()
        ));
    }
    // Secrets are stored encrypted (aescbc): reading one proves the key still matches.
    kubectl(&d.name, &["get", "secrets", "-A", "-o", "name"])?;
    kubectl(
        &d.name,
        &[
            "create",
            "configmap",
            "drill-after-restore",
            "-n",
            "default",
        ],
    )?;
    report.push(
        "kube-apiserver ready on every node: the snapshot's namespaces (drill-later gone), encrypted Secrets readable, a write accepted".into(),
    );
    let mut out = String::from("\nRestore drill: PASSED\n");
    for line in &report {
        out.push_str(&format!("  ok  {line}\n"));
    }
    out.push_str(&format!(
        "  restore (runbook apply) took {:.1}s; whole drill {:.1}s\n",
        restore.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
    Ok(out)
}

/// What the restore did to the store's revision: with `--bump-revision` (etcd 3.5.10+, 3.6)
/// it is past the snapshot's by the bump and a watch from before the restore is refused as
/// compacted, so every informer relists; without it (older etcd) it is the snapshot's.
fn bump_finding(lab: &str, snapshot_revision: i64, expected: bool) -> Result<String, String> {
    let status = etcdctl(lab, "cp1", &["endpoint", "status", "-w", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&status).map_err(|e| e.to_string())?;
    let revision = v[0]["Status"]["header"]["revision"]
        .as_i64()
        .ok_or_else(|| format!("no revision in `etcdctl endpoint status`: {status}"))?;
    let bump = crate::action::etcd_restore::DEFAULT_BUMP as i64;
    if revision < snapshot_revision + bump {
        if expected {
            return Err(format!(
                "revision {revision} after restoring a snapshot at {snapshot_revision}: the restore did not bump it by {bump}"
            ));
        }
        return Ok(format!(
            "revision {revision} (snapshot {snapshot_revision}): this etcd restores without --bump-revision"
        ));
    }
    let watch = sh(
        lab,
        "cp1",
        &format!(
            "timeout 10 etcdctl watch /registry --prefix --rev={snapshot_revision} 2>&1; true"
        ),
    )?;
    if !watch.contains("required revision has been compacted") {
        return Err(format!(
            "a watch from the snapshot's revision {snapshot_revision} was not refused as compacted: {}",
            watch.trim()
        ));
    }
    Ok(format!(
        "revision bumped: {revision} >= snapshot {snapshot_revision} + bump {bump}; a watch from before the restore is refused as compacted"
    ))
}

/// kubectl as the lab admin; stdout.
fn kubectl(lab: &str, args: &[&str]) -> Result<String, String> {
    let mut cmd = lab::kubectl(lab).map_err(|e| e.to_string())?;
    let out = cmd
        .arg("--request-timeout=20s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run kubectl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`kubectl {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A given snapshot restored into a fresh lab (scratch hosts) with etcd-restore-drill.yaml;
/// the report is the run's own (`runbook report`), printed as Markdown.
fn drill_snapshot(d: &Drill, snapshot: &Path) -> Done {
    if !snapshot.is_file() {
        return Err(Failure::usage(
            "cannot drill",
            &format!("{}: no such file", snapshot.display()),
            Some(
                "pass the snapshot file written by `runbook snapshot save` or `etcdctl snapshot save`",
            ),
        ));
    }
    let plan = bundled_plan("etcd-restore-drill.yaml")?;
    eprintln!(
        "drill: bringing up scratch lab {:?} ({} nodes)",
        d.name, d.spec.nodes
    );
    let inventory = lab::up(&d.name, &d.spec)?;
    let run_dir = drill_run_dir(d);
    let applied = apply_in_lab(&plan, &inventory, snapshot, &run_dir);
    // The run's own report, whatever happened, as long as the run left a journal.
    let reported = RunDir::find(&run_dir.display().to_string())
        .and_then(|dir| report::build(&dir))
        .map(|r| {
            let printed = super::print_out(&report::markdown(&r)).is_ok();
            r.passed && printed
        });
    leave_lab(d, &inventory);
    eprintln!("drill: run directory {}", run_dir.display());
    match (applied, reported) {
        (Ok(o), Ok(true)) if o.status == RunStatus::Succeeded => Ok(EXIT_OK),
        (Ok(o), _) => Err(Failure::invalid(format!(
            "restore drill FAILED: the run {} ({} of {} steps succeeded)",
            o.status.word(),
            o.succeeded,
            o.steps
        ))),
        (Err(e), _) => Err(Failure::invalid(format!("restore drill FAILED: {e}"))),
    }
}

/// The plan applied to the lab's inventory with `snapshot=FILE`, through the library's run
/// session, as `runbook apply ... --yes` would. The lab is scratch by construction (and the
/// drill plan's guard checks it): its gates are approved. The run's summary goes to stderr:
/// the drill's own report is its output.
fn apply_in_lab(
    plan: &Path,
    inventory: &Path,
    snapshot: &Path,
    run_dir: &Path,
) -> Result<session::Outcome, String> {
    let sets = vec![ParamValue {
        name: "snapshot".into(),
        value: snapshot.display().to_string(),
        origin: "the drill's snapshot".into(),
    }];
    let plan = crate::plan::bundled::reference(plan);
    let inventory = std::path::absolute(inventory).unwrap_or_else(|_| inventory.to_path_buf());
    let compiled = pipeline::compile_files(&plan, &inventory, &sets)
        .map_err(|e| format!("cannot read {}: {}", e.path, e.error))?;
    eprint!("{}", compiled.diagnostics.render(&compiled.sources));
    let reviewed = compiled.graph.ok_or_else(|| {
        format!(
            "{} does not compile with the lab's inventory",
            plan.display()
        )
    })?;
    let values = RunValues::now(&crate::execute::rundir::new_run_id());
    let graph = pipeline::for_run(reviewed, &plan, &inventory, &sets, &values)?;
    let run = session::record_run(
        &graph,
        plan,
        inventory,
        &sets,
        &values,
        Some(run_dir),
        false,
    )
    .map_err(|p| p.to_string())?;
    let outcome = session::run(Session {
        graph,
        run: Some(run),
        state: None,
        approval: Approval::Yes,
        output: OutputMode::Text,
        limits: Limits {
            parallel: 16,
            per_host: 8,
        },
        hosts: Hosts::Ssh,
        resumed: false,
    })
    .map_err(|p| p.to_string())?;
    if let Some(summary) = &outcome.summary {
        eprint!("{summary}");
    }
    Ok(outcome)
}

/// A new run directory for a drill: given, or named after the lab and the time.
fn drill_run_dir(d: &Drill) -> PathBuf {
    d.run_dir.clone().unwrap_or_else(|| {
        let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        PathBuf::from(".runbook/runs").join(format!("drill-{}-{stamp}", d.name))
    })
}

/// Removes the lab, or says how to when `--keep` asked for it to stay.
fn leave_lab(d: &Drill, inventory: &Path) {
    if d.keep {
        eprintln!(
            "drill: lab {:?} kept; inventory {}; `runbook lab down --name {}` removes it",
            d.name,
            inventory.display(),
            d.name
        );
    } else if let Err(e) = lab::down(&d.name) {
        eprintln!("warning: the lab was not fully removed:");
        Failure::from(e).report();
    }
}

/// A bundled plan, compiled into this binary: the drill needs no checkout.
fn bundled_plan(file: &str) -> Result<PathBuf, Failure> {
    let arg = format!("{}{file}", crate::plan::bundled::PREFIX);
    match crate::plan::bundled::lookup(Path::new(&arg)) {
        Some(_) => Ok(PathBuf::from(arg)),
        None => Err(Failure::usage(
            &format!("cannot find the bundled plan {file}"),
            &"this runbook was built without it",
            Some("`runbook plans` lists the plans this binary carries"),
        )),
    }
}

/// Runs a command in a lab node (through `runbook lab exec`), returning its stdout.
fn in_node(lab: &str, node: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut c = Command::new(exe);
    c.args(["lab", "exec", "--name", lab, node, "--"])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "`{}` on {node}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

fn sh(lab: &str, node: &str, script: &str) -> Result<String, String> {
    in_node(lab, node, &["sh", "-c", script], None).map(|o| String::from_utf8_lossy(&o).into())
}

fn etcdctl(lab: &str, node: &str, args: &[&str]) -> Result<String, String> {
    let mut a = vec!["etcdctl"];
    a.extend_from_slice(args);
    in_node(lab, node, &a, None).map(|o| String::from_utf8_lossy(&o).into())
}

/// Keys in transactions of 100 puts (etcd allows 128 operations per transaction).
fn write_keys(
    lab: &str,
    prefix: &str,
    count: usize,
    tag: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut all = BTreeMap::new();
    let ids: Vec<usize> = (0..count).collect();
    for chunk in ids.chunks(100) {
        let mut txn = String::from("\n");
        for i in chunk {
            let (k, v) = (format!("{prefix}{i:05}"), format!("{tag}-{i}"));
            txn.push_str(&format!("put {k} {v}\n"));
            all.insert(k, v);
        }
        txn.push_str("\n\n");
        in_node(lab, "cp1", &["etcdctl", "txn"], Some(txn.as_bytes()))?;
    }
    Ok(all)
}

fn read_keys(lab: &str, node: &str, prefix: &str) -> Result<BTreeMap<String, String>, String> {
    let out = etcdctl(lab, node, &["get", "--prefix", prefix])?;
    let lines: Vec<&str> = out.lines().collect();
    Ok(lines
        .chunks(2)
        .map(|kv| {
            (
                kv[0].to_string(),
                kv.get(1).copied().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// `etcdctl snapshot save` on cp1, copied to the operator's side of the lab.
fn take_snapshot(lab: &str, inventory: &Path) -> Result<PathBuf, String> {
    let remote = "/var/lib/runbook/drill-snapshot.db";
    sh(
        lab,
        "cp1",
        &format!("etcdctl snapshot save {remote} >/dev/null"),
    )?;
    let bytes = in_node(lab, "cp1", &["cat", remote], None)?;
    sh(lab, "cp1", &format!("rm -f {remote}"))?;
    let dir = inventory.parent().unwrap_or(Path::new(".")).join("drill");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let path = dir.join(format!("snapshot-{stamp}.db"));
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
