//! `runbook report RUN`: what a drill or an outage run did, for the people who were not there
//! and for the file, as Markdown, JSON, or JUnit for CI dashboards (see engine/report).

use super::{EXIT_INVALID, EXIT_OK, usage_error};
use crate::cli::ReportFormat;
use crate::execute::rundir::RunDir;
use crate::report::{build, junit, markdown};

pub fn run(run: &str, format: ReportFormat) -> u8 {
    let dir = match RunDir::find(run) {
        Ok(d) => d,
        Err(e) => return usage_error("cannot report on the run", &e, None),
    };
    let report = match build(&dir) {
        Ok(r) => r,
        Err(e) => return usage_error("cannot report on the run", &e, None),
    };
    let text = match format {
        ReportFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        ReportFormat::Markdown => markdown(&report),
        ReportFormat::Junit => match junit(&report, &dir) {
            Ok(x) => x,
            Err(e) => return usage_error("cannot write the JUnit report", &e, None),
        },
    };
    if let Err(code) = super::print_out(&text) {
        return code;
    }
    if report.passed { EXIT_OK } else { EXIT_INVALID }
}
