#![no_main]
//! See `auditstore_fuzz::checks::csv_roundtrip` (fuzz/common/checks.rs).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    auditstore_fuzz::checks::csv_roundtrip(data);
});
