//! `runbook plans`: the plans bundled in this binary, what each does and its parameters.

use serde::Serialize;

use super::{Done, EXIT_OK, Failure, print_out};
use crate::cli::DiagFormat;
use crate::plan::PlanFile;
use crate::plan::bundled;

#[derive(Serialize)]
struct PlanInfo {
    name: String,
    description: Option<String>,
    params: Vec<ParamInfo>,
}

#[derive(Serialize)]
struct ParamInfo {
    name: String,
    required: bool,
    default: Option<String>,
    description: Option<String>,
}

pub fn run(format: DiagFormat) -> Done {
    let mut plans = Vec::new();
    for b in bundled::all() {
        let file: std::sync::Arc<str> = b.file().into();
        // Every bundled plan is validated by the tests; one that does not parse is a bug here.
        let raw: PlanFile = crate::yaml::parse(b.text, &file, "plan").map_err(|_| {
            Failure::invalid(format!("the bundled plan {} does not parse", b.file()))
        })?;
        plans.push(PlanInfo {
            name: b.name.to_string(),
            description: raw.description.clone(),
            params: raw
                .params
                .iter()
                .map(|(name, p)| ParamInfo {
                    name: name.value.clone(),
                    required: p.required,
                    default: p.default.as_ref().map(|d| d.value.clone()),
                    description: p.description.clone(),
                })
                .collect(),
        });
    }
    let text = match format {
        DiagFormat::Json => serde_json::to_string_pretty(&plans).unwrap_or_default() + "\n",
        DiagFormat::Text => text(&plans),
    };
    print_out(&text)?;
    Ok(EXIT_OK)
}

/// A paragraph per plan: its name, what it does, then its parameters as `--set` takes them.
fn text(plans: &[PlanInfo]) -> String {
    let mut out = String::new();
    for p in plans {
        out.push_str(&format!("{}\n", p.name));
        if let Some(d) = &p.description {
            for line in textwrap::wrap(d.trim(), 88) {
                out.push_str(&format!("  {line}\n"));
            }
        }
        for param in &p.params {
            let need = match (&param.default, param.required) {
                (_, true) => "required".to_string(),
                (Some(d), false) => format!("default {d}"),
                (None, false) => "optional".to_string(),
            };
            out.push_str(&format!("  --set {}=...  ({need})", param.name));
            if let Some(d) = &param.description {
                out.push_str(&format!(": {}", d.trim()));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str("Run one by name: runbook apply NAME -i INVENTORY [--set NAME=VALUE ...]\n");
    out
}
