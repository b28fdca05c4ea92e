//! Plan parameters: `--set` / `--set-file` values, defaults (templates), required ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::context;
use super::template::Templates;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::inventory::model::Inventory;
use crate::plan::PlanFile;

/// A value given on the command line. Taken literally: `{{` in it is not a template.
#[derive(Debug, Clone)]
pub struct ParamValue {
    pub name: String,
    pub value: String,
    /// `--set snapshot=...` or `--set-file snapshot=...`, for error messages.
    pub origin: String,
}

pub fn resolve(
    raw: &PlanFile,
    file: &Arc<str>,
    inventory: &Inventory,
    sets: &[ParamValue],
    templates: &Templates,
    values: &super::RunValues,
    ds: &mut Diagnostics,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for set in sets {
        if !raw.params.keys().any(|k| k.value == set.name) {
            let known: Vec<&str> = raw.params.keys().map(|k| k.value.as_str()).collect();
            ds.push(
                Diagnostic::error(
                    "unknown-param",
                    Loc::command_line(),
                    format!(
                        "`{}` sets `{}`, which is not a parameter of plan `{}`",
                        set.origin, set.name, raw.name.value
                    ),
                )
                .hint(if known.is_empty() {
                    "this plan takes no parameters".to_string()
                } else {
                    format!("parameters: {}", known.join(", "))
                }),
            );
        }
    }
    let defaults_ctx = context::for_defaults(inventory, &raw.name, values);
    for (name, spec) in &raw.params {
        if !crate::check::is_label(&name.value.replace('_', "-")) {
            ds.push(
                Diagnostic::error(
                    "invalid-param-name",
                    name.loc(file),
                    format!("parameter name {:?} is not valid", name.value),
                )
                .hint("use lowercase letters, digits, '_' and '-'"),
            );
        }
        if let Some(set) = sets.iter().rev().find(|s| s.name == name.value) {
            out.insert(name.value.clone(), set.value.clone());
            continue;
        }
        if spec.required && spec.default.is_some() {
            ds.push(
                Diagnostic::warning(
                    "required-with-default",
                    name.loc(file),
                    format!(
                        "parameter `{}` is required but also has a default",
                        name.value
                    ),
                )
                .hint("drop `required: true` or the default"),
            );
        }
        match &spec.default {
            Some(default) => match templates.render_text(default, &defaults_ctx) {
                Ok(v) => {
                    out.insert(name.value.clone(), v);
                }
                Err(e) => ds.push(
                    Diagnostic::error(
                        "template",
                        default.loc(file),
                        format!("in the default of `{}`: {}", name.value, e.message),
                    )
                    .hint("defaults see cluster, plan and etcd (not params or node)"),
                ),
            },
            None if spec.required => {
                let what = spec
                    .description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                ds.push(
                    Diagnostic::error(
                        "missing-param",
                        name.loc(file),
                        format!("required parameter `{}`{what} has no value", name.value),
                    )
                    .hint(format!("pass `--set {}=VALUE`", name.value)),
                );
            }
            None => {}
        }
    }
    out
}
