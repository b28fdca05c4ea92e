//! Runbook -> StepGraph: the dependency DAG of instances (petgraph), a stable execution
//! order grouped in stages, ancestry for lints, and the plan's fingerprint.

pub mod render;

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::compile::{Instance, InstanceIx, RUN_ID, RUN_STARTED, Runbook};

/// The walkable plan.
#[derive(Debug, Clone)]
pub struct StepGraph {
    pub runbook: Runbook,
    /// Edges point from a dependency to its dependent.
    pub dag: DiGraph<usize, ()>,
    /// Instance indices in execution order.
    pub order: Vec<usize>,
    /// Per instance: 0 for roots, else one more than its deepest dependency.
    pub stage: Vec<usize>,
    /// Per instance: every instance that must finish before it (transitively).
    ancestors: Vec<Vec<bool>>,
    pub fingerprint: String,
}

impl StepGraph {
    pub fn build(runbook: Runbook) -> StepGraph {
        let n = runbook.instances.len();
        let mut dag = DiGraph::<usize, ()>::with_capacity(n, n);
        let nodes: Vec<NodeIndex> = (0..n).map(|i| dag.add_node(i)).collect();
        for (i, inst) in runbook.instances.iter().enumerate() {
            for &InstanceIx(j) in &inst.needs {
                dag.add_edge(nodes[j], nodes[i], ());
            }
        }
        // The compiler rejects step-level cycles, and instance edges only refine step edges.
        let topo = toposort(&dag, None).expect("compiled plans are acyclic");
        let mut stage = vec![0usize; n];
        let mut ancestors = vec![vec![false; n]; n];
        for &ni in &topo {
            let i = dag[ni];
            for pred in dag.neighbors_directed(ni, petgraph::Direction::Incoming) {
                let j = dag[pred];
                stage[i] = stage[i].max(stage[j] + 1);
                ancestors[i][j] = true;
                // Topological order: j's ancestry is complete before i is visited.
                let inherited = ancestors[j].clone();
                for (mine, theirs) in ancestors[i].iter_mut().zip(inherited) {
                    *mine |= theirs;
                }
            }
        }
        let node_pos = |inst: &Instance| inst.host.map_or(0, |h| h.0 + 1);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| {
            let inst = &runbook.instances[i];
            (stage[i], inst.step_index, node_pos(inst))
        });
        let mut g = StepGraph {
            runbook,
            dag,
            order,
            stage,
            ancestors,
            fingerprint: String::new(),
        };
        g.fingerprint = g.compute_fingerprint();
        g
    }

    /// The run's own values (`{{ run.started }}`, `{{ run.id }}`) the plan uses, with what
    /// each means: known only when a run starts, shown as themselves in review, and kept out
    /// of the fingerprint. Found in what the reviewer sees: commands, rollback notes, and
    /// parameters whose default is one.
    pub fn run_values(&self) -> Vec<(&'static str, &'static str)> {
        let texts: Vec<String> = self
            .runbook
            .instances
            .iter()
            .flat_map(|i| i.commands().into_iter().chain(i.rollback.clone()))
            .chain(self.runbook.params.values().cloned())
            .collect();
        [
            (
                RUN_STARTED,
                "when the run starts, UTC, as 20261201T093000Z (known at run time)",
            ),
            (RUN_ID, "the run's id (known at run time)"),
        ]
        .into_iter()
        .filter(|(v, _)| texts.iter().any(|t| t.contains(v)))
        .collect()
    }

    /// This graph, compiled with a run's own values, as the reviewed graph it comes from:
    /// the same instances in the same order, under the reviewed fingerprint (which the run
    /// values are kept out of). `None` if the two are not the same plan.
    pub fn as_reviewed(mut self, reviewed: &StepGraph) -> Option<StepGraph> {
        let ids = |g: &StepGraph| -> Vec<String> {
            g.order.iter().map(|&i| g.instance(i).id.clone()).collect()
        };
        if ids(&self) != ids(reviewed) {
            return None;
        }
        self.fingerprint.clone_from(&reviewed.fingerprint);
        Some(self)
    }

    pub fn instance(&self, i: usize) -> &Instance {
        &self.runbook.instances[i]
    }

    /// Whether instance `before` must finish before instance `after` starts.
    pub fn precedes(&self, before: usize, after: usize) -> bool {
        self.ancestors[after][before]
    }

    /// Instances that must finish before `i`, in execution order.
    pub fn ancestors_of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.order
            .iter()
            .copied()
            .filter(move |&j| self.ancestors[i][j])
    }

    /// The JSON `steps` array: the reviewed content, in execution order.
    pub fn steps_json(&self) -> Vec<StepJson<'_>> {
        self.order
            .iter()
            .map(|&i| {
                let inst = self.instance(i);
                StepJson {
                    id: &inst.id,
                    step: &inst.step,
                    node: inst.node.as_deref(),
                    needs: self.runbook.need_ids(inst),
                    destructive: inst.destructive,
                    action: &inst.action_name,
                    commands: inst.commands(),
                    rollback: inst.rollback.as_deref(),
                    runtime_values: inst
                        .action
                        .runtime_values()
                        .into_iter()
                        .map(|r| RuntimeJson {
                            var: r.var,
                            meaning: r.meaning,
                        })
                        .collect(),
                    timeout_secs: inst.timeout.as_secs_f64(),
                    retries: inst.retries,
                    idempotent: inst.idempotent,
                    confirm: inst.confirm || inst.destructive,
                    capture: inst.capture.as_deref(),
                }
            })
            .collect()
    }

    /// sha256 over everything that decides what runs: any change to any command, order,
    /// node, gate or time limit changes it; re-compiling the same inputs does not.
    fn compute_fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct Fingerprinted<'a> {
            plan: &'a str,
            cluster: &'a str,
            steps: Vec<StepJson<'a>>,
        }
        let body = serde_json::to_vec(&Fingerprinted {
            plan: &self.runbook.name,
            cluster: &self.runbook.inventory.cluster,
            steps: self.steps_json(),
        })
        .expect("plan serializes");
        let digest = Sha256::digest(&body);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

/// One step instance as the JSON plan shows it.
#[derive(Debug, Serialize)]
pub struct StepJson<'a> {
    pub id: &'a str,
    pub step: &'a str,
    pub node: Option<&'a str>,
    pub needs: Vec<&'a str>,
    pub destructive: bool,
    pub action: &'a str,
    pub commands: Vec<String>,
    pub rollback: Option<&'a str>,
    /// Environment variables the commands read, set by runbook when the step runs.
    pub runtime_values: Vec<RuntimeJson>,
    pub timeout_secs: f64,
    pub retries: u32,
    pub idempotent: bool,
    /// The step stops for an operator's approval (destructive steps always do).
    pub confirm: bool,
    pub capture: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct RuntimeJson {
    pub var: String,
    pub meaning: String,
}
