//! A run as Prometheus metrics in the node-exporter textfile format: when the plan last ran
//! and last succeeded on the cluster, how long it took, how it ended, and the snapshot it saved
//! or restored. `apply --metrics-file` writes them after every run, so a scheduled backup is
//! watched like any other job (the README has an alert rule for "no verified backup in 25 h").

use std::time::SystemTime;

use super::Report;

/// The metrics of `r`. `previous` is the file this replaces, if any: a failed run carries
/// the last success over from it, or "last success" would vanish exactly when it matters.
pub fn prometheus(r: &Report, previous: Option<&str>) -> String {
    let labels = format!(
        "plan=\"{}\",cluster=\"{}\"",
        escape(&r.plan),
        escape(&r.cluster)
    );
    let at = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .map(unix)
    };
    let attempt = at(&r.finished).or(at(&r.started));
    let success = if r.passed {
        attempt
    } else {
        previous.and_then(|p| sample(p, LAST_SUCCESS, &labels))
    };
    let exit = match r.outcome.as_str() {
        "succeeded" => 0.0,
        "interrupted" => 130.0,
        _ => 1.0,
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {}\n",
                number(v)
            ));
        }
    };
    gauge(
        LAST_SUCCESS,
        "When the plan last succeeded on the cluster (Unix time).",
        success,
    );
    gauge(
        "runbook_last_run_timestamp_seconds",
        "When the plan's last run ended, or started if it has no end (Unix time).",
        attempt,
    );
    gauge(
        "runbook_last_run_success",
        "1 if the last run succeeded, else 0.",
        Some(if r.passed { 1.0 } else { 0.0 }),
    );
    gauge(
        "runbook_last_run_exit_status",
        "The last run's exit status: 0 succeeded, 1 failed or incomplete, 130 interrupted.",
        Some(exit),
    );
    gauge(
        "runbook_last_run_duration_seconds",
        "Wall time of the last run, from its first start to its last event.",
        r.wall_s,
    );
    let snap = r.snapshot.as_ref();
    let field = |k: &str| {
        snap.and_then(|s| s.get(k))
            .and_then(serde_json::Value::as_f64)
    };
    let taken = snap
        .and_then(|s| s.get("taken_at"))
        .and_then(serde_json::Value::as_str)
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .map(unix);
    gauge(
        "runbook_snapshot_size_bytes",
        "Size of the snapshot the last run saved or restored.",
        field("file_size"),
    );
    gauge(
        "runbook_snapshot_revision",
        "etcd revision of that snapshot.",
        field("revision"),
    );
    gauge(
        "runbook_snapshot_keys",
        "Keys in that snapshot (every key/value pair of its key bucket).",
        field("total_keys"),
    );
    gauge(
        "runbook_snapshot_timestamp_seconds",
        "When that snapshot was taken (Unix time).",
        taken,
    );
    gauge(
        "runbook_snapshot_age_seconds",
        "Age of that snapshot when the last run ended.",
        taken.zip(attempt).map(|(t, a)| (a - t).max(0.0)),
    );
    out
}

const LAST_SUCCESS: &str = "runbook_last_success_timestamp_seconds";

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whole numbers without a fraction, others with millisecond precision.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The value of `name{labels}` in a textfile written before.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previous_success_is_read_back_for_the_same_plan_and_cluster_only() {
        let labels = "plan=\"etcd-backup\",cluster=\"prod\"";
        let text = format!(
            "# TYPE {LAST_SUCCESS} gauge\n{LAST_SUCCESS}{{{labels}}} 1764600000\n{LAST_SUCCESS}{{plan=\"x\",cluster=\"prod\"}} 5\n"
        );
        assert_eq!(sample(&text, LAST_SUCCESS, labels), Some(1764600000.0));
        assert_eq!(
            sample(&text, LAST_SUCCESS, "plan=\"y\",cluster=\"prod\""),
            None
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(12.0), "12");
        assert_eq!(number(1.5), "1.500");
    }
}
