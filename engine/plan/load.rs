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

pub fn load(path: &Path, sources: &mut SourceMap) -> Result<LoadedPlan, LoadFailure> {
    let (raw, file) = yaml::load::<PlanFile>(path, "plan", sources)?;
    Ok(LoadedPlan { file, raw })
}
