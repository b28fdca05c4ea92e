//! Saved plans: `runbook plan -o json --out FILE` records what the plan was compiled
//! from (plan and inventory files, parameters, and the digest of every parameter that names a
//! local file, such as the snapshot). `runbook apply FILE --approve FINGERPRINT` runs exactly
//! that plan, and refuses if any of it changed since the review.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::rundir::SetParam;
use crate::compile::ParamValue;
use crate::snapshot::sha256_file;

/// The key under which a saved plan's JSON carries its inputs.
pub const KEY: &str = "saved_plan";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRef {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamFile {
    pub param: String,
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inputs {
    pub plan: FileRef,
    pub inventory: FileRef,
    pub params: Vec<SetParam>,
    /// Parameters naming a local file (the snapshot to restore, say), with its digest then.
    pub files: Vec<ParamFile>,
}

fn file_ref(p: &Path) -> Result<FileRef, String> {
    let path = crate::plan::bundled::reference(p);
    let sha256 = digest(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(FileRef { path, sha256 })
}

/// The sha256 of a file, or of the bundled plan it names (which changes with the binary).
fn digest(path: &Path) -> std::io::Result<String> {
    match crate::plan::bundled::lookup(path) {
        Some(b) => {
            use sha2::Digest as _;
            Ok(crate::snapshot::hex(&sha2::Sha256::digest(
                b.text.as_bytes(),
            )))
        }
        None => sha256_file(path),
    }
}

pub fn record(plan: &Path, inventory: &Path, sets: &[ParamValue]) -> Result<Inputs, String> {
    let mut files = Vec::new();
    for p in sets {
        let path = Path::new(&p.value);
        if path.is_absolute() && path.is_file() {
            files.push(ParamFile {
                param: p.name.clone(),
                path: path.to_path_buf(),
                sha256: sha256_file(path).map_err(|e| format!("cannot read {}: {e}", p.value))?,
            });
        }
    }
    Ok(Inputs {
        plan: file_ref(plan)?,
        inventory: file_ref(inventory)?,
        params: sets.iter().map(SetParam::from).collect(),
        files,
    })
}

/// Every input that is not what it was at review time.
pub fn changed(inputs: &Inputs) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, path: &Path, want: &str| match digest(path) {
        Ok(d) if d == want => {}
        Ok(d) => out.push(format!(
            "{what} {} changed (sha256 {d}, reviewed {want})",
            path.display()
        )),
        Err(e) => out.push(format!("{what} {} cannot be read: {e}", path.display())),
    };
    check("plan", &inputs.plan.path, &inputs.plan.sha256);
    check(
        "inventory",
        &inputs.inventory.path,
        &inputs.inventory.sha256,
    );
    for f in &inputs.files {
        check(&format!("parameter `{}`:", f.param), &f.path, &f.sha256);
    }
    out
}

pub fn params(inputs: &Inputs) -> Vec<ParamValue> {
    inputs.params.iter().map(ParamValue::from).collect()
}

/// A saved plan's fingerprint and inputs, if `path` is one (JSON with a `saved_plan` key).
pub fn read(path: &Path) -> Option<Result<(String, Inputs), String>> {
    // Anything unreadable is left to the plan loader, which says why.
    let bytes = crate::input::read_bytes(path, crate::input::DOCUMENT_LIMIT).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return Some(Err(format!("{} is not valid JSON: {e}", path.display()))),
    };
    let inputs = v.get(KEY)?;
    Some(
        serde_json::from_value::<Inputs>(inputs.clone())
            .map_err(|e| format!("{}: damaged `{KEY}`: {e}", path.display()))
            .and_then(|i| {
                v["fingerprint"]
                    .as_str()
                    .map(|f| (f.to_string(), i))
                    .ok_or_else(|| format!("{} has no fingerprint", path.display()))
            }),
    )
}
