//! Execution: the walk over the step graph, its journal and state, gates, locks and output.

pub mod gate;
pub mod journal;
pub mod lock;
pub mod record;
pub mod report;
pub mod rundir;
pub mod saved;
pub mod session;
pub mod state;
pub mod tools;
pub mod walk;
