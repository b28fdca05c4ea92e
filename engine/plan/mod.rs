//! The plan file as written: serde types that hold no logic, mirrored by the JSON Schema.

pub mod bundled;
pub mod load;

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::located::Sp;

/// A runbook plan: named parameters and the steps of one procedure.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Short name of the plan, e.g. `etcd-restore-ha`.
    pub name: Sp<String>,
    /// What the plan does, for the reviewer.
    #[serde(default)]
    pub description: Option<String>,
    /// Parameters, set with `--set NAME=VALUE` or `--set-file NAME=PATH`.
    #[serde(default)]
    pub params: BTreeMap<Sp<String>, ParamSpec>,
    /// The steps, in the order a reader should see them; execution order follows `needs`.
    pub steps: Vec<StepSpec>,
}

/// One plan parameter.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(default)]
    pub description: Option<String>,
    /// The plan cannot compile without a value for it.
    #[serde(default)]
    pub required: bool,
    /// Used when no value is set; may be a template over `cluster` and `plan`.
    #[serde(default)]
    pub default: Option<Sp<String>>,
}

/// One step; it fans out to one instance per node with `for_each`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Step id: lowercase letters, digits and `-`. Instances are `ID@NODE`.
    pub id: Sp<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Where a single-instance step runs: `local` (the operator's machine, the default) or a node name.
    #[serde(default)]
    pub on: Option<Sp<String>>,
    /// Fan out over nodes, by role or by name.
    #[serde(default)]
    pub for_each: Option<Sp<ForEach>>,
    /// A typed action, e.g. `etcd.restore`. Exactly one of `action` and `run`.
    #[serde(default)]
    pub action: Option<Sp<String>>,
    /// Raw shell, the escape hatch. Every `{{ value }}` is shell-quoted unless filtered with `| raw`.
    #[serde(default)]
    pub run: Option<Sp<String>>,
    /// The action's arguments; string values are templates.
    #[serde(default)]
    pub with: BTreeMap<Sp<String>, Sp<serde_json::Value>>,
    /// Steps that must finish first: `STEP` waits for every instance, `{ step, same_node: true }` pairs by node.
    #[serde(default)]
    pub needs: Vec<Sp<Need>>,
    /// The step changes the cluster in a way that needs an operator's approval and a rollback note.
    #[serde(default)]
    pub destructive: bool,
    /// How to undo the step by hand (a template); required for destructive steps.
    #[serde(default)]
    pub rollback: Option<Sp<String>>,
    /// Time limit for one attempt, e.g. `90s`, `5m`. Defaults to the action's own.
    #[serde(default)]
    pub timeout: Option<Sp<String>>,
    /// Extra attempts after a failure, with doubling backoff.
    #[serde(default)]
    pub retries: Option<Sp<u32>>,
    /// A condition over `params`, `cluster` and `node`; the instance is left out when false.
    #[serde(default)]
    pub when: Option<Sp<String>>,
    /// Store the step's trimmed stdout under this name; later templates read `captures.NAME`.
    #[serde(default)]
    pub capture: Option<Sp<String>>,
    /// Ask before running, even if not destructive.
    #[serde(default)]
    pub confirm: bool,
    /// Safe to run again after a crash left it unfinished.
    #[serde(default)]
    pub idempotent: bool,
}

/// Which nodes a step fans out over.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForEach {
    /// Every node carrying this role, in inventory order.
    #[serde(default)]
    pub role: Option<Sp<String>>,
    /// These nodes, by name.
    #[serde(default)]
    pub nodes: Option<Vec<Sp<String>>>,
    /// Only the first N of those nodes (e.g. 1 for a cluster-wide check run from one member).
    #[serde(default)]
    pub limit: Option<Sp<u32>>,
}

/// A dependency: a step id, or a step paired node by node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub step: String,
    pub same_node: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NeedMap {
    step: String,
    #[serde(default)]
    same_node: bool,
}

impl<'de> Deserialize<'de> for Need {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NeedVisitor;
        impl<'de> Visitor<'de> for NeedVisitor {
            type Value = Need;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a step id or a map { step: ID, same_node: true }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Need, E> {
                Ok(Need {
                    step: v.to_string(),
                    same_node: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Need, A::Error> {
                let m = NeedMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Need {
                    step: m.step,
                    same_node: m.same_node,
                })
            }
        }
        d.deserialize_any(NeedVisitor)
    }
}

impl JsonSchema for Need {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Need".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A step id (wait for all its instances), or { step, same_node } to pair instances node by node.",
            "oneOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["step"],
                    "properties": {
                        "step": { "type": "string" },
                        "same_node": { "type": "boolean", "default": false }
                    }
                }
            ]
        })
    }
}
