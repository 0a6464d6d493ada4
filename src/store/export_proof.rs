//! What an export's manifest needs from the tree: the leaf index of each
//! row's record and one batch inclusion proof of them all in a checkpoint
//! taken after the file was built (so it covers every row).

use std::collections::BTreeMap;

use super::tlog::SignedCheckpoint;
use super::*;
use crate::integrity::{verify_batch_inclusion, Hash};
use crate::scan::RecordPos;

/// Leaf indices (in the order asked) and the batch proof of the distinct
/// ones, ascending, in `checkpoint`.
#[derive(Debug, Clone)]
pub(crate) struct RowsProof {
    pub checkpoint: SignedCheckpoint,
    pub leaf_indexes: Vec<u64>,
    pub proof: Vec<Hash>,
}

impl Store {
    /// The [`RowsProof`] of records read by a scan of this store, each with
    /// the leaf hash it was read with. Takes a checkpoint first, so that
    /// every acknowledged record has a leaf; checks the proof before it is
    /// returned (a record whose leaf is not in the tree is `corrupt`).
    pub(crate) fn rows_proof(&self, rows: &[(RecordPos, Hash)]) -> Result<RowsProof> {
        let checkpoint = self.checkpoint()?;
        let t = self.tlog()?;
        let mut by_segment: BTreeMap<u64, Vec<(u32, usize)>> = BTreeMap::new();
        for (i, (pos, _)) in rows.iter().enumerate() {
            by_segment.entry(pos.segment).or_default().push((pos.offset, i));
        }
        let mut leaf_indexes = vec![0u64; rows.len()];
        for (seg, mut offsets) in by_segment {
            offsets.sort_unstable();
            let last = offsets.last().map_or(0, |(o, _)| *o as u64);
            let first = lock(&t.state).firsts.get(&seg).copied();
            let table = t.offsets(seg, last + 1)?;
            for (off, i) in offsets {
                let ordinal = table.binary_search(&off).ok();
                leaf_indexes[i] = match (first, ordinal) {
                    (Some(f), Some(o)) => f + o as u64,
                    _ => {
                        return Err(Error::corrupt(
                            segment::log_path(&self.dir, seg),
                            off as u64,
                            "an exported record has no leaf in the tree",
                        ))
                    }
                };
            }
        }
        let mut sorted: Vec<(u64, Hash)> = leaf_indexes
            .iter()
            .copied()
            .zip(rows.iter().map(|r| r.1))
            .collect();
        sorted.sort_unstable_by_key(|(i, _)| *i);
        let indices: Vec<u64> = sorted.iter().map(|(i, _)| *i).collect();
        let tree_err =
            |e: crate::integrity::TreeError| Error::corrupt(self.dir.join("tree"), 0, e.to_string());
        // The tree is 0.126 bytes per event: copied so that the proof (which
        // may re-hash many bottom tiles) does not hold up the integrator.
        let (tree, firsts, base, before) = {
            let st = lock(&t.state);
            (st.tree.clone(), st.firsts.clone(), st.base, st.before.clone())
        };
        let proof = tree
            .batch_inclusion_proof(
                &indices,
                checkpoint.tree_size,
                &mut t.source(&firsts, base, &before),
            )
            .map_err(tree_err)?;
        // Never hand out a proof that does not verify.
        verify_batch_inclusion(&sorted, checkpoint.tree_size, &proof, &checkpoint.root_hash).map_err(
            |e| {
                Error::corrupt(
                    self.dir.join("tree"),
                    0,
                    format!(
                        "the exported rows do not prove into checkpoint {}: {e}",
                        checkpoint.tree_size
                    ),
                )
            },
        )?;
        Ok(RowsProof {
            checkpoint,
            leaf_indexes,
            proof,
        })
    }
}

impl Store {
    /// Whether the store keeps the tamper-evidence tree (and so signs
    /// checkpoints and export manifests).
    pub(crate) fn keeps_tree(&self) -> bool {
        self.tlog.is_some()
    }

    /// The store's log origin and a signer with its key.
    pub(crate) fn log_signer(&self) -> Result<(String, std::sync::Arc<crate::integrity::Signer>)> {
        let t = self.tlog()?;
        Ok((t.origin.clone(), t.signer.clone()))
    }
}
