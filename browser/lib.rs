//! Nothing: this package is its test, `tests/browser/` (see Cargo.toml).
