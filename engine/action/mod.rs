//! Typed actions: each owns its whole life in its own file — its arguments (with a schema),
//! the commands it renders, the tools it needs on a node, the values it sets at run time, its
//! native work, and whether it is safe to re-run. This file is the contract and the registry:
//! adding an action is one new file and one line in `registry!` below.

pub mod etcdctl;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use crate::executor::{BoxFut, Host};
use crate::inventory::model::{Inventory, Node};
use crate::inventory::version::EtcdVersion;

/// The registry: each action module and the `ActionInfo`s it defines, in the order the
/// documentation and schema list them. One line per module declares it and registers it.
macro_rules! registry {
    ($($module:ident => [$($info:ident),+]),+ $(,)?) => {
        $(pub mod $module;)+
        /// Every typed action.
        pub static ACTIONS: &[&ActionInfo] = &[$($(&$module::$info),+),+];
    };
}

registry! {
    etcd_preflight => [INFO],
    snapshot_save => [INFO],
    snapshot_verify => [INFO],
    snapshot_copy => [COPY, PRUNE],
    snapshot_distribute => [INFO],
    snapshot_not_source => [INFO],
    snapshot_impact => [INFO],
    snapshot_encryption_keys => [INFO],
    etcd_service => [STOP, START],
    manifest => [STOP, START],
    manifest_flags => [FLAGS, INFO],
    wait_process_gone => [INFO],
    etcd_restore => [INFO],
    etcd_clear_data => [INFO],
    file_chown => [INFO],
    wait_etcd_healthy => [INFO],
    etcd_verify_cluster => [INFO],
    wait_http => [INFO],
    kube_verify_restore => [INFO],
    etcd_defrag => [DEFRAG, CLUSTER],
    etcd_roll => [INFO],
    etcd_maintenance => [COMPACT, CHECK_WRITES],
    etcd_members => [REMOVE, ADD, PROMOTE],
}

/// `run:` steps: the plan language's raw shell, not a registered action.
pub mod run;

/// One line of what a step does.
#[derive(Debug, Clone)]
pub enum Command {
    /// Run by `sh -c` on the step's host, exactly as shown.
    Shell(String),
    /// Done by runbook itself (file transfer, checks over etcd's API), with the sentence a
    /// plan shows for it.
    Native { work: Arc<dyn Native>, text: String },
}

impl PartialEq for Command {
    /// Two commands are the same when a plan shows them the same.
    fn eq(&self, other: &Command) -> bool {
        match (self, other) {
            (Command::Shell(a), Command::Shell(b)) => a == b,
            (Command::Native { text: a, .. }, Command::Native { text: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Command {
    pub fn native(work: impl Native + 'static, text: String) -> Command {
        Command::Native {
            work: Arc::new(work),
            text,
        }
    }

    /// The form shown in plans; native work reads as a shell comment so a pasted plan runs nothing by accident.
    pub fn display(&self) -> String {
        match self {
            Command::Shell(s) => s.clone(),
            Command::Native { text, .. } => format!("# runbook: {text}"),
        }
    }
}

/// Work runbook does itself rather than through a shell on the host. The walk runs it
/// through its executor (a dry-run does not run it) within the step's time limit.
pub trait Native: fmt::Debug + Send + Sync {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>>;
}

/// What native work found, for the step's log; `shown` puts it on the console too (what etcd
/// said is the point of most such steps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub text: String,
    pub shown: bool,
}

impl Said {
    /// Shown on the console and logged.
    pub fn shown(text: String) -> Said {
        Said { text, shown: true }
    }

    /// Logged only.
    pub fn logged(text: String) -> Said {
        Said { text, shown: false }
    }
}

/// What an action's run-time work sees: the hosts (through the run's executor), the
/// inventory, the step's node, its deadline, and values earlier work left for it.
pub struct RunCx<'a> {
    pub exec: &'a dyn Host,
    pub inventory: &'a Inventory,
    pub node: Option<&'a Node>,
    /// When the step's time limit runs out.
    pub deadline: Instant,
    pub captures: &'a Captures,
    pub files: &'a Files,
}

impl<'a> RunCx<'a> {
    /// The step's node, for work that only makes sense on one.
    pub fn node(&self, what: &str) -> Result<&'a Node, String> {
        self.node.ok_or_else(|| format!("{what} needs a node"))
    }

    /// Time left before the step's limit.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Values steps captured (`capture:`), by name and the node that captured them.
#[derive(Debug, Default)]
pub struct Captures(Mutex<HashMap<(String, Option<String>), String>>);

impl Captures {
    pub fn new(values: HashMap<(String, Option<String>), String>) -> Captures {
        Captures(Mutex::new(values))
    }

    pub fn insert(&self, name: &str, node: Option<&str>, value: String) {
        self.lock()
            .insert((name.to_string(), node.map(str::to_string)), value);
    }

    /// The value `node` captured under `name`, else any node's.
    pub fn get(&self, name: &str, node: Option<&str>) -> Option<String> {
        let map = self.lock();
        map.get(&(name.to_string(), node.map(str::to_string)))
            .or_else(|| map.iter().find(|((n, _), _)| n == name).map(|(_, v)| v))
            .cloned()
    }

    pub fn all(&self) -> HashMap<(String, Option<String>), String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Option<String>), String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The run's local snapshot files: an `s3://` snapshot fetched once into a private directory
/// (0700, removed when the run ends) and checked against its `.sha256`, and every file's
/// sha256 computed once (a verified snapshot is not hashed again for each node it goes to).
#[derive(Debug, Default)]
pub struct Files {
    digests: Mutex<HashMap<String, String>>,
    // Held across a download, so steps asking at once share one fetch.
    fetched: tokio::sync::Mutex<Fetched>,
}

#[derive(Debug, Default)]
struct Fetched {
    dir: Option<tempfile::TempDir>,
    files: HashMap<String, PathBuf>,
}

/// Where a snapshot is on this machine; `fetched` says what the first fetch checked.
#[derive(Debug)]
pub struct LocalFile {
    pub path: PathBuf,
    pub fetched: Option<String>,
}

impl Files {
    pub fn remember(&self, path: &str, digest: String) {
        self.digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), digest);
    }

    /// `path` on this machine: itself, or for `s3://bucket/key` the object fetched (once).
    pub async fn local(&self, path: &str) -> Result<LocalFile, String> {
        let Some(object) = crate::snapshot::s3::S3Url::object(path) else {
            return Ok(LocalFile {
                path: PathBuf::from(path),
                fetched: None,
            });
        };
        let (url, name) = object?;
        let mut f = self.fetched.lock().await;
        if let Some(p) = f.files.get(path) {
            return Ok(LocalFile {
                path: p.clone(),
                fetched: None,
            });
        }
        if f.dir.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("runbook-fetched-")
                .tempdir()
                .map_err(|e| format!("cannot make a private directory for {path}: {e}"))?;
            f.dir = Some(dir);
        }
        let dir = f
            .dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        let bucket = crate::snapshot::s3::Bucket::open(&url, None)?;
        let started = std::time::Instant::now();
        let (local, digest, checked) = bucket.fetch(&name, &dir).await?;
        self.remember(path, digest.clone());
        self.remember(&local.display().to_string(), digest);
        f.files.insert(path.to_string(), local.clone());
        Ok(LocalFile {
            fetched: Some(format!(
                "fetched {path} to {} in {:.2}s: {checked}",
                local.display(),
                started.elapsed().as_secs_f64()
            )),
            path: local,
        })
    }

    /// The file's sha256, hashed off the async threads the first time it is asked for.
    pub async fn sha256(&self, path: &str) -> Result<String, String> {
        if let Some(d) = self
            .digests
            .lock()
            .unwrap_or_else(|x| x.into_inner())
            .get(path)
        {
            return Ok(d.clone());
        }
        let q = self.local(path).await?.path;
        let d = tokio::task::spawn_blocking(move || crate::snapshot::sha256_file(&q))
            .await
            .map_err(|e| format!("hashing {path}: {e}"))?
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        self.remember(path, d.clone());
        Ok(d)
    }
}

/// A count written as a number, or as the digits a `{{ params.x }}` template renders.
#[derive(Debug, Clone, Copy)]
pub struct Count(pub u32);

impl<'de> serde::Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Count, E> {
                u32::try_from(v)
                    .map(Count)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Count, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Count, E> {
                v.trim()
                    .parse::<u32>()
                    .map(Count)
                    .map_err(|_| E::custom(format!("{v:?} is not a whole number")))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Count {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Count".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "description": "digits, or a template that renders to digits" }
            ]
        })
    }
}

/// A snapshot a step reads on the operator's machine (a path, or s3://bucket/key): the step
/// runs `on: local`, and the value names something.
pub fn local_snapshot(ctx: &Ctx, action: &str, value: String) -> Result<String, ArgError> {
    if ctx.node.is_some() {
        return Err(ArgError::field(
            "snapshot",
            format!("`{action}` reads the snapshot on the operator's machine"),
        )
        .hint("run the step `on: local`"));
    }
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(ArgError::field(
            "snapshot",
            "`snapshot` is empty or contains a control character",
        ));
    }
    Ok(value)
}

/// The variable every step's commands see with the run's id (the restore marks its work with it).
pub const RUN_ID_VAR: &str = "RUNBOOK_RUN_ID";

/// A value a command needs that exists only at run time, passed as an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeValue {
    pub var: String,
    pub meaning: String,
}

/// A program a step's commands need on its node, asked for before the first step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub path: String,
    /// The inventory field that names it, for the remedy.
    pub field: &'static str,
    /// The version it must have (major.minor), when the action's flags depend on it.
    pub version: Option<EtcdVersion>,
}

impl Tool {
    /// The node's etcdctl, any version (its flags are the same from 3.4 on).
    pub fn etcdctl(node: &Node) -> Tool {
        Tool {
            path: node.etcd.etcdctl.clone(),
            field: "etcd.etcdctl",
            version: None,
        }
    }
}

/// What every compiled action is. Everything but `commands` has a default: most actions
/// are shell commands with nothing to set or check beforehand.
pub trait Act: Any + fmt::Debug + Send + Sync {
    /// What the step does, in order: shown by `plan`, run by the walk.
    fn commands(&self) -> Vec<Command>;

    /// Variables its commands read that only the run can set (shown by `plan`).
    fn runtime_values(&self) -> Vec<RuntimeValue> {
        Vec::new()
    }

    /// Programs its commands need on `node`.
    fn tools(&self, _node: &Node) -> Vec<Tool> {
        Vec::new()
    }

    /// The values of `runtime_values`, at run time, for its commands' environment.
    fn env<'a>(&'a self, _cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Vec<(String, String)>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// A compiled action instance: cheap to clone, read through `Act`, or as its own type
/// (`get`) by lints that reason about particular actions.
#[derive(Clone)]
pub struct Action(Arc<dyn Act>);

impl Action {
    pub fn new(act: impl Act) -> Action {
        Action(Arc::new(act))
    }

    /// The action as its own type, when it is one.
    pub fn get<T: Act>(&self) -> Option<&T> {
        let any: &dyn Any = self.0.as_ref();
        any.downcast_ref::<T>()
    }
}

impl std::ops::Deref for Action {
    type Target = dyn Act;

    fn deref(&self) -> &dyn Act {
        self.0.as_ref()
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
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

pub(crate) const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(crate) fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

pub fn lookup(name: &str) -> Option<&'static ActionInfo> {
    ACTIONS.iter().copied().find(|a| a.name == name)
}

/// Deserialize `with:` into an action's argument type; the error names the field at fault.
pub(crate) fn args<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ArgError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry is the only list of actions: every entry is found by its name, names are
    /// unique, and every schema generates.
    #[test]
    fn every_registered_action_is_found_once_with_a_schema() {
        let mut names: Vec<&str> = ACTIONS.iter().map(|a| a.name).collect();
        for name in &names {
            assert!(std::ptr::eq(lookup(name).unwrap().name, *name));
        }
        let mut g = SchemaGenerator::default();
        for a in ACTIONS {
            let schema = (a.schema)(&mut g);
            assert!(schema.as_value().is_object(), "{}", a.name);
            assert!(
                !a.summary.is_empty() && !a.default_timeout.is_zero(),
                "{}",
                a.name
            );
        }
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "an action name is registered twice");
        assert!(
            lookup("run").is_none(),
            "`run:` is the language's, not an action"
        );
    }

    /// A compiled action is read as its own type by lints, and only as that type.
    #[test]
    fn an_action_is_read_back_as_its_own_type() {
        let a = Action::new(run::Run {
            script: "true".into(),
            captures: Vec::new(),
        });
        assert_eq!(a.get::<run::Run>().unwrap().script, "true");
        assert!(a.get::<etcd_maintenance::EtcdCompact>().is_none());
        assert_eq!(a.commands(), vec![Command::Shell("true".into())]);
    }
}
