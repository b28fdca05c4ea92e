//! `runbook schema`: print the JSON Schema of plans or inventories.

use super::EXIT_OK;
use crate::cli::SchemaKind;

pub fn run(kind: SchemaKind) -> u8 {
    let v = match kind {
        SchemaKind::Plan => crate::schema::plan(),
        SchemaKind::Inventory => crate::schema::inventory(),
    };
    print!("{}", crate::schema::to_text(&v));
    EXIT_OK
}
