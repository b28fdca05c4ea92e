//! `runbook schedule`: what runs a reviewed plan unattended, written for the schedulers
//! operators already run — a systemd `.service` + `.timer`, or a Kubernetes CronJob. No
//! scheduler of runbook's own: these only call `runbook apply ... --approve FINGERPRINT`, so
//! any change to the plan, the inventory or a parameter refuses the run until it is reviewed
//! and scheduled again.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{Done, EXIT_OK, Failure, print_out, read_param_values, unreadable_failure};
use crate::cli::{ScheduleCommand, Scheduled};
use crate::graph::StepGraph;

pub fn run(cmd: ScheduleCommand) -> Done {
    match cmd {
        ScheduleCommand::Systemd {
            plan,
            on_calendar,
            metrics_file,
            runbook,
            environment_file,
            out,
        } => systemd(
            &plan,
            &on_calendar,
            metrics_file,
            runbook,
            environment_file,
            out,
        ),
        ScheduleCommand::Cronjob {
            plan,
            schedule,
            image,
            namespace,
            ssh_secret,
            out,
        } => cronjob(&plan, &schedule, &image, &namespace, &ssh_secret, out),
    }
}

/// The plan as reviewed: it compiles, and to the fingerprint given. Returns the graph and
/// the unit or object name.
fn reviewed(s: &Scheduled) -> Result<(StepGraph, String), Failure> {
    let sets = read_param_values(&s.input)?;
    let compiled = crate::pipeline::compile_files(&s.input.plan, &s.input.inventory, &sets)
        .map_err(|e| unreadable_failure(&e))?;
    eprint!("{}", compiled.diagnostics.render(&compiled.sources));
    let graph = compiled.graph.ok_or_else(|| {
        Failure::invalid(format!(
            "{} does not compile with {}; nothing to schedule",
            s.input.plan.display(),
            s.input.inventory.display()
        ))
    })?;
    let want = s.approve.strip_prefix("sha256:").unwrap_or(&s.approve);
    if graph.fingerprint.strip_prefix("sha256:") != Some(want) {
        return Err(Failure::usage(
            "refusing to schedule: the approval is for a different plan",
            &format!(
                "--approve {} but this plan compiles to {}",
                s.approve, graph.fingerprint
            ),
            Some(
                "review it with `runbook plan` (with the same -i and --set) and approve what it prints",
            ),
        ));
    }
    let name = s
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", graph.runbook.name, graph.runbook.inventory.cluster));
    if !crate::check::is_label(&name) {
        return Err(Failure::usage(
            &format!("{name:?} cannot name a unit or a Kubernetes object"),
            &"a name is lowercase letters, digits and '-', at most 63, not starting or ending with '-'",
            Some("pass --name"),
        ));
    }
    Ok((graph, format!("runbook-{name}")))
}

/// `apply`'s arguments for the scheduled run, with files as absolute paths (the scheduler
/// starts it elsewhere).
fn apply_args(s: &Scheduled, plan: &str, inventory: &str) -> Vec<String> {
    let mut args = vec![
        "apply".to_string(),
        plan.to_string(),
        "-i".into(),
        inventory.to_string(),
    ];
    for (k, v) in &s.input.set {
        args.push("--set".into());
        args.push(format!("{k}={v}"));
    }
    for (k, p) in &s.input.set_file {
        args.push("--set-file".into());
        args.push(format!("{k}={}", absolute(Path::new(p)).display()));
    }
    args.push("--approve".into());
    args.push(s.approve.clone());
    args
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// One argument of a unit's command line: double-quoted, with what systemd would otherwise
/// expand escaped (`%` specifiers, `$` variables, backslashes, quotes).
fn unit_word(arg: &str) -> Result<String, Failure> {
    if arg.chars().any(char::is_control) {
        return Err(Failure::usage(
            "cannot schedule this command line",
            &format!("{arg:?} contains a control character (newline, tab, ...)"),
            Some("a unit's command line is one line: pass the value in a file with --set-file"),
        ));
    }
    let escaped = arg
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    Ok(format!("\"{escaped}\""))
}

fn systemd(
    s: &Scheduled,
    on_calendar: &str,
    metrics_file: Option<PathBuf>,
    runbook: Option<PathBuf>,
    environment_file: Option<PathBuf>,
    out: Option<PathBuf>,
) -> Done {
    let (graph, unit) = reviewed(s)?;
    // EnvironmentFile= takes the path as it is (no quoting): one without blanks, `%` escaped.
    let environment = match environment_file {
        None => String::new(),
        Some(p) => {
            let p = absolute(&p).display().to_string();
            if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Failure::usage(
                    "cannot name this environment file in a unit",
                    &format!("{p:?} contains a blank or a control character"),
                    Some("move it to a path without blanks"),
                ));
            }
            format!(
                "# The run's variables (e.g. AWS_ENDPOINT_URL and credentials), kept out of this file.\n\
EnvironmentFile={}\n",
                p.replace('%', "%%")
            )
        }
    };
    let inventory = absolute(&s.input.inventory).display().to_string();
    let binary = match runbook {
        Some(p) => absolute(&p),
        None => std::env::current_exe().map_err(|e| {
            Failure::usage(
                "cannot tell where this runbook is",
                &e,
                Some("pass --runbook PATH"),
            )
        })?,
    };
    let mut args = vec![binary.display().to_string()];
    let plan = crate::plan::bundled::reference(&s.input.plan)
        .display()
        .to_string();
    args.extend(apply_args(s, &plan, &inventory));
    if let Some(m) = &metrics_file {
        args.push("--metrics-file".into());
        args.push(absolute(m).display().to_string());
    }
    let exec = args
        .iter()
        .map(|a| unit_word(a))
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    if on_calendar.chars().any(char::is_control) || on_calendar.trim().is_empty() {
        return Err(Failure::usage(
            "--on-calendar is not a calendar spec",
            &format!("{on_calendar:?}"),
            Some(
                "e.g. daily, or '*-*-* 02:30:00' (see systemd.time(7); `systemd-analyze calendar SPEC` checks one)",
            ),
        ));
    }
    let what = format!(
        "{} on {}",
        graph.runbook.name, graph.runbook.inventory.cluster
    );
    let service = format!(
        "# Written by `runbook schedule systemd`: the reviewed plan {what},\n\
# fingerprint {fp}.\n\
# A change to the plan, the inventory or a parameter refuses the run until it is reviewed\n\
# and scheduled again.\n\
[Unit]\n\
Description=runbook: {what}\n\
Wants=network-online.target\n\
After=network-online.target\n\
\n\
[Service]\n\
Type=oneshot\n\
# Runs (.runbook/runs/<run-id>) and the cluster's lock live here; runbook refuses to start\n\
# while another run holds the cluster, and systemd starts no second run of this unit.\n\
StateDirectory=runbook\n\
WorkingDirectory=/var/lib/runbook\n\
{environment}\
ExecStart={exec}\n",
        fp = graph.fingerprint,
    );
    let timer = format!(
        "# Written by `runbook schedule systemd`: when {unit}.service runs.\n\
[Unit]\n\
Description=runbook: {what}, on schedule\n\
\n\
[Timer]\n\
OnCalendar={on_calendar}\n\
# At the time asked, not within systemd's default minute of slack.\n\
AccuracySec=1s\n\
# A run missed while the machine was off runs when it is back.\n\
Persistent=true\n\
Unit={unit}.service\n\
\n\
[Install]\n\
WantedBy=timers.target\n"
    );
    let dir = out.unwrap_or_else(|| PathBuf::from("."));
    // Both written beside their names first, then renamed: never a timer without its service.
    let mut staged = Vec::new();
    for (file, text) in [
        (format!("{unit}.service"), &service),
        (format!("{unit}.timer"), &timer),
    ] {
        let path = dir.join(&file);
        let cannot = |e: &dyn std::fmt::Display| {
            Failure::usage(&format!("cannot write {}", path.display()), e, None)
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{file}"))
            .tempfile_in(&dir)
            .map_err(|e| cannot(&e))?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| cannot(&e))?;
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .map_err(|e| cannot(&e))?;
        staged.push((tmp, path));
    }
    for (tmp, path) in staged {
        tmp.persist(&path).map_err(|e| {
            Failure::usage(&format!("cannot write {}", path.display()), &e.error, None)
        })?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("then: systemctl daemon-reload && systemctl enable --now {unit}.timer");
    Ok(EXIT_OK)
}

/// Where a file the inventory names is in the container: `~` is root's home there, a
/// relative path is beside the mounted inventory.
fn in_container(path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("/root/{rest}"),
        None if path.starts_with('/') => path.to_string(),
        None => format!("{INVENTORY_DIR}/{path}"),
    }
}

const INVENTORY_DIR: &str = "/etc/runbook";

fn cronjob(
    s: &Scheduled,
    schedule: &str,
    image: &str,
    namespace: &str,
    ssh_secret: &str,
    out: Option<PathBuf>,
) -> Done {
    let (graph, name) = reviewed(s)?;
    for (what, v) in [("--namespace", namespace), ("--ssh-secret", ssh_secret)] {
        if !crate::check::is_label(v) {
            return Err(Failure::usage(
                &format!("{what} {v:?} cannot name a Kubernetes object"),
                &"lowercase letters, digits and '-', at most 63",
                None,
            ));
        }
    }

    if let Some((k, p)) = s.input.set_file.first() {
        return Err(Failure::usage(
            "cannot schedule --set-file in a CronJob",
            &format!("--set-file {k}={p} names a file on this machine, not in the container"),
            Some("pass the value with --set, or bake the file into the image"),
        ));
    }
    // A bundled plan is in the image's runbook; a plan file travels in the ConfigMap, as the
    // operator's path does not exist in the container.
    let read = |path: &Path| {
        crate::input::read_bytes(path, crate::input::DOCUMENT_LIMIT)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Failure::usage(
                    &format!("cannot read {}", path.display()),
                    &"it compiled a moment ago",
                    None,
                )
            })
    };
    let mut data = serde_json::Map::new();
    let plan = match crate::plan::bundled::lookup(&s.input.plan) {
        Some(b) => b.file(),
        None => {
            data.insert("plan.yaml".into(), read(&s.input.plan)?.into());
            format!("{INVENTORY_DIR}/plan.yaml")
        }
    };
    data.insert("inventory.yaml".into(), read(&s.input.inventory)?.into());
    let inventory = format!("{INVENTORY_DIR}/inventory.yaml");
    let mut mounts =
        vec![json!({ "name": "inventory", "mountPath": INVENTORY_DIR, "readOnly": true })];
    // Each SSH file the inventory names (per node, usually one each) is the Secret's key of
    // that kind, mounted where the inventory says.
    let mut paths: Vec<(&str, String)> = Vec::new();
    for n in &graph.runbook.inventory.nodes {
        for (key, file) in [
            ("identity", &n.ssh.identity_file),
            ("known_hosts", &n.ssh.known_hosts),
            ("config", &n.ssh.config_file),
        ] {
            if let Some(f) = file {
                let at = in_container(f);
                if !paths.iter().any(|(_, p)| *p == at) {
                    paths.push((key, at));
                }
            }
        }
    }
    for (key, at) in paths {
        mounts.push(json!({
            "name": "ssh",
            "mountPath": at,
            "subPath": key,
            "readOnly": true,
        }));
    }
    let labels = json!({
        "app.kubernetes.io/name": "runbook",
        "app.kubernetes.io/instance": name,
    });
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "data": data,
    });
    let cron = json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": { "runbook/fingerprint": graph.fingerprint },
        },
        "spec": {
            "schedule": schedule,
            // One run at a time (runbook's own lock would refuse a second anyway), and a
            // failed run is not retried blindly: it is looked at, then resumed.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": { "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "runbook",
                            "image": image,
                            "args": apply_args(s, &plan, &inventory),
                            "volumeMounts": mounts,
                        }],
                        "volumes": [
                            { "name": "inventory", "configMap": { "name": name } },
                            { "name": "ssh", "secret": { "secretName": ssh_secret, "defaultMode": 0o400 } },
                        ],
                    },
                },
            }},
        },
    });
    let mut text = String::from(
        "# Written by `runbook schedule cronjob`: a change to the plan, the inventory or a\n# parameter refuses the run until it is reviewed and scheduled again.\n",
    );
    for doc in [&config_map, &cron] {
        text.push_str("---\n");
        text.push_str(
            &serde_saphyr::to_string(doc)
                .map_err(|e| Failure::invalid(format!("cannot write the manifest: {e}")))?,
        );
    }
    match out {
        None => print_out(&text)?,
        Some(path) => std::fs::write(&path, &text)
            .map_err(|e| Failure::usage(&format!("cannot write {}", path.display()), &e, None))?,
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_word_keeps_what_systemd_would_expand() {
        assert_eq!(unit_word("a b").unwrap(), "\"a b\"");
        assert_eq!(
            unit_word("x=$HOME%n\"q\"\\").unwrap(),
            "\"x=$$HOME%%n\\\"q\\\"\\\\\""
        );
        assert!(unit_word("a\nb").is_err());
        assert_eq!(in_container("~/.ssh/id"), "/root/.ssh/id");
        assert_eq!(in_container("keys/id"), "/etc/runbook/keys/id");
    }
}
