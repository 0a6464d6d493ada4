//! Tests of the tamper-evidence core (`auditstore::integrity`).

mod leaf;
