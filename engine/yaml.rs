//! Reading YAML files into the raw models, with every failure located in the file.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::diag::{Diagnostic, Diagnostics, Loc, SourceMap};

/// Why a file could not be loaded: it could not be read at all (a usage problem, exit 2),
/// or it was read and is not valid (exit 1), with every diagnostic found.
#[derive(Debug)]
pub enum LoadFailure {
    Unreadable {
        path: String,
        error: crate::input::InputError,
    },
    Invalid(Diagnostics),
}

/// Read `path`, register its text for snippets, and deserialize it.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    kind: &str,
    sources: &mut SourceMap,
) -> Result<(T, Arc<str>), LoadFailure> {
    let name: Arc<str> = Arc::from(path.display().to_string());
    let unreadable = |error| LoadFailure::Unreadable {
        path: name.to_string(),
        error,
    };
    let bytes = crate::input::read_bytes(path, crate::input::DOCUMENT_LIMIT).map_err(unreadable)?;
    let text = match crate::input::utf8(bytes) {
        Ok(text) => text,
        Err((at, bytes)) => {
            // Read, but not text: located like any other problem in the file, and shown
            // with the bad byte as U+FFFD.
            sources.add(&name, &String::from_utf8_lossy(&bytes));
            let mut ds = Diagnostics::default();
            ds.push(
                Diagnostic::error("not-utf8", Loc::new(&name, at.line, at.column), at.to_string())
                    .hint(format!(
                        "{kind} files are UTF-8 text: save this one as UTF-8 (from Latin-1: iconv -f latin1 -t utf-8), or remove the byte"
                    )),
            );
            return Err(LoadFailure::Invalid(ds));
        }
    };
    sources.add(&name, &text);
    let value = parse(&text, &name, kind).map_err(LoadFailure::Invalid)?;
    Ok((value, name))
}

/// Like [`load`] for text already in memory (a bundled plan), named `name` in diagnostics.
pub fn load_text<T: DeserializeOwned>(
    text: &str,
    name: &str,
    kind: &str,
    sources: &mut SourceMap,
) -> Result<(T, Arc<str>), LoadFailure> {
    let name: Arc<str> = Arc::from(name);
    sources.add(&name, text);
    let value = parse(text, &name, kind).map_err(LoadFailure::Invalid)?;
    Ok((value, name))
}

/// Deserialize text already in memory; `file` names it in diagnostics.
pub fn parse<T: DeserializeOwned>(
    text: &str,
    file: &Arc<str>,
    kind: &str,
) -> Result<T, Diagnostics> {
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
        let mut ds = Diagnostics::default();
        ds.push(d);
        ds
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
        Some(format!(
            "see `runbook schema {kind}` for the required fields"
        ))
    } else if message.starts_with("invalid") || message.starts_with("expected") {
        Some(format!(
            "this field takes another kind of value: see `runbook schema {kind}`"
        ))
    } else if message.starts_with("the document expands") {
        Some(
            "plans and inventories are small: write the values out instead of nesting aliases"
                .into(),
        )
    } else {
        None
    }
}
