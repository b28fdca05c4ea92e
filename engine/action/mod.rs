//! Typed actions: each knows its arguments (with a schema), the exact commands it renders
//! and whether it is safe to re-run. One file per action; this file is the registry.

pub mod etcd_clear_data;
pub mod etcd_defrag;
pub mod etcd_maintenance;
pub mod etcd_members;
pub mod etcd_preflight;
pub mod etcd_restore;
pub mod etcd_verify_cluster;
pub mod etcdctl;
pub mod file_chown;
pub mod manifest;
pub mod manifest_flags;
pub mod run;
pub mod snapshot_copy;
pub mod snapshot_distribute;
pub mod snapshot_not_source;
pub mod snapshot_save;
pub mod snapshot_verify;
pub mod wait_etcd_healthy;
pub mod wait_http;
pub mod wait_process_gone;

use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use crate::inventory::model::{Inventory, Node};

/// One line of what a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run by `sh -c` on the step's host, exactly as shown.
    Shell(String),
    /// Done by runbook itself (file transfer, native checks), with the sentence a plan shows for it.
    Native { op: Native, text: String },
}

/// Work runbook does itself rather than through a shell on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Native {
    /// Check a local snapshot file: SHA-256 trailer and bbolt meta pages.
    VerifySnapshot { path: String },
    /// Compare a local file's sha256 with a digest recorded at backup time.
    CheckSha256 { path: String, expected: String },
    /// Copy a local file to the step's node (mode 0600, written beside `dest` and renamed).
    Upload { source: String, dest: String },
    /// Ask every etcd member over its API; fail on alarms (but those allowed) or no leader.
    Preflight {
        allow_alarms: Vec<String>,
        skip: Vec<String>,
    },
    /// Remove the step's node from the member list, through the other members, keeping quorum.
    MemberRemove,
    /// Hold the step while its node is etcd's leader and another member still answers.
    LeaderLast,
    /// Add the step's node as a voter once the cluster can take one; write its join flags
    /// into its parked manifest.
    MemberAdd { manifest: String },
    /// Refuse inventory members that belong to the snapshot's own cluster (drills).
    NotSource { snapshot: String },
    /// Compact the keyspace to the current revision (physically).
    Compact,
    /// Put, read back and delete a probe key: writes work.
    CheckWrites,
    /// Defragment every member in turn, the leader last, then disarm alarms.
    DefragCluster,
    /// Stream a snapshot from a member (or the one preflight picks) to a local file and verify it.
    SaveSnapshot {
        dest: String,
        member: Option<String>,
    },
    /// Check the cluster over etcd's API after a restore (against the snapshot when given).
    VerifyCluster {
        snapshot: Option<String>,
        bump_revision: u64,
    },
}

impl Command {
    pub fn native(op: Native, text: String) -> Command {
        Command::Native { op, text }
    }

    /// The form shown in plans; native work reads as a shell comment so a pasted plan runs nothing by accident.
    pub fn display(&self) -> String {
        match self {
            Command::Shell(s) => s.clone(),
            Command::Native { text, .. } => format!("# runbook: {text}"),
        }
    }
}

/// A value a command needs that exists only at run time, passed as an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeValue {
    pub var: String,
    pub meaning: String,
}

/// What an action is compiled against: the instance's node, the step's fan-out, its time limit.
pub struct Ctx<'a> {
    pub inventory: &'a Inventory,
    pub node: Option<&'a Node>,
    /// Every node the step fans out over (restore needs the whole member list).
    pub fanout: &'a [&'a Node],
    /// The nodes of the fan-out the step's `when` keeps: where instances really run.
    pub selected: &'a [&'a Node],
    pub timeout: Duration,
}

impl<'a> Ctx<'a> {
    /// The etcd members' names, for actions that talk to the whole cluster.
    pub fn member_names(&self) -> Vec<String> {
        self.inventory
            .etcd_members()
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// The node an action must run on, or an error for actions that make no sense locally.
    pub fn require_node(&self, action: &str) -> Result<&'a Node, ArgError> {
        self.node.ok_or_else(|| ArgError {
            field: None,
            message: format!("`{action}` runs on a node, not on the operator's machine"),
            hint: Some("add `for_each: { role: etcd }` or `on: NODE` to the step".into()),
        })
    }
}

/// A bad argument: which `with:` field (if one), what is wrong, what to do.
#[derive(Debug, Clone)]
pub struct ArgError {
    pub field: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl ArgError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ArgError {
            field: Some(field.to_string()),
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A compiled action instance.
#[derive(Debug, Clone)]
pub enum Action {
    SnapshotVerify(snapshot_verify::SnapshotVerify),
    SnapshotDistribute(snapshot_distribute::SnapshotDistribute),
    ManifestStop(manifest::ManifestMove),
    ManifestStart(manifest::ManifestMove),
    WaitProcessGone(wait_process_gone::WaitProcessGone),
    EtcdRestore(etcd_restore::EtcdRestore),
    FileChown(file_chown::FileChown),
    WaitEtcdHealthy(wait_etcd_healthy::WaitEtcdHealthy),
    EtcdVerifyCluster(etcd_verify_cluster::EtcdVerifyCluster),
    WaitHttp(wait_http::WaitHttp),
    EtcdDefrag(etcd_defrag::EtcdDefrag),
    EtcdPreflight(etcd_preflight::EtcdPreflight),
    EtcdDefragCluster(etcd_defrag::EtcdDefragCluster),
    EtcdCompact(etcd_maintenance::EtcdCompact),
    EtcdCheckWrites(etcd_maintenance::EtcdCheckWrites),
    SnapshotSave(snapshot_save::SnapshotSave),
    SnapshotCopy(snapshot_copy::SnapshotCopy),
    SnapshotPrune(snapshot_copy::SnapshotPrune),
    EtcdClearData(etcd_clear_data::EtcdClearData),
    EtcdMemberRemove(etcd_members::EtcdMemberRemove),
    EtcdMemberAdd(etcd_members::EtcdMemberAdd),
    ManifestEtcdFlags(manifest_flags::ManifestFlags),
    SnapshotNotSource(snapshot_not_source::SnapshotNotSource),
    Run(run::Run),
}

impl Action {
    pub fn commands(&self) -> Vec<Command> {
        match self {
            Action::SnapshotVerify(a) => a.commands(),
            Action::SnapshotDistribute(a) => a.commands(),
            Action::ManifestStop(a) => a.stop_commands(),
            Action::ManifestStart(a) => a.start_commands(),
            Action::WaitProcessGone(a) => a.commands(),
            Action::EtcdRestore(a) => a.commands(),
            Action::FileChown(a) => a.commands(),
            Action::WaitEtcdHealthy(a) => a.commands(),
            Action::EtcdVerifyCluster(a) => a.commands(),
            Action::WaitHttp(a) => a.commands(),
            Action::EtcdDefrag(a) => a.commands(),
            Action::EtcdPreflight(a) => a.commands(),
            Action::EtcdDefragCluster(a) => a.commands(),
            Action::EtcdCompact(a) => a.commands(),
            Action::EtcdCheckWrites(a) => a.commands(),
            Action::SnapshotSave(a) => a.commands(),
            Action::SnapshotCopy(a) => a.commands(),
            Action::SnapshotPrune(a) => a.commands(),
            Action::EtcdClearData(a) => a.commands(),
            Action::EtcdMemberRemove(a) => a.commands(),
            Action::EtcdMemberAdd(a) => a.commands(),
            Action::ManifestEtcdFlags(a) => a.commands(),
            Action::SnapshotNotSource(a) => a.commands(),
            Action::Run(a) => a.commands(),
        }
    }

    pub fn runtime_values(&self) -> Vec<RuntimeValue> {
        match self {
            Action::SnapshotDistribute(a) => a.runtime_values(),
            Action::EtcdRestore(a) => a.runtime_values(),
            Action::Run(a) => a.runtime_values(),
            _ => Vec::new(),
        }
    }
}

/// The registry entry of an action: its name, documentation, defaults and parser.
pub struct ActionInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub default_timeout: Duration,
    /// Re-running after a crash is harmless (checked again on resume).
    pub idempotent: bool,
    /// Changes the cluster: the step must say `destructive: true` and carry a rollback note.
    pub destructive: bool,
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    pub parse: fn(serde_json::Value, &Ctx) -> Result<Action, ArgError>,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// Every typed action, in the order the documentation lists them.
pub static ACTIONS: &[ActionInfo] = &[
    ActionInfo {
        name: "snapshot.verify",
        summary: "check a snapshot's SHA-256 trailer (and structure, locally) before anything uses it",
        default_timeout: secs(300),
        destructive: false,
        idempotent: true,
        schema: schema_of::<snapshot_verify::Args>,
        parse: |v, ctx| {
            Ok(Action::SnapshotVerify(
                snapshot_verify::SnapshotVerify::new(args(v)?, ctx)?,
            ))
        },
    },
    ActionInfo {
        name: "snapshot.distribute",
        summary: "copy a local snapshot to the node and check its sha256 there",
        default_timeout: secs(900),
        destructive: false,
        idempotent: true,
        schema: schema_of::<snapshot_distribute::Args>,
        parse: |v, ctx| {
            Ok(Action::SnapshotDistribute(
                snapshot_distribute::SnapshotDistribute::new(args(v)?, ctx)?,
            ))
        },
    },
    ActionInfo {
        name: "manifest.stop",
        summary: "park static pod manifests outside the manifests directory so kubelet stops the pods",
        default_timeout: secs(60),
        destructive: true,
        idempotent: true,
        schema: schema_of::<manifest::Args>,
        parse: |v, ctx| {
            Ok(Action::ManifestStop(manifest::ManifestMove::new(
                args(v)?,
                ctx,
                "manifest.stop",
            )?))
        },
    },
    ActionInfo {
        name: "manifest.start",
        summary: "move parked static pod manifests back so kubelet starts the pods",
        default_timeout: secs(60),
        destructive: false,
        idempotent: true,
        schema: schema_of::<manifest::Args>,
        parse: |v, ctx| {
            Ok(Action::ManifestStart(manifest::ManifestMove::new(
                args(v)?,
                ctx,
                "manifest.start",
            )?))
        },
    },
    ActionInfo {
        name: "wait.process_gone",
        summary: "wait until no process of that name runs on the node",
        default_timeout: secs(120),
        destructive: false,
        idempotent: true,
        schema: schema_of::<wait_process_gone::Args>,
        parse: |v, ctx| {
            Ok(Action::WaitProcessGone(
                wait_process_gone::WaitProcessGone::new(args(v)?, ctx)?,
            ))
        },
    },
    ActionInfo {
        name: "etcd.restore",
        summary: "restore the member's data dir from a snapshot, keeping the old data aside",
        default_timeout: secs(900),
        destructive: true,
        // The restored member carries a marker naming the run: run again, it finds its own
        // result (or a finished restore waiting to be moved in) and does not restore twice.
        idempotent: true,
        schema: schema_of::<etcd_restore::Args>,
        parse: |v, ctx| {
            Ok(Action::EtcdRestore(etcd_restore::EtcdRestore::new(
                args(v)?,
                ctx,
            )?))
        },
    },
    ActionInfo {
        name: "file.chown",
        summary: "set the owner of a path (default: the etcd data dir, recursively)",
        default_timeout: secs(120),
        destructive: false,
        idempotent: true,
        schema: schema_of::<file_chown::Args>,
        parse: |v, ctx| {
            Ok(Action::FileChown(file_chown::FileChown::new(
                args(v)?,
                ctx,
            )?))
        },
    },
    ActionInfo {
        name: "wait.etcd_healthy",
        summary: "wait until the member (or every member) answers a quorum read",
        default_timeout: secs(180),
        destructive: false,
        idempotent: true,
        schema: schema_of::<wait_etcd_healthy::Args>,
        parse: |v, ctx| {
            Ok(Action::WaitEtcdHealthy(
                wait_etcd_healthy::WaitEtcdHealthy::new(args(v)?, ctx)?,
            ))
        },
    },
    ActionInfo {
        name: "etcd.verify_cluster",
        summary: "check members, health and HashKV agreement across the cluster",
        default_timeout: secs(120),
        destructive: false,
        idempotent: true,
        schema: schema_of::<etcd_verify_cluster::Args>,
        parse: |v, ctx| {
            Ok(Action::EtcdVerifyCluster(
                etcd_verify_cluster::EtcdVerifyCluster::new(args(v)?, ctx)?,
            ))
        },
    },
    ActionInfo {
        name: "wait.http",
        summary: "wait until a URL answers 2xx (e.g. kube-apiserver /readyz)",
        default_timeout: secs(300),
        destructive: false,
        idempotent: true,
        schema: schema_of::<wait_http::Args>,
        parse: |v, ctx| Ok(Action::WaitHttp(wait_http::WaitHttp::new(args(v)?, ctx)?)),
    },
    ActionInfo {
        name: "etcd.defrag",
        summary: "defragment one member's backend",
        default_timeout: secs(600),
        destructive: false,
        idempotent: true,
        schema: schema_of::<etcd_defrag::Args>,
        parse: |v, ctx| {
            Ok(Action::EtcdDefrag(etcd_defrag::EtcdDefrag::new(
                args(v)?,
                ctx,
            )?))
        },
    },
    ActionInfo {
        name: "etcd.preflight",
        summary: "ask every member over etcd's API (status, leader, alarms, learners); fail on any alarm or no leader",
        default_timeout: secs(60),
        destructive: false,
        idempotent: true,
        schema: schema_of::<etcd_preflight::Args>,
        parse: |v, ctx| {
            Ok(Action::EtcdPreflight(etcd_preflight::EtcdPreflight::new(
                args(v)?,
                ctx,
            )?))
        },
    },
    ActionInfo {
        name: "snapshot.save",
        summary: "stream a snapshot from a member to this machine over SSH, atomically, with a .sha256, verified",
        default_timeout: secs(1800),
        destructive: false,
        idempotent: true,
        schema: schema_of::<snapshot_save::Args>,
        parse: |v, ctx| {
            Ok(Action::SnapshotSave(snapshot_save::SnapshotSave::new(
                args(v)?,
                ctx,
            )?))
        },
    },
    ActionInfo {
        name: "snapshot.copy",
        summary: "copy a saved snapshot and its .sha256 to a directory, an scp target or S3, and check it there",
        default_timeout: secs(1800),
        destructive: false,
        idempotent: true,
        schema: schema_of::<snapshot_copy::CopyArgs>,
        parse: |v, ctx| {
            Ok(Action::SnapshotCopy(snapshot_copy::SnapshotCopy::new(
                args(v)?,
                ctx,
            )?))
        },
    },
    ActionInfo {
        name: "snapshot.prune",
        summary: "keep the newest N snapshots (PREFIX*.db) in a directory or scp target, delete older ones",
        default_timeout: secs(300),
        destructive: true,
        idempotent: true,
        schema: schema_of::<snapshot_copy::PruneArgs>,
        parse: |v, ctx| {
            Ok(Action::SnapshotPrune(snapshot_copy::SnapshotPrune::new(
                args(v)?,
                ctx,
            )?))
        },
    },
    ActionInfo {
        name: "etcd.defrag_cluster",
        summary: "defragment every member in turn over etcd's API, followers first and the leader last, with a health gate; then disarm alarms",
        default_timeout: secs(1800),
        destructive: false,
        idempotent: true,
        schema: schema_of::<etcd_defrag::ClusterArgs>,
        parse: |v, ctx| {
            Ok(Action::EtcdDefragCluster(
                etcd_defrag::EtcdDefragCluster::new(args(v)?, ctx)?,
            ))
        },
    },
    ActionInfo {
        name: "etcd.compact",
        summary: "compact the keyspace to the current revision over etcd's API (old revisions are gone for good)",
        default_timeout: secs(600),
        destructive: true,
        idempotent: true,
        schema: schema_of::<etcd_maintenance::Args>,
        parse: |v, ctx| {
            Ok(Action::EtcdCompact(etcd_maintenance::EtcdCompact::new(
                args(v)?,
                ctx,
            )?))
        },
    },
    ActionInfo {
        name: "etcd.check_writes",
        summary: "put a probe key, read it back from every member, delete it: the cluster takes writes",
        default_timeout: secs(60),
        destructive: false,
        idempotent: true,
        schema: schema_of::<etcd_maintenance::Args>,
        parse: |v, ctx| {
            Ok(Action::EtcdCheckWrites(
                etcd_maintenance::EtcdCheckWrites::new(args(v)?, ctx)?,
            ))
        },
    },
    ActionInfo {
        name: "snapshot.not_source",
        summary: "refuse hosts that belong to the snapshot's own cluster (by peer URL or running member id): drills touch scratch hosts only",
        default_timeout: secs(120),
        destructive: false,
        idempotent: true,
        schema: schema_of::<snapshot_not_source::Args>,
        parse: |v, ctx| {
            Ok(Action::SnapshotNotSource(
                snapshot_not_source::SnapshotNotSource::new(args(v)?, ctx)?,
            ))
        },
    },
    ActionInfo {
        name: "manifest.etcd_flags",
        summary: "set or drop --flags in a parked etcd manifest (e.g. --initial-cluster-state, --force-new-cluster), keeping the original beside it",
        default_timeout: secs(60),
        destructive: false,
        idempotent: true,
        schema: schema_of::<manifest_flags::Args>,
        parse: |v, ctx| {
            Ok(Action::ManifestEtcdFlags(
                manifest_flags::ManifestFlags::new(args(v)?, ctx)?,
            ))
        },
    },
    ActionInfo {
        name: "etcd.clear_data",
        summary: "move a stopped member's data aside (never deleted) so it can join again as a new member",
        default_timeout: secs(300),
        destructive: true,
        idempotent: true,
        schema: schema_of::<etcd_clear_data::Args>,
        parse: |v, ctx| {
            Ok(Action::EtcdClearData(etcd_clear_data::EtcdClearData::new(
                args(v)?,
                ctx,
            )?))
        },
    },
    ActionInfo {
        name: "etcd.member_remove",
        summary: "remove the node's member through the other members, refusing if the voters left could not keep quorum",
        default_timeout: secs(60),
        destructive: true,
        idempotent: true,
        schema: schema_of::<etcd_members::RemoveArgs>,
        parse: |v, ctx| {
            Ok(Action::EtcdMemberRemove(
                etcd_members::EtcdMemberRemove::new(args(v)?, ctx)?,
            ))
        },
    },
    ActionInfo {
        name: "etcd.member_add",
        summary: "add the node as a voting member once every voter is started (one at a time) and write its join flags into its parked manifest",
        default_timeout: secs(300),
        destructive: true,
        idempotent: true,
        schema: schema_of::<etcd_members::AddArgs>,
        parse: |v, ctx| {
            Ok(Action::EtcdMemberAdd(etcd_members::EtcdMemberAdd::new(
                args(v)?,
                ctx,
            )?))
        },
    },
];

pub fn lookup(name: &str) -> Option<&'static ActionInfo> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// Deserialize `with:` into an action's argument type; the error names the field at fault.
fn args<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ArgError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // "unknown field `x`, expected one of ..." is reported at `x` itself.
        let field = inner
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
            .map(str::to_string)
            .or_else(|| (path != ".").then(|| path.split('.').next().unwrap_or(&path).to_string()));
        ArgError {
            field,
            message: if path == "." {
                inner
            } else {
                format!("`{path}`: {inner}")
            },
            hint: None,
        }
    })
}

/// Shared checks for arguments that become paths on a node.
pub(crate) fn node_path(field: &str, value: &str) -> Result<(), ArgError> {
    match crate::check::path_problem(value) {
        Some(problem) => Err(ArgError::field(
            field,
            format!("`{field}` {value:?} {problem}"),
        )),
        None => Ok(()),
    }
}

/// The timeout of a polling command, in whole seconds (at least 1).
pub(crate) fn timeout_secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}
