//! `runbook schema`: print the JSON Schema of plans or inventories.

use super::{Done, EXIT_OK, print_out};
use crate::cli::SchemaKind;

pub fn run(kind: SchemaKind) -> Done {
    let v = match kind {
        SchemaKind::Plan => crate::schema::plan(),
        SchemaKind::Inventory => crate::schema::inventory(),
    };
    print_out(&crate::schema::to_text(&v))?;
    Ok(EXIT_OK)
}
