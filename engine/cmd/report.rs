//! `runbook report RUN`: what a drill or an outage run did, for the people who were not there
//! and for the file — who ran and who approved it, on which runbook and etcd versions, from
//! which snapshot, how long the cluster was down (RTO, to kube-apiserver ready), what
//! interrupted it, why it failed — as Markdown, JSON, or JUnit for CI dashboards.
//!
//! Everything comes from the run directory (run.json, plan.json, the journal, the step logs)
//! and, while it is still there, the snapshot file itself. Runs recorded before a field
//! existed still report: what they lack is said to be "not recorded".

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{EXIT_INVALID, EXIT_OK, usage_error};
use crate::cli::ReportFormat;
use crate::execute::journal::{self, Decision, Event, Finish, Record, RunStatus};
use crate::execute::rundir::{RecordedStep, RunDir};
use crate::execute::state::{RunState, Status};
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

/// One `apply` or `resume` of the run: who started it, and how it ended.
#[derive(Serialize)]
struct Session {
    user: String,
    host: String,
    started: String,
    resumed: bool,
    ended: Option<String>,
    /// `succeeded`, `failed`, `interrupted`, or `no end recorded` (killed, crashed, or running).
    end: String,
}

/// A confirmation gate that let a destructive (or `confirm:`) step through.
#[derive(Serialize)]
struct Approval {
    step: String,
    /// user@host of the session that approved it.
    by: String,
    /// How: `tty` (typed at the terminal), `tty (all)`, `--yes`, `--approve` (the fingerprint).
    how: String,
    time: String,
}

/// An interruption, a resume, an operator's decision: what broke the run's straight line.
#[derive(Serialize)]
struct Happening {
    time: String,
    what: String,
}

#[derive(Serialize)]
struct Report {
    run_id: String,
    plan: String,
    cluster: String,
    fingerprint: String,
    passed: bool,
    outcome: String,
    /// Why the run did not succeed, when it did not.
    failure: Option<String>,
    started: Option<String>,
    finished: Option<String>,
    wall_s: Option<f64>,
    /// See `rto_measured`.
    rto_s: Option<f64>,
    /// How RTO was measured: from which step's start to which step's end.
    rto_measured: Option<String>,
    /// Age of the snapshot when the first destructive step started.
    rpo_s: Option<f64>,
    runbook_version: Option<String>,
    /// The inventory's etcd version when the run started.
    etcd_version: Option<String>,
    ran_by: Vec<Session>,
    approvals: Vec<Approval>,
    interruptions: Vec<Happening>,
    /// The snapshot restored (or saved): `path`, `file_sha256`, `taken_at` and where that time
    /// comes from, and, while the file is readable, its `snapshot status` figures.
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
        ReportFormat::Junit => match junit(&report, &dir) {
            Ok(x) => x,
            Err(e) => return usage_error("cannot write the JUnit report", &e, None),
        },
    };
    if let Err(code) = super::print_out(&text) {
        return code;
    }
    if report.passed { EXIT_OK } else { EXIT_INVALID }
}

fn status_text(s: &Status) -> String {
    match s {
        Status::Pending => "not run".into(),
        Status::Running => "running".into(),
        Status::Succeeded => "succeeded".into(),
        Status::Failed => "failed".into(),
        Status::TimedOut => "timed out".into(),
        Status::Declined => "declined".into(),
        Status::SkippedByOperator => "skipped (--skip on resume)".into(),
        Status::Skipped(why) => format!("skipped ({why})"),
        Status::Unknown => "unknown (started, never finished)".into(),
    }
}

/// The step that waits for kube-apiserver to be ready: a `wait.http` on a readiness (or
/// health) endpoint, or one named for the API server.
fn waits_for_apiserver(s: &RecordedStep) -> bool {
    s.action == "wait.http"
        && (s.step.contains("apiserver")
            || s.commands.iter().any(|c| {
                ["/readyz", "/livez", "/healthz"]
                    .iter()
                    .any(|p| c.contains(p))
            }))
}

fn build(dir: &RunDir) -> Result<Report, String> {
    let info = dir.info()?;
    let plan = dir.recorded_plan()?;
    let records = journal::read(&dir.journal())?;
    let first = records.iter().find_map(time);
    let last = records.iter().rev().find_map(time);
    let ids: Vec<String> = plan.steps.iter().map(|s| s.id.clone()).collect();
    let state = RunState::replay_ids(&ids, &records);
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut lines: Vec<StepLine> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepLine {
            id: s.id.clone(),
            step: s.step.clone(),
            node: s.node.clone().unwrap_or_else(|| "local".into()),
            action: s.action.clone(),
            status: status_text(&state.status[i]),
            started_at_s: None,
            // Time spent over every finished attempt; none for a step that never finished.
            duration_s: (state.duration_ms[i] > 0
                || matches!(
                    state.status[i],
                    Status::Succeeded | Status::Failed | Status::TimedOut
                ))
            .then(|| state.duration_ms[i] as f64 / 1000.0),
            error: state.error[i].clone(),
        })
        .collect();

    let mut first_destructive: Option<(SystemTime, usize)> = None;
    let mut finished_ok: Vec<Option<SystemTime>> = vec![None; ids.len()];
    let mut outcome = "incomplete (no end recorded)".to_string();
    let mut finished = None;
    let mut sessions: Vec<Session> = Vec::new();
    let mut approvals = Vec::new();
    let mut happenings = Vec::new();
    let mut last_time = String::new();
    for r in &records {
        let who = sessions
            .last()
            .map(|s| format!("{}@{}", s.user, s.host))
            .unwrap_or_else(|| "unknown".into());
        match &r.event {
            Event::RunStarted {
                user,
                host,
                resumed,
                ..
            } => {
                if let Some(prev) = sessions.last_mut()
                    && prev.ended.is_none()
                {
                    // The previous session left no end: the engine was killed or crashed.
                    prev.end = "no end recorded".into();
                    happenings.push(Happening {
                        time: last_time.clone(),
                        what: "the run stopped without recording an end (the engine was killed, crashed, or its machine went down)".into(),
                    });
                }
                if *resumed {
                    happenings.push(Happening {
                        time: r.time.clone(),
                        what: format!("resumed by {user}@{host}"),
                    });
                }
                sessions.push(Session {
                    user: user.clone(),
                    host: host.clone(),
                    started: r.time.clone(),
                    resumed: *resumed,
                    ended: None,
                    end: "no end recorded".into(),
                });
            }
            Event::StepStarted { id, .. } => {
                if let (Some(&i), Some(t)) = (index.get(id.as_str()), time(r)) {
                    if lines[i].started_at_s.is_none() {
                        lines[i].started_at_s = first.map(|f| secs(f, t));
                    }
                    if plan.steps[i].destructive && first_destructive.is_none() {
                        first_destructive = Some((t, i));
                    }
                }
            }
            Event::StepFinished { id, status, .. } => {
                if let Some(&i) = index.get(id.as_str()) {
                    finished_ok[i] = (*status == Finish::Succeeded).then(|| time(r)).flatten();
                }
            }
            Event::Approved { id, by } if by != "dry-run" => approvals.push(Approval {
                step: id.clone(),
                by: who,
                how: by.clone(),
                time: r.time.clone(),
            }),
            Event::Declined { id } => happenings.push(Happening {
                time: r.time.clone(),
                what: format!("{who} declined `{id}` at its confirmation gate"),
            }),
            Event::Interrupted { running } => happenings.push(Happening {
                time: r.time.clone(),
                what: if running.is_empty() {
                    format!("interrupted (Ctrl-C) on {who}'s session")
                } else {
                    format!(
                        "interrupted (Ctrl-C) on {who}'s session while {} ran: no new step started",
                        running.join(", ")
                    )
                },
            }),
            Event::StepAbandoned { id } => happenings.push(Happening {
                time: r.time.clone(),
                what: format!(
                    "`{id}` abandoned by a second Ctrl-C: its outcome on the host was unknown"
                ),
            }),
            Event::Decision { id, decision } => happenings.push(Happening {
                time: r.time.clone(),
                what: match decision {
                    Decision::Retry => format!("{who} chose to run `{id}` again (--retry)"),
                    Decision::Skip => format!("{who} declared `{id}` done (--skip)"),
                },
            }),
            Event::RunFinished { status } => {
                outcome = match status {
                    RunStatus::Succeeded => "succeeded",
                    RunStatus::Failed => "failed",
                    RunStatus::Interrupted => "interrupted",
                }
                .into();
                finished = Some(r.time.clone());
                if let Some(s) = sessions.last_mut() {
                    s.ended = Some(r.time.clone());
                    s.end = outcome.clone();
                }
            }
            _ => {}
        }
        last_time.clone_from(&r.time);
    }
    // A later session may have ended without a RunFinished: the last word is "no end".
    if sessions.last().is_some_and(|s| s.ended.is_none()) {
        outcome = "incomplete (no end recorded)".into();
        finished = None;
    }
    let passed = outcome == "succeeded";
    let failure = (!passed).then(|| failure_reason(&outcome, &lines));

    let (rto_s, rto_measured) = match first_destructive {
        Some((start, i)) => {
            let (end, how) = rto_end(&plan.steps, &finished_ok, last);
            let end = end.unwrap_or(start);
            (
                Some(secs(start, end)),
                Some(format!(
                    "from the start of `{}`, the first destructive step (where the cluster stops serving), to {how}",
                    plan.steps[i].id
                )),
            )
        }
        None => (None, None),
    };

    let snapshot = snapshot_facts(dir, &info.params, &plan.steps, &finished_ok);
    let rpo_s = snapshot
        .as_ref()
        .and_then(|s| s.taken)
        .zip(first_destructive.map(|(t, _)| t).or(first))
        .map(|(taken, start)| secs(taken, start));

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
        failure,
        started: records.first().map(|r| r.time.clone()),
        finished,
        wall_s: first.zip(last).map(|(a, b)| secs(a, b)),
        rto_s,
        rto_measured,
        rpo_s,
        runbook_version: info.runbook_version,
        etcd_version: info.etcd_version,
        ran_by: sessions,
        approvals,
        interruptions: happenings,
        snapshot: snapshot.map(|s| s.json),
        verification,
        steps: lines,
    })
}

/// Where RTO ends: kube-apiserver ready on every node (the end of the last instance of the
/// plan's readiness wait); without one, etcd verified; without that, the run's last event.
fn rto_end(
    steps: &[RecordedStep],
    finished_ok: &[Option<SystemTime>],
    last: Option<SystemTime>,
) -> (Option<SystemTime>, String) {
    let latest_of = |pick: &dyn Fn(&RecordedStep) -> bool| {
        let picked: Vec<usize> = (0..steps.len()).filter(|&i| pick(&steps[i])).collect();
        let done: Vec<SystemTime> = picked.iter().filter_map(|&i| finished_ok[i]).collect();
        // Only when every instance finished well: one node's API server down is not "ready".
        (!picked.is_empty() && done.len() == picked.len()).then(|| {
            (
                done.into_iter().max(),
                steps[picked[0]].step.clone(),
                picked.len(),
            )
        })
    };
    if let Some((end, step, n)) = latest_of(&waits_for_apiserver) {
        let nodes = if n > 1 {
            format!("its last instance, of {n}")
        } else {
            "it".into()
        };
        return (
            end,
            format!(
                "the end of `{step}` ({nodes}): kube-apiserver answers its readiness check, the cluster serves again"
            ),
        );
    }
    if let Some((end, step, _)) = latest_of(&|s| s.action == "etcd.verify_cluster") {
        return (
            end,
            format!(
                "the end of `{step}`: etcd verified (the plan has no kube-apiserver readiness wait that finished)"
            ),
        );
    }
    (
        last,
        "the run's last event (no kube-apiserver readiness wait or cluster verification finished)"
            .into(),
    )
}

/// The run's failure in a sentence: the steps that failed, timed out, were declined or were
/// left unknown; else how the run ended.
fn failure_reason(outcome: &str, lines: &[StepLine]) -> String {
    let mut why: Vec<String> = lines
        .iter()
        .filter_map(|s| match s.status.as_str() {
            "failed" | "timed out" => {
                let error = s
                    .error
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("");
                Some(if error.is_empty() {
                    format!("`{}` {}", s.id, s.status)
                } else {
                    format!("`{}` {}: {error}", s.id, s.status)
                })
            }
            "declined" => Some(format!("`{}` was declined at its confirmation gate", s.id)),
            st if st.starts_with("unknown") => Some(format!(
                "`{}` started and never finished (its outcome is unknown)",
                s.id
            )),
            _ => None,
        })
        .collect();
    if why.is_empty() {
        why.push(match outcome {
            "interrupted" => "interrupted by the operator (Ctrl-C) before the end".into(),
            "incomplete (no end recorded)" => {
                "the run has no recorded end: the engine was killed or crashed, or it still runs"
                    .into()
            }
            other => format!("the run ended {other}"),
        });
    }
    why.join("; ")
}

struct SnapshotFacts {
    json: serde_json::Value,
    taken: Option<SystemTime>,
}

/// `PATH: N bytes, sha256 HEX, ...`: what `snapshot.verify` logged of the file it checked.
fn verified_line(log: &str) -> Option<(String, String)> {
    log.lines().find_map(|l| {
        let (path, rest) = l.split_once(": ")?;
        let (_, after) = rest.split_once(" bytes, sha256 ")?;
        let sha = after.split([',', ' ']).next()?;
        (sha.len() == 64).then(|| (path.to_string(), sha.to_string()))
    })
}

/// The snapshot the run restored (its `snapshot` parameter) or saved and verified: its path,
/// digest, when it was taken, and its figures while the file is still readable.
fn snapshot_facts(
    dir: &RunDir,
    params: &[crate::execute::rundir::SetParam],
    steps: &[RecordedStep],
    finished_ok: &[Option<SystemTime>],
) -> Option<SnapshotFacts> {
    let logged = steps
        .iter()
        .filter(|s| s.action == "snapshot.verify")
        .filter_map(|s| std::fs::read_to_string(dir.log(&s.id)).ok())
        .find_map(|log| verified_line(&log));
    let path = params
        .iter()
        .find(|p| p.name == "snapshot")
        .map(|p| p.value.clone())
        .or_else(|| logged.as_ref().map(|(p, _)| p.clone()))?;
    let mut json = serde_json::Map::new();
    json.insert("path".into(), path.clone().into());
    let file = Path::new(&path);
    match status(file) {
        Ok(st) => {
            if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&st) {
                json.extend(m);
            }
        }
        Err(_) => {
            if let Some((_, sha)) = &logged {
                json.insert("file_sha256".into(), sha.clone().into());
            }
            json.insert(
                "note".into(),
                "the file is no longer readable: its digest is the one the run verified".into(),
            );
        }
    }
    // When it was taken: this run's own save if it made it, else the file's modification
    // time (`snapshot save` renames the finished file into place, so that is when it ended).
    let saved = steps
        .iter()
        .zip(finished_ok)
        .find(|(s, _)| s.action == "snapshot.save")
        .and_then(|(s, t)| t.map(|t| (t, format!("saved by this run (`{}`)", s.id))));
    let modified = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()
        .map(|t| (t, "the file's modification time".to_string()));
    let taken = saved.or(modified);
    if let Some((t, from)) = &taken {
        json.insert(
            "taken_at".into(),
            humantime::format_rfc3339_seconds(*t).to_string().into(),
        );
        json.insert("taken_at_from".into(), from.clone().into());
    }
    Some(SnapshotFacts {
        json: serde_json::Value::Object(json),
        taken: taken.map(|(t, _)| t),
    })
}

/// A span as people read a stopwatch: "4.3s" under a minute, then "2m 05s", "1h 02m 05s",
/// "3d 04h 10m".
fn span(secs: f64) -> String {
    if secs < 1.0 {
        return format!("{secs:.2}s");
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}h {m:02}m")
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

fn dur(s: Option<f64>) -> String {
    s.map_or("-".into(), span)
}

/// An RFC 3339 journal time as a person reads it: `2026-11-21 10:15:00 UTC`.
fn when(t: &str) -> String {
    humantime::parse_rfc3339(t)
        .map(|t| {
            humantime::format_rfc3339_seconds(t)
                .to_string()
                .replace('T', " ")
                .replace('Z', " UTC")
        })
        .unwrap_or_else(|_| t.to_string())
}

/// Text in a Markdown table cell: one line, no column breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn approval_how(how: &str) -> &str {
    match how {
        "tty" => "typed yes at the terminal",
        "tty (all)" => "answered all at the terminal",
        "--yes" => "--yes on the command line",
        "--approve" => "--approve with the plan's fingerprint",
        other => other,
    }
}

/// Who approved what, grouped: `root@cp (--yes on the command line): a, b, c`.
fn approvals_text(approvals: &[Approval]) -> Vec<String> {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for a in approvals {
        let key = format!("{} ({})", a.by, approval_how(&a.how));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, steps)) => steps.push(&a.step),
            None => groups.push((key, vec![&a.step])),
        }
    }
    groups
        .into_iter()
        .map(|(k, steps)| format!("{k}: {}", steps.join(", ")))
        .collect()
}

fn markdown(r: &Report) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "# {} on {}: {}\n\n",
        r.plan,
        r.cluster,
        if r.passed { "PASSED" } else { "FAILED" }
    ));
    let not_recorded = "not recorded";
    let ran_by: Vec<String> = r
        .ran_by
        .iter()
        .map(|s| {
            format!(
                "{}@{} ({} {})",
                s.user,
                s.host,
                if s.resumed { "resumed" } else { "started" },
                when(&s.started)
            )
        })
        .collect();
    let approvals = approvals_text(&r.approvals);
    let mut facts: Vec<(&str, String)> = vec![
        ("Run", format!("`{}`", r.run_id)),
        ("Outcome", r.outcome.clone()),
        ("Started", r.started.as_deref().map_or("-".into(), when)),
        ("Finished", r.finished.as_deref().map_or("-".into(), when)),
        ("Wall time", dur(r.wall_s)),
        ("RTO", dur(r.rto_s)),
        ("Snapshot age at restore (RPO)", dur(r.rpo_s)),
        (
            "Run by",
            if ran_by.is_empty() {
                not_recorded.into()
            } else {
                ran_by.join("; ")
            },
        ),
        (
            "Approved by",
            if approvals.is_empty() {
                "no step needed approval".into()
            } else {
                approvals.join("; ")
            },
        ),
        (
            "runbook version",
            r.runbook_version.clone().unwrap_or(not_recorded.into()),
        ),
        (
            "etcd version (inventory)",
            r.etcd_version.clone().unwrap_or(not_recorded.into()),
        ),
        ("Plan fingerprint", format!("`{}`", r.fingerprint)),
    ];
    if let Some(f) = &r.failure {
        facts.insert(2, ("Failure", f.clone()));
    }
    o.push_str("| | |\n|---|---|\n");
    for (k, v) in &facts {
        o.push_str(&format!("| {k} | {} |\n", cell(v)));
    }
    o.push('\n');
    match &r.rto_measured {
        Some(m) => o.push_str(&format!("RTO is measured {m}.\n\n")),
        None => o.push_str(
            "No destructive step started: the run had no downtime to measure (no RTO).\n\n",
        ),
    }
    if let Some(f) = &r.failure {
        o.push_str(&format!("## Failure\n\n{f}\n\n"));
    }
    if let Some(s) = &r.snapshot {
        o.push_str("## Snapshot\n\n| | |\n|---|---|\n");
        let text = |k: &str| s.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let num = |k: &str| s.get(k).and_then(|v| v.as_u64());
        o.push_str(&format!(
            "| file | `{}` |\n",
            cell(&text("path").unwrap_or_default())
        ));
        o.push_str(&format!(
            "| sha256 | `{}` |\n",
            text("file_sha256").unwrap_or_else(|| "unknown".into())
        ));
        let taken = match (text("taken_at"), text("taken_at_from")) {
            (Some(t), Some(from)) => format!("{} ({from})", when(&t)),
            _ => "unknown".into(),
        };
        o.push_str(&format!("| taken at | {} |\n", cell(&taken)));
        if let Some(rev) = s.get("revision").and_then(|v| v.as_i64()) {
            o.push_str(&format!("| revision | {rev} |\n"));
        }
        if let (Some(total), Some(live)) = (num("total_keys"), num("live_keys_36")) {
            o.push_str(&format!("| keys | {total} ({live} live) |\n"));
        }
        if let Some(h) = text("hash") {
            o.push_str(&format!("| hash (CRC-32C) | {h} |\n"));
        }
        if let Some(size) = num("file_size") {
            o.push_str(&format!(
                "| size | {} ({size} bytes) |\n",
                humansize::format_size(size, humansize::BINARY.decimal_places(1))
            ));
        }
        if let Some(n) = text("note") {
            o.push_str(&format!("| note | {} |\n", cell(&n)));
        }
        o.push('\n');
    }
    if !r.interruptions.is_empty() {
        o.push_str("## Interruptions and resumes\n\n");
        for h in &r.interruptions {
            o.push_str(&format!("- {}: {}\n", when(&h.time), h.what));
        }
        o.push('\n');
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
            cell(&s.step),
            cell(&s.node),
            cell(&s.status),
            s.started_at_s
                .map_or("-".into(), |v| format!("+{}", span(v))),
            dur(s.duration_s)
        ));
    }
    o
}

/// A step's log for `system-out`: the end of it when it is long (a dashboard shows the tail).
fn log_text(dir: &RunDir, id: &str) -> Option<String> {
    const LIMIT: usize = 256 << 10;
    let bytes = std::fs::read(dir.log(id)).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    if text.len() <= LIMIT {
        return Some(text.into_owned());
    }
    let mut cut = text.len() - LIMIT;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    Some(format!(
        "[first {cut} bytes left out: see {}]\n{}",
        dir.log(id).display(),
        &text[cut..]
    ))
}

/// JUnit XML in the common (Ant/Jenkins junit-10.xsd) shape: one test case per step instance,
/// its log in `system-out`; a failed, timed-out or declined step is a `failure`, a step left
/// unknown an `error`, steps not run `skipped`. A run that did not succeed although no step
/// failed (interrupted, killed) gets a `run` test case in error, so no dashboard shows it green.
fn junit(r: &Report, dir: &RunDir) -> Result<String, String> {
    use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new(format!("{} on {}", r.plan, r.cluster));
    if let Some(t) = r
        .started
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
    {
        suite.set_timestamp(chrono::DateTime::<chrono::Utc>::from(t));
    }
    suite.set_time(Duration::from_secs_f64(r.wall_s.unwrap_or(0.0)));
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    let mut props = vec![
        ("run_id", r.run_id.clone()),
        ("fingerprint", r.fingerprint.clone()),
        ("outcome", r.outcome.clone()),
        ("rto_s", opt(r.rto_s)),
        ("rto_measured", r.rto_measured.clone().unwrap_or_default()),
        ("rpo_s", opt(r.rpo_s)),
        (
            "runbook_version",
            r.runbook_version.clone().unwrap_or_default(),
        ),
        ("etcd_version", r.etcd_version.clone().unwrap_or_default()),
        (
            "ran_by",
            r.ran_by
                .iter()
                .map(|s| format!("{}@{}", s.user, s.host))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("approved_by", approvals_text(&r.approvals).join("; ")),
    ];
    if let Some(s) = &r.snapshot {
        for (name, key) in [("snapshot", "path"), ("snapshot_sha256", "file_sha256")] {
            if let Some(v) = s.get(key).and_then(|v| v.as_str()) {
                props.push((name, v.to_string()));
            }
        }
    }
    if let Some(f) = &r.failure {
        props.push(("failure", f.clone()));
    }
    for (k, v) in props {
        suite.add_property(Property::new(k, v));
    }
    let mut any_failed = false;
    for s in &r.steps {
        let status = match s.status.as_str() {
            "succeeded" => TestCaseStatus::success(),
            "failed" | "timed out" | "declined" => {
                any_failed = true;
                // The first line is the message; the rest (the command, its stderr) the body.
                let error = s.error.as_deref().unwrap_or(&s.status);
                let (message, details) = error.split_once('\n').unwrap_or((error, ""));
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(message);
                if !details.trim().is_empty() {
                    st.set_description(details.trim());
                }
                st
            }
            unknown if unknown.starts_with("unknown") => {
                any_failed = true;
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
                st.set_message(unknown);
                st
            }
            other => {
                let mut st = TestCaseStatus::skipped();
                st.set_message(other);
                st
            }
        };
        let mut case = TestCase::new(&s.id, status);
        case.set_classname(format!("{}.{}", r.plan, s.step));
        case.set_time(Duration::from_secs_f64(s.duration_s.unwrap_or(0.0)));
        if let Some(log) = log_text(dir, &s.id) {
            case.set_system_out(log);
        }
        suite.add_test_case(case);
    }
    if !r.passed && !any_failed {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
        st.set_message(r.failure.clone().unwrap_or_else(|| r.outcome.clone()));
        let mut case = TestCase::new("run", st);
        case.set_classname(format!("{}.run", r.plan));
        suite.add_test_case(case);
    }
    let mut report = quick_junit::Report::new("runbook");
    report.set_time(Duration::from_secs_f64(r.wall_s.unwrap_or(0.0)));
    report.add_test_suite(suite);
    let xml = report.to_string().map_err(|e| e.to_string())?;
    Ok(without_testsuites_skipped(&xml))
}

/// quick-junit writes `skipped` on `<testsuites>`, which junit-10.xsd (what Jenkins and most
/// dashboards validate against) does not allow there; each `<testsuite>` keeps its own count.
fn without_testsuites_skipped(xml: &str) -> String {
    let Some(start) = xml.find("<testsuites") else {
        return xml.to_string();
    };
    let end = start + xml[start..].find('>').unwrap_or(0);
    let tag = &xml[start..end];
    // Attribute values are escaped (`"` is `&quot;`), so ` skipped="` only begins the attribute.
    let Some(at) = tag.find(" skipped=\"") else {
        return xml.to_string();
    };
    let value_end = tag[at + 10..]
        .find('"')
        .map_or(tag.len(), |e| at + 10 + e + 1);
    format!("{}{}{}", &xml[..start + at], &tag[value_end..], &xml[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_minutes_and_seconds() {
        assert_eq!(span(0.042), "0.04s");
        assert_eq!(span(4.35), "4.3s");
        assert_eq!(span(59.94), "59.9s");
        assert_eq!(span(125.0), "2m 05s");
        assert_eq!(span(3725.4), "1h 02m 05s");
        assert_eq!(span(3.0 * 86_400.0 + 4.0 * 3600.0 + 600.0), "3d 04h 10m");
    }

    #[test]
    fn testsuites_loses_only_its_skipped_count() {
        let xml = "<?xml version=\"1.0\"?>\n<testsuites name=\"a skipped=&quot;1&quot;\" tests=\"2\" skipped=\"1\" failures=\"0\">\n<testsuite name=\"s\" tests=\"2\" skipped=\"1\">";
        assert_eq!(
            without_testsuites_skipped(xml),
            "<?xml version=\"1.0\"?>\n<testsuites name=\"a skipped=&quot;1&quot;\" tests=\"2\" failures=\"0\">\n<testsuite name=\"s\" tests=\"2\" skipped=\"1\">"
        );
    }

    #[test]
    fn the_verified_file_is_read_back_from_the_log() {
        let sha = "a".repeat(64);
        let log = format!(
            "# runbook: checking\n/tmp/s.db: 20480 bytes, sha256 {sha}, trailer ok, every bbolt page checked; revision 9, 12 keys, hash 1f\n"
        );
        assert_eq!(verified_line(&log), Some(("/tmp/s.db".into(), sha)));
        assert_eq!(verified_line("nothing here"), None);
    }

    /// A run directory as runbook wrote it before run.json recorded the versions, with a
    /// crash, a resume, an approval and an interruption in its journal.
    fn old_run() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir(p.join("logs")).unwrap();
        std::fs::write(
            p.join("run.json"),
            r#"{"run_id":"r1","plan":"p.yaml","inventory":"i.yaml","params":[{"name":"snapshot","value":"/nonexistent/s.db","origin":"--set"}],"fingerprint":"sha256:f","cluster":"c","created":"2026-01-01T10:00:00Z"}"#,
        )
        .unwrap();
        let step = |id: &str, action: &str, destructive: bool, cmds: &str| {
            format!(
                r#"{{"id":"{id}","step":"{}","node":"n1","destructive":{destructive},"idempotent":false,"action":"{action}","commands":[{cmds}]}}"#,
                id.split('@').next().unwrap()
            )
        };
        let steps = [
            step("verify", "snapshot.verify", false, ""),
            step("restore@n1", "etcd.restore", true, ""),
            step("verify-cluster", "etcd.verify_cluster", false, ""),
            step(
                "wait-ready@n1",
                "wait.http",
                false,
                r#""curl -fsS https://127.0.0.1:6443/readyz""#,
            ),
        ];
        std::fs::write(
            p.join("plan.json"),
            format!(
                r#"{{"fingerprint":"sha256:f","plan":"drill","cluster":"c","steps":[{}]}}"#,
                steps.join(",")
            ),
        )
        .unwrap();
        let sha = "b".repeat(64);
        std::fs::write(
            p.join("logs/verify.log"),
            format!("/nonexistent/s.db: 20480 bytes, sha256 {sha}, trailer ok\n"),
        )
        .unwrap();
        let start = |t: &str, resumed: bool, user: &str| {
            format!(
                r#"{{"time":"{t}","event":"run_started","run_id":"r1","plan":"drill","cluster":"c","fingerprint":"sha256:f","user":"{user}","host":"box","pid":1,"resumed":{resumed},"dry_run":false}}"#
            )
        };
        let journal = [
            start("2026-01-01T10:00:00.000Z", false, "alice"),
            r#"{"time":"2026-01-01T10:00:01.000Z","event":"step_started","id":"verify","attempt":1}"#.into(),
            r#"{"time":"2026-01-01T10:00:02.000Z","event":"step_finished","id":"verify","attempt":1,"status":"succeeded","duration_ms":1000}"#.into(),
            r#"{"time":"2026-01-01T10:00:03.000Z","event":"approved","id":"restore@n1","by":"tty"}"#.into(),
            r#"{"time":"2026-01-01T10:00:03.000Z","event":"step_started","id":"restore@n1","attempt":1}"#.into(),
            // The engine dies here; bob resumes.
            start("2026-01-01T10:01:00.000Z", true, "bob"),
            r#"{"time":"2026-01-01T10:01:01.000Z","event":"decision","id":"restore@n1","decision":"retry"}"#.into(),
            r#"{"time":"2026-01-01T10:01:01.000Z","event":"approved","id":"restore@n1","by":"--yes"}"#.into(),
            r#"{"time":"2026-01-01T10:01:01.000Z","event":"step_started","id":"restore@n1","attempt":2}"#.into(),
            r#"{"time":"2026-01-01T10:01:31.000Z","event":"step_finished","id":"restore@n1","attempt":2,"status":"succeeded","duration_ms":30000}"#.into(),
            r#"{"time":"2026-01-01T10:01:32.000Z","event":"step_started","id":"verify-cluster","attempt":1}"#.into(),
            r#"{"time":"2026-01-01T10:01:40.000Z","event":"step_finished","id":"verify-cluster","attempt":1,"status":"succeeded","duration_ms":8000}"#.into(),
            r#"{"time":"2026-01-01T10:01:41.000Z","event":"step_started","id":"wait-ready@n1","attempt":1}"#.into(),
            r#"{"time":"2026-01-01T10:02:08.000Z","event":"step_finished","id":"wait-ready@n1","attempt":1,"status":"succeeded","duration_ms":27000}"#.into(),
            r#"{"time":"2026-01-01T10:02:08.000Z","event":"run_finished","status":"succeeded"}"#.into(),
        ];
        std::fs::write(p.join("journal.jsonl"), journal.join("\n") + "\n").unwrap();
        d
    }

    #[test]
    fn an_old_run_reports_who_ran_and_approved_it_its_resume_and_rto_to_apiserver_ready() {
        let d = old_run();
        let dir = RunDir {
            path: d.path().to_path_buf(),
        };
        let r = build(&dir).unwrap();
        assert!(r.passed);
        assert_eq!(r.failure, None);
        // RTO: restore's first start (10:00:03) to kube-apiserver ready (10:02:08).
        assert_eq!(r.rto_s, Some(125.0));
        assert!(
            r.rto_measured.as_deref().unwrap().contains("`wait-ready`"),
            "{:?}",
            r.rto_measured
        );
        assert_eq!(r.runbook_version, None);
        let who: Vec<String> = r.approvals.iter().map(|a| a.by.clone()).collect();
        assert_eq!(who, ["alice@box", "bob@box"]);
        assert_eq!(r.ran_by.len(), 2);
        assert_eq!(r.ran_by[0].end, "no end recorded");
        assert_eq!(r.ran_by[1].end, "succeeded");
        let what: Vec<&str> = r.interruptions.iter().map(|h| h.what.as_str()).collect();
        assert!(what[0].starts_with("the run stopped without recording an end"));
        assert_eq!(what[1], "resumed by bob@box");
        assert_eq!(what[2], "bob@box chose to run `restore@n1` again (--retry)");
        let snap = r.snapshot.as_ref().unwrap();
        assert_eq!(snap["file_sha256"], "b".repeat(64));
        let md = markdown(&r);
        for want in [
            "| RTO | 2m 05s |",
            "| Run by | alice@box (started 2026-01-01 10:00:00 UTC); bob@box (resumed 2026-01-01 10:01:00 UTC) |",
            "| Approved by | alice@box (typed yes at the terminal): restore@n1; bob@box (--yes on the command line): restore@n1 |",
            "| runbook version | not recorded |",
            "RTO is measured from the start of `restore@n1`",
            "| wait-ready | n1 | succeeded | +1m 41s | 27.0s |",
            "## Interruptions and resumes",
        ] {
            assert!(md.contains(want), "{want}\n{md}");
        }
        assert!(!md.contains("125.0s"), "{md}");
    }
}
