//! The compiled plan as a reviewer reads it (text), as tools read it (JSON), and as
//! diagrams (mermaid, Graphviz dot).

use std::fmt::Write as _;

use super::StepGraph;

/// Output formats of `runbook plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Mermaid,
    Dot,
}

pub fn render(g: &StepGraph, format: PlanFormat) -> String {
    match format {
        PlanFormat::Text => text(g),
        PlanFormat::Json => json(g),
        PlanFormat::Mermaid => mermaid(g),
        PlanFormat::Dot => dot(g),
    }
}

pub fn json(g: &StepGraph) -> String {
    let v = serde_json::json!({
        "fingerprint": g.fingerprint,
        "plan": g.runbook.name,
        "cluster": g.runbook.inventory.cluster,
        "params": g.runbook.params,
        "run_values": g
            .run_values()
            .iter()
            .map(|(v, meaning)| serde_json::json!({ "value": v, "meaning": meaning }))
            .collect::<Vec<_>>(),
        "steps": g.steps_json(),
    });
    let mut s = serde_json::to_string_pretty(&v).expect("plan serializes");
    s.push('\n');
    s
}

/// The change plan a reviewer signs: numbered steps by stage, where each runs, the exact
/// commands, and the rollback note of every destructive step.
pub fn text(g: &StepGraph) -> String {
    let rb = &g.runbook;
    let inv = &rb.inventory;
    let mut o = String::new();
    let _ = writeln!(o, "Plan: {}", rb.name);
    if let Some(d) = &rb.description {
        for line in wrap(d.trim(), 84) {
            let _ = writeln!(o, "      {line}");
        }
    }
    let members: Vec<&str> = inv.etcd_members().iter().map(|n| n.name.as_str()).collect();
    let _ = writeln!(
        o,
        "Cluster: {} ({} etcd member{}: {}; etcd {})",
        inv.cluster,
        members.len(),
        if members.len() == 1 { "" } else { "s" },
        members.join(", "),
        inv.etcd.version
    );
    if !rb.params.is_empty() {
        let _ = writeln!(o, "Parameters:");
        for (k, v) in &rb.params {
            let _ = writeln!(o, "  {k} = {v}");
        }
    }
    let destructive = rb.instances.iter().filter(|i| i.destructive).count();
    let stages = g.stage.iter().max().map_or(0, |m| m + 1);
    let _ = writeln!(
        o,
        "Steps: {} ({} destructive) in {} stage{}",
        rb.instances.len(),
        destructive,
        stages,
        if stages == 1 { "" } else { "s" }
    );
    let _ = writeln!(o, "Fingerprint: {}", g.fingerprint);
    let run_values = g.run_values();
    if !run_values.is_empty() {
        let _ = writeln!(
            o,
            "Known at run time (not in the fingerprint: one approval covers every run):"
        );
        for (v, meaning) in run_values {
            let _ = writeln!(o, "  {v} = {meaning}");
        }
    }

    let mut current_stage = usize::MAX;
    for (n, &i) in g.order.iter().enumerate() {
        let inst = g.instance(i);
        if g.stage[i] != current_stage {
            current_stage = g.stage[i];
            let _ = writeln!(o, "\n== Stage {} ==", current_stage + 1);
        }
        let place = match g.runbook.node_of(inst) {
            Some(node) => format!("on {} ({})", node.name, node.address),
            None => "on this machine".to_string(),
        };
        let mark = if inst.destructive {
            "  [DESTRUCTIVE]"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "\n{:>3}. {}  {}  [{}]{}",
            n + 1,
            inst.id,
            place,
            inst.action_name,
            mark
        );
        if let Some(d) = &inst.description {
            let _ = writeln!(o, "     {}", d.trim());
        }
        if !inst.needs.is_empty() {
            let needs = g.runbook.need_ids(inst);
            let _ = writeln!(o, "     after: {}", needs.join(", "));
        }
        let mut opts = vec![format!("timeout {}", human(inst.timeout))];
        if inst.retries > 0 {
            opts.push(format!("{} retries", inst.retries));
        }
        if inst.idempotent {
            opts.push("safe to re-run".into());
        }
        if inst.confirm && !inst.destructive {
            opts.push("asks for confirmation".into());
        }
        if let Some(c) = &inst.capture {
            opts.push(format!("captures `{c}`"));
        }
        let _ = writeln!(o, "     ({})", opts.join(", "));
        for c in inst.commands() {
            let mut lines = c.lines();
            if let Some(first) = lines.next() {
                let _ = writeln!(o, "     $ {first}");
            }
            for l in lines {
                let _ = writeln!(o, "       {l}");
            }
        }
        for r in inst.action.runtime_values() {
            let _ = writeln!(o, "     where ${} = {}", r.var, r.meaning);
        }
        if let Some(r) = &inst.rollback {
            let wrapped = wrap(r.trim(), 80);
            let mut lines = wrapped.iter();
            if let Some(first) = lines.next() {
                let _ = writeln!(o, "     rollback: {first}");
            }
            for l in lines {
                let _ = writeln!(o, "               {l}");
            }
        }
    }
    o
}

/// Greedy word wrap for prose (descriptions), never for commands: line breaks and runs of
/// spaces in the YAML are folded first, and a word longer than the line (a path, a URL) is
/// kept whole rather than cut or split at its hyphens.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let prose = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let options = textwrap::Options::new(width)
        .wrap_algorithm(textwrap::WrapAlgorithm::FirstFit)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .break_words(false);
    textwrap::wrap(&prose, options)
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|l| l.into_owned())
        .collect()
}

fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn mermaid(g: &StepGraph) -> String {
    let mut o = String::from("flowchart TD\n");
    for &i in &g.order {
        let inst = g.instance(i);
        let label = format!("{}<br/>{}", inst.id, inst.action_name).replace('"', "#quot;");
        let _ = writeln!(o, "  s{i}[\"{label}\"]");
        if inst.destructive {
            let _ = writeln!(o, "  class s{i} destructive");
        }
    }
    for &i in &g.order {
        for j in &g.instance(i).needs {
            let _ = writeln!(o, "  s{} --> s{i}", j.0);
        }
    }
    o.push_str("  classDef destructive fill:#fdd,stroke:#c00\n");
    o
}

/// Written by hand rather than with `petgraph::dot::Dot`: Dot names nodes by their petgraph
/// index and writes them in insertion order, with no graph name. Here a node is named by its
/// instance id (`"restore@cp1"`) and listed in execution order, so the diagram of a reviewed
/// plan diffs cleanly when a step is added, and tools can select nodes by id.
fn dot(g: &StepGraph) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut o = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box];\n",
        esc(&g.runbook.name)
    );
    for &i in &g.order {
        let inst = g.instance(i);
        let style = if inst.destructive {
            ", color=red, penwidth=2"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "  \"{}\" [label=\"{}\\n{}\"{style}];",
            esc(&inst.id),
            esc(&inst.id),
            esc(&inst.action_name)
        );
    }
    for &i in &g.order {
        let inst = g.instance(i);
        for need in g.runbook.need_ids(inst) {
            let _ = writeln!(o, "  \"{}\" -> \"{}\";", esc(need), esc(&inst.id));
        }
    }
    o.push_str("}\n");
    o
}
