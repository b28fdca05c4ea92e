//! Loading a plan file from disk.

use std::path::Path;
use std::sync::Arc;

use super::PlanFile;
use crate::diag::SourceMap;
use crate::yaml::{self, LoadFailure};

/// A plan as read, with the name of the file it came from.
pub struct LoadedPlan {
    pub file: Arc<str>,
    pub raw: PlanFile,
}

/// Loads a plan file, or the bundled plan `path` names (see [`super::bundled::lookup`]).
pub fn load(path: &Path, sources: &mut SourceMap) -> Result<LoadedPlan, LoadFailure> {
    let (raw, file) = match super::bundled::lookup(path) {
        Some(b) => yaml::load_text::<PlanFile>(b.text, &b.file(), "plan", sources)?,
        None => yaml::load::<PlanFile>(path, "plan", sources)?,
    };
    Ok(LoadedPlan { file, raw })
}
