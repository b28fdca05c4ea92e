//! Diagnostics: located errors and warnings, collected (never thrown one at a time) and rendered like a compiler's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

/// A position in a source file, 1-based, as the user's editor shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u64,
    pub column: u64,
}

impl Loc {
    pub fn new(file: &Arc<str>, line: u64, column: u64) -> Self {
        Loc {
            file: file.clone(),
            line,
            column,
        }
    }

    /// Where a parser location points; serde-saphyr reports 0/0 when it has none.
    pub fn from_saphyr(file: &Arc<str>, loc: &serde_saphyr::Location) -> Self {
        Loc::new(file, loc.line().max(1), loc.column().max(1))
    }

    /// A location for inputs that are not files (`--set` values on the command line).
    pub fn command_line() -> Self {
        Loc::new(&Arc::from("<command line>"), 0, 0)
    }
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding: a stable code, what is wrong, where, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub loc: Loc,
    pub hint: Option<String>,
    /// Further locations that explain the finding (the other member, the cycle's next edge).
    pub notes: Vec<(Loc, String)>,
}

impl Diagnostic {
    pub fn error(code: &'static str, loc: Loc, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            loc,
            hint: None,
            notes: Vec::new(),
        }
    }

    pub fn warning(code: &'static str, loc: Loc, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, loc, message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn note(mut self, loc: Loc, text: impl Into<String>) -> Self {
        self.notes.push((loc, text.into()));
        self
    }
}

/// The texts of every file read, so diagnostics can quote the offending line.
#[derive(Default, Debug, Clone)]
pub struct SourceMap {
    files: BTreeMap<Arc<str>, Arc<str>>,
}

impl SourceMap {
    pub fn add(&mut self, name: &Arc<str>, text: &str) {
        self.files.insert(name.clone(), Arc::from(text));
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(|t| &**t)
    }
}

/// A set of diagnostics gathered over one validation.
#[derive(Default, Debug, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn extend(&mut self, other: impl IntoIterator<Item = Diagnostic>) {
        self.items.extend(other);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.items.iter().filter(|d| d.severity == severity).count()
    }

    /// Errors first, then by file and position, so output is stable and reads top-down.
    pub fn sort(&mut self) {
        self.items
            .sort_by(|a, b| (a.severity, &a.loc, a.code).cmp(&(b.severity, &b.loc, b.code)));
        self.items.dedup();
    }

    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        for d in &self.items {
            out.push_str(&render_one(d, sources));
            out.push('\n');
        }
        out
    }

    pub fn to_json(&self) -> Vec<serde_json::Value> {
        self.items
            .iter()
            .map(|d| {
                serde_json::json!({
                    "severity": d.severity,
                    "code": d.code,
                    "message": d.message,
                    "file": &*d.loc.file,
                    "line": d.loc.line,
                    "column": d.loc.column,
                    "hint": d.hint,
                })
            })
            .collect()
    }
}

/// Byte range of the token at (line, column): from the column to the end of the word,
/// so the caret underlines the value the user wrote.
fn token_range(text: &str, line: u64, column: u64) -> Option<std::ops::Range<usize>> {
    let mut offset = 0usize;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let body = l.trim_end_matches(['\n', '\r']);
            let col_byte = body
                .char_indices()
                .nth(column.saturating_sub(1) as usize)
                .map(|(b, _)| b)
                .unwrap_or(body.len());
            let rest = &body[col_byte..];
            // A quoted scalar is underlined to its closing quote, spaces included.
            if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'')
                && let Some(close) = rest[1..].find(q)
            {
                let start = offset + col_byte;
                return Some(start..start + close + 2);
            }
            let len = rest
                .find(|c: char| c.is_whitespace() || c == ',' || c == '}' || c == ']')
                .unwrap_or(rest.len())
                .max(1)
                .min(rest.len().max(1));
            let start = offset + col_byte;
            let end = (start + len).min(offset + body.len()).max(start);
            return Some(start..end);
        }
        offset += l.len();
    }
    None
}

fn render_one(d: &Diagnostic, sources: &SourceMap) -> String {
    let level = match d.severity {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let title = level.primary_title(d.message.as_str()).id(d.code);
    let mut groups = Vec::new();
    let located = sources
        .text(&d.loc.file)
        .and_then(|text| token_range(text, d.loc.line, d.loc.column).map(|r| (text, r)));
    let main = match located {
        Some((text, range)) => title.element(
            Snippet::source(text)
                .path(location_label(&d.loc))
                .fold(true)
                .annotation(AnnotationKind::Primary.span(range)),
        ),
        None => Group::with_title(title).element(Level::NOTE.message(format!("in {}", d.loc))),
    };
    groups.push(main);
    let mut note_texts = Vec::new();
    for (loc, text) in &d.notes {
        note_texts.push(format!("{text} ({loc})"));
    }
    let mut extra = Vec::new();
    for t in &note_texts {
        extra.push(Level::NOTE.message(t.as_str()));
    }
    if let Some(h) = &d.hint {
        extra.push(Level::HELP.message(h.as_str()));
    }
    let mut groups_out = groups;
    if !extra.is_empty() {
        let last = groups_out.pop().expect("one group");
        groups_out.push(last.elements(extra));
    }
    let rendered = Renderer::plain().render(&groups_out);
    // annotate-snippets prints the path without line and column when it folds; keep the
    // `file:line:column` form every editor understands on the `-->` line.
    let mut out = String::new();
    for line in rendered.lines() {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn location_label(loc: &Loc) -> String {
    loc.file.to_string()
}

/// An error and its causes on one line, each cause said once: libraries' top-level texts
/// ("transport error", "ssh exited") say little without what caused them.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_code_location_snippet_and_hint() {
        let file: Arc<str> = Arc::from("plan.yaml");
        let mut sources = SourceMap::default();
        sources.add(&file, "name: x\nsteps:\n  - id: bad id\n");
        let mut ds = Diagnostics::default();
        ds.push(
            Diagnostic::error("bad-id", Loc::new(&file, 3, 9), "step id is not valid")
                .hint("use letters, digits and '-'"),
        );
        let text = ds.render(&sources);
        assert!(
            text.contains("error[bad-id]: step id is not valid"),
            "{text}"
        );
        assert!(text.contains("plan.yaml:3:9"), "{text}");
        assert!(text.contains("  - id: bad id"), "{text}");
        assert!(text.contains("help: use letters"), "{text}");
    }
}
