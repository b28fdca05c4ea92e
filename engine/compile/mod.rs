//! Raw plan + inventory + parameters -> [`Runbook`]: fan-out, templates, typed actions,
//! dependencies. Every error is collected and located before the compile fails.

pub mod context;
pub mod params;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::action::{self, Action, ArgError, Ctx, run::Run};
use crate::check;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::inventory::model::{Inventory, Node};
use crate::located::Sp;
use crate::plan::load::LoadedPlan;
use crate::plan::{Need, StepSpec};
use template::{TemplateError, Templates};

pub use params::ParamValue;

/// A compiled, checked plan: every step instance with its rendered commands.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub description: Option<String>,
    pub plan_file: Arc<str>,
    pub inventory: Inventory,
    pub params: BTreeMap<String, String>,
    /// Instances in plan order: by step as written, then by node in inventory order.
    pub instances: Vec<Instance>,
}

/// One step on one node (or on the operator's machine).
#[derive(Debug, Clone)]
pub struct Instance {
    /// `STEP@NODE`, or `STEP` for a single-instance step.
    pub id: String,
    pub step: String,
    /// Position of the step in the plan file, for stable ordering.
    pub step_index: usize,
    /// `None`: the operator's machine.
    pub node: Option<String>,
    pub needs: Vec<String>,
    pub destructive: bool,
    pub confirm: bool,
    pub idempotent: bool,
    pub action_name: String,
    pub action: Action,
    pub description: Option<String>,
    pub rollback: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub capture: Option<String>,
    /// Where the step's `id:` is written.
    pub loc: Loc,
    /// Where each `with:` key is written, for lints pointing at an argument.
    pub with_locs: BTreeMap<String, Loc>,
}

impl Instance {
    pub fn commands(&self) -> Vec<String> {
        self.action.commands().iter().map(|c| c.display()).collect()
    }

    /// Location of a `with:` argument, or of the step when the argument was defaulted.
    pub fn arg_loc(&self, field: &str) -> Loc {
        self.with_locs
            .get(field)
            .cloned()
            .unwrap_or_else(|| self.loc.clone())
    }
}

/// Where a step runs before fan-out.
enum Targets<'a> {
    Local,
    Nodes(Vec<&'a Node>),
}

struct StepEntry<'a> {
    spec: &'a StepSpec,
    index: usize,
    targets: Targets<'a>,
}

/// Compile a loaded plan against an inventory. Returns the runbook when there are no errors,
/// and every diagnostic found along the way.
pub fn compile(
    plan: &LoadedPlan,
    inventory: &Inventory,
    sets: &[ParamValue],
) -> (Option<Runbook>, Diagnostics) {
    let file = &plan.file;
    let raw = &plan.raw;
    let mut ds = Diagnostics::default();
    let templates = Templates::new();

    let params = params::resolve(raw, file, inventory, sets, &templates, &mut ds);

    // Node names in `on` and `for_each.nodes` may be templates over `params` and `cluster`
    // (e.g. `on: "{{ params.survivor }}"`), resolved here so an unknown node is a located error.
    let names_ctx = context::for_instance(inventory, &raw.name, &params, None, None);
    // A wrong parameter is reported once, where it is first used, not at every step using it.
    let reported = std::cell::RefCell::new(std::collections::HashSet::new());
    let node_name = |s: &Sp<String>, ds: &mut Diagnostics| -> Option<String> {
        if !s.value.contains("{{") {
            return Some(s.value.clone());
        }
        let name = templates
            .render_text(&s.value, &names_ctx)
            .map(|v| v.trim().to_string())
            .map_err(|err| ds.push(template_error(&err, s.loc(file), "a node name")))
            .ok()?;
        if name == "local" || inventory.node(&name).is_some() {
            return Some(name);
        }
        if reported.borrow_mut().insert(name.clone()) {
            let mut d = unknown_node(&name, s.loc(file), inventory);
            d.message = format!("node `{name}` (from `{}`) is not in the inventory", s.value);
            ds.push(d);
        }
        None
    };

    // Pass 1: step ids and targets.
    let mut entries: Vec<StepEntry> = Vec::new();
    let mut ids: HashMap<&str, Loc> = HashMap::new();
    for (index, spec) in raw.steps.iter().enumerate() {
        let loc = spec.id.loc(file);
        if !is_step_id(&spec.id) {
            ds.push(
                Diagnostic::error(
                    "invalid-step-id",
                    loc.clone(),
                    format!("step id {:?} is not valid", spec.id.value),
                )
                .hint("use lowercase letters, digits and '-', starting with a letter"),
            );
        }
        if let Some(first) = ids.insert(&spec.id, loc.clone()) {
            ds.push(
                Diagnostic::error(
                    "duplicate-step-id",
                    loc.clone(),
                    format!("step id `{}` is used twice", spec.id.value),
                )
                .note(first, "first used here")
                .hint("give every step its own id"),
            );
            continue;
        }
        match (&spec.action, &spec.run) {
            (Some(_), Some(_)) => ds.push(
                Diagnostic::error(
                    "action-and-run",
                    loc.clone(),
                    format!("step `{}` has both `action` and `run`", spec.id.value),
                )
                .hint("a step does one thing: keep the typed action, or the raw shell"),
            ),
            (None, None) => ds.push(
                Diagnostic::error(
                    "missing-action",
                    loc.clone(),
                    format!("step `{}` has neither `action` nor `run`", spec.id.value),
                )
                .hint("add `action: etcd.restore` (see `runbook schema plan`) or `run: <shell>`"),
            ),
            (Some(a), None) if action::lookup(a).is_none() => ds.push(
                Diagnostic::error(
                    "unknown-action",
                    a.loc(file),
                    format!("unknown action `{}`", a.value),
                )
                .hint(format!(
                    "known actions: {}",
                    action::ACTIONS
                        .iter()
                        .map(|a| a.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
            (None, Some(_)) if !spec.with.is_empty() => ds.push(
                Diagnostic::error(
                    "with-on-run",
                    spec.with
                        .keys()
                        .next()
                        .map(|k| k.loc(file))
                        .unwrap_or(loc.clone()),
                    "`with:` has no meaning on a `run:` step",
                )
                .hint("write the values into the script with {{ params.NAME }}"),
            ),
            _ => {}
        }
        let targets = targets(spec, file, inventory, &node_name, &mut ds);
        entries.push(StepEntry {
            spec,
            index,
            targets,
        });
    }

    // Pass 2: dependencies between steps (unknown ids, cycles).
    let by_id: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.spec.id.value.as_str(), i))
        .collect();
    for e in &entries {
        for need in &e.spec.needs {
            if !by_id.contains_key(need.step.as_str()) {
                ds.push(
                    Diagnostic::error(
                        "unknown-step",
                        need.loc(file),
                        format!(
                            "step `{}` needs `{}`, which is not a step of this plan",
                            e.spec.id.value, need.step
                        ),
                    )
                    .hint(suggest(&need.step, by_id.keys().copied())),
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(&entries, &by_id) {
        let path: Vec<&str> = cycle
            .iter()
            .map(|&i| entries[i].spec.id.value.as_str())
            .collect();
        let first = &entries[cycle[0]];
        let mut d = Diagnostic::error(
            "dependency-cycle",
            first.spec.id.loc(file),
            format!(
                "steps depend on each other in a cycle: {} -> {}",
                path.join(" -> "),
                path[0]
            ),
        )
        .hint("remove one of these `needs` so the steps have an order");
        for w in cycle.windows(2) {
            let from = &entries[w[0]];
            let to = &entries[w[1]].spec.id.value;
            if let Some(n) = from.spec.needs.iter().find(|n| &n.step == to) {
                d = d.note(
                    n.loc(file),
                    format!("`{}` needs `{to}`", from.spec.id.value),
                );
            }
        }
        ds.push(d);
    }

    let captures: Vec<String> = entries
        .iter()
        .filter_map(|e| e.spec.capture.as_ref().map(|c| c.value.clone()))
        .collect();
    for e in &entries {
        if let Some(c) = &e.spec.capture
            && !is_step_id(c)
        {
            ds.push(Diagnostic::error(
                "invalid-capture",
                c.loc(file),
                format!("capture name {:?} is not valid", c.value),
            ));
        }
    }

    // Pass 3: instances.
    let mut instances: Vec<Instance> = Vec::new();
    let mut step_instances: HashMap<String, Vec<usize>> = HashMap::new();
    for e in &entries {
        let spec = e.spec;
        let nodes: Vec<Option<&Node>> = match &e.targets {
            Targets::Local => vec![None],
            Targets::Nodes(ns) => ns.iter().map(|n| Some(*n)).collect(),
        };
        let fanout: Vec<&Node> = nodes.iter().flatten().copied().collect();
        // The nodes `when` keeps (its errors are reported once, below, per instance).
        let selected: Vec<&Node> = fanout
            .iter()
            .copied()
            .filter(|n| match &spec.when {
                None => true,
                Some(when) => {
                    let ctx_text =
                        context::for_instance(inventory, &raw.name, &params, Some(n), None);
                    templates.eval_bool(when, &ctx_text).unwrap_or(false)
                }
            })
            .collect();
        let info = spec.action.as_ref().and_then(|a| action::lookup(a));
        let timeout = step_timeout(spec, file, info, &mut ds);
        for node in nodes {
            let ctx_text = context::for_instance(inventory, &raw.name, &params, node, None);
            if let Some(when) = &spec.when {
                match templates.eval_bool(when, &ctx_text) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(err) => {
                        ds.push(template_error(&err, when.loc(file), "`when`"));
                        continue;
                    }
                }
            }
            let id = match node {
                Some(n) if matches!(e.targets, Targets::Nodes(_)) && spec.for_each.is_some() => {
                    format!("{}@{}", spec.id.value, n.name)
                }
                _ => spec.id.value.clone(),
            };
            let ctx = Ctx {
                inventory,
                node,
                fanout: &fanout,
                selected: &selected,
                timeout,
            };
            let built = match (&spec.action, &spec.run, info) {
                (Some(_), None, Some(info)) => {
                    build_action(spec, info, &ctx, &ctx_text, &templates, file, &mut ds)
                }
                (None, Some(script), _) => {
                    let ctx_shell =
                        context::for_instance(inventory, &raw.name, &params, node, Some(&captures));
                    match templates.render_shell(script, &ctx_shell) {
                        Ok(s) => Some(Action::Run(Run {
                            script: s,
                            captures: captures
                                .iter()
                                .filter(|c| script.contains(c.as_str()))
                                .cloned()
                                .collect(),
                        })),
                        Err(err) => {
                            ds.push(template_error(&err, script.loc(file), "`run`"));
                            None
                        }
                    }
                }
                _ => None,
            };
            let rollback = spec.rollback.as_ref().and_then(|r| {
                templates
                    .render_text(r, &ctx_text)
                    .map_err(|err| ds.push(template_error(&err, r.loc(file), "`rollback`")))
                    .ok()
            });
            let Some(action) = built else { continue };
            let action_name = spec
                .action
                .as_ref()
                .map(|a| a.value.clone())
                .unwrap_or_else(|| "run".to_string());
            step_instances
                .entry(spec.id.value.clone())
                .or_default()
                .push(instances.len());
            instances.push(Instance {
                id,
                step: spec.id.value.clone(),
                step_index: e.index,
                node: node.map(|n| n.name.clone()),
                needs: Vec::new(),
                destructive: spec.destructive,
                confirm: spec.confirm,
                idempotent: spec.idempotent || info.is_some_and(|i| i.idempotent),
                action_name,
                action,
                description: spec.description.clone(),
                rollback,
                timeout,
                retries: spec.retries.as_ref().map(|r| r.value).unwrap_or(0),
                capture: spec.capture.as_ref().map(|c| c.value.clone()),
                loc: spec.id.loc(file),
                with_locs: spec
                    .with
                    .keys()
                    .map(|k| (k.value.clone(), k.loc(file)))
                    .collect(),
            });
        }
    }

    // Pass 4: instance edges.
    for i in 0..instances.len() {
        let spec = &entries
            .iter()
            .find(|e| e.index == instances[i].step_index)
            .expect("instance of a known step")
            .spec;
        let mut needs: Vec<String> = Vec::new();
        for need in &spec.needs {
            let Some(targets) = step_instances.get(&need.step) else {
                continue;
            };
            let Need { step, same_node } = &need.value;
            if *same_node {
                let node = instances[i].node.clone();
                let paired: Vec<usize> = targets
                    .iter()
                    .copied()
                    .filter(|&t| node.is_some() && instances[t].node == node)
                    .collect();
                if paired.is_empty() {
                    ds.push(
                        Diagnostic::error(
                            "same-node-unpaired",
                            need.loc(file),
                            format!(
                                "`{}` needs `{step}` on the same node, but `{step}` has no instance on {}",
                                instances[i].id,
                                node.as_deref().unwrap_or("the operator's machine")
                            ),
                        )
                        .hint("fan both steps out over the same nodes, or drop `same_node`"),
                    );
                }
                needs.extend(paired.iter().map(|&t| instances[t].id.clone()));
            } else {
                needs.extend(targets.iter().map(|&t| instances[t].id.clone()));
            }
        }
        needs.dedup();
        instances[i].needs = needs;
    }

    if ds.has_errors() {
        return (None, ds);
    }
    let runbook = Runbook {
        name: raw.name.value.clone(),
        description: raw.description.clone(),
        plan_file: file.clone(),
        inventory: inventory.clone(),
        params,
        instances,
    };
    (Some(runbook), ds)
}

fn is_step_id(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase()) && check::is_label(s)
}

/// Renders a node name that may be a template; `None` after reporting why it cannot be.
type NodeName<'f> = dyn Fn(&Sp<String>, &mut Diagnostics) -> Option<String> + 'f;

fn targets<'a>(
    spec: &'a StepSpec,
    file: &Arc<str>,
    inv: &'a Inventory,
    node_name: &NodeName,
    ds: &mut Diagnostics,
) -> Targets<'a> {
    if let (Some(on), Some(_)) = (&spec.on, &spec.for_each) {
        ds.push(
            Diagnostic::error(
                "on-and-for-each",
                on.loc(file),
                format!("step `{}` has both `on` and `for_each`", spec.id.value),
            )
            .hint("`on` places a single instance; `for_each` fans out"),
        );
        return Targets::Local;
    }
    if let Some(on) = &spec.on {
        // A step placed on no valid node gets no instance, so nothing else cascades from it.
        let Some(name) = node_name(on, ds) else {
            return Targets::Nodes(Vec::new());
        };
        if name == "local" {
            return Targets::Local;
        }
        return match inv.node(&name) {
            Some(n) => Targets::Nodes(vec![n]),
            None => {
                ds.push(unknown_node(&name, on.loc(file), inv));
                Targets::Nodes(Vec::new())
            }
        };
    }
    let Some(fe) = &spec.for_each else {
        return Targets::Local;
    };
    let limit = match &fe.limit {
        Some(l) if l.value == 0 => {
            ds.push(Diagnostic::error(
                "invalid-for-each",
                l.loc(file),
                "`for_each.limit` must be at least 1",
            ));
            usize::MAX
        }
        Some(l) => l.value as usize,
        None => usize::MAX,
    };
    let mut targets = for_each_nodes(fe, file, inv, node_name, ds);
    if let Targets::Nodes(ns) = &mut targets {
        ns.truncate(limit);
    }
    targets
}

fn for_each_nodes<'a>(
    fe: &'a crate::located::Sp<crate::plan::ForEach>,
    file: &Arc<str>,
    inv: &'a Inventory,
    node_name: &NodeName,
    ds: &mut Diagnostics,
) -> Targets<'a> {
    match (&fe.role, &fe.nodes) {
        (Some(role), None) => {
            let nodes: Vec<&Node> = inv.with_role(role).collect();
            if nodes.is_empty() {
                ds.push(
                    Diagnostic::error(
                        "unknown-role",
                        role.loc(file),
                        format!("no node of the inventory has the role `{}`", role.value),
                    )
                    .hint(format!(
                        "roles in {}: {}",
                        inv.file,
                        inv.roles().join(", ")
                    )),
                );
            }
            Targets::Nodes(nodes)
        }
        (None, Some(names)) => {
            let mut nodes = Vec::new();
            for n in names {
                let Some(name) = node_name(n, ds) else {
                    continue;
                };
                match inv.node(&name) {
                    Some(node) => nodes.push(node),
                    None => ds.push(unknown_node(&name, n.loc(file), inv)),
                }
            }
            if names.is_empty() {
                ds.push(Diagnostic::error(
                    "empty-for-each",
                    fe.loc(file),
                    "`for_each.nodes` is empty",
                ));
            }
            Targets::Nodes(nodes)
        }
        _ => {
            ds.push(
                Diagnostic::error(
                    "invalid-for-each",
                    fe.loc(file),
                    "`for_each` needs exactly one of `role` and `nodes`",
                )
                .hint("e.g. `for_each: { role: etcd }` or `for_each: { nodes: [cp1, cp2] }`"),
            );
            Targets::Nodes(Vec::new())
        }
    }
}

fn unknown_node(name: &str, loc: Loc, inv: &Inventory) -> Diagnostic {
    Diagnostic::error(
        "unknown-node",
        loc,
        format!("node `{name}` is not in the inventory"),
    )
    .hint(suggest(name, inv.nodes.iter().map(|n| n.name.as_str())))
}

/// "did you mean" for a misspelt name, or the list of valid ones.
fn suggest<'a>(wrong: &str, known: impl Iterator<Item = &'a str>) -> String {
    let mut known: Vec<&str> = known.collect();
    known.sort();
    let close = known
        .iter()
        .find(|k| strsim::levenshtein(wrong, k) <= 2.max(wrong.len() / 4));
    match close {
        Some(k) => format!("did you mean `{k}`?"),
        None => format!("known: {}", known.join(", ")),
    }
}

/// A cycle among steps (indices into `entries`), found by depth-first search.
fn find_cycle(entries: &[StepEntry], by_id: &HashMap<&str, usize>) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        entries: &[StepEntry],
        by_id: &HashMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Active;
        stack.push(i);
        for need in &entries[i].spec.needs {
            let Some(&j) = by_id.get(need.step.as_str()) else {
                continue;
            };
            match marks[j] {
                Mark::Active => {
                    let start = stack.iter().position(|&s| s == j).expect("on stack");
                    return Some(stack[start..].to_vec());
                }
                Mark::New => {
                    if let Some(c) = visit(j, entries, by_id, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; entries.len()];
    for i in 0..entries.len() {
        if marks[i] == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(i, entries, by_id, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn step_timeout(
    spec: &StepSpec,
    file: &Arc<str>,
    info: Option<&action::ActionInfo>,
    ds: &mut Diagnostics,
) -> Duration {
    let default = info
        .map(|i| i.default_timeout)
        .unwrap_or(Duration::from_secs(600));
    match &spec.timeout {
        None => default,
        Some(t) => match check::parse_duration(t) {
            Some(d) if !d.is_zero() => d,
            _ => {
                ds.push(
                    Diagnostic::error(
                        "invalid-timeout",
                        t.loc(file),
                        format!("timeout {:?} is not a duration", t.value),
                    )
                    .hint("write e.g. 90s, 5m or 1h30m"),
                );
                default
            }
        },
    }
}

/// Render `with:` (templates in string values), then parse it into the action's typed arguments.
fn build_action(
    spec: &StepSpec,
    info: &action::ActionInfo,
    ctx: &Ctx,
    tctx: &minijinja::Value,
    templates: &Templates,
    file: &Arc<str>,
    ds: &mut Diagnostics,
) -> Option<Action> {
    let mut obj = serde_json::Map::new();
    let mut ok = true;
    for (k, v) in &spec.with {
        match render_json(&v.value, tctx, templates) {
            Ok(r) => {
                obj.insert(k.value.clone(), r);
            }
            Err(err) => {
                ds.push(template_error(
                    &err,
                    v.loc(file),
                    &format!("`with.{}`", k.value),
                ));
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    match (info.parse)(serde_json::Value::Object(obj), ctx) {
        Ok(a) => Some(a),
        Err(ArgError {
            field,
            message,
            hint,
        }) => {
            let loc = field
                .as_deref()
                .and_then(|f| spec.with.keys().find(|k| k.value == f))
                .map(|k| k.loc(file))
                .unwrap_or_else(|| {
                    spec.action
                        .as_ref()
                        .map(|a| a.loc(file))
                        .unwrap_or_else(|| spec.id.loc(file))
                });
            let on = ctx
                .node
                .map(|n| format!(" on {}", n.name))
                .unwrap_or_default();
            let mut d = Diagnostic::error(
                "invalid-argument",
                loc,
                format!("{} (step `{}`{on}): {message}", info.name, spec.id.value),
            );
            d = d.hint(hint.unwrap_or_else(|| {
                format!("see the `with` of {} in `runbook schema plan`", info.name)
            }));
            ds.push(d);
            None
        }
    }
}

fn render_json(
    v: &serde_json::Value,
    ctx: &minijinja::Value,
    t: &Templates,
) -> Result<serde_json::Value, TemplateError> {
    Ok(match v {
        serde_json::Value::String(s) => serde_json::Value::String(t.render_text(s, ctx)?),
        serde_json::Value::Array(a) => serde_json::Value::Array(
            a.iter()
                .map(|x| render_json(x, ctx, t))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(o) => {
            let mut m = serde_json::Map::new();
            for (k, x) in o {
                m.insert(k.clone(), render_json(x, ctx, t)?);
            }
            serde_json::Value::Object(m)
        }
        other => other.clone(),
    })
}

fn template_error(err: &TemplateError, loc: Loc, what: &str) -> Diagnostic {
    let line = match err.line {
        Some(l) if l > 1 => format!(" (line {l} of the template)"),
        _ => String::new(),
    };
    Diagnostic::error(
        "template",
        loc,
        format!("in {what}{line}: {}", err.message),
    )
    .hint("templates see params, cluster, plan, etcd and, on nodes, node; an unknown name is an error")
}
