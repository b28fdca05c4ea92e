//! `run:`: raw shell, the escape hatch. The compiler has already quoted every interpolated value.

use super::{Command, RuntimeValue};

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

impl Run {
    pub fn commands(&self) -> Vec<Command> {
        vec![Command::Shell(self.script.trim_end().to_string())]
    }

    pub fn runtime_values(&self) -> Vec<RuntimeValue> {
        self.captures
            .iter()
            .map(|c| RuntimeValue {
                var: capture_var(c),
                meaning: format!("output captured as `{c}`, known at run time"),
            })
            .collect()
    }
}
