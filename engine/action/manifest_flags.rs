//! `manifest.etcd_flags`: set or drop `--flag=value` lines in a *parked* etcd static pod
//! manifest (between `manifest.stop` and `manifest.start`), e.g. `--initial-cluster-state`
//! for a member that joins, or `--force-new-cluster` for one start only.
//!
//! The edit is a line edit of the container's command list, as kubeadm writes it
//! (`    - --name=value`): an existing line is replaced in place, a missing one is added
//! after the last flag with the same indentation. Values are restricted to characters that
//! are plain YAML scalars, so no edit can change the manifest's structure. The manifest as
//! it was before each edit is kept beside it as `NAME.before-runbook-<time>`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::manifest::{manifest_name, parked_path};
use super::{Act, Action, ActionInfo, args, schema_of, secs, ArgError, Command, Ctx};
use crate::shell::quote;

pub static INFO: ActionInfo = ActionInfo {
    name: "manifest.etcd_flags",
    summary: "set or drop --flags in a parked etcd manifest (e.g. --initial-cluster-state, --force-new-cluster), keeping the original beside it",
    default_timeout: secs(60),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(ManifestFlags::new(args(v)?, ctx)?)),
};

/// Arguments of `manifest.etcd_flags`.
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
    /// The parked manifest's file name (default etcd.yaml).
    #[serde(default)]
    pub manifest: Option<String>,
    /// Where `manifest.stop` parked it (default: `<manifests_dir>/../runbook-parked`).
    #[serde(default)]
    pub parking_dir: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ManifestFlags {
    pub path: String,
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
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
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        let manifest = args.manifest.unwrap_or_else(|| "etcd.yaml".into());
        manifest_name("manifest", &manifest)?;
        let node = ctx.require_node("manifest.etcd_flags")?;
        let path = parked_path(node, args.parking_dir, &manifest)?;
        if args.set.is_empty() && args.remove.is_empty() {
            return Err(
                ArgError::field("set", "nothing to change: `set` and `remove` are empty")
                    .hint("e.g. set: { initial-cluster-state: existing }"),
            );
        }
        check_edit(&args.set, &args.remove)?;
        Ok(ManifestFlags {
            path,
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
        edit_commands(&self.path, &self.set, &self.remove)
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
            "test -e {p} || {{ echo {p}: not parked: stop it with manifest.stop first >&2; exit 1; }}"
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
