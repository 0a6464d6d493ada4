#![no_main]
//! See `auditstore_fuzz::ops` (fuzz/common/ops.rs): an operation sequence
//! against a real store, checked against an in-memory model.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    auditstore_fuzz::ops::run_bytes(data);
});
