//! Fuzz target: any bytes given to the snapshot reader give figures or an error, never a panic,
//! a hang or an allocation the size of a lie in a header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = runbook::snapshot::status::status_of_bytes(data);
});
