//! Indexes over the log. All are caches: each can be rebuilt from the
//! segment it describes.
//!
//! - [`file`](mod@file): the byte layout of a sealed segment's `.idx` file.
//! - [`id`]: id fingerprints and the store-wide fingerprint set used for
//!   de-duplication.
//! - [`time`]: the active segment's in-memory (org, time) index.

pub mod checkpoint;
pub mod file;
pub mod id;
pub mod time;
