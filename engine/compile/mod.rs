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
    /// The node's name; `None`: the operator's machine.
    pub node: Option<String>,
    /// The node, by index (see [`Runbook::node_of`]).
    pub host: Option<NodeIx>,
    /// The instances that must succeed before this one starts.
    pub needs: Vec<InstanceIx>,
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

/// What only the run decides, which plans read as `{{ run.started }}` and `{{ run.id }}`
/// (e.g. in a backup's file name). A plan is reviewed and fingerprinted with placeholders
/// in their place, so one approval covers every run; each run compiles it again with its
/// own values, which its record keeps for a resume.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunValues {
    /// When the run started, UTC, `YYYYMMDDTHHMMSSZ` (sorts as it reads; safe in file names).
    pub started: String,
    /// The run's id.
    pub id: String,
}

impl RunValues {
    /// What `plan`, `validate` and the fingerprint see: the templates themselves.
    pub fn placeholders() -> RunValues {
        RunValues {
            started: RUN_STARTED.to_string(),
            id: RUN_ID.to_string(),
        }
    }

    /// This run's: started now.
    pub fn now(id: &str) -> RunValues {
        let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        RunValues {
            started: t.chars().filter(|c| *c != '-' && *c != ':').collect(),
            id: id.to_string(),
        }
    }
}

/// How a reviewed plan shows the run's values.
pub const RUN_STARTED: &str = "{{run.started}}";
pub const RUN_ID: &str = "{{run.id}}";

/// An instance's index in [`Runbook::instances`]: how instances refer to each other once
/// compiled, so nothing resolves a step or node name again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceIx(pub usize);

/// A node's index in the inventory's node list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIx(pub usize);

impl Runbook {
    /// The node an instance runs on (`None`: the operator's machine).
    pub fn node_of(&self, inst: &Instance) -> Option<&Node> {
        inst.host.map(|NodeIx(i)| &self.inventory.nodes[i])
    }

    /// The ids of the instances `inst` needs, as written in plans and journals.
    pub fn need_ids(&self, inst: &Instance) -> Vec<&str> {
        inst.needs
            .iter()
            .map(|&InstanceIx(j)| self.instances[j].id.as_str())
            .collect()
    }
}

/// Where a step runs before fan-out.
enum Targets<'a> {
    Local,
    Nodes(Vec<&'a Node>),
}

/// A step of the plan after the first pass: its spec, position and targets, and (after the
/// dependency pass) the steps it needs, by index.
struct StepEntry<'a> {
    spec: &'a StepSpec,
    index: usize,
    targets: Targets<'a>,
    /// Each `needs` entry that names a step of the plan, with that step's index.
    needs: Vec<(&'a Sp<Need>, usize)>,
}

/// The compiler's state across passes: inputs, templates, resolved parameters, diagnostics.
struct Compiler<'a> {
    file: &'a Arc<str>,
    raw: &'a crate::plan::PlanFile,
    inventory: &'a Inventory,
    templates: Templates,
    params: BTreeMap<String, String>,
    ds: Diagnostics,
    /// `run.*` in templates: this run's, or placeholders for review.
    run: RunValues,
    /// Templated node names already reported as unknown: a wrong parameter is reported
    /// once, where it is first used, not at every step using it.
    reported: std::collections::HashSet<String>,
}

/// Compile a loaded plan against an inventory, in named passes: parameters, steps,
/// dependencies, captures, instances, instance edges. Returns the runbook when there are no
/// errors, and every diagnostic found along the way.
pub fn compile(
    plan: &LoadedPlan,
    inventory: &Inventory,
    sets: &[ParamValue],
    run: &RunValues,
) -> (Option<Runbook>, Diagnostics) {
    let mut c = Compiler::new(plan, inventory, sets, run);
    let mut steps = c.steps();
    c.dependencies(&mut steps);
    let captures = c.captures(&steps);
    let (mut instances, by_step) = c.instances(&steps, &captures);
    c.edges(&steps, &mut instances, &by_step);
    if c.ds.has_errors() {
        return (None, c.ds);
    }
    let runbook = Runbook {
        name: c.raw.name.value.clone(),
        description: c.raw.description.clone(),
        plan_file: c.file.clone(),
        inventory: inventory.clone(),
        params: c.params,
        instances,
    };
    (Some(runbook), c.ds)
}

impl<'a> Compiler<'a> {
    /// Pass 0: the parameters, from defaults, `--set` and `--set-file`.
    fn new(
        plan: &'a LoadedPlan,
        inventory: &'a Inventory,
        sets: &[ParamValue],
        run: &RunValues,
    ) -> Self {
        let templates = Templates::new();
        let mut ds = Diagnostics::default();
        let params = params::resolve(
            &plan.raw, &plan.file, inventory, sets, &templates, run, &mut ds,
        );
        Compiler {
            file: &plan.file,
            raw: &plan.raw,
            inventory,
            templates,
            params,
            ds,
            run: run.clone(),
            reported: Default::default(),
        }
    }

    /// A node name in `on` or `for_each.nodes`, which may be a template over `params` and
    /// `cluster` (e.g. `on: "{{ params.survivor }}"`): rendered here so that an unknown node
    /// is a located error. `None` after reporting why it cannot be used.
    fn node_name(&mut self, s: &Sp<String>) -> Option<String> {
        if !s.value.contains("{{") {
            return Some(s.value.clone());
        }
        let ctx = context::for_instance(
            self.inventory,
            &self.raw.name,
            &self.params,
            &self.run,
            None,
            None,
        );
        let name = match self.templates.render_text(&s.value, &ctx) {
            Ok(v) => v.trim().to_string(),
            Err(err) => {
                self.ds
                    .push(template_error(&err, s.loc(self.file), "a node name"));
                return None;
            }
        };
        if name == "local" || self.inventory.node(&name).is_some() {
            return Some(name);
        }
        if self.reported.insert(name.clone()) {
            let mut d = unknown_node(&name, s.loc(self.file), self.inventory);
            d.message = format!("node `{name}` (from `{}`) is not in the inventory", s.value);
            self.ds.push(d);
        }
        None
    }

    /// Pass 1: step ids, what each step does (a known action or a script), and where it runs.
    fn steps(&mut self) -> Vec<StepEntry<'a>> {
        let file = self.file;
        let mut entries: Vec<StepEntry> = Vec::new();
        let mut ids: HashMap<&str, Loc> = HashMap::new();
        for (index, spec) in self.raw.steps.iter().enumerate() {
            let loc = spec.id.loc(file);
            if !is_step_id(&spec.id) {
                self.ds.push(
                    Diagnostic::error(
                        "invalid-step-id",
                        loc.clone(),
                        format!("step id {:?} is not valid", spec.id.value),
                    )
                    .hint("use lowercase letters, digits and '-', starting with a letter"),
                );
            }
            if let Some(first) = ids.insert(&spec.id, loc.clone()) {
                self.ds.push(
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
            if let Some(d) = what_it_does(spec, file) {
                self.ds.push(d);
            }
            let targets = self.targets(spec);
            entries.push(StepEntry {
                spec,
                index,
                targets,
                needs: Vec::new(),
            });
        }
        entries
    }

    /// Pass 2: the steps each step needs, by index; unknown steps and cycles are errors.
    fn dependencies(&mut self, entries: &mut [StepEntry<'a>]) {
        let file = self.file;
        let by_id: HashMap<String, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.spec.id.value.clone(), i))
            .collect();
        for e in entries.iter_mut() {
            for need in &e.spec.needs {
                match by_id.get(need.step.as_str()) {
                    Some(&j) => e.needs.push((need, j)),
                    None => self.ds.push(
                        Diagnostic::error(
                            "unknown-step",
                            need.loc(file),
                            format!(
                                "step `{}` needs `{}`, which is not a step of this plan",
                                e.spec.id.value, need.step
                            ),
                        )
                        .hint(suggest(&need.step, by_id.keys().map(String::as_str))),
                    ),
                }
            }
        }
        let Some(cycle) = find_cycle(entries) else {
            return;
        };
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
        self.ds.push(d);
    }

    /// Pass 3: the names steps capture their output under, which scripts may read.
    fn captures(&mut self, entries: &[StepEntry]) -> Vec<String> {
        for e in entries {
            if let Some(c) = &e.spec.capture
                && !is_step_id(c)
            {
                self.ds.push(Diagnostic::error(
                    "invalid-capture",
                    c.loc(self.file),
                    format!("capture name {:?} is not valid", c.value),
                ));
            }
        }
        entries
            .iter()
            .filter_map(|e| e.spec.capture.as_ref().map(|c| c.value.clone()))
            .collect()
    }

    /// Pass 4: one instance per step and node its `when` keeps, with its typed action.
    /// Returns the instances and, per step, the indices of its instances.
    fn instances(
        &mut self,
        entries: &[StepEntry],
        captures: &[String],
    ) -> (Vec<Instance>, Vec<Vec<usize>>) {
        let mut instances: Vec<Instance> = Vec::new();
        let mut by_step: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
        for (k, e) in entries.iter().enumerate() {
            for inst in self.step_instances(e, captures) {
                by_step[k].push(instances.len());
                instances.push(inst);
            }
        }
        (instances, by_step)
    }

    fn step_instances(&mut self, e: &StepEntry, captures: &[String]) -> Vec<Instance> {
        let (file, inventory, raw) = (self.file, self.inventory, self.raw);
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
                    let ctx_text = context::for_instance(
                        inventory,
                        &raw.name,
                        &self.params,
                        &self.run,
                        Some(n),
                        None,
                    );
                    self.templates.eval_bool(when, &ctx_text).unwrap_or(false)
                }
            })
            .collect();
        let info = spec.action.as_ref().and_then(|a| action::lookup(a));
        let timeout = step_timeout(spec, file, info, &mut self.ds);
        let mut out = Vec::new();
        for node in nodes {
            let ctx_text =
                context::for_instance(inventory, &raw.name, &self.params, &self.run, node, None);
            if let Some(when) = &spec.when {
                match self.templates.eval_bool(when, &ctx_text) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(err) => {
                        self.ds.push(template_error(&err, when.loc(file), "`when`"));
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
            let built = self.action(spec, info, &ctx, &ctx_text, captures);
            let rollback = spec.rollback.as_ref().and_then(|r| {
                self.templates
                    .render_text(r, &ctx_text)
                    .map_err(|err| {
                        self.ds
                            .push(template_error(&err, r.loc(file), "`rollback`"))
                    })
                    .ok()
            });
            let Some(action) = built else { continue };
            let action_name = spec
                .action
                .as_ref()
                .map(|a| a.value.clone())
                .unwrap_or_else(|| "run".to_string());
            out.push(Instance {
                id,
                step: spec.id.value.clone(),
                step_index: e.index,
                node: node.map(|n| n.name.clone()),
                host: node.and_then(|n| {
                    inventory
                        .nodes
                        .iter()
                        .position(|x| std::ptr::eq(x, n))
                        .map(NodeIx)
                }),
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
        out
    }

    /// The typed action of one instance: its `with:` rendered and parsed, or its script
    /// rendered with every interpolated value quoted.
    fn action(
        &mut self,
        spec: &StepSpec,
        info: Option<&action::ActionInfo>,
        ctx: &Ctx,
        ctx_text: &minijinja::Value,
        captures: &[String],
    ) -> Option<Action> {
        let (file, inventory, raw) = (self.file, self.inventory, self.raw);
        let node = ctx.node;
        match (&spec.action, &spec.run, info) {
            (Some(_), None, Some(info)) => build_action(
                spec,
                info,
                ctx,
                ctx_text,
                &self.templates,
                file,
                &mut self.ds,
            ),
            (None, Some(script), _) => {
                let ctx_shell = context::for_instance(
                    inventory,
                    &raw.name,
                    &self.params,
                    &self.run,
                    node,
                    Some(captures),
                );
                match self.templates.render_shell(script, &ctx_shell) {
                    Ok(s) => Some(Action::new(Run {
                        script: s,
                        captures: captures
                            .iter()
                            .filter(|c| script.contains(c.as_str()))
                            .cloned()
                            .collect(),
                    })),
                    Err(err) => {
                        self.ds
                            .push(template_error(&err, script.loc(file), "`run`"));
                        None
                    }
                }
            }
            _ => None,
        }
    }

    /// Pass 5: instance edges from step edges: every instance of a needed step, or with
    /// `same_node` only the one on the same node.
    fn edges(&mut self, entries: &[StepEntry], instances: &mut [Instance], by_step: &[Vec<usize>]) {
        for (k, e) in entries.iter().enumerate() {
            for &(need, j) in &e.needs {
                let Need { step, same_node } = &need.value;
                for &i in &by_step[k] {
                    let targets = &by_step[j];
                    let paired: Vec<usize> = if *same_node {
                        let host = instances[i].host;
                        let paired: Vec<usize> = targets
                            .iter()
                            .copied()
                            .filter(|&t| host.is_some() && instances[t].host == host)
                            .collect();
                        if paired.is_empty() {
                            self.ds.push(
                                Diagnostic::error(
                                    "same-node-unpaired",
                                    need.loc(self.file),
                                    format!(
                                        "`{}` needs `{step}` on the same node, but `{step}` has no instance on {}",
                                        instances[i].id,
                                        instances[i].node.as_deref().unwrap_or("the operator's machine")
                                    ),
                                )
                                .hint("fan both steps out over the same nodes, or drop `same_node`"),
                            );
                        }
                        paired
                    } else {
                        targets.clone()
                    };
                    for t in paired {
                        if !instances[i].needs.contains(&InstanceIx(t)) {
                            instances[i].needs.push(InstanceIx(t));
                        }
                    }
                }
            }
        }
    }

    /// Where a step runs: `on` one node (or `local`), `for_each` over a role or nodes.
    fn targets(&mut self, spec: &'a StepSpec) -> Targets<'a> {
        let (file, inv) = (self.file, self.inventory);
        if let (Some(on), Some(_)) = (&spec.on, &spec.for_each) {
            self.ds.push(
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
            let Some(name) = self.node_name(on) else {
                return Targets::Nodes(Vec::new());
            };
            if name == "local" {
                return Targets::Local;
            }
            return match inv.node(&name) {
                Some(n) => Targets::Nodes(vec![n]),
                None => {
                    self.ds.push(unknown_node(&name, on.loc(file), inv));
                    Targets::Nodes(Vec::new())
                }
            };
        }
        let Some(fe) = &spec.for_each else {
            return Targets::Local;
        };
        let limit = match &fe.limit {
            Some(l) if l.value == 0 => {
                self.ds.push(Diagnostic::error(
                    "invalid-for-each",
                    l.loc(file),
                    "`for_each.limit` must be at least 1",
                ));
                usize::MAX
            }
            Some(l) => l.value as usize,
            None => usize::MAX,
        };
        let mut targets = self.for_each_nodes(fe);
        if let Targets::Nodes(ns) = &mut targets {
            ns.truncate(limit);
        }
        targets
    }

    fn for_each_nodes(&mut self, fe: &'a Sp<crate::plan::ForEach>) -> Targets<'a> {
        let (file, inv) = (self.file, self.inventory);
        match (&fe.role, &fe.nodes) {
            (Some(role), None) => {
                let nodes: Vec<&Node> = inv.with_role(role).collect();
                if nodes.is_empty() {
                    self.ds.push(
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
                    let Some(name) = self.node_name(n) else {
                        continue;
                    };
                    match inv.node(&name) {
                        Some(node) => nodes.push(node),
                        None => self.ds.push(unknown_node(&name, n.loc(file), inv)),
                    }
                }
                if names.is_empty() {
                    self.ds.push(Diagnostic::error(
                        "empty-for-each",
                        fe.loc(file),
                        "`for_each.nodes` is empty",
                    ));
                }
                Targets::Nodes(nodes)
            }
            _ => {
                self.ds.push(
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
}

/// A step does exactly one thing: a known action, or a script (with no `with:`).
fn what_it_does(spec: &StepSpec, file: &Arc<str>) -> Option<Diagnostic> {
    let loc = spec.id.loc(file);
    Some(match (&spec.action, &spec.run) {
        (Some(_), Some(_)) => Diagnostic::error(
            "action-and-run",
            loc,
            format!("step `{}` has both `action` and `run`", spec.id.value),
        )
        .hint("a step does one thing: keep the typed action, or the raw shell"),
        (None, None) => Diagnostic::error(
            "missing-action",
            loc,
            format!("step `{}` has neither `action` nor `run`", spec.id.value),
        )
        .hint("add `action: etcd.restore` (see `runbook schema plan`) or `run: <shell>`"),
        (Some(a), None) if action::lookup(a).is_none() => Diagnostic::error(
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
        (None, Some(_)) if !spec.with.is_empty() => Diagnostic::error(
            "with-on-run",
            spec.with.keys().next().map(|k| k.loc(file)).unwrap_or(loc),
            "`with:` has no meaning on a `run:` step",
        )
        .hint("write the values into the script with {{ params.NAME }}"),
        _ => return None,
    })
}

fn is_step_id(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase()) && check::is_label(s)
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
fn find_cycle(entries: &[StepEntry]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        entries: &[StepEntry],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Active;
        stack.push(i);
        for &(_, j) in &entries[i].needs {
            match marks[j] {
                Mark::Active => {
                    let start = stack.iter().position(|&s| s == j).expect("on stack");
                    return Some(stack[start..].to_vec());
                }
                Mark::New => {
                    if let Some(c) = visit(j, entries, marks, stack) {
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
            if let Some(c) = visit(i, entries, &mut marks, &mut stack) {
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
