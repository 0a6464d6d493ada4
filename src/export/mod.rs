//! Exports: the CSV format, and request-tracked, scheduled, rate-limited
//! CSV downloads.

pub mod csv;
