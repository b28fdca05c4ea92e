//! `runbook schema`: print the JSON Schema of plans or inventories.

use super::{EXIT_OK, print_out};
use crate::cli::SchemaKind;

pub fn run(kind: SchemaKind) -> u8 {
    let v = match kind {
        SchemaKind::Plan => crate::schema::plan(),
        SchemaKind::Inventory => crate::schema::inventory(),
    };
    match print_out(&crate::schema::to_text(&v)) {
        Ok(()) => EXIT_OK,
        Err(code) => code,
    }
}
