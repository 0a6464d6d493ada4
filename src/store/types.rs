//! The store's public value types: options, and what appends, opens,
//! retention, stats and verification report.

use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::io::{Io, RealIo};
use crate::time::Timestamp;

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// (Default.) `append` returns after the record is written and
    /// `fdatasync`ed; concurrent appenders share one `fdatasync` (group
    /// commit). Survives `kill -9` and power loss.
    #[default]
    Sync,
    /// `append` returns after the record is handed to the OS with `write`;
    /// it is fsynced when a segment rolls, on [`Store::flush`] and on close.
    /// Survives `kill -9` of the process; a power loss or kernel crash can
    /// lose what was appended since the last fsync.
    Buffered,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    pub durability: Durability,
    /// Roll to a new segment once the active one would exceed this many
    /// bytes (4 KiB to 1 GiB; default 64 MiB).
    pub segment_size: u64,
    /// Source of "now" for retention and exports.
    pub clock: Arc<dyn Clock>,
    /// File operations of the write path (tests inject faults here).
    pub io: Arc<dyn Io>,
    /// Build and write a rolled segment's index on a background thread
    /// (default), so appends do not wait for it; the segment is served from
    /// memory meanwhile. A failure there is retried at the next roll and
    /// reported by [`Store::verify`]; the segment's data is durable either
    /// way, and an open indexes it. With `false` the append that rolls
    /// builds the index itself and gets any error from doing so.
    pub background_sealing: bool,
    /// Keep the tamper-evidence tree and sign checkpoints
    /// (shared/spec/integrity.md; default). `false` is for measuring what
    /// it costs: the store then keeps no tree, and `checkpoint`/`prove`
    /// answer `InvalidArgument`.
    pub integrity: bool,
    /// The key checkpoints are signed with.
    pub signing_key: SigningKey,
    /// The id a store created by this open gets (`None`: a random UUID);
    /// an existing store keeps its own. The id names the store's log in
    /// its checkpoints (`auditstore/<id>`): a cluster gives each
    /// partition's stores one id on every node, so that they sign the
    /// same checkpoint bodies (docs/cluster.md).
    pub store_id: Option<[u8; 16]>,
    /// Where the export policy (`export-policy.json`) is read from
    /// (`None`: the store's directory). A cluster node's partition stores
    /// read the node's.
    pub policy_dir: Option<std::path::PathBuf>,
}

/// Where the store's Ed25519 signing key comes from.
#[derive(Debug, Clone, Default)]
pub enum SigningKey {
    /// `signing.key` in the data directory, created (mode 0600) when
    /// missing. Default.
    #[default]
    InStore,
    /// A key file kept elsewhere (a key outside the data directory keeps a
    /// thief of the directory from re-signing); never created.
    File(PathBuf),
    /// A key the embedder holds.
    Signer(Arc<crate::integrity::Signer>),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            segment_size: 64 << 20,
            clock: Arc::new(SystemClock),
            io: Arc::new(RealIo),
            background_sealing: true,
            integrity: true,
            signing_key: SigningKey::InStore,
            store_id: None,
            policy_dir: None,
        }
    }
}

/// What happened to one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored.
    Appended,
    /// Its id was already stored with the same content: not stored again.
    Duplicate,
    /// Its id was already stored with different content: not stored (the
    /// first write wins).
    Conflict,
}

/// Counts for a batch, and the outcome of each event in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub appended: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub outcomes: Vec<AppendOutcome>,
}

impl BatchReport {
    pub(crate) fn record(&mut self, o: AppendOutcome) {
        match o {
            AppendOutcome::Appended => self.appended += 1,
            AppendOutcome::Duplicate => self.duplicates += 1,
            AppendOutcome::Conflict => self.conflicts += 1,
        }
        self.outcomes.push(o);
    }
}

/// What opening the store found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut from the tail of the active segment (torn or corrupt).
    pub truncated_bytes: u64,
    /// Why the tail was cut, with file and offset.
    pub truncation: Option<String>,
    /// Sealed segments whose index was missing or damaged and rebuilt.
    pub rebuilt_indexes: Vec<PathBuf>,
    /// Damage found in sealed data (also reported by `verify`).
    pub problems: Vec<Problem>,
    /// Records read to recover the active segment.
    pub records_scanned: u64,
    /// Files (under `quarantine/`) that this open saved the bytes cut from
    /// the active segment to, because valid records followed the damage.
    pub quarantined: Vec<PathBuf>,
    /// Records found intact after such damage and appended again.
    pub salvaged_records: u64,
}

/// A problem found in the files, with where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub offset: u64,
    pub message: String,
    /// The leaf index (the event's ordinal in the tamper-evidence tree) of
    /// the first event concerned, for findings about the tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_index: Option<u64>,
}

/// What `verify` checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub segments: u64,
    pub records: u64,
    pub indexes: u64,
    pub bytes: u64,
    /// Leaves of the tamper-evidence tree recomputed from the log.
    pub leaves: u64,
    /// Signed checkpoints checked (those kept in the store, and the one
    /// given with `--against`).
    pub checkpoints: u64,
    pub problems: Vec<Problem>,
}

/// What `apply_retention` freed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    pub segments_deleted: u64,
    pub events_deleted: u64,
    pub bytes_freed: u64,
    pub files: Vec<PathBuf>,
    /// The signed checkpoint taken by the run (before deleting), when the
    /// store keeps a tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The leaf index of the first event still retained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_retained_leaf: Option<u64>,
}

/// Store-wide counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Events on disk (not clamped by retention).
    pub events: u64,
    /// Organizations with at least one event on disk.
    pub organizations: u64,
    pub segments: u64,
    /// Bytes of every store file (segments, indexes, metadata).
    pub bytes: u64,
    pub oldest: Option<Timestamp>,
    pub newest: Option<Timestamp>,
    /// Heap bytes of the de-duplication and active indexes.
    pub index_memory_bytes: u64,
}
