//! The journal: an append-only `journal.jsonl`, one fsynced event per line, the run's truth on resume.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Something that happened in a run. Serialised with an `event` tag, one per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        plan: String,
        cluster: String,
        fingerprint: String,
        user: String,
        host: String,
        pid: u32,
        resumed: bool,
        dry_run: bool,
    },
    /// A gate let a step through: `tty`, `--yes` or `--approve`; `waited_ms` is the time
    /// this gate's question waited for the operator (`--step`), which is not the run's.
    Approved {
        id: String,
        by: String,
        #[serde(default, skip_serializing_if = "is_zero")]
        waited_ms: u64,
    },
    /// A gate stopped a step.
    Declined {
        id: String,
    },
    /// The operator's answer on resume for a step whose outcome is unknown.
    Decision {
        id: String,
        decision: Decision,
    },
    StepStarted {
        id: String,
        attempt: u32,
    },
    StepFinished {
        id: String,
        attempt: u32,
        status: Finish,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        exit_code: Option<i32>,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        error: Option<String>,
        /// The step's trimmed stdout when the step has `capture:`; later steps read it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        capture: Option<String>,
    },
    /// What runbook's own work in a step found (a verification, what etcd said); `shown`
    /// when the console shows it too, not only the step's log.
    StepOutput {
        id: String,
        text: String,
        #[serde(default)]
        shown: bool,
    },
    /// The step will run again after a failed attempt.
    StepRetry {
        id: String,
        attempt: u32,
        delay_ms: u64,
    },
    StepSkipped {
        id: String,
        reason: String,
    },
    /// Ctrl-C: no new step starts; the listed ones are left to finish.
    Interrupted {
        running: Vec<String>,
    },
    /// A second Ctrl-C abandoned a running step: its outcome on the host is unknown.
    StepAbandoned {
        id: String,
    },
    RunFinished {
        status: RunStatus,
        /// Time spent waiting at `--step` prompts (not counted as the run's time).
        #[serde(default, skip_serializing_if = "is_zero")]
        prompt_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Succeeded,
    Failed,
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Retry,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Interrupted,
}

impl RunStatus {
    /// As a sentence says it: "the run failed".
    pub fn word(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "was interrupted",
        }
    }
}

/// An event with its time (RFC 3339, UTC, milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub time: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Record {
    pub fn now(event: Event) -> Record {
        Record {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            event,
        }
    }
}

/// The open journal file. Every append is written and fsynced before the call returns, so a
/// crash right after a step starts still leaves that fact on disk.
pub struct Journal {
    file: Mutex<File>,
}

impl Journal {
    pub fn open(path: &Path) -> std::io::Result<Journal> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(Journal {
            file: Mutex::new(file),
        })
    }

    pub fn append(&self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(line.as_bytes())?;
        f.sync_data()
    }
}

/// Reads a journal back. A torn last line (the process died mid-write) is ignored;
/// a damaged line elsewhere is an error, because the history would be unreliable.
pub fn read(path: &Path) -> Result<Vec<Record>, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        // A run refused before its first event has no journal: nothing happened.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::with_capacity(lines.len());
    let last = lines.len().saturating_sub(1);
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(r) => out.push(r),
            Err(_) if n == last => break,
            Err(e) => {
                return Err(format!(
                    "{}:{}: damaged journal line: {e}",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    Ok(out)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
