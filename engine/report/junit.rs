//! The report as JUnit XML for CI dashboards, written by quick-junit.

use std::time::Duration;

use super::{Report, approvals_text};
use crate::execute::rundir::RunDir;

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
pub fn junit(r: &Report, dir: &RunDir) -> Result<String, String> {
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
    fn testsuites_loses_only_its_skipped_count() {
        let xml = "<?xml version=\"1.0\"?>\n<testsuites name=\"a skipped=&quot;1&quot;\" tests=\"2\" skipped=\"1\" failures=\"0\">\n<testsuite name=\"s\" tests=\"2\" skipped=\"1\">";
        assert_eq!(
            without_testsuites_skipped(xml),
            "<?xml version=\"1.0\"?>\n<testsuites name=\"a skipped=&quot;1&quot;\" tests=\"2\" failures=\"0\">\n<testsuite name=\"s\" tests=\"2\" skipped=\"1\">"
        );
    }
}
