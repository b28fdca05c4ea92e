//! JSON Schemas (draft-07, for yaml-language-server) of plans and inventories, including
//! each typed action's `with:` arguments.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::action::ACTIONS;
use crate::inventory::InventoryFile;
use crate::plan::PlanFile;

pub fn plan() -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let actions: Vec<(&str, &str, Value)> = ACTIONS
        .iter()
        .map(|a| (a.name, a.summary, (a.schema)(&mut generator).to_value()))
        .collect();
    let mut v = generator.into_root_schema_for::<PlanFile>().to_value();
    v["title"] = json!("runbook plan");
    let step = &mut v["definitions"]["StepSpec"];
    let names: Vec<&str> = actions.iter().map(|(n, _, _)| *n).collect();
    step["properties"]["action"] = json!({
        "description": "A typed action. Exactly one of `action` and `run`.",
        "type": "string",
        "enum": names,
    });
    let rules: Vec<Value> = actions
        .iter()
        .map(|(name, summary, args)| {
            let mut args = args.clone();
            if args.get("description").is_none() {
                args["description"] = json!(format!("Arguments of {name}: {summary}."));
            }
            json!({
                "if": { "properties": { "action": { "const": name } }, "required": ["action"] },
                "then": { "properties": { "with": args } }
            })
        })
        .collect();
    step["allOf"] = Value::Array(rules);
    v
}

pub fn inventory() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let mut v = generator.into_root_schema_for::<InventoryFile>().to_value();
    v["title"] = json!("runbook inventory");
    v
}

/// Pretty JSON with a final newline, as committed under `schemas/`.
pub fn to_text(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("schema serializes");
    s.push('\n');
    s
}
