//! What a run did, read back from its run directory for `runbook report`: who ran and who
//! approved it, on which runbook and etcd versions, from which snapshot, how long the cluster
//! was down (RTO, to kube-apiserver ready), what interrupted it, why it failed; rendered as
//! Markdown (markdown.rs), JUnit (junit.rs) or JSON (this model, serialised).
//!
//! Everything comes from the run directory (run.json, plan.json, the journal, the step logs)
//! and, while it is still there, the snapshot file itself. Runs recorded before a field
//! existed still report: what they lack is said to be "not recorded".

mod junit;
mod markdown;
mod prometheus;

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use crate::execute::journal::{self, Decision, Event, Finish, Record, RunStatus};
use crate::execute::rundir::{RecordedStep, RunDir};
use crate::execute::state::{RunState, Status};
use crate::snapshot::status::status;

pub use junit::junit;
pub use markdown::markdown;
pub use prometheus::prometheus;

#[derive(Serialize)]
pub struct StepLine {
    pub id: String,
    pub step: String,
    pub node: String,
    pub action: String,
    pub status: String,
    /// Seconds from the run's first start to this step's start.
    pub started_at_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub error: Option<String>,
}

/// One `apply` or `resume` of the run: who started it, and how it ended.
#[derive(Serialize)]
pub struct Session {
    pub user: String,
    pub host: String,
    pub started: String,
    pub resumed: bool,
    pub ended: Option<String>,
    /// `succeeded`, `failed`, `interrupted`, or `no end recorded` (killed, crashed, or running).
    pub end: String,
}

/// A confirmation gate that let a destructive (or `confirm:`) step through.
#[derive(Serialize)]
pub struct Approval {
    pub step: String,
    /// user@host of the session that approved it.
    pub by: String,
    /// How: `tty` (typed at the terminal), `tty (all)`, `--yes`, `--approve` (the fingerprint).
    pub how: String,
    pub time: String,
}

/// An interruption, a resume, an operator's decision: what broke the run's straight line.
#[derive(Serialize)]
pub struct Happening {
    pub time: String,
    pub what: String,
}

#[derive(Serialize)]
pub struct Report {
    pub run_id: String,
    pub plan: String,
    pub cluster: String,
    pub fingerprint: String,
    pub passed: bool,
    pub outcome: String,
    /// Why the run did not succeed, when it did not.
    pub failure: Option<String>,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub wall_s: Option<f64>,
    /// See `rto_measured`.
    pub rto_s: Option<f64>,
    /// How RTO was measured: from which step's start to which step's end.
    pub rto_measured: Option<String>,
    /// Age of the snapshot when the first destructive step started.
    pub rpo_s: Option<f64>,
    pub runbook_version: Option<String>,
    /// The inventory's etcd version when the run started.
    pub etcd_version: Option<String>,
    pub ran_by: Vec<Session>,
    pub approvals: Vec<Approval>,
    pub interruptions: Vec<Happening>,
    /// The snapshot restored (or saved): `path`, `file_sha256`, `taken_at` and where that time
    /// comes from, and, while the file is readable, its `snapshot status` figures.
    pub snapshot: Option<serde_json::Value>,
    pub verification: Vec<String>,
    /// What the last preflight read: each member's etcd version, its certificates' expiry,
    /// every node's clock against the operator's.
    pub members: Vec<MemberVersion>,
    pub certificates: Vec<crate::etcd::certs::Row>,
    pub clocks: Vec<crate::etcd::clock::Offset>,
    pub steps: Vec<StepLine>,
}

#[derive(Serialize)]
pub struct MemberVersion {
    pub node: String,
    pub version: String,
}

fn time(r: &Record) -> Option<SystemTime> {
    humantime::parse_rfc3339(&r.time).ok()
}

fn secs(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).map(|d| d.as_secs_f64()).unwrap_or(0.0)
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

pub fn build(dir: &RunDir) -> Result<Report, String> {
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
    let mut lines = step_lines(&plan.steps, &state);

    let mut first_destructive: Option<(SystemTime, usize)> = None;
    let mut finished_ok: Vec<Option<SystemTime>> = vec![None; ids.len()];
    let mut outcome = "incomplete (no end recorded)".to_string();
    let mut finished = None;
    let mut sessions: Vec<Session> = Vec::new();
    let mut approvals = Vec::new();
    // When each `--step` answer came, and how long it took.
    let mut waits: Vec<(SystemTime, f64)> = Vec::new();
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
            Event::Approved { id, by, waited_ms } if by != "dry-run" => {
                if let Some(t) = time(r)
                    && *waited_ms > 0
                {
                    waits.push((t, *waited_ms as f64 / 1000.0));
                }
                approvals.push(Approval {
                    step: id.clone(),
                    by: who,
                    how: by.clone(),
                    time: r.time.clone(),
                })
            }
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
            Event::RunFinished { status, .. } => {
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

    let (rto_s, rto_measured) = rto(&plan.steps, first_destructive, &finished_ok, last, &waits);

    let snapshot = snapshot_facts(dir, &info.params, &plan.steps, &finished_ok);
    let rpo_s = snapshot
        .as_ref()
        .and_then(|s| s.taken)
        .zip(first_destructive.map(|(t, _)| t).or(first))
        .map(|(taken, start)| secs(taken, start));

    let verification = verification(dir, &plan.steps);
    let (members, certificates, clocks) = preflight_facts(dir, &plan.steps);
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
        members,
        certificates,
        clocks,
        steps: lines,
    })
}

/// A line per recorded step, with its status, attempts' time and last error.
fn step_lines(steps: &[RecordedStep], state: &RunState) -> Vec<StepLine> {
    steps
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
        .collect()
}

/// RTO and how it was measured: from the first destructive step's start to kube-apiserver
/// ready (see `rto_end`), less the time spent answering `--step` questions within.
fn rto(
    steps: &[RecordedStep],
    first_destructive: Option<(SystemTime, usize)>,
    finished_ok: &[Option<SystemTime>],
    last: Option<SystemTime>,
    waits: &[(SystemTime, f64)],
) -> (Option<f64>, Option<String>) {
    match first_destructive {
        Some((start, i)) => {
            let (end, how) = rto_end(steps, finished_ok, last);
            let end = end.unwrap_or(start);
            // Time an operator spent answering `--step` questions inside the window is not
            // the restore's: the cluster would have been back that much sooner.
            let answering: f64 = waits
                .iter()
                .filter(|(t, _)| *t > start && *t <= end)
                .map(|(_, w)| w)
                .sum();
            (
                Some((secs(start, end) - answering).max(0.0)),
                Some(format!(
                    "from the start of `{}`, the first destructive step (where the cluster stops serving), to {how}",
                    steps[i].id
                )),
            )
        }
        None => (None, None),
    }
}

/// What the checking steps (preflight, the source guard, the restore's impact, the cluster
/// verification, the proof through kube-apiserver) logged.
fn verification(dir: &RunDir, steps: &[RecordedStep]) -> Vec<String> {
    steps
        .iter()
        .filter(|s| {
            matches!(
                s.action.as_str(),
                "etcd.verify_cluster"
                    | "etcd.preflight"
                    | "snapshot.not_source"
                    | "snapshot.impact"
                    | "kube.verify_restore"
            )
        })
        .filter_map(|s| std::fs::read_to_string(dir.log(&s.id)).ok())
        .flat_map(|log| {
            log.lines()
                .filter(|l| {
                    !l.starts_with("==") && !l.starts_with("# runbook:") && !l.trim().is_empty()
                })
                // Certificates and clocks have their own tables (`preflight_facts`).
                .filter(|l| {
                    crate::etcd::certs::parse_line(l.trim()).is_none()
                        && crate::etcd::clock::parse_line(l.trim()).is_none()
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

type PreflightFacts = (
    Vec<MemberVersion>,
    Vec<crate::etcd::certs::Row>,
    Vec<crate::etcd::clock::Offset>,
);

/// Versions, certificates and clocks from the log of the last preflight that read any
/// (its lines, or the same lines in its refusal).
fn preflight_facts(dir: &RunDir, steps: &[RecordedStep]) -> PreflightFacts {
    steps
        .iter()
        .filter(|s| s.action == "etcd.preflight")
        .filter_map(|s| std::fs::read_to_string(dir.log(&s.id)).ok())
        .map(|log| {
            let mut f: PreflightFacts = Default::default();
            for l in log.lines().map(str::trim) {
                if let Some((node, version)) = crate::etcd::preflight::parse_version(l) {
                    f.0.push(MemberVersion { node, version });
                } else if let Some(c) = crate::etcd::certs::parse_line(l) {
                    f.1.push(c);
                } else if let Some(o) = crate::etcd::clock::parse_line(l) {
                    f.2.push(o);
                }
            }
            f
        })
        .rfind(|f| !(f.0.is_empty() && f.1.is_empty() && f.2.is_empty()))
        .unwrap_or_default()
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
pub fn span(secs: f64) -> String {
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
pub fn approvals_text(approvals: &[Approval]) -> Vec<String> {
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
            step("preflight", "etcd.preflight", false, ""),
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
        // A refused preflight logs its lines indented under the error.
        std::fs::write(
            p.join("logs/preflight.log"),
            "# runbook: ask n1 over etcd's API\nerror: n1: its clock is +30.001 s (± 0.002 s) off\n  \
             n1: member 8e9e05c52164694d etcd 3.6.5 LEADER term 2 index 9 applied 9 db 20 kB\n  \
             certificate n1 serving, TLS 127.0.0.1:2379: expires 2027-01-01 10:00:00 UTC (365 days left), CN=n1\n  \
             certificate n1 peer, file /etc/kubernetes/pki/etcd/peer.crt: expired 2025-12-31 10:00:00 UTC (1 days ago), CN=n1\n  \
             clock n1: +30.001 s (± 0.002 s) against this machine\n",
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
            "| n1 | 3.6.5 | serving | 2027-01-01 10:00:00 UTC | 365 | TLS 127.0.0.1:2379 |",
            "| n1 | 3.6.5 | peer | 2025-12-31 10:00:00 UTC | **expired** 1 days ago | file /etc/kubernetes/pki/etcd/peer.crt |",
            "| n1 | +30.001 s ± 0.002 s |",
        ] {
            assert!(md.contains(want), "{want}\n{md}");
        }
        assert!(!md.contains("- clock n1"), "in its table only: {md}");
        assert!(!md.contains("125.0s"), "{md}");
    }
}
