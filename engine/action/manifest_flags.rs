//! `etcd.flags` (also known by its earlier name `manifest.etcd_flags`): set or drop etcd
//! flags of a *stopped* member, e.g. `--initial-cluster-state` for a member that joins, or
//! `--force-new-cluster` for one start only. Where the flags live depends on how the member
//! runs:
//!
//! - a static pod: the container's command list in the *parked* manifest (between
//!   `etcd.stop` and `etcd.start`), as kubeadm writes it (`    - --name=value`): an existing
//!   line is replaced in place, a missing one is added after the last flag with the same
//!   indentation;
//! - a systemd unit: `ETCD_NAME=value` lines of its environment file (etcd reads every flag
//!   from `ETCD_` + its name in capitals, dashes as underscores): an existing line is replaced
//!   in place, a missing one is appended.
//!
//! Values are restricted to characters that are plain YAML scalars and plain environment
//! values, so no edit can change the file's structure. The file as it was before each edit
//! is kept beside it as `NAME.before-runbook-<time>`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::manifest::{manifest_name, parked_path};
use crate::inventory::model::{Node, Runtime};
use super::{Act, Action, ActionInfo, args, schema_of, secs, ArgError, Command, Ctx};
use crate::shell::quote;

pub static FLAGS: ActionInfo = ActionInfo {
    name: "etcd.flags",
    summary: "set or drop flags of a stopped etcd member (e.g. --initial-cluster-state, --force-new-cluster) in its parked manifest or its unit's environment file, keeping the original beside it",
    default_timeout: secs(60),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(ManifestFlags::new(args(v)?, ctx, "etcd.flags")?)),
};

/// The earlier name of `etcd.flags`, kept for plans written with it.
pub static INFO: ActionInfo = ActionInfo {
    name: "manifest.etcd_flags",
    summary: "the earlier name of etcd.flags",
    default_timeout: secs(60),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| {
        Ok(Action::new(ManifestFlags::new(
            args(v)?,
            ctx,
            "manifest.etcd_flags",
        )?))
    },
};

/// Arguments of `etcd.flags` (and `manifest.etcd_flags`).
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ManifestEtcdFlagsArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Flags to set, without the leading `--`: `{ initial-cluster-state: existing }`.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Flags to drop, without the leading `--`: `[force-new-cluster]`.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Static pod members: the parked manifest's file name (default etcd.yaml).
    #[serde(default)]
    pub manifest: Option<String>,
    /// Static pod members: where `etcd.stop` parked it (default:
    /// `<manifests_dir>/../runbook-parked`).
    #[serde(default)]
    pub parking_dir: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ManifestFlags {
    pub file: FlagFile,
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

/// Where a stopped member's flags are edited.
#[derive(Debug, Clone)]
pub enum FlagFile {
    /// The parked static pod manifest.
    Manifest(String),
    /// The systemd unit's environment file.
    Env { path: String, unit: String },
}

impl FlagFile {
    /// The node's: its parked manifest (`manifest`, default etcd.yaml, in `parking_dir`) or
    /// its unit's environment file.
    pub fn of(
        node: &Node,
        manifest: Option<String>,
        parking_dir: Option<String>,
    ) -> Result<FlagFile, ArgError> {
        match &node.etcd.runtime {
            Runtime::StaticPod => {
                let manifest = manifest.unwrap_or_else(|| "etcd.yaml".into());
                manifest_name("manifest", &manifest)?;
                Ok(FlagFile::Manifest(parked_path(node, parking_dir, &manifest)?))
            }
            Runtime::Systemd { unit, env_file } => {
                if manifest.is_some() {
                    return Err(ArgError::field(
                        "manifest",
                        format!(
                            "etcd on {} runs as the systemd unit {unit}: its flags are in {env_file}",
                            node.name
                        ),
                    )
                    .hint("drop `manifest` (the inventory says where the flags live)"));
                }
                Ok(FlagFile::Env {
                    path: env_file.clone(),
                    unit: unit.clone(),
                })
            }
        }
    }

    pub fn path(&self) -> &str {
        match self {
            FlagFile::Manifest(p) | FlagFile::Env { path: p, .. } => p,
        }
    }

    /// The shell commands of the edit, refusing a member that is not stopped.
    pub fn edit_commands(&self, set: &[(String, String)], remove: &[String]) -> Vec<String> {
        match self {
            FlagFile::Manifest(path) => edit_commands(path, set, remove),
            FlagFile::Env { path, unit } => env_edit_commands(path, unit, set, remove),
        }
    }

    /// How the flags read in this file: `--name=value` or `ETCD_NAME=value`.
    pub fn spell(&self, flag: &str, value: &str) -> String {
        match self {
            FlagFile::Manifest(_) => format!("--{flag}={value}"),
            FlagFile::Env { .. } => format!("{}={value}", crate::etcd::envfile::var_of(flag)),
        }
    }
}


fn flag_name_ok(f: &str) -> bool {
    f.starts_with(|c: char| c.is_ascii_lowercase())
        && f.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Characters that stay one plain YAML scalar and one shell word after quoting.
fn flag_value_ok(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/=,@+%-".contains(&b))
}

/// Refuses flag names and values a manifest line cannot take plainly, and a flag both set
/// and dropped (`manifest.etcd_flags`, `etcd.roll`).
pub fn check_edit(set: &BTreeMap<String, String>, remove: &[String]) -> Result<(), ArgError> {
    for (f, v) in set {
        if !flag_name_ok(f) {
            return Err(
                ArgError::field("set", format!("{f:?} is not an etcd flag name")).hint(
                    "write the flag without its leading dashes, e.g. initial-cluster-state",
                ),
            );
        }
        if !flag_value_ok(v) {
            return Err(ArgError::field(
                "set",
                format!("the value of {f} ({v:?}) has characters a manifest line cannot take plainly"),
            )
            .hint("letters, digits and . _ : / = , @ + % - only"));
        }
    }
    for f in remove {
        if !flag_name_ok(f) {
            return Err(
                ArgError::field("remove", format!("{f:?} is not an etcd flag name"))
                    .hint("write the flag without its leading dashes, e.g. force-new-cluster"),
            );
        }
        if set.contains_key(f) {
            return Err(ArgError::field(
                "remove",
                format!("{f} is both set and removed"),
            ));
        }
    }
    Ok(())
}

impl ManifestFlags {
    pub fn new(args: Args, ctx: &Ctx, action: &str) -> Result<Self, ArgError> {
        let node = ctx.require_node(action)?;
        let file = FlagFile::of(node, args.manifest, args.parking_dir)?;
        if args.set.is_empty() && args.remove.is_empty() {
            return Err(
                ArgError::field("set", "nothing to change: `set` and `remove` are empty")
                    .hint("e.g. set: { initial-cluster-state: existing }"),
            );
        }
        check_edit(&args.set, &args.remove)?;
        Ok(ManifestFlags {
            file,
            set: args.set.into_iter().collect(),
            remove: args.remove,
        })
    }

    /// True when the edit turns `flag` on (e.g. `force-new-cluster`).
    pub fn sets(&self, flag: &str) -> bool {
        self.set
            .iter()
            .any(|(f, v)| f == flag && !v.eq_ignore_ascii_case("false"))
    }
}

impl Act for ManifestFlags {
    fn commands(&self) -> Vec<Command> {
        self.file
            .edit_commands(&self.set, &self.remove)
            .into_iter()
            .map(Command::Shell)
            .collect()
    }
}

/// One awk pass over the file: `s` holds `flag=value` words to set, `r` flag names to drop.
/// Lines are buffered so a missing flag can go after the last flag seen; a repeated flag
/// keeps only its first line.
const AWK: &str = r#"BEGIN { ns = split(s, a, " "); for (k = 1; k <= ns; k++) { e = index(a[k], "="); key[k] = substr(a[k], 1, e - 1); val[key[k]] = substr(a[k], e + 1) }
  nr = split(r, b, " "); for (k = 1; k <= nr; k++) del[b[k]] = 1 }
{ l[NR] = $0; t = $0; sub(/^[ \t]+/, "", t); i = substr($0, 1, length($0) - length(t))
  if (index(t, "- --") == 1) { last = NR; li = i; f = substr(t, 5); e = index(f, "="); if (e) f = substr(f, 1, e - 1)
    if ((f in del) || (f in done)) gone[NR] = 1; else if (f in val) { l[NR] = i "- --" f "=" val[f]; done[f] = 1 } } }
END { if (!last) { print FILENAME ": no command flags found" > "/dev/stderr"; exit 1 }
  for (x = 1; x <= NR; x++) { if (!(x in gone)) print l[x]; if (x == last) for (k = 1; k <= ns; k++) if (!(key[k] in done)) print li "- --" key[k] "=" val[key[k]] } }"#;

/// The shell commands that edit `path` in place, keeping a dated copy of it first.
pub fn edit_commands(path: &str, set: &[(String, String)], remove: &[String]) -> Vec<String> {
    let p = quote(path);
    let tmp = quote(&format!("{path}.runbook-edit"));
    let words: Vec<String> = set.iter().map(|(f, v)| format!("{f}={v}")).collect();
    vec![
        format!(
            "test -e {p} || {{ echo {p}: not parked: stop etcd with etcd.stop first >&2; exit 1; }}"
        ),
        format!(
            "cp -p {p} {}.before-runbook-$(date -u +%Y%m%dT%H%M%SZ)",
            quote(path)
        ),
        format!(
            "awk -v s={} -v r={} {} {p} > {tmp} && chmod --reference={p} {tmp} && mv {tmp} {p}",
            quote(&words.join(" ")),
            quote(&remove.join(" ")),
            quote(AWK)
        ),
    ]
}

/// One awk pass over an environment file: `s` holds `NAME=value` words to set, `r` names to
/// drop. A set line replaces the variable's first line in place (later repeats go); missing
/// ones are appended.
const ENV_AWK: &str = r#"BEGIN { ns = split(s, a, " "); for (k = 1; k <= ns; k++) { e = index(a[k], "="); key[k] = substr(a[k], 1, e - 1); val[key[k]] = substr(a[k], e + 1) }
  nr = split(r, b, " "); for (k = 1; k <= nr; k++) del[b[k]] = 1 }
{ t = $0; sub(/^[ \t]*(export[ \t]+)?/, "", t); e = index(t, "="); n = e ? substr(t, 1, e - 1) : ""
  if (n != "" && ((n in del) || (n in done))) next
  if (n != "" && (n in val)) { print n "=" val[n]; done[n] = 1; next }
  print }
END { for (k = 1; k <= ns; k++) if (!(key[k] in done)) print key[k] "=" val[key[k]] }"#;

/// The shell commands that edit a systemd member's environment file in place, once its
/// unit is stopped, keeping a dated copy of the file first.
pub fn env_edit_commands(
    path: &str,
    unit: &str,
    set: &[(String, String)],
    remove: &[String],
) -> Vec<String> {
    let p = quote(path);
    let u = quote(unit);
    let tmp = quote(&format!("{path}.runbook-edit"));
    let words: Vec<String> = set
        .iter()
        .map(|(f, v)| format!("{}={v}", crate::etcd::envfile::var_of(f)))
        .collect();
    let drop: Vec<String> = remove.iter().map(|f| crate::etcd::envfile::var_of(f)).collect();
    vec![
        format!(
            "if systemctl is-active --quiet {u}; then echo {u} is running: stop it with etcd.stop first >&2; exit 1; fi"
        ),
        format!("test -f {p} || {{ echo {p}: no such environment file >&2; exit 1; }}"),
        format!("cp -p {p} {p}.before-runbook-$(date -u +%Y%m%dT%H%M%SZ)"),
        format!(
            "awk -v s={} -v r={} {} {p} > {tmp} && chmod --reference={p} {tmp} && mv {tmp} {p}",
            quote(&words.join(" ")),
            quote(&drop.join(" ")),
            quote(ENV_AWK)
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::edit_commands;

    const MANIFEST: &str = "spec:\n  containers:\n  - command:\n    - etcd\n    - --data-dir=/var/lib/etcd\n    - --initial-cluster=cp1=https://10.0.0.11:2380\n    - --initial-cluster-state=new\n    - --name=cp1\n    image: registry.k8s.io/etcd:3.5.16-0\n";

    fn edit(set: &[(&str, &str)], remove: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.yaml");
        std::fs::write(&path, MANIFEST).unwrap();
        let set: Vec<(String, String)> = set
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect();
        let remove: Vec<String> = remove.iter().map(|s| s.to_string()).collect();
        let script = edit_commands(path.to_str().unwrap(), &set, &remove).join(" && ");
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let backups = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("etcd.yaml.before-runbook-")
            })
            .count();
        assert_eq!(backups, 1, "the manifest before the edit is kept");
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn replaces_in_place_and_appends_missing_flags_after_the_last() {
        let got = edit(
            &[
                (
                    "initial-cluster",
                    "cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380",
                ),
                ("initial-cluster-state", "existing"),
                ("force-new-cluster", "true"),
            ],
            &[],
        );
        assert_eq!(
            got,
            "spec:\n  containers:\n  - command:\n    - etcd\n    - --data-dir=/var/lib/etcd\n    - --initial-cluster=cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380\n    - --initial-cluster-state=existing\n    - --name=cp1\n    - --force-new-cluster=true\n    image: registry.k8s.io/etcd:3.5.16-0\n"
        );
    }

    #[test]
    fn removes_flags_and_leaves_the_rest_untouched() {
        let got = edit(&[], &["initial-cluster-state"]);
        assert_eq!(
            got,
            MANIFEST.replace("    - --initial-cluster-state=new\n", "")
        );
    }
}

#[cfg(test)]
mod env_tests {
    use super::env_edit_commands;

    const ENV: &str = "# etcd's settings\nETCD_DATA_DIR=/var/lib/etcd\nexport ETCD_INITIAL_CLUSTER_STATE=new\nETCD_NAME=etcd1\nETCD_NAME=again\nETCD_FORCE_NEW_CLUSTER=true\n";

    #[test]
    fn sets_in_place_appends_and_drops_keeping_the_file_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.env");
        std::fs::write(&path, ENV).unwrap();
        let set = [
            ("initial-cluster-state".to_string(), "existing".to_string()),
            (
                "initial-cluster".to_string(),
                "etcd1=https://10.0.0.11:2380".to_string(),
            ),
        ];
        let script = env_edit_commands(
            path.to_str().unwrap(),
            "runbook-test-absent.service",
            &set,
            &["force-new-cluster".to_string()],
        )
        .join(" && ");
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# etcd's settings\nETCD_DATA_DIR=/var/lib/etcd\nETCD_INITIAL_CLUSTER_STATE=existing\nETCD_NAME=etcd1\nETCD_NAME=again\nETCD_INITIAL_CLUSTER=etcd1=https://10.0.0.11:2380\n"
        );
        let kept: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("etcd.env.before-runbook-"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&kept[0])).unwrap(),
            ENV
        );
    }
}
