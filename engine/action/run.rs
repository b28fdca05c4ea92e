//! `run:`: raw shell, the escape hatch. The compiler has already quoted every interpolated value.

use super::{Act, Command, RunCx, RuntimeValue};
use crate::executor::BoxFut;

#[derive(Debug, Clone)]
pub struct Run {
    pub script: String,
    /// Captures of earlier steps the script reads (`captures.NAME`).
    pub captures: Vec<String>,
}

/// The environment variable holding a captured value at run time.
pub fn capture_var(name: &str) -> String {
    format!(
        "RUNBOOK_CAPTURE_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

impl Act for Run {
    fn commands(&self) -> Vec<Command> {
        vec![Command::Shell(self.script.trim_end().to_string())]
    }

    fn runtime_values(&self) -> Vec<RuntimeValue> {
        self.captures
            .iter()
            .map(|c| RuntimeValue {
                var: capture_var(c),
                meaning: format!("output captured as `{c}`, known at run time"),
            })
            .collect()
    }

    /// The captured values the script reads; one this node captured wins over another's.
    fn env<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Vec<(String, String)>, String>> {
        Box::pin(async move {
            let node = cx.node.map(|n| n.name.as_str());
            self.captures
                .iter()
                .map(|name| match cx.captures.get(name, node) {
                    Some(v) => Ok((capture_var(name), v)),
                    None => Err(format!("capture `{name}` has no value in this run")),
                })
                .collect()
        })
    }
}
