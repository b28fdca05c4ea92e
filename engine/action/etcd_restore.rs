//! `etcd.restore`: rebuild one member's data dir from a snapshot.
//!
//! Why the commands look the way they do:
//! - every member gets the same `--initial-cluster` and `--initial-cluster-token`: restore
//!   derives member and cluster IDs from them, so any difference splits the cluster;
//! - restore is not atomic, so it writes into a temporary directory *inside* the data dir
//!   (same filesystem, even when the data dir is a mount point of its own) and then
//!   renames `member/` into place;
//! - the old contents are moved aside (never deleted) into `.runbook-previous/<time>/`;
//!   the data dir itself is never moved, because it may be a mount point;
//! - etcd 3.5+ restores with etcdutl; 3.4 with `etcdctl snapshot restore` (removed in 3.6);
//! - `--bump-revision --mark-compacted` (3.5.10+, 3.4.27+) keep Kubernetes watch caches
//!   from serving pre-snapshot state.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Act, Action, ActionInfo, Tool as NodeTool, args, schema_of, secs, ArgError, Command, Ctx, RuntimeValue, node_path};
use crate::inventory::model::Node;
use crate::inventory::version::EtcdVersion;
use crate::shell::quote;

pub static INFO: ActionInfo = ActionInfo {
    name: "etcd.restore",
    summary: "restore the member's data dir from a snapshot, keeping the old data aside",
    default_timeout: secs(900),
    destructive: true,
    // The restored member carries a marker naming the run: run again, it finds its own
    // result (or a finished restore waiting to be moved in) and does not restore twice.
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(EtcdRestore::new(args(v)?, ctx)?)),
};

/// Arguments of `etcd.restore`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdRestoreArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The snapshot file on the node (put there by `snapshot.distribute`).
    pub snapshot: String,
    /// The new cluster's --initial-cluster-token; must be the same for every member.
    pub token: String,
    /// Member name (default: the node's name).
    #[serde(default)]
    pub name: Option<String>,
    /// --initial-advertise-peer-urls (default: the node's peer URL).
    #[serde(default)]
    pub peer_url: Option<String>,
    /// --initial-cluster (default: every node of the step, `name=peer_url`, comma-separated).
    #[serde(default)]
    pub initial_cluster: Option<String>,
    /// Data dir to restore into (default: the node's etcd data dir).
    #[serde(default)]
    pub data_dir: Option<String>,
    /// Force `etcdutl` or `etcdctl` (default: etcdutl from 3.5, etcdctl before).
    #[serde(default)]
    pub tool: Option<Tool>,
    /// Revisions to add on restore, where supported (default 1000000000; 0 disables).
    #[serde(default = "default_bump")]
    pub bump_revision: u64,
    /// Restore from a file without a sha256 trailer (a copied `member/snap/db`).
    #[serde(default)]
    pub skip_hash_check: bool,
    /// Move the data dir's current contents aside first (default true; false only for an empty dir).
    #[serde(default = "yes")]
    pub move_aside: bool,
}

/// The default `--bump-revision`: far above any revision a cluster reaches between snapshots.
pub const DEFAULT_BUMP: u64 = 1_000_000_000;

fn default_bump() -> u64 {
    DEFAULT_BUMP
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "RestoreTool")]
pub enum Tool {
    Etcdutl,
    Etcdctl,
}

#[derive(Debug, Clone)]
pub struct EtcdRestore {
    pub snapshot: String,
    pub token: String,
    pub name: String,
    pub peer_url: String,
    pub initial_cluster: String,
    pub data_dir: String,
    pub tool: Tool,
    pub tool_path: String,
    pub version: EtcdVersion,
    /// The bump actually applied (0 when disabled or unsupported).
    pub bump_revision: u64,
    /// The plan asked for no bump although the version supports it.
    pub bump_disabled: bool,
    pub skip_hash_check: bool,
    pub move_aside: bool,
}

/// Scratch directory for the restore, inside the data dir.
pub const RESTORE_TMP: &str = ".runbook-restore";
/// The member directory etcd reads.
const MEMBER: &str = "member";
/// The file inside a restored `member/` that says which run restored it, from what.
pub const MARKER: &str = ".runbook-restored";
/// The variable holding the run's id (set by the walk for every step).
const RUN_ID: &str = super::RUN_ID_VAR;
/// Where earlier contents of the data dir are kept.
pub const PREVIOUS: &str = ".runbook-previous";

/// Moves everything in the data dir (but runbook's own dirs and lost+found) into
/// `.runbook-previous/<time>/`: never deleted, and the data dir itself never moved, because
/// it may be a mount point.
pub fn move_aside(data_dir: &str) -> String {
    let dq = quote(data_dir);
    let prev = quote(&format!("{data_dir}/{PREVIOUS}"));
    format!(
        "prev={prev}/$(date -u +%Y%m%dT%H%M%SZ) && mkdir -p \"$prev\" && \
find {dq} -mindepth 1 -maxdepth 1 ! -name '.runbook-*' ! -name lost+found -exec mv -t \"$prev\" -- {{}} + && \
echo \"previous contents kept in $prev\""
    )
}

/// `name=peer_url,...` over the given members, in inventory order.
pub fn initial_cluster(members: &[&Node]) -> String {
    members
        .iter()
        .map(|n| format!("{}={}", n.name, n.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

impl EtcdRestore {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("etcd.restore")?;
        node_path("snapshot", &args.snapshot)?;
        if args.token.is_empty()
            || args
                .token
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(
                ArgError::field("token", "`token` is empty or contains whitespace")
                    .hint("use a fresh, unique token such as <cluster>-restore-<date>"),
            );
        }
        let data_dir = args.data_dir.unwrap_or_else(|| node.etcd.data_dir.clone());
        node_path("data_dir", &data_dir)?;
        if crate::check::normalize(&data_dir) == "/" {
            return Err(ArgError::field("data_dir", "`data_dir` must not be /"));
        }
        let version = node.etcd.version;
        let tool = args.tool.unwrap_or(if version.has_etcdutl() {
            Tool::Etcdutl
        } else {
            Tool::Etcdctl
        });
        if tool == Tool::Etcdutl && !version.has_etcdutl() {
            return Err(ArgError::field(
                "tool",
                format!("etcdutl does not exist in etcd {version}"),
            )
            .hint("etcd before 3.5 restores with `etcdctl snapshot restore`; drop `tool:`"));
        }
        let tool_path = match tool {
            Tool::Etcdutl => node.etcd.etcdutl.clone(),
            Tool::Etcdctl => node.etcd.etcdctl.clone(),
        };
        let supported = version.supports_bump_revision();
        Ok(EtcdRestore {
            snapshot: args.snapshot,
            token: args.token,
            name: args.name.unwrap_or_else(|| node.name.clone()),
            peer_url: args.peer_url.unwrap_or_else(|| node.peer_url()),
            initial_cluster: args
                .initial_cluster
                .unwrap_or_else(|| initial_cluster(ctx.fanout)),
            data_dir: crate::check::normalize(&data_dir),
            tool,
            tool_path,
            version,
            bump_revision: if supported { args.bump_revision } else { 0 },
            bump_disabled: supported && args.bump_revision == 0,
            skip_hash_check: args.skip_hash_check,
            move_aside: args.move_aside,
        })
    }

    /// Writes the marker into a restored member: run, token, snapshot and its digest.
    fn write_marker(&self, member: &str) -> String {
        let snap = quote(&self.snapshot);
        format!(
            "printf '%s\\n' \"run=${RUN_ID}\" {} {} \"sha256=$(sha256sum < {snap} | cut -d' ' -f1)\" \"restored=$(date -u +%Y-%m-%dT%H:%M:%SZ)\" > {marker}",
            quote(&format!("token={}", self.token)),
            quote(&format!("snapshot={}", self.snapshot)),
            marker = format_args!("{member}/{MARKER}")
        )
    }

    /// Puts the restored member in place. The old `member/` is moved aside only right
    /// before the new one moves in, in the same command, and a `member/` missing with a
    /// finished restore waiting (a host that stopped in between) is simply moved in: no
    /// interruption leaves the node without one for longer than two renames.
    fn swap(&self) -> String {
        let d = &self.data_dir;
        let dq = quote(d);
        let member = quote(&format!("{d}/{MEMBER}"));
        let tmp = quote(&format!("{d}/{RESTORE_TMP}"));
        let restored = quote(&format!("{d}/{RESTORE_TMP}/{MEMBER}"));
        let move_in = format!("mv -- {restored} {member} && rmdir -- {tmp}");
        if !self.move_aside {
            return format!(
                "test ! -e {member} || {{ echo {dq} is not empty: refusing to restore over it >&2; exit 1; }}; {move_in}"
            );
        }
        let prev = quote(&format!("{d}/{PREVIOUS}"));
        format!(
            "prev={prev}/$(date -u +%Y%m%dT%H%M%SZ) && mkdir -p \"$prev\" && \
find {dq} -mindepth 1 -maxdepth 1 ! -name '.runbook-*' ! -name lost+found ! -name {MEMBER} -exec mv -t \"$prev\" -- {{}} + && \
{{ ! [ -e {member} ] || mv -- {member} \"$prev/\"; }} && {move_in} && \
echo \"previous contents kept in $prev\""
        )
    }
}

impl Act for EtcdRestore {
    fn runtime_values(&self) -> Vec<RuntimeValue> {
        vec![RuntimeValue {
            var: RUN_ID.to_string(),
            meaning: "this run's id: the restored member/ is marked with it, so a resumed run recognises its own restore".to_string(),
        }]
    }

    /// The restore tool must be the inventory's version: it decides the flags and the format.
    fn tools(&self, _node: &Node) -> Vec<NodeTool> {
        vec![NodeTool {
            path: self.tool_path.clone(),
            field: if self.tool_path.ends_with("etcdutl") {
                "etcd.etcdutl"
            } else {
                "etcd.etcdctl"
            },
            version: Some(self.version),
        }]
    }

    fn commands(&self) -> Vec<Command> {
        let d = &self.data_dir;
        let dq = quote(d);
        let tmp = quote(&format!("{d}/{RESTORE_TMP}"));
        let mut restore = vec![
            quote(&self.tool_path),
            "snapshot restore".into(),
            quote(&self.snapshot),
        ];
        restore.push(format!("--data-dir={tmp}"));
        restore.push(format!("--name={}", quote(&self.name)));
        restore.push(format!(
            "--initial-cluster={}",
            quote(&self.initial_cluster)
        ));
        restore.push(format!("--initial-cluster-token={}", quote(&self.token)));
        restore.push(format!(
            "--initial-advertise-peer-urls={}",
            quote(&self.peer_url)
        ));
        if self.bump_revision > 0 {
            restore.push(format!("--bump-revision={}", self.bump_revision));
            restore.push("--mark-compacted".into());
        }
        if self.skip_hash_check {
            restore.push("--skip-hash-check".into());
        }
        let member = quote(&format!("{d}/{MEMBER}"));
        let restored = quote(&format!("{d}/{RESTORE_TMP}/{MEMBER}"));
        let marker = |m: &str| format!("{m}/{MARKER}");
        // Is this member (or the one waiting in the scratch dir) this run's own restore?
        let ours = |m: &str| {
            format!(
                "[ -n \"${{{RUN_ID}:-}}\" ] && grep -qxF \"run=${RUN_ID}\" {} 2>/dev/null",
                marker(m)
            )
        };
        let mut out = vec![
            Command::Shell(format!("mkdir -p {dq}")),
            // Run again after an interruption (a resume without the host's record, or by
            // hand), a finished restore is recognised by its marker and left alone.
            Command::Shell(format!(
                "if {}; then echo \"{d}/{MEMBER} is already this run's restore (${RUN_ID})\"; exit 0; fi",
                ours(&member)
            )),
            // A restore that finished in the scratch dir is reused; anything else there is
            // runbook's own half-written scratch (3.4 refuses even an empty target): cleared.
            Command::Shell(format!(
                "if {}; then echo \"reusing the restore finished earlier in {d}/{RESTORE_TMP}\"; \
else rm -rf -- {tmp} && {} && {}; fi",
                ours(&restored),
                restore.join(" "),
                self.write_marker(&restored)
            )),
        ];
        out.push(Command::Shell(self.swap()));
        out
    }
}
