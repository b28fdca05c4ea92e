//! `runbook report RUN`: what a drill or an outage run did, for the people who were not there —
//! timeline, per-step durations, RTO, snapshot age (RPO), snapshot figures, verification,
//! pass or fail — as Markdown, JSON, or JUnit for CI dashboards.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use super::{EXIT_INVALID, EXIT_OK, usage_error};
use crate::cli::ReportFormat;
use crate::execute::journal::{self, Event, Finish, Record, RunStatus};
use crate::execute::rundir::RunDir;
use crate::snapshot::status::status;

#[derive(Serialize)]
struct StepLine {
    id: String,
    step: String,
    node: String,
    action: String,
    status: String,
    /// Seconds from the run's first start to this step's start.
    started_at_s: Option<f64>,
    duration_s: Option<f64>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    run_id: String,
    plan: String,
    cluster: String,
    fingerprint: String,
    passed: bool,
    outcome: String,
    started: Option<String>,
    wall_s: Option<f64>,
    /// First destructive step started -> cluster verified (or the run's end).
    rto_s: Option<f64>,
    /// Age of the snapshot when the first destructive step started.
    rpo_s: Option<f64>,
    snapshot: Option<serde_json::Value>,
    verification: Vec<String>,
    steps: Vec<StepLine>,
}

fn time(r: &Record) -> Option<SystemTime> {
    humantime::parse_rfc3339(&r.time).ok()
}

fn secs(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

pub fn run(run: &str, format: ReportFormat) -> u8 {
    let dir = match RunDir::find(run) {
        Ok(d) => d,
        Err(e) => return usage_error("cannot report on the run", &e, None),
    };
    let report = match build(&dir) {
        Ok(r) => r,
        Err(e) => return usage_error("cannot report on the run", &e, None),
    };
    let text = match format {
        ReportFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        ReportFormat::Markdown => markdown(&report),
        ReportFormat::Junit => junit(&report),
    };
    if let Err(code) = super::print_out(&text) {
        return code;
    }
    if report.passed { EXIT_OK } else { EXIT_INVALID }
}

fn build(dir: &RunDir) -> Result<Report, String> {
    let info = dir.info()?;
    let plan = dir.recorded_plan()?;
    let records = journal::read(&dir.journal())?;
    let first = records.iter().find_map(time);
    let last = records.iter().rev().find_map(time);
    let mut started = std::collections::HashMap::new();
    let mut lines = Vec::new();
    for s in &plan.steps {
        lines.push(StepLine {
            id: s.id.clone(),
            step: s.step.clone(),
            node: s.node.clone().unwrap_or_else(|| "local".into()),
            action: s.action.clone(),
            status: "not run".into(),
            started_at_s: None,
            duration_s: None,
            error: None,
        });
    }
    let index = |id: &str| plan.steps.iter().position(|s| s.id == id);
    let mut first_destructive: Option<SystemTime> = None;
    let mut verified: Option<SystemTime> = None;
    let mut outcome = "incomplete (no end recorded)".to_string();
    for r in &records {
        match &r.event {
            Event::StepStarted { id, .. } => {
                if let (Some(i), Some(t)) = (index(id), time(r)) {
                    started.entry(i).or_insert(t);
                    if lines[i].started_at_s.is_none() {
                        lines[i].started_at_s = first.map(|f| secs(f, t));
                    }
                    if plan.steps[i].destructive && first_destructive.is_none() {
                        first_destructive = Some(t);
                    }
                }
            }
            Event::StepFinished {
                id,
                status,
                duration_ms,
                error,
                ..
            } => {
                if let Some(i) = index(id) {
                    lines[i].status = match status {
                        Finish::Succeeded => "succeeded",
                        Finish::Failed => "failed",
                        Finish::TimedOut => "timed out",
                    }
                    .into();
                    lines[i].duration_s =
                        Some(lines[i].duration_s.unwrap_or(0.0) + *duration_ms as f64 / 1000.0);
                    lines[i].error = error.clone();
                    if *status == Finish::Succeeded && plan.steps[i].action == "etcd.verify_cluster"
                    {
                        verified = time(r);
                    }
                }
            }
            Event::StepSkipped { id, reason } => {
                if let Some(i) = index(id) {
                    lines[i].status = format!("skipped ({reason})");
                }
            }
            Event::Decision { id, decision } => {
                if let Some(i) = index(id) {
                    lines[i].status = format!("operator: {decision:?}");
                }
            }
            Event::RunFinished { status, .. } => {
                outcome = match status {
                    RunStatus::Succeeded => "succeeded",
                    RunStatus::Failed => "failed",
                    RunStatus::Interrupted => "interrupted",
                }
                .into();
            }
            _ => {}
        }
    }
    let passed = outcome == "succeeded";
    let rto_s = first_destructive.map(|f| secs(f, verified.or(last).unwrap_or(f)));
    // The snapshot the run restored (or saved): its figures and its age when changes began.
    let snap_path = info
        .params
        .iter()
        .find(|p| p.name == "snapshot")
        .map(|p| p.value.clone());
    let mut snapshot = None;
    let mut rpo_s = None;
    if let Some(p) = &snap_path {
        let path = Path::new(p);
        if let Ok(st) = status(path) {
            snapshot = serde_json::to_value(&st).ok();
        }
        if let (Ok(meta), Some(start)) = (std::fs::metadata(path), first_destructive.or(first))
            && let Ok(mtime) = meta.modified()
        {
            rpo_s = Some(secs(mtime, start));
        }
    }
    let verification = plan
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.action.as_str(),
                "etcd.verify_cluster" | "etcd.preflight" | "snapshot.not_source"
            )
        })
        .filter_map(|s| std::fs::read_to_string(dir.log(&s.id)).ok())
        .flat_map(|log| {
            log.lines()
                .filter(|l| {
                    !l.starts_with("==") && !l.starts_with("# runbook:") && !l.trim().is_empty()
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(Report {
        run_id: info.run_id,
        plan: plan.plan,
        cluster: plan.cluster,
        fingerprint: plan.fingerprint,
        passed,
        outcome,
        started: records.first().map(|r| r.time.clone()),
        wall_s: first.zip(last).map(|(a, b)| secs(a, b)),
        rto_s,
        rpo_s,
        snapshot,
        verification,
        steps: lines,
    })
}

fn dur(s: Option<f64>) -> String {
    s.map_or("-".into(), |v| format!("{v:.2}s"))
}

fn markdown(r: &Report) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "# {} on {}: {}\n\n",
        r.plan,
        r.cluster,
        if r.passed { "PASSED" } else { "FAILED" }
    ));
    o.push_str(&format!(
        "| run | outcome | started | wall time | RTO | snapshot age (RPO) |\n|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} |\n\n",
        r.run_id,
        r.outcome,
        r.started.as_deref().unwrap_or("-"),
        dur(r.wall_s),
        dur(r.rto_s),
        dur(r.rpo_s)
    ));
    o.push_str("RTO runs from the first destructive step to the cluster's verification (or the run's end).\n\n");
    o.push_str(&format!("Plan fingerprint: `{}`\n\n", r.fingerprint));
    if let Some(s) = &r.snapshot {
        o.push_str(&format!(
            "## Snapshot\n\nsha256 trailer {}, revision {}, {} keys ({} live), hash {}, {} bytes\n\n",
            s["sha256"].as_str().unwrap_or("?"),
            s["revision"],
            s["total_keys"],
            s["live_keys_36"],
            s["hash"].as_str().unwrap_or("?"),
            s["file_size"]
        ));
    }
    if !r.verification.is_empty() {
        o.push_str("## Verification\n\n");
        for v in &r.verification {
            o.push_str(&format!("- {v}\n"));
        }
        o.push('\n');
    }
    o.push_str(
        "## Timeline\n\n| step | node | status | start | duration |\n|---|---|---|---|---|\n",
    );
    for s in &r.steps {
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            s.step,
            s.node,
            s.status,
            s.started_at_s.map_or("-".into(), |v| format!("+{v:.2}s")),
            dur(s.duration_s)
        ));
    }
    o
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn junit(r: &Report) -> String {
    let failures = r
        .steps
        .iter()
        .filter(|s| s.status == "failed" || s.status == "timed out")
        .count();
    let skipped = r
        .steps
        .iter()
        .filter(|s| s.status.starts_with("skipped") || s.status == "not run")
        .count();
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    o.push_str(&format!(
        "<testsuites name=\"runbook\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        r.steps.len(),
        r.wall_s.unwrap_or(0.0)
    ));
    o.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\" timestamp=\"{}\">\n",
        xml(&format!("{} on {}", r.plan, r.cluster)),
        r.steps.len(),
        r.wall_s.unwrap_or(0.0),
        xml(r.started.as_deref().unwrap_or(""))
    ));
    o.push_str(&format!(
        "    <properties><property name=\"run_id\" value=\"{}\"/><property name=\"fingerprint\" value=\"{}\"/><property name=\"rto_s\" value=\"{}\"/><property name=\"rpo_s\" value=\"{}\"/></properties>\n",
        xml(&r.run_id),
        xml(&r.fingerprint),
        r.rto_s.map_or(String::new(), |v| format!("{v:.3}")),
        r.rpo_s.map_or(String::new(), |v| format!("{v:.3}"))
    ));
    for s in &r.steps {
        o.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml(&s.step),
            xml(&s.id),
            s.duration_s.unwrap_or(0.0)
        ));
        if s.status == "failed" || s.status == "timed out" {
            // The first line is the message; the rest (the command, its stderr) the body.
            let error = s.error.as_deref().unwrap_or(&s.status);
            let (message, details) = error.split_once('\n').unwrap_or((error, ""));
            if details.is_empty() {
                o.push_str(&format!(
                    "><failure message=\"{}\"/></testcase>\n",
                    xml(message)
                ));
            } else {
                o.push_str(&format!(
                    "><failure message=\"{}\">{}</failure></testcase>\n",
                    xml(message),
                    xml(details.trim())
                ));
            }
        } else if s.status.starts_with("skipped") || s.status == "not run" {
            o.push_str(&format!(
                "><skipped message=\"{}\"/></testcase>\n",
                xml(&s.status)
            ));
        } else {
            o.push_str("/>\n");
        }
    }
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
}
