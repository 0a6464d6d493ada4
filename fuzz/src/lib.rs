//! The checks behind the fuzz targets. They live in `fuzz/common/` so that
//! `tests/fuzz_corpus.rs` and `tests/model.rs` include the very same files
//! (with `#[path]`) and `cargo test` runs the same logic over the committed
//! seed corpus.

#[path = "../common/checks.rs"]
pub mod checks;
#[path = "../common/ops.rs"]
pub mod ops;
