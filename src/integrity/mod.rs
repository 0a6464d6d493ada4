//! Tamper evidence: an RFC 6962 / RFC 9162 Merkle tree over the stored
//! events, its on-disk tiles, and C2SP signed checkpoints
//! (shared/spec/integrity.md). Pure parts only: nothing here reads the log
//! or the store; the store feeds leaf hashes in and reads proofs out.
//!
//! - [`hash`]: leaf and interior hashes;
//! - [`leaf`]: an event's leaf data (RFC 8785 JSON), [`canon`] its fast
//!   path straight from the stored texts;
//! - [`tree`]: the compact tree, its roots; [`proof`]: building proofs;
//!   [`verify`]: checking them; [`batch`]: one proof for many leaves;
//! - [`tiles`]: the tree's hashes on disk (docs/format.md, "Tree tiles");
//! - [`note`]: C2SP signed notes with Ed25519; [`checkpoint`]: the
//!   tlog-checkpoint body; [`key`]: the `signing.key` file.

pub mod batch;
pub mod canon;
pub mod checkpoint;
pub mod hash;
pub mod jcs;
pub mod key;
pub mod leaf;
pub mod log;
pub mod log_thin;
pub mod note;
pub mod proof;
pub mod tiles;
pub mod tree;
pub mod verify;

pub use batch::{batch_inclusion_path, batch_root, verify_batch_inclusion};
pub use checkpoint::{Checkpoint, CheckpointError};
pub use hash::{empty_root, leaf_hash, node_hash, Hash};
pub use leaf::{event_leaf_hash, leaf_data, LeafError};
pub use note::{NoteError, Signer, VerifierKey};
pub use tree::{LeafSource, NoLeaves, Tree, TreeError};
pub use verify::{verify_consistency, verify_inclusion, ProofError};
