//! The append-only log: framed records in segment files.
//!
//! - [`frame`]: the `len | crc | body` frame, pure bytes.
//! - [`header`]: the segment and index file headers, pure bytes.
//! - [`segment`]: segment files on disk (create, append, seal, map).
//! - [`recovery`]: scanning a segment and finding its valid prefix.

pub mod frame;
pub mod header;
pub mod recovery;
pub mod segment;
