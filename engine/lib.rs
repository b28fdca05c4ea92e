//! runbook: a declarative runbook engine for etcd backup, restore and maintenance.
//! Pipeline: plan text -> raw model -> Runbook (compile) -> StepGraph (graph) -> lints.

pub mod action;
pub mod check;
pub mod cli;
pub mod cmd;
pub mod compile;
pub mod diag;
pub mod etcd;
pub mod execute;
pub mod executor;
pub mod graph;
pub mod input;
pub mod inventory;
pub mod lab;
pub mod lint;
pub mod located;
pub mod pipeline;
pub mod plan;
pub mod pod;
pub mod schema;
pub mod shell;
pub mod snapshot;
pub mod yaml;
