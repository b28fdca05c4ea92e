//! The run directory: compiled plan, inputs, journal, one log per step instance, rollback notes.
//! Everything in it is created 0600 (directories 0700): logs hold command output and secrets leak there.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where runs live unless `--run-dir` says otherwise.
pub const DEFAULT_RUNS: &str = ".runbook/runs";

/// What a run was compiled from, so `resume` can compile the very same plan again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub plan: PathBuf,
    pub inventory: PathBuf,
    pub params: Vec<SetParam>,
    pub fingerprint: String,
    pub cluster: String,
    pub created: String,
    /// Node commands ran on this machine (`--local`), not over SSH.
    #[serde(default)]
    pub local: bool,
    /// The runbook release that started the run, for the report (absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_version: Option<String>,
    /// The inventory's etcd version when the run started, for the report (absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_version: Option<String>,
    /// The run's own values (`run.started`, `run.id`), which a resume compiles with again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_values: Option<crate::compile::RunValues>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetParam {
    pub name: String,
    pub value: String,
    pub origin: String,
}

impl From<&crate::compile::ParamValue> for SetParam {
    fn from(p: &crate::compile::ParamValue) -> SetParam {
        SetParam {
            name: p.name.clone(),
            value: p.value.clone(),
            origin: p.origin.clone(),
        }
    }
}

impl From<&SetParam> for crate::compile::ParamValue {
    fn from(p: &SetParam) -> crate::compile::ParamValue {
        crate::compile::ParamValue {
            name: p.name.clone(),
            value: p.value.clone(),
            origin: p.origin.clone(),
        }
    }
}

/// The part of a run's recorded `plan.json` that `status` and `report` read back.
#[derive(Debug, Deserialize)]
pub struct RecordedPlan {
    pub fingerprint: String,
    pub plan: String,
    pub cluster: String,
    pub steps: Vec<RecordedStep>,
}

#[derive(Debug, Deserialize)]
pub struct RecordedStep {
    pub id: String,
    pub step: String,
    pub node: Option<String>,
    pub destructive: bool,
    pub idempotent: bool,
    pub action: String,
    /// What the step runs, as rendered (the report finds the API server's readiness wait by it).
    #[serde(default)]
    pub commands: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates a new run directory; refuses one that already holds a journal.
    pub fn create(path: &Path) -> Result<RunDir, String> {
        if path.join("journal.jsonl").exists() {
            return Err(format!(
                "{} already holds a run; resume it with `runbook resume {}`",
                path.display(),
                path.display()
            ));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path.join("logs"))
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing run: RUN is a directory, or a run id under `.runbook/runs`.
    pub fn find(run: &str) -> Result<RunDir, String> {
        let direct = PathBuf::from(run);
        let candidates = [direct.clone(), Path::new(DEFAULT_RUNS).join(run)];
        for c in &candidates {
            if c.join("run.json").is_file() {
                return Ok(RunDir { path: c.clone() });
            }
        }
        Err(format!(
            "no run {run:?}: neither {} nor {} holds a run.json",
            direct.display(),
            candidates[1].display()
        ))
    }

    pub fn journal(&self) -> PathBuf {
        self.path.join("journal.jsonl")
    }

    pub fn log(&self, id: &str) -> PathBuf {
        self.path.join("logs").join(format!("{id}.log"))
    }

    pub fn recorded_plan(&self) -> Result<RecordedPlan, String> {
        let p = self.path.join("plan.json");
        let text =
            fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is damaged: {e}", p.display()))
    }

    pub fn info(&self) -> Result<RunInfo, String> {
        let p = self.path.join("run.json");
        let text =
            fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is damaged: {e}", p.display()))
    }

    /// Writes a file of the run, 0600, replacing it whole.
    pub fn write(&self, name: &str, content: &[u8]) -> Result<(), String> {
        write_private(&self.path.join(name), content, false)
    }

    /// Appends to a file of the run.
    pub fn append(&self, name: &str, content: &[u8]) -> Result<(), String> {
        write_private(&self.path.join(name), content, true)
    }

    /// Appends to a step's log.
    pub fn append_log(&self, id: &str, content: &[u8]) -> Result<(), String> {
        write_private(&self.log(id), content, true)
    }
}

/// Creates a directory (and its parents) 0700 if it does not exist yet.
pub fn private_dir(path: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn write_private(path: &Path, content: &[u8], append: bool) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(content)
        .and_then(|_| f.sync_data())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A run id that sorts by time and is unique enough for one operator: `20261121T101500Z-3f9a`.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now();
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{stamp}-{salt:04x}")
}

/// `user@host` for locks and journals.
pub fn who() -> (String, String) {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into());
    (user, host)
}
