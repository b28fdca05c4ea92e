//! Tool detection: before the first step, every node is asked for the etcd tools the plan
//! will run there (etcdutl, etcdctl), and their versions. A missing tool, one that is there
//! but does not run (`TOOL version` fails or prints no version: a broken download, a missing
//! library), or a restore tool whose version is not the inventory's refuses the run with the
//! remedy — instead of failing halfway, with the cluster already stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use crate::action::Tool;
use crate::executor::{Executor, Target};
use crate::graph::StepGraph;
use crate::inventory::model::Node;
use crate::inventory::version::EtcdVersion;
use crate::shell::quote;

/// A tool a step needs on a node, and the first step that needs it.
#[derive(Debug, Clone)]
struct Need {
    tool: Tool,
    step: String,
}

fn needs(g: &StepGraph) -> BTreeMap<String, Vec<Need>> {
    let mut out: BTreeMap<String, Vec<Need>> = BTreeMap::new();
    for inst in &g.runbook.instances {
        let Some(node) = g.runbook.node_of(inst) else {
            continue;
        };
        for tool in inst.action.tools(node) {
            let list = out.entry(node.name.clone()).or_default();
            if !list.iter().any(|n| n.tool == tool) {
                list.push(Need {
                    tool,
                    step: inst.id.clone(),
                });
            }
        }
    }
    out
}

/// The shell that asks a node about one tool, printing one line: `PATH<TAB>missing`,
/// `PATH<TAB>ok<TAB>VERSION LINE`, or `PATH<TAB>broken<TAB>EXIT STATUS<TAB>FIRST LINE` when
/// `TOOL version` fails or prints no `version:` line.
fn probe(path: &str) -> String {
    let t = quote(path);
    format!(
        "if command -v {t} >/dev/null 2>&1; then \
           out=$({t} version 2>&1); rc=$?; \
           line=$(printf '%s\\n' \"$out\" | grep -m 1 'version:'); \
           if [ \"$rc\" -eq 0 ] && [ -n \"$line\" ]; then printf '%s\\tok\\t%s\\n' {t} \"$line\"; \
           else printf '%s\\tbroken\\t%s\\t%s\\n' {t} \"$rc\" \"$(printf '%s\\n' \"$out\" | head -n 1 | tr '\\t' ' ' | cut -c 1-200)\"; fi; \
         else printf '%s\\tmissing\\n' {t}; fi; "
    )
}

/// Asks each node, all at once; returns every problem found, with its remedy.
pub async fn check<E: Executor>(exec: &E, g: &StepGraph) -> Vec<String> {
    let wanted = needs(g);
    let inv = &g.runbook.inventory;
    let asks = wanted.iter().filter_map(|(name, list)| {
        let node: &Node = inv.node(name)?;
        Some(async move {
            let script: String = list.iter().map(|n| probe(&n.tool.path)).collect();
            let out = exec
                .shell(Target::Node(node), &script, &[], Duration::from_secs(30))
                .await;
            (node, list, out)
        })
    });
    let mut problems = Vec::new();
    for (node, list, out) in join_all(asks).await {
        let out = match out {
            Ok(o) if o.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => {
                problems.push(format!(
                    "cannot look for etcd tools on {}: {}",
                    node.name,
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!("cannot look for etcd tools on {}: {e}", node.name));
                continue;
            }
        };
        for (need, line) in list.iter().zip(out.lines()) {
            let mut f = line.split('\t');
            let (_, state, version) = (f.next(), f.next(), f.next().unwrap_or(""));
            let (path, field) = (&need.tool.path, need.tool.field);
            match state {
                Some("ok") => {}
                Some("broken") => {
                    let said = f.next().unwrap_or("").trim();
                    let said = if said.is_empty() {
                        "no output".to_string()
                    } else {
                        format!("`{said}`")
                    };
                    problems.push(format!(
                        "{}: {} is there but does not run (`{} version` exited {version} with {said}; needed by {}): reinstall it, or set {field} in the inventory to a working build",
                        node.name, path, path, need.step
                    ));
                    continue;
                }
                _ => {
                    problems.push(format!(
                        "{} has no {} (needed by {}): install it there, or set {field} in the inventory to where it is",
                        node.name, path, need.step
                    ));
                    continue;
                }
            }
            let found = version
                .split("version:")
                .nth(1)
                .and_then(|v| EtcdVersion::parse(v).ok());
            if let (Some(want), Some(have)) = (need.tool.version, found)
                && (want.major, want.minor) != (have.major, have.minor)
            {
                problems.push(format!(
                    "{}: {} is {}.{}.{} but the inventory says etcd {}.{}.{} (it decides the restore's tool and flags): fix etcd.version, or point the tool at a matching build",
                    node.name,
                    path,
                    have.major,
                    have.minor,
                    have.patch,
                    want.major,
                    want.minor,
                    want.patch
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::probe;
    use std::os::unix::fs::PermissionsExt;

    /// Runs the probe with sh against a tool script, as a node would.
    fn ask(tool_body: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("etcdutl");
        if let Some(body) = tool_body {
            std::fs::write(&tool, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(probe(&tool.display().to_string()))
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_once('\t').unwrap().1.trim_end().to_string()
    }

    #[test]
    fn a_working_tool_reports_its_version_line() {
        let said = ask(Some(
            "echo 'etcdutl version: 3.6.16'; echo 'API version: 3.6'",
        ));
        assert_eq!(said, "ok\tetcdutl version: 3.6.16");
    }

    #[test]
    fn a_tool_that_fails_or_prints_no_version_is_broken() {
        let failed = ask(Some(
            "echo 'cannot execute: required file not found' >&2; exit 127",
        ));
        assert_eq!(
            failed,
            "broken\t127\tcannot execute: required file not found"
        );
        let silent = ask(Some("exit 0"));
        assert_eq!(silent, "broken\t0");
    }

    #[test]
    fn an_absent_tool_is_missing() {
        assert_eq!(ask(None), "missing");
    }
}
