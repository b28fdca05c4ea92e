//! The report as Markdown: a page to file with a drill or an incident.

use super::{Report, approvals_text, span};

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

pub fn markdown(r: &Report) -> String {
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
    if !r.members.is_empty() || !r.certificates.is_empty() {
        o.push_str(
            "## Members\n\n| member | etcd | certificate | expires | days left | read from |\n|---|---|---|---|---|---|\n",
        );
        let version = |node: &str| {
            r.members
                .iter()
                .find(|m| m.node == node)
                .map_or("-".to_string(), |m| m.version.clone())
        };
        let mut nodes: Vec<&str> = r.members.iter().map(|m| m.node.as_str()).collect();
        for c in &r.certificates {
            if !nodes.contains(&c.node.as_str()) {
                nodes.push(&c.node);
            }
        }
        for node in nodes {
            let certs: Vec<_> = r.certificates.iter().filter(|c| c.node == node).collect();
            if certs.is_empty() {
                o.push_str(&format!(
                    "| {} | {} | - | - | - | - |\n",
                    cell(node),
                    cell(&version(node))
                ));
            }
            for c in certs {
                let days = if c.expired {
                    format!("**expired** {} days ago", -c.days_left)
                } else {
                    c.days_left.to_string()
                };
                o.push_str(&format!(
                    "| {} | {} | {} | {} | {days} | {} |\n",
                    cell(node),
                    cell(&version(node)),
                    cell(&c.role),
                    cell(&c.expires),
                    cell(&c.source)
                ));
            }
        }
        o.push('\n');
    }
    if !r.clocks.is_empty() {
        o.push_str("## Clocks\n\nEach node's clock against the machine that ran runbook (± half the round trip).\n\n| node | offset |\n|---|---|\n");
        for c in &r.clocks {
            o.push_str(&format!(
                "| {} | {:+.3} s ± {:.3} s |\n",
                cell(&c.node),
                c.offset,
                c.uncertainty
            ));
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
