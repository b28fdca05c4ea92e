//! Reading YAML files into the raw models, with every failure located in the file.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::diag::{Diagnostic, Loc, SourceMap};

/// Why a file could not be loaded: it could not be read at all (a usage problem, exit 2),
/// or it was read and is not a valid document of its kind (exit 1).
#[derive(Debug)]
pub enum LoadError {
    Unreadable { path: String, error: std::io::Error },
    Invalid(Diagnostic),
}

/// A load that failed at any stage: unreadable, or invalid with one or more diagnostics.
#[derive(Debug)]
pub enum LoadFailure {
    Unreadable { path: String, error: std::io::Error },
    Invalid(crate::diag::Diagnostics),
}

impl From<LoadError> for LoadFailure {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Unreadable { path, error } => LoadFailure::Unreadable { path, error },
            LoadError::Invalid(d) => {
                let mut ds = crate::diag::Diagnostics::default();
                ds.push(d);
                LoadFailure::Invalid(ds)
            }
        }
    }
}

/// Read `path`, register its text for snippets, and deserialize it.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    kind: &str,
    sources: &mut SourceMap,
) -> Result<(T, Arc<str>), LoadError> {
    let name: Arc<str> = Arc::from(path.display().to_string());
    let text = std::fs::read_to_string(path).map_err(|error| LoadError::Unreadable {
        path: name.to_string(),
        error,
    })?;
    sources.add(&name, &text);
    let value = parse(&text, &name, kind).map_err(LoadError::Invalid)?;
    Ok((value, name))
}

/// Deserialize text already in memory; `file` names it in diagnostics.
pub fn parse<T: DeserializeOwned>(text: &str, file: &Arc<str>, kind: &str) -> Result<T, Diagnostic> {
    // Duplicate keys are errors (the serde-saphyr default); aliases are bounded by its budget.
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let loc = e
            .location()
            .map(|l| Loc::from_saphyr(file, &l))
            .unwrap_or_else(|| Loc::new(file, 1, 1));
        let raw = e.without_snippet().to_string();
        let message = if raw.starts_with("budget breached") {
            // Alias expansion ("billion laughs") or a document far larger than any plan.
            "the document expands to too many nodes (aliases or sheer size); refusing to load it"
                .to_string()
        } else {
            strip_position(&raw)
        };
        let hint = hint_for(&message, kind);
        let mut d = Diagnostic::error(code_for(&message), loc, message);
        if let Some(h) = hint {
            d = d.hint(h);
        }
        d
    })
}

/// serde-saphyr appends " at line L, column C"; the location is printed separately.
/// It also drops advice meant for the library's callers, not for the user.
fn strip_position(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => &message[..i],
        _ => message,
    };
    message
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .to_string()
}

fn code_for(message: &str) -> &'static str {
    if message.starts_with("the document expands") {
        "yaml-too-large"
    } else if message.starts_with("unknown field") {
        "unknown-field"
    } else if message.starts_with("missing field") {
        "missing-field"
    } else if message.starts_with("duplicate mapping key") {
        "duplicate-key"
    } else if message.starts_with("invalid") || message.starts_with("expected") {
        "wrong-type"
    } else {
        "yaml-syntax"
    }
}

fn hint_for(message: &str, kind: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some(format!(
            "check the spelling against `runbook schema {kind}`; add `# yaml-language-server: $schema=...` to the file for completion in an editor"
        ))
    } else if message.starts_with("duplicate mapping key") {
        Some("each key may appear once in a mapping; remove or merge the repeated one".into())
    } else if message.starts_with("missing field") {
        Some(format!("see `runbook schema {kind}` for the required fields"))
    } else if message.starts_with("the document expands") {
        Some("plans and inventories are small: write the values out instead of nesting aliases".into())
    } else {
        None
    }
}
