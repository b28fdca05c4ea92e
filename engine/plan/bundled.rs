//! The bundled plans (plans/ of the source tree), compiled into the binary: an installed
//! runbook runs `runbook apply etcd-backup -i inv.yaml` without a checkout. A plan argument
//! names a bundled plan when it is a bare name (no `/`) that is not a file here: a path always
//! means the file, as before.

use std::path::Path;

use include_dir::{Dir, include_dir};

static PLANS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/plans");

/// The prefix that marks a bundled plan's name in diagnostics and run records.
pub const PREFIX: &str = "bundled:";

/// One bundled plan: its name (the file name without `.yaml`) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Bundled {
    pub name: &'static str,
    pub text: &'static str,
}

impl Bundled {
    /// How diagnostics and records name it: `bundled:etcd-backup.yaml`.
    pub fn file(&self) -> String {
        format!("{PREFIX}{}.yaml", self.name)
    }
}

/// Every bundled plan, by name.
pub fn all() -> Vec<Bundled> {
    let mut plans: Vec<Bundled> = PLANS
        .files()
        .filter_map(|f| {
            let name = f.path().file_name()?.to_str()?.strip_suffix(".yaml")?;
            Some(Bundled {
                name,
                text: f.contents_utf8()?,
            })
        })
        .collect();
    plans.sort_by_key(|p| p.name);
    plans
}

/// The bundled plan `arg` names: `etcd-backup`, `etcd-backup.yaml` or `bundled:etcd-backup.yaml`,
/// unless it is a path or a file of that name exists here.
pub fn lookup(arg: &Path) -> Option<Bundled> {
    let s = arg.to_str()?;
    let bare = match s.strip_prefix(PREFIX) {
        Some(rest) => rest,
        None if s.contains('/') || arg.exists() => return None,
        None => s,
    };
    let name = bare.strip_suffix(".yaml").unwrap_or(bare);
    all().into_iter().find(|p| p.name == name)
}

/// How a run or a saved plan records the plan it was given: `bundled:NAME.yaml` for a
/// bundled plan, else the file's absolute path (a run may be resumed from elsewhere).
pub fn reference(arg: &Path) -> std::path::PathBuf {
    match lookup(arg) {
        Some(b) => b.file().into(),
        None => std::path::absolute(arg).unwrap_or_else(|_| arg.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_of_the_tree_is_bundled_and_found_by_its_name() {
        let names: Vec<&str> = all().iter().map(|p| p.name).collect();
        assert!(names.contains(&"etcd-backup") && names.contains(&"etcd-restore-ha"));
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/plans"))
            .unwrap()
            .count();
        assert_eq!(names.len(), on_disk);
        for arg in [
            "etcd-backup",
            "etcd-backup.yaml",
            "bundled:etcd-backup.yaml",
        ] {
            assert_eq!(lookup(Path::new(arg)).unwrap().name, "etcd-backup", "{arg}");
        }
        // A path is always a file, bundled or not.
        assert!(lookup(Path::new("plans/etcd-backup.yaml")).is_none());
        assert!(lookup(Path::new("./etcd-backup")).is_none());
        assert!(lookup(Path::new("no-such-plan")).is_none());
    }
}
